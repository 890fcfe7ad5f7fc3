//! Metainfo conformance against libtorrent as an oracle.
//!
//! A corpus of torrents — made by mktorrent, and hand-built bencode for
//! what mktorrent never writes (pad files, BEP 47 symlinks, odd piece
//! lengths, out-of-order keys, a trailing newline, junk in `url-list`,
//! `*.utf-8` keys, unknown keys, zero-length files, a 512 MiB piece length
//! over 425 bytes, and inputs that should be refused) — is read by gtio's
//! parser and by python3-libtorrent (`import libtorrent`, Debian's
//! python3-libtorrent). For every torrent both accept, the files (full path,
//! size, stream offset, pad flag, symlink target), total size, piece length
//! and piece count must be equal. Every acceptance disagreement is listed;
//! the test fails unless it is one the documented policy calls for (unsafe
//! or duplicate paths, v2-only metainfo: SECURITY.md), which the corpus
//! marks, so a policy refusal that stops happening fails too.
//!
//! Skipped, with a message, only when no Python can import libtorrent.

#[path = "support/bencode.rs"]
mod bencode;
#[path = "conformance/corpus.rs"]
mod corpus;
#[path = "support/gtio_bin.rs"]
mod gtio_bin;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use corpus::{from_mktorrent, hand_built, Expect};

/// Reads each torrent named on the command line with libtorrent and prints
/// one line per torrent: `OK name|piece_length|num_pieces|total` followed by
/// one `F path|size|offset|pad|symlink` line per file, or `ERR message`.
const ORACLE: &str = r#"
import sys, libtorrent as lt
for p in sys.argv[1:]:
    print("TORRENT", p)
    try:
        ti = lt.torrent_info(open(p, "rb").read())
    except Exception as e:
        print("ERR", str(e).replace("\n", " "))
        continue
    fs = ti.files()
    print("OK %s|%d|%d|%d" % (ti.name(), ti.piece_length(), ti.num_pieces(), ti.total_size()))
    for i in range(fs.num_files()):
        flags = fs.file_flags(i)
        pad = 1 if flags & lt.file_storage.flag_pad_file else 0
        link = fs.symlink(i) if flags & lt.file_storage.flag_symlink else ""
        print("F %s|%d|%d|%d|%s" % (fs.file_path(i), fs.file_size(i), fs.file_offset(i), pad, link))
"#;

/// What one reader made of a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    Accepted(Summary),
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    name: String,
    piece_length: u64,
    pieces: u64,
    total: u64,
    /// (full path, size, offset, pad, symlink target), stream order.
    files: Vec<(String, u64, u64, bool, String)>,
}

fn find_oracle() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import libtorrent"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn oracle(python: &str, paths: &[PathBuf]) -> BTreeMap<PathBuf, Reading> {
    let out = Command::new(python)
        .arg("-c")
        .arg(ORACLE)
        .args(paths)
        .output()
        .expect("run the libtorrent oracle");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("oracle output is UTF-8");
    let mut result = BTreeMap::new();
    let mut current: Option<(PathBuf, Reading)> = None;
    for line in text.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "TORRENT" => {
                if let Some((p, r)) = current.take() {
                    result.insert(p, r);
                }
                current = Some((PathBuf::from(rest), Reading::Refused(String::new())));
            }
            "ERR" => current.as_mut().unwrap().1 = Reading::Refused(rest.to_string()),
            "OK" => {
                let f: Vec<&str> = rest.rsplitn(4, '|').collect();
                current.as_mut().unwrap().1 = Reading::Accepted(Summary {
                    name: f[3].to_string(),
                    piece_length: f[2].parse().unwrap(),
                    pieces: f[1].parse().unwrap(),
                    total: f[0].parse().unwrap(),
                    files: Vec::new(),
                });
            }
            "F" => {
                let f: Vec<&str> = rest.split('|').collect();
                let n = f.len();
                let Some((_, Reading::Accepted(sum))) = current.as_mut() else {
                    panic!("file line outside a torrent: {line}");
                };
                sum.files.push((
                    f[..n - 4].join("|"),
                    f[n - 4].parse().unwrap(),
                    f[n - 3].parse().unwrap(),
                    f[n - 2] == "1",
                    f[n - 1].to_string(),
                ));
            }
            _ => panic!("unexpected oracle line {line:?}"),
        }
    }
    if let Some((p, r)) = current.take() {
        result.insert(p, r);
    }
    result
}

