use super::*;
use crate::dataset::metainfo::{parse, Metainfo};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gtio-create-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Write `len` deterministic pseudo-random bytes at `rel`; return them.
    fn file(&self, rel: &str, len: usize, seed: u32) -> Vec<u8> {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        fs::write(&path, &data).unwrap();
        data
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// SHA-1 of each `piece_length` chunk of `data`, computed independently of
/// the streaming code under test.
fn expected_hashes(data: &[u8], piece_length: usize) -> Vec<[u8; 20]> {
    data.chunks(piece_length)
        .map(|c| Sha1::digest(c).into())
        .collect()
}

fn seeds() -> Vec<String> {
    vec![
        "http://seed.example/a/".to_string(),
        "https://b.example/x".to_string(),
    ]
}

#[test]
fn single_file_round_trip() {
    let t = TempDir::new();
    let data = t.file("data file.bin", 70_000, 1);
    let buf = create_torrent(&t.0.join("data file.bin"), &seeds(), Some(14)).unwrap();
    let m = parse(&buf).unwrap();
    assert!(!m.multi_file);
    assert_eq!(m.name, "data file.bin");
    assert_eq!(m.piece_length, 16384);
    assert_eq!(m.total_length, 70_000);
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files.get(0).unwrap().path, "data file.bin");
    assert_eq!(m.piece_hashes, expected_hashes(&data, 16384));
    assert_eq!(m.url_list, seeds());
    let text = String::from_utf8_lossy(&buf);
    assert!(text.contains(&format!(
        "10:created by{}:gtio {}",
        5 + env!("CARGO_PKG_VERSION").len(),
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("13:creation datei"));
}

/// Build the tree used by the multi-file tests, with symbolic links if
/// `links`; returns the expected files in metainfo order with their contents.
fn tree(t: &TempDir, links: bool) -> Vec<(&'static str, Vec<u8>)> {
    let spec: [(&str, usize); 8] = [
        ("ds/a b/nested/deep.bin", 40_000),
        ("ds/a b/x.txt", 5),
        ("ds/a-b", 17_000),
        ("ds/empty", 0),
        ("ds/z/ünïcödé name.dat", 33_333),
        ("ds/z/zz", 1),
        ("ds/Ω", 16_384),
        ("ds/ä", 100),
    ];
    let mut files: Vec<_> = spec
        .iter()
        .enumerate()
        .map(|(i, (p, len))| (*p, t.file(p, *len, i as u32 + 7)))
        .collect();
    if links {
        // Not regular files: skipped. (mktorrent follows them instead.)
        std::os::unix::fs::symlink("/etc/passwd", t.0.join("ds/link")).unwrap();
        std::os::unix::fs::symlink(t.0.join("ds/a b"), t.0.join("ds/z/dirlink")).unwrap();
    }
    fs::create_dir_all(t.0.join("ds/only-empty-dirs/inner")).unwrap();
    // Byte order of the '/'-joined path: "a b/..." < "a-b" (' ' < '-'),
    // "z/..." < "Ω" (0xCE) > "ä" (0xC3)
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    files
}

#[test]
fn multi_file_round_trip() {
    let t = TempDir::new();
    let files = tree(&t, true);
    let buf = create_torrent(&t.0.join("ds"), &seeds(), Some(14)).unwrap();
    let m = parse(&buf).unwrap();
    assert!(m.multi_file);
    assert_eq!(m.name, "ds");
    let names: Vec<String> = m.files.iter().map(|f| format!("ds/{}", f.path)).collect();
    let want: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
    assert_eq!(names, want);
    assert!(m.files.iter().all(|f| !f.pad));
    let stream: Vec<u8> = files.iter().flat_map(|(_, d)| d.iter().copied()).collect();
    assert_eq!(m.total_length, stream.len() as u64);
    assert_eq!(m.piece_hashes, expected_hashes(&stream, 16384));
    // Default piece length: the minimum for a dataset this small.
    let m = parse(&create_torrent(&t.0.join("ds"), &[], None).unwrap()).unwrap();
    assert_eq!(m.piece_length, 16384);
    assert!(m.url_list.is_empty());
}

#[test]
fn only_empty_files_are_refused() {
    let t = TempDir::new();
    t.file("d/a", 0, 0);
    t.file("d/b", 0, 0);
    rejects(
        create_torrent(&t.0.join("d"), &[], None),
        libc::EINVAL,
        "has no data",
    );
}

fn rejects(result: Result<Vec<u8>>, errno: i32, needle: &str) {
    let e = result.unwrap_err();
    assert_eq!(e.errno(), errno, "{e:?}");
    assert!(
        e.message().contains(needle),
        "{:?} lacks {needle:?}",
        e.message()
    );
}

#[test]
fn rejects_bad_inputs() {
    let t = TempDir::new();
    fs::create_dir_all(t.0.join("empty/a/b")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", t.0.join("empty/a/link")).unwrap();
    rejects(
        create_torrent(&t.0.join("empty"), &[], None),
        libc::EINVAL,
        "no regular files",
    );
    rejects(
        create_torrent(&t.0.join("missing"), &[], None),
        libc::ENOENT,
        "missing",
    );
    t.file("f", 10, 0);
    rejects(
        create_torrent(&t.0.join("f"), &[], Some(13)),
        libc::EINVAL,
        "piece length 2^13 outside",
    );
    rejects(
        create_torrent(&t.0.join("f"), &[], Some(29)),
        libc::EINVAL,
        "piece length 2^29 outside",
    );
    rejects(
        create_torrent(&t.0.join("f"), &[String::new()], None),
        libc::EINVAL,
        "empty web seed",
    );
    t.file("bs/a\\b", 1, 0);
    rejects(
        create_torrent(&t.0.join("bs"), &[], None),
        libc::EINVAL,
        "contains a path separator",
    );
    rejects(
        create_torrent(Path::new("/dev/null"), &[], None),
        libc::EINVAL,
        "not a regular file or directory",
    );
    rejects(
        create_torrent(Path::new("/"), &[], None),
        libc::EINVAL,
        "has no name",
    );
}

#[test]
fn default_piece_length_aims_for_1000_to_2000_pieces() {
    assert_eq!(default_piece_length_log2(0), 14);
    assert_eq!(default_piece_length_log2(2000 << 14), 14);
    assert_eq!(default_piece_length_log2((2000 << 14) + 1), 15);
    assert_eq!(default_piece_length_log2(u64::MAX), 24);
    for total in [1u64 << 26, 3 << 30, 10 << 30, 31 << 30] {
        let pieces = total.div_ceil(1 << default_piece_length_log2(total));
        assert!((1000..=2000).contains(&pieces), "{total}: {pieces} pieces");
    }
}

/// Run mktorrent, if installed; `None` (and a note) if not.
fn mktorrent(target: &Path, out: &Path, log2: u8) -> Option<Metainfo> {
    let status = Command::new("mktorrent")
        .arg("-l")
        .arg(log2.to_string())
        .args(["-w", "http://seed.example/root/", "-o"])
        .arg(out)
        .arg(target)
        .output();
    match status {
        Err(e) => {
            eprintln!("mktorrent not run ({e}); skipping the comparison");
            None
        }
        Ok(o) => {
            assert!(
                o.status.success(),
                "mktorrent failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(parse(&fs::read(out).unwrap()).expect("parse accepts mktorrent output"))
        }
    }
}

#[test]
fn matches_mktorrent() {
    let t = TempDir::new();
    tree(&t, false);
    let single = t.0.join("ds/z/ünïcödé name.dat");
    for (target, log2) in [(t.0.join("ds"), 15), (single, 15), (t.0.join("ds"), 16)] {
        let out = t.0.join(format!("mk-{log2}.torrent"));
        let _ = fs::remove_file(&out);
        let Some(theirs) = mktorrent(&target, &out, log2) else {
            return;
        };
        let ours = parse(&create_torrent(&target, &[], Some(log2)).unwrap()).unwrap();
        assert_eq!(theirs.url_list, ["http://seed.example/root/"]);
        assert_eq!(ours.name, theirs.name);
        assert_eq!(ours.multi_file, theirs.multi_file);
        assert_eq!(ours.files, theirs.files);
        assert_eq!(ours.piece_length, theirs.piece_length);
        assert_eq!(ours.piece_hashes, theirs.piece_hashes);
        // Same info dict, byte for byte, hence the same info-hash.
        assert_eq!(ours.info_hash, theirs.info_hash);
    }
}

/// What the tree claims is bounded before anything is hashed or allocated:
/// a sparse 1 TiB file in 16 KiB pieces would need 1.3 GB of hashes (and a
/// day of hashing zeros), and a tree nested past MAX_TREE_DEPTH is refused.
#[test]
fn sizes_claimed_by_the_tree_are_bounded() {
    let t = TempDir::new();
    let sparse = t.0.join("sparse.bin");
    let f = File::create(&sparse).unwrap();
    if f.set_len(1 << 40).is_err() {
        eprintln!("skipping the sparse case: this filesystem cannot hold a 1 TiB sparse file");
    } else {
        let started = std::time::Instant::now();
        rejects(
            create_torrent(&sparse, &seeds(), Some(14)),
            libc::EFBIG,
            "over the 64 MiB metainfo limit",
        );
        assert!(started.elapsed().as_secs() < 5, "hashed before refusing");
    }
    drop(f);
    let mut deep = t.0.join("deep");
    for _ in 0..=MAX_TREE_DEPTH {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f"), b"x").unwrap();
    rejects(
        create_torrent(&t.0.join("deep"), &seeds(), None),
        libc::EINVAL,
        "nested deeper than 256 levels",
    );
}
