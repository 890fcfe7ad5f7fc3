//! The corpus of `tests/torrent_conformance.rs`: torrents made by mktorrent
//! and hand-built bencode for what mktorrent never writes, each with what
//! the comparison expects of it.

use std::path::Path;
use std::process::Command;

use crate::bencode::{d, enc, s, B};

/// What the corpus expects of a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Both accept (and must then agree), or both refuse.
    Agree,
    /// gtio refuses by policy though libtorrent loads it; the message
    /// must contain this.
    PolicyRefusal(&'static str),
    /// libtorrent refuses by one of its configurable load limits (not a
    /// format rule); its message must contain this.
    OracleLimit(&'static str),
}

pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

fn zeros(pieces: usize) -> B {
    B::S(vec![0u8; 20 * pieces])
}

fn file(len: i64, path: &[&str]) -> B {
    d(vec![
        ("length", B::I(len)),
        ("path", B::L(path.iter().map(s).collect())),
    ])
}

fn with_attr(attr: &str, len: Option<i64>, path: &[&str], link: Option<&[&str]>) -> B {
    let mut e = vec![("attr", s(attr))];
    if let Some(len) = len {
        e.push(("length", B::I(len)));
    }
    e.push(("path", B::L(path.iter().map(s).collect())));
    if let Some(link) = link {
        e.push(("symlink path", B::L(link.iter().map(s).collect())));
    }
    d(e)
}

/// A metainfo: `info` entries as given (sorted by the caller if wanted),
/// then `top` entries after `info`.
fn torrent(info: Vec<(&str, B)>, top: Vec<(&str, B)>) -> Vec<u8> {
    let mut all = vec![("info", d(info))];
    all.extend(top);
    enc(&d(all))
}

fn multi(files: Vec<B>, piece: i64, pieces: usize) -> Vec<u8> {
    torrent(
        vec![
            ("files", B::L(files)),
            ("name", s("ds")),
            ("piece length", B::I(piece)),
            ("pieces", zeros(pieces)),
        ],
        vec![("url-list", s("http://seed.example/"))],
    )
}

fn single(len: i64, piece: i64) -> Vec<u8> {
    let pieces = (len as u64).div_ceil(piece as u64) as usize;
    torrent(
        vec![
            ("length", B::I(len)),
            ("name", s("one.bin")),
            ("piece length", B::I(piece)),
            ("pieces", zeros(pieces)),
        ],
        vec![],
    )
}

/// Deterministic pseudo-random numbers (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

pub fn hand_built() -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, expect: Expect| {
        v.push(Case {
            name: name.to_string(),
            bytes,
            expect,
        })
    };
    use Expect::*;
    add("single", single(1000, 16384), Agree);
    add("single-odd-piece-1000", single(12345, 1000), Agree);
    add("single-piece-3", single(10, 3), Agree);
    add("single-exact-pieces", single(32768, 16384), Agree);
    add("512MiB-piece-425-bytes", single(425, 512 << 20), Agree);
    add(
        "pad-files",
        multi(
            vec![
                file(3, &["a", "x.bin"]),
                with_attr("p", Some(16381), &[".pad", "16381"], None),
                file(0, &["empty"]),
                file(20000, &["b"]),
                with_attr("p", Some(12768), &[".pad", "12768"], None),
                file(5, &["z"]),
            ],
            16384,
            3,
        ),
        Agree,
    );
    add(
        "bitcomet-padding",
        multi(
            vec![
                file(7, &["a"]),
                file(9, &["_____padding_file_0_if you see this file, please update to BitComet 0.85 or above____"]),
                file(16, &["b"]),
            ],
            16,
            2,
        ),
        Agree,
    );
    add(
        "symlinks",
        multi(
            vec![
                file(3, &["a", "x.bin"]),
                with_attr("l", Some(425), &["l1"], Some(&["a", "x.bin"])),
                with_attr("l", None, &["l2"], Some(&["a", "x.bin"])),
                file(5, &["z"]),
            ],
            4,
            2,
        ),
        Agree,
    );
    add(
        "attr-l-without-target",
        multi(
            vec![with_attr("l", Some(4), &["p"], None), file(1, &["q"])],
            4,
            2,
        ),
        Agree,
    );
    add(
        "attr-x-h",
        multi(
            vec![
                with_attr("x", Some(4), &["run.sh"], None),
                with_attr("h", Some(4), &[".hidden"], None),
            ],
            4,
            2,
        ),
        Agree,
    );
    // Out-of-order keys everywhere: top level, info, file entries.
    add(
        "out-of-order-keys",
        enc(&d(vec![
            ("url-list", s("http://seed.example/")),
            (
                "info",
                d(vec![
                    ("pieces", zeros(1)),
                    ("name", s("ds")),
                    (
                        "files",
                        B::L(vec![
                            d(vec![("path", B::L(vec![s("a")])), ("length", B::I(2))]),
                            d(vec![("path", B::L(vec![s("b")])), ("length", B::I(2))]),
                        ]),
                    ),
                    ("piece length", B::I(16384)),
                ]),
            ),
            ("announce", s("http://tracker.example/announce")),
        ])),
        Agree,
    );
    let mut newline = single(100, 16384);
    newline.push(b'\n');
    add("trailing-newline", newline, Agree);
    let info = vec![
        ("length", B::I(100)),
        ("name", s("one.bin")),
        ("piece length", B::I(16384)),
        ("pieces", zeros(1)),
    ];
    add(
        "url-list-junk-entries",
        torrent(
            info.clone(),
            vec![(
                "url-list",
                B::L(vec![
                    B::I(3),
                    B::L(vec![s("http://nested/")]),
                    s(""),
                    s("http://ok.example/one.bin"),
                ]),
            )],
        ),
        Agree,
    );
    add(
        "url-list-integer",
        torrent(info.clone(), vec![("url-list", B::I(7))]),
        Agree,
    );
    add(
        "url-list-dict",
        torrent(info.clone(), vec![("url-list", d(vec![("a", s("b"))]))]),
        Agree,
    );
    add(
        "unknown-keys",
        enc(&d(vec![
            ("comment", s("hi")),
            ("created by", s("hand")),
            ("creation date", B::I(1_700_000_000)),
            (
                "info",
                d(vec![
                    ("length", B::I(100)),
                    ("md5sum", s("0123456789abcdef0123456789abcdef")),
                    ("name", s("one.bin")),
                    ("piece length", B::I(16384)),
                    ("pieces", zeros(1)),
                    ("private", B::I(1)),
                    ("source", s("x")),
                ]),
            ),
            ("nodes", B::L(vec![B::L(vec![s("h"), B::I(1)])])),
        ])),
        Agree,
    );
    add(
        "utf8-keys",
        torrent(
            vec![
                (
                    "files",
                    B::L(vec![d(vec![
                        ("length", B::I(5)),
                        ("path", B::L(vec![s(b"\xe9t\xe9".as_slice())])),
                        ("path.utf-8", B::L(vec![s("été")])),
                    ])]),
                ),
                ("name", s("ds")),
                ("name.utf-8", s("données")),
                ("piece length", B::I(16384)),
                ("pieces", zeros(1)),
            ],
            vec![],
        ),
        Agree,
    );
    add(
        "zero-length-files",
        multi(
            vec![
                file(0, &["first"]),
                file(10, &["d", "mid"]),
                file(0, &["d", "empty"]),
                file(0, &["last"]),
            ],
            16384,
            1,
        ),
        Agree,
    );
    add(
        "one-file-list",
        multi(vec![file(10, &["only"])], 16384, 1),
        Agree,
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..6 {
        let piece = [1, 7, 1000, 16384, 65536, 3 << 20][round];
        let n = 1 + rng.next(300) as usize;
        let mut total = 0u64;
        let names: Vec<(String, String)> = (0..n)
            .map(|i| (format!("dir{}", rng.next(8)), format!("f{i:04}.dat")))
            .collect();
        let files: Vec<B> = names
            .iter()
            .map(|(dir, f)| {
                // Small files for tiny pieces: libtorrent loads at most
                // 2^21 pieces by default (see "pieces-past-libtorrent-limit").
                let max = (piece as u64 * 3000).min(40_000);
                let len = if rng.next(5) == 0 { 0 } else { rng.next(max) };
                total += len;
                file(len as i64, &[dir, f])
            })
            .collect();
        let pieces = total.div_ceil(piece as u64).max(1) as usize;
        let files = if total == 0 {
            let mut f = files;
            f.push(file(1, &["one-byte"]));
            f
        } else {
            files
        };
        add(
            &format!("random-{round}-piece-{piece}"),
            multi(files, piece, pieces),
            Agree,
        );
    }

    // libtorrent's default load limit (max_pieces, 2^21): a resource bound
    // of libtorrent's, not a format rule; gtio's bound is 2^32 pieces.
    add(
        "pieces-past-libtorrent-limit",
        single((1 << 21) + 1, 1),
        OracleLimit("too many pieces"),
    );

    // Refused by both.
    add("files-empty", multi(vec![], 16384, 0), Agree);
    add(
        "pieces-miscounted",
        single_with_pieces(100, 16384, 2),
        Agree,
    );
    add("negative-length", single_with_pieces(-1, 16384, 1), Agree);
    add("piece-length-zero", single_with_pieces(100, 0, 1), Agree);
    add("not-a-dict", b"li1ee".to_vec(), Agree);
    add("truncated", single(100, 16384)[..40].to_vec(), Agree);
    // Refused by gtio's documented policy, loaded by libtorrent (which
    // sanitizes or renames).
    add(
        "dotdot-path",
        multi(vec![file(4, &["..", "escape"])], 16384, 1),
        PolicyRefusal("'.' and '..' are not allowed"),
    );
    add(
        "duplicate-paths",
        multi(vec![file(4, &["a"]), file(4, &["a"])], 16384, 1),
        PolicyRefusal("duplicate file path"),
    );
    add(
        "file-and-directory",
        multi(vec![file(4, &["a"]), file(4, &["a", "b"])], 16384, 1),
        PolicyRefusal("both a file and a directory"),
    );
    add(
        "separator-in-segment",
        multi(vec![file(4, &["a/b"])], 16384, 1),
        PolicyRefusal("contains a path separator"),
    );
    add(
        "v2-only",
        torrent(
            vec![
                (
                    "file tree",
                    d(vec![(
                        "a",
                        d(vec![(
                            "",
                            d(vec![
                                ("length", B::I(4)),
                                ("pieces root", B::S(vec![1u8; 32])),
                            ]),
                        )]),
                    )]),
                ),
                ("meta version", B::I(2)),
                ("name", s("ds")),
                ("piece length", B::I(16384)),
            ],
            vec![],
        ),
        PolicyRefusal("v2-only"),
    );
    v
}

fn single_with_pieces(len: i64, piece: i64, pieces: usize) -> Vec<u8> {
    torrent(
        vec![
            ("length", B::I(len)),
            ("name", s("one.bin")),
            ("piece length", B::I(piece)),
            ("pieces", zeros(pieces)),
        ],
        vec![],
    )
}

/// Torrents made by mktorrent over small trees, at several piece lengths.
pub fn from_mktorrent(dir: &Path) -> Vec<Case> {
    let tree = dir.join("tree");
    let files: [(&str, usize); 6] = [
        ("top.txt", 1234),
        ("sub/a b.bin", 70_000),
        ("sub/deeper/été.dat", 33_333),
        ("sub/empty", 0),
        ("z/last", 1),
        ("z/big", 300_000),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = tree.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let data: Vec<u8> = (0..*len).map(|j| (j * 31 + i) as u8).collect();
        std::fs::write(&p, data).unwrap();
    }
    let mut cases = Vec::new();
    for (target, tag) in [(tree.clone(), "tree"), (tree.join("z/big"), "single")] {
        for log2 in [15, 16, 18] {
            let out = dir.join(format!("mk-{tag}-{log2}.torrent"));
            let status = Command::new("mktorrent")
                .arg("-l")
                .arg(log2.to_string())
                .args(["-w", "http://seed.example/", "-o"])
                .arg(&out)
                .arg(&target)
                .output()
                .unwrap_or_else(|e| panic!("cannot run mktorrent (scripts/install-deps.sh): {e}"));
            assert!(
                status.status.success(),
                "mktorrent: {}",
                String::from_utf8_lossy(&status.stderr)
            );
            cases.push(Case {
                name: format!("mktorrent-{tag}-2^{log2}"),
                bytes: std::fs::read(&out).unwrap(),
                expect: Expect::Agree,
            });
        }
    }
    cases
}