/// gtio's reading, in libtorrent's terms: paths are prefixed with the
/// torrent's name for a multi-file torrent, and so are symlink targets
/// (libtorrent reports them relative to the save path, gtio relative to
/// the torrent's root).
fn gtio_reading(bytes: &[u8]) -> Reading {
    match gtio::dataset::metainfo::parse(bytes) {
        Err(e) => Reading::Refused(e.message().to_string()),
        Ok(m) => {
            let full = |p: &str| {
                if m.multi_file {
                    format!("{}/{p}", m.name)
                } else {
                    p.to_string()
                }
            };
            Reading::Accepted(Summary {
                name: m.name.clone(),
                piece_length: m.piece_length,
                pieces: u64::from(m.piece_count()),
                total: m.total_length,
                files: m
                    .files
                    .iter()
                    .map(|f| {
                        let link = f.symlink.map(&full).unwrap_or_default();
                        (full(f.path), f.length, f.offset, f.pad, link)
                    })
                    .collect(),
            })
        }
    }
}

#[test]
fn gtio_reads_torrents_as_libtorrent_does() {
    let Some(python) = find_oracle() else {
        eprintln!(
            "SKIP torrent_conformance: no python3 can `import libtorrent` \
             (install Debian's python3-libtorrent: scripts/install-deps.sh)"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("gtio-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cases = hand_built();
    cases.extend(from_mktorrent(&dir));
    let paths: Vec<PathBuf> = cases
        .iter()
        .map(|c| {
            let p = dir.join(format!("{}.torrent", c.name));
            std::fs::write(&p, &c.bytes).unwrap();
            p
        })
        .collect();
    let theirs = oracle(python, &paths);

    let mut both = 0;
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (case, path) in cases.iter().zip(&paths) {
        let lt = &theirs[path];
        let ours = gtio_reading(&case.bytes);
        match (&ours, lt, case.expect) {
            (Reading::Accepted(a), Reading::Accepted(b), Expect::Agree) => {
                both += 1;
                if a != b {
                    failures.push(format!("{}: gtio {a:#?}\nlibtorrent {b:#?}", case.name));
                }
            }
            (Reading::Refused(_), Reading::Refused(_), Expect::Agree) => {}
            (Reading::Refused(why), Reading::Accepted(_), Expect::PolicyRefusal(needle)) => {
                report.push(format!("{}: gtio refuses by policy: {why}", case.name));
                if !why.contains(needle) {
                    failures.push(format!(
                        "{}: refused for {why:?}, expected {needle:?}",
                        case.name
                    ));
                }
            }
            (Reading::Accepted(_), Reading::Refused(why), Expect::OracleLimit(needle)) => {
                report.push(format!(
                    "{}: libtorrent refuses by its load limit: {why}",
                    case.name
                ));
                if !why.contains(needle) {
                    failures.push(format!(
                        "{}: libtorrent refused for {why:?}, expected {needle:?}",
                        case.name
                    ));
                }
            }
            (ours, lt, expect) => failures.push(format!(
                "{}: gtio {}, libtorrent {}, expected {expect:?}",
                case.name,
                describe(ours),
                describe(lt)
            )),
        }
    }
    eprintln!(
        "{} torrents, {both} accepted by both and compared; disagreements:",
        cases.len()
    );
    for line in report.iter().chain(&failures) {
        eprintln!("  {line}");
    }
    assert!(both >= 25, "too few torrents accepted by both: {both}");
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // `gtio ls` shows a symlink as `name -> target` and never counts its
    // bytes.
    let links = dir.join("symlinks.torrent");
    let out = Command::new(gtio_bin::gtio_bin())
        .args(["ls", "-q"])
        .arg(&links)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gtio ls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("l1 -> a/x.bin"), "{text}");
    assert!(text.contains("l2 -> a/x.bin"), "{text}");
    assert!(text.contains("(8 bytes)"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn describe(r: &Reading) -> String {
    match r {
        Reading::Accepted(_) => "accepts".to_string(),
        Reading::Refused(why) => format!("refuses ({why})"),
    }
}
