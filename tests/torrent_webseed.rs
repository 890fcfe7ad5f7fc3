//! Torrents over BEP 19 web seeds, end to end through the C ABI: real nginx on
//! loopback serves the data (and the `.torrent` files), `mktorrent` writes the
//! metainfo, and every byte gtio returns is compared with the files on disk.
//!
//! - single-file and multi-file torrents (nested folders, an empty file,
//!   names with spaces and non-ASCII letters), piece sizes 2^15, 2^16, 2^18,
//!   file sizes that are not multiples of the piece size;
//! - listing (`gtio_get_file_list`, `gtio_opendir`/`gtio_readdir`) against the
//!   files on disk in mktorrent's order;
//! - whole-stream `gtio_read` in odd chunks, 300 random `gtio_pread`s with a
//!   fixed seed, reads straddling every file boundary;
//! - `gtio_open_uri` of the `.torrent` URL, and `gtio_open_gto` of a buffer the
//!   caller overwrites and frees right after the call;
//! - integrity: a seed serving one corrupted byte (alone: `EIO` naming the
//!   piece, other pieces fine; beside a good seed: every byte correct);
//! - `file://` web seeds: refused for a downloaded torrent, allowed for local
//!   metainfo;
//! - BEP 47 pad files written by the test: hidden from listings, read as
//!   zeros, never requested from the seed.
//!
//! The piece cache is process-wide and keyed by SHA-1, so every test uses its
//! own data (a distinct `test_data` seed): no test can be served pieces that
//! another test verified.

#[path = "support/bencode.rs"]
mod bencode;
mod support;

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::process::Command;

use bencode::{d, enc, s, B};
use gtio::ffi::{
    gtio_close, gtio_closedir, gtio_free_file_list, gtio_get_file_list, gtio_lseek, gtio_open_gto,
    gtio_open_uri, gtio_opendir, gtio_pread, gtio_read, gtio_readdir, gtio_size, GTIO_Dirent,
    GTIO_Error, GTIO_FileInfo, GTIO, GTIO_NAME_MAX,
};
use sha1::{Digest, Sha1};
use support::nginx::{tempdir, test_data, Nginx, TempDir};

// ---------------------------------------------------------------------------
// C ABI helpers

fn new_err() -> GTIO_Error {
    GTIO_Error {
        code: 0,
        http_status: 0,
        message: [0; 512],
    }
}

fn err_text(e: &GTIO_Error) -> String {
    // SAFETY: the library always NUL-terminates the message; new_err zeroes it.
    unsafe { CStr::from_ptr(e.message.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// (errno, message) of a failed call.
type Failure = (i32, String);

/// An open handle, closed on drop.
struct Handle(*mut GTIO);

impl Handle {
    fn open_uri(uri: &str) -> Result<Handle, Failure> {
        let c = CString::new(uri).unwrap();
        let mut e = new_err();
        let h = gtio_open_uri(c.as_ptr(), std::ptr::null(), &mut e);
        if h.is_null() {
            Err((e.code, err_text(&e)))
        } else {
            Ok(Handle(h))
        }
    }

    /// `gtio_open_gto` of a copy of `meta` that is overwritten and freed as
    /// soon as the call returns: the library must have copied what it keeps.
    fn open_gto(meta: &[u8]) -> Result<Handle, Failure> {
        let mut buf = meta.to_vec();
        let mut e = new_err();
        let h = gtio_open_gto(
            buf.as_ptr().cast::<c_void>(),
            buf.len(),
            std::ptr::null(),
            &mut e,
        );
        buf.iter_mut().for_each(|b| *b = 0xA5);
        drop(buf);
        // Churn the allocator so the freed block is likely reused.
        let junk: Vec<Vec<u8>> = (0..16).map(|i| vec![i as u8; meta.len()]).collect();
        drop(junk);
        if h.is_null() {
            Err((e.code, err_text(&e)))
        } else {
            Ok(Handle(h))
        }
    }

    fn size(&self) -> u64 {
        let mut e = new_err();
        let n = gtio_size(self.0, &mut e);
        assert!(n >= 0, "gtio_size failed: {}", err_text(&e));
        n as u64
    }

    fn pread(&self, len: usize, offset: u64) -> Result<Vec<u8>, Failure> {
        let mut buf = vec![0xEEu8; len];
        let mut e = new_err();
        let n = gtio_pread(
            self.0,
            buf.as_mut_ptr().cast::<c_void>(),
            len,
            offset,
            &mut e,
        );
        if n < 0 {
            assert_eq!(n, -1, "failure must be -1");
            return Err((e.code, err_text(&e)));
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// The whole stream through `gtio_read` from offset 0 (set with
    /// `gtio_lseek`), in chunks cycling through `chunks`.
    fn read_all(&self, chunks: &[usize]) -> Vec<u8> {
        let mut e = new_err();
        assert_eq!(gtio_lseek(self.0, 0, libc::SEEK_SET, &mut e), 0, "lseek");
        let mut out = Vec::new();
        let mut k = 0;
        loop {
            let want = chunks[k % chunks.len()];
            k += 1;
            let mut buf = vec![0u8; want];
            let mut e = new_err();
            let n = gtio_read(self.0, buf.as_mut_ptr().cast::<c_void>(), want, &mut e);
            assert!(
                n >= 0,
                "gtio_read at {} failed: errno {} {}",
                out.len(),
                e.code,
                err_text(&e)
            );
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }

    /// `gtio_get_file_list`, freed with `gtio_free_file_list`.
    fn file_list(&self) -> Vec<(String, u64, u64)> {
        let mut fi: *mut GTIO_FileInfo = std::ptr::null_mut();
        let mut e = new_err();
        let n = gtio_get_file_list(self.0, &mut fi, &mut e);
        assert!(n >= 0, "gtio_get_file_list failed: {}", err_text(&e));
        if n == 0 {
            assert!(fi.is_null());
            return Vec::new();
        }
        assert!(!fi.is_null());
        // SAFETY: the library returned an array of n entries.
        let entries = unsafe { std::slice::from_raw_parts(fi, n as usize) };
        let out = entries
            .iter()
            .map(|f| {
                // SAFETY: each name is a NUL-terminated string owned by the list.
                let name = unsafe { CStr::from_ptr(f.name) };
                (name.to_str().unwrap().to_owned(), f.offset, f.size)
            })
            .collect();
        gtio_free_file_list(fi, n);
        out
    }

    /// `gtio_opendir`/`gtio_readdir`/`gtio_closedir`: 0 per entry, then 1
    /// (and 1 again).
    fn readdir(&self) -> Vec<(String, u64, u64)> {
        let mut e = new_err();
        let dir = gtio_opendir(self.0, &mut e);
        assert!(!dir.is_null(), "gtio_opendir failed: {}", err_text(&e));
        let mut ent = Box::new(GTIO_Dirent {
            name: [0 as c_char; GTIO_NAME_MAX],
            offset: 0,
            size: 0,
        });
        let mut out = Vec::new();
        loop {
            let rc = gtio_readdir(dir, &mut *ent, &mut e);
            match rc {
                0 => {
                    // SAFETY: the library NUL-terminates the name.
                    let name = unsafe { CStr::from_ptr(ent.name.as_ptr()) };
                    out.push((name.to_str().unwrap().to_owned(), ent.offset, ent.size));
                }
                1 => break,
                _ => panic!("gtio_readdir returned {rc}: {}", err_text(&e)),
            }
            assert!(out.len() < 10_000, "readdir never ends");
        }
        assert_eq!(gtio_readdir(dir, &mut *ent, &mut e), 1, "end is sticky");
        assert_eq!(gtio_closedir(dir, &mut e), 0, "{}", err_text(&e));
        out
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut e = new_err();
        let rc = gtio_close(self.0, &mut e);
        if rc != 0 && !std::thread::panicking() {
            panic!("gtio_close failed: {}", err_text(&e));
        }
    }
}

// ---------------------------------------------------------------------------
// Fixtures

/// xorshift64*, for fixed-seed random reads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Run mktorrent (no date, so the output is deterministic).
fn mktorrent(target: &Path, piece_log2: u8, seeds: &[String], out: &Path) -> Vec<u8> {
    let mut cmd = Command::new("mktorrent");
    cmd.arg("-d").arg("-l").arg(piece_log2.to_string());
    for s in seeds {
        cmd.arg("-w").arg(s);
    }
    cmd.arg("-o").arg(out).arg(target);
    let res = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run mktorrent (scripts/install-deps.sh): {e}"));
    assert!(
        res.status.success(),
        "mktorrent failed: {}\n{}",
        res.status,
        String::from_utf8_lossy(&res.stderr)
    );
    std::fs::read(out).unwrap()
}

/// The multi-file tree every multi-file test uses (under `<root>/<NAME>/`):
/// nested folders, an empty file, spaces and non-ASCII letters, a file and a
/// directory whose names sort differently bytewise than per component
/// ("x y.bin" vs "x/…"), sizes that are not multiples of any piece size.
const NAME: &str = "dåta set";
const TREE: &[(&str, usize)] = &[
    ("dír/ä b.txt", 70_001),
    ("dír/sub dir/deep/ñ.bin", 133_337),
    ("dír/sub dir/small.txt", 17),
    ("empty.txt", 0),
    ("a.bin", 300_007),
    ("x y.bin", 5_003),
    ("x/inner.bin", 262_145),
    ("z/last.dat", 99_999),
    ("z/one", 1),
];

/// Write TREE under `root/NAME/` with data derived from `seed`; returns the
/// files as (relative '/'-joined name, contents) sorted bytewise by name, the
/// order mktorrent writes.
fn write_tree(root: &Path, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (i, (rel, len)) in TREE.iter().enumerate() {
        let path = root.join(NAME).join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let data = test_data(*len, seed.wrapping_mul(1000).wrapping_add(i as u64));
        std::fs::write(&path, &data).unwrap();
        files.push((rel.to_string(), data));
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    files
}

/// The files of `dir` on disk, walked recursively: ('/'-joined relative name,
/// size), sorted bytewise.
fn files_on_disk(dir: &Path) -> Vec<(String, u64)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                let rel: Vec<String> = p
                    .strip_prefix(base)
                    .unwrap()
                    .components()
                    .map(|c| c.as_os_str().to_str().unwrap().to_owned())
                    .collect();
                out.push((rel.join("/"), e.metadata().unwrap().len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out
}

/// The file order written in a metainfo (decoded independently of gtio's
/// own metainfo parser, with the bencode decoder only).
fn metainfo_order(meta: &[u8]) -> Vec<(String, u64)> {
    use gtio::bencode::{decode, Value};
    let root = decode(meta).unwrap();
    let info = root
        .as_dict()
        .unwrap()
        .get(b"info")
        .unwrap()
        .as_dict()
        .unwrap();
    let files = info.get(b"files").unwrap().as_list().unwrap();
    files
        .iter()
        .map(|f| {
            let f = f.as_dict().unwrap();
            let len = f.get(b"length").unwrap().as_int().unwrap() as u64;
            let path: Vec<String> = match f.get(b"path").unwrap() {
                Value::List(l) => l
                    .iter()
                    .map(|s| String::from_utf8(s.as_bytes().unwrap().to_vec()).unwrap())
                    .collect(),
                v => panic!("path is {}", v.kind()),
            };
            (path.join("/"), len)
        })
        .collect()
}

/// Files with cumulative offsets: (name, offset, size).
fn with_offsets(files: &[(String, Vec<u8>)]) -> Vec<(String, u64, u64)> {
    let mut off = 0u64;
    files
        .iter()
        .map(|(n, d)| {
            let e = (n.clone(), off, d.len() as u64);
            off += d.len() as u64;
            e
        })
        .collect()
}

fn concat(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    files.iter().flat_map(|(_, d)| d.iter().copied()).collect()
}

/// Whole stream in odd chunks, 300 random preads (fixed seed), and reads
/// straddling every file boundary (including the stream's start and end).
fn check_reads(h: &Handle, expect: &[u8], boundaries: &[u64], piece: u64, seed: u64) {
    assert_eq!(h.size(), expect.len() as u64, "gtio_size");
    let whole = h.read_all(&[9_973, 1, 65_537, 4_096, 777_777, 3]);
    assert_eq!(whole.len(), expect.len(), "whole-stream length");
    assert!(whole == expect, "whole stream differs from the files");

    let size = expect.len() as u64;
    let mut rng = Rng(seed | 1);
    for i in 0..300 {
        let off = rng.below(size + 64);
        let len = rng.below(3 * piece + 10) as usize;
        let got = h
            .pread(len, off)
            .unwrap_or_else(|f| panic!("pread #{i} ({len} @ {off}) failed: {f:?}"));
        let from = off.min(size) as usize;
        let to = (off + len as u64).min(size) as usize;
        assert!(
            got == expect[from..to],
            "pread #{i} ({len} @ {off}) returned wrong bytes"
        );
    }

    for &b in boundaries {
        for (before, after) in [(1u64, 1u64), (3, 5), (7, 2), (0, 4), (4, 0)] {
            let off = b.saturating_sub(before);
            let len = (b + after - off) as usize;
            let got = h
                .pread(len, off)
                .unwrap_or_else(|f| panic!("pread {len} @ {off} (boundary {b}) failed: {f:?}"));
            let from = off.min(size) as usize;
            let to = (off + len as u64).min(size) as usize;
            assert!(
                got == expect[from..to],
                "pread {len} @ {off} across the boundary at {b} returned wrong bytes"
            );
        }
    }
}

/// A data root with the multi-file tree, served by nginx, with torrents in
/// `<root>/t/`.
struct MultiFixture {
    ngx: Nginx,
    files: Vec<(String, Vec<u8>)>,
    root: TempDir,
}

fn multi_fixture(seed: u64) -> MultiFixture {
    let root = tempdir();
    let files = write_tree(&root, seed);
    std::fs::create_dir(root.join("t")).unwrap();
    let ngx = Nginx::start(&root);
    MultiFixture { ngx, files, root }
}

impl MultiFixture {
    fn torrent(&self, piece_log2: u8, seeds: &[String], file: &str) -> (Vec<u8>, String) {
        let out = self.root.join("t").join(file);
        let meta = mktorrent(&self.root.join(NAME), piece_log2, seeds, &out);
        (meta, self.ngx.url(&format!("t/{file}")))
    }

    fn boundaries(&self) -> Vec<u64> {
        let mut b: Vec<u64> = with_offsets(&self.files).iter().map(|f| f.1).collect();
        b.push(concat(&self.files).len() as u64);
        b
    }
}

// ---------------------------------------------------------------------------
// Multi-file torrents

fn multi_file_with_piece_log2(piece_log2: u8, seed: u64) {
    let fx = multi_fixture(seed);
    let root_url = fx.ngx.url("");
    let (meta, torrent_url) = fx.torrent(piece_log2, &[root_url], "multi.torrent");

    // mktorrent's order is bytewise by '/'-joined path; the files on disk
    // are the files of the torrent.
    let disk = files_on_disk(&fx.root.join(NAME));
    let expect_list = with_offsets(&fx.files);
    let disk_from_expect: Vec<(String, u64)> =
        expect_list.iter().map(|f| (f.0.clone(), f.2)).collect();
    assert_eq!(disk, disk_from_expect, "fixture files on disk");
    assert_eq!(metainfo_order(&meta), disk, "mktorrent's file order");
    assert!(
        expect_list.iter().any(|f| f.2 == 0),
        "the tree has an empty file"
    );

    let expect = concat(&fx.files);
    let piece = 1u64 << piece_log2;
    assert!(expect.len() as u64 % piece != 0);

    // Remote: the .torrent URL on nginx.
    let remote = Handle::open_uri(&torrent_url)
        .unwrap_or_else(|f| panic!("gtio_open_uri({torrent_url}) failed: {f:?}"));
    assert_eq!(remote.file_list(), expect_list, "gtio_get_file_list");
    assert_eq!(remote.readdir(), expect_list, "gtio_readdir");
    check_reads(
        &remote,
        &expect,
        &fx.boundaries(),
        piece,
        seed ^ 0x5eed_0001,
    );
    drop(remote);

    // Local: the metainfo from a buffer the caller destroys right away.
    let local = Handle::open_gto(&meta).unwrap_or_else(|f| panic!("gtio_open_gto: {f:?}"));
    assert_eq!(local.file_list(), expect_list);
    assert_eq!(local.readdir(), expect_list);
    check_reads(&local, &expect, &fx.boundaries(), piece, seed ^ 0x5eed_0002);
}

#[test]
fn multi_file_piece_32k() {
    multi_file_with_piece_log2(15, 101);
}

#[test]
fn multi_file_piece_64k() {
    multi_file_with_piece_log2(16, 102);
}

#[test]
fn multi_file_piece_256k() {
    multi_file_with_piece_log2(18, 103);
}

/// A multi-file seed URL without the trailing slash is the same root.
#[test]
fn multi_file_seed_root_without_trailing_slash() {
    let fx = multi_fixture(104);
    let root_url = fx.ngx.url("");
    let seed = root_url.trim_end_matches('/').to_owned();
    let (_, torrent_url) = fx.torrent(15, &[seed], "noslash.torrent");
    let h = Handle::open_uri(&torrent_url).unwrap();
    let expect = concat(&fx.files);
    assert!(h.read_all(&[100_003]) == expect);
}

// ---------------------------------------------------------------------------
// Single-file torrents

#[test]
fn single_file_torrent_file_url_and_dir_url_seeds() {
    let root = tempdir();
    std::fs::create_dir(root.join("t")).unwrap();
    let name = "ä single file.bin";
    let data = test_data(300_001, 201);
    std::fs::create_dir(root.join("data dir")).unwrap();
    let path = root.join("data dir").join(name);
    std::fs::write(&path, &data).unwrap();
    let ngx = Nginx::start(&root);

    let mut encoded = String::new();
    gtio::dataset::webseed::encode_segment(name, &mut encoded);
    let file_url = ngx.url(&format!("data%20dir/{encoded}"));
    let dir_url = ngx.url("data%20dir/");

    for (piece_log2, seed, tag) in [(15u8, &file_url, "file"), (16, &dir_url, "dir")] {
        let out = root.join("t").join(format!("single-{tag}.torrent"));
        let meta = mktorrent(&path, piece_log2, std::slice::from_ref(seed), &out);
        let torrent_url = ngx.url(&format!("t/single-{tag}.torrent"));
        let expect_list = vec![(name.to_owned(), 0u64, data.len() as u64)];
        let boundaries = [0u64, data.len() as u64];

        let h = Handle::open_uri(&torrent_url)
            .unwrap_or_else(|f| panic!("open {torrent_url} ({tag} seed): {f:?}"));
        assert_eq!(h.file_list(), expect_list);
        assert_eq!(h.readdir(), expect_list);
        check_reads(
            &h,
            &data,
            &boundaries,
            1 << piece_log2,
            7 + u64::from(piece_log2),
        );
        drop(h);

        let h = Handle::open_gto(&meta).unwrap();
        assert_eq!(h.file_list(), expect_list);
        check_reads(
            &h,
            &data,
            &boundaries,
            1 << piece_log2,
            9 + u64::from(piece_log2),
        );
    }
}

// ---------------------------------------------------------------------------
// Integrity

/// A second copy of the tree under `<root>/bad/NAME/` with one byte of one
/// file flipped. Returns the stream offset of the flipped byte.
fn corrupt_copy(fx: &MultiFixture, file_index: usize, at: usize) -> u64 {
    let bad_root = fx.root.join("bad");
    for (rel, data) in &fx.files {
        let p = bad_root.join(NAME).join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    let (rel, data) = &fx.files[file_index];
    let mut bad = data.clone();
    bad[at] ^= 0x40;
    std::fs::write(bad_root.join(NAME).join(rel), &bad).unwrap();
    with_offsets(&fx.files)[file_index].1 + at as u64
}

#[test]
fn corrupt_only_seed_fails_exactly_the_bad_piece() {
    let fx = multi_fixture(301);
    // A byte in the middle of the largest file, "a.bin".
    let idx = fx.files.iter().position(|f| f.0 == "a.bin").unwrap();
    let bad_at = corrupt_copy(&fx, idx, 150_000);
    let piece_log2 = 15u8;
    let piece = 1u64 << piece_log2;
    let bad_piece = bad_at / piece;
    let (meta, torrent_url) = fx.torrent(piece_log2, &[fx.ngx.url("bad/")], "bad.torrent");
    let expect = concat(&fx.files);
    let size = expect.len() as u64;
    let pieces = size.div_ceil(piece);

    for h in [
        Handle::open_uri(&torrent_url).unwrap(),
        Handle::open_gto(&meta).unwrap(),
    ] {
        // The bad piece, alone and inside larger reads: -1 EIO naming it.
        for (len, off) in [
            (1usize, bad_at),
            (piece as usize, bad_piece * piece),
            (10, bad_piece * piece + piece - 5),
            (3 * piece as usize, (bad_piece - 1) * piece),
        ] {
            match h.pread(len, off) {
                Ok(_) => panic!("pread {len} @ {off} returned bytes of the corrupt piece"),
                Err((code, msg)) => {
                    assert_eq!(code, libc::EIO, "errno for a bad piece: {msg}");
                    assert!(
                        msg.contains(&format!("piece {bad_piece}")),
                        "message should name piece {bad_piece}: {msg}"
                    );
                }
            }
        }
        // Every other piece reads correctly, before and after the bad one.
        for p in (0..pieces).filter(|&p| p != bad_piece) {
            let off = p * piece;
            let got = h
                .pread(piece as usize, off)
                .unwrap_or_else(|f| panic!("piece {p} (bad is {bad_piece}): {f:?}"));
            let end = (off + piece).min(size) as usize;
            assert!(got == expect[off as usize..end], "piece {p} wrong bytes");
        }
        // Still failing on a second attempt, and still naming the piece.
        let (code, msg) = h.pread(1, bad_at).unwrap_err();
        assert_eq!(code, libc::EIO);
        assert!(msg.contains(&format!("piece {bad_piece}")), "{msg}");
    }

    // A fresh handle reading sequentially (so readahead fetches runs of
    // pieces that include the bad one): everything before the bad piece
    // reads, the read that reaches it fails naming it, and everything
    // after it reads once the reader skips it.
    let h = Handle::open_gto(&meta).unwrap();
    let chunk = (piece / 2) as usize;
    let bad_start = bad_piece * piece;
    let mut off = 0u64;
    while off < size {
        let len = chunk.min((size - off) as usize);
        let covers_bad = off < bad_start + piece && off + len as u64 > bad_start;
        match h.pread(len, off) {
            Ok(got) if !covers_bad => {
                assert!(got == expect[off as usize..off as usize + len], "at {off}");
            }
            Ok(_) => panic!("sequential read at {off} returned the corrupt piece"),
            Err((code, msg)) => {
                assert!(covers_bad, "sequential read at {off} failed: {code} {msg}");
                assert_eq!(code, libc::EIO, "{msg}");
                assert!(msg.contains(&format!("piece {bad_piece}")), "{msg}");
            }
        }
        off += len as u64;
    }
}

#[test]
fn corrupt_seed_beside_a_good_seed_never_shows_bad_bytes() {
    // Fresh data for every round: the piece cache is keyed by SHA-1, so a
    // fresh tree means fresh pieces that must really be downloaded, and a
    // fresh handle starts its round-robin at the first seed.
    for round in 0..4u64 {
        let fx = multi_fixture(400 + round);
        let idx = fx.files.iter().position(|f| f.0 == "x/inner.bin").unwrap();
        let bad_at = corrupt_copy(&fx, idx, 1_000 + 7_919 * round as usize);
        let piece_log2 = 15u8;
        let piece = 1u64 << piece_log2;
        let (good, bad) = (fx.ngx.url(""), fx.ngx.url("bad/"));
        // The corrupt seed first in even rounds, second in odd ones.
        let seeds = if round % 2 == 0 {
            vec![bad, good]
        } else {
            vec![good, bad]
        };
        let (meta, torrent_url) = fx.torrent(piece_log2, &seeds, "two.torrent");
        let expect = concat(&fx.files);

        // The first request of a fresh handle goes to the first seed: ask
        // for the corrupt piece first so the corrupt seed is actually hit
        // (even rounds).
        let h = Handle::open_uri(&torrent_url).unwrap();
        let bad_piece_start = bad_at / piece * piece;
        let got = h
            .pread(piece as usize, bad_piece_start)
            .unwrap_or_else(|f| panic!("round {round}: corrupt piece with a good seed: {f:?}"));
        let s = bad_piece_start as usize;
        assert!(got == expect[s..s + got.len()]);
        assert!(h.read_all(&[65_537, 12_345]) == expect, "round {round}");
        drop(h);

        for _ in 0..2 {
            let h = Handle::open_gto(&meta).unwrap();
            assert!(h.read_all(&[40_000, 999]) == expect, "round {round}");
            check_reads(&h, &expect, &fx.boundaries(), piece, 0xabc + round);
        }
    }
}

// ---------------------------------------------------------------------------
// file:// web seeds

#[test]
fn remote_torrent_may_not_read_file_seeds_but_local_metainfo_may() {
    let root = tempdir();
    let data = test_data(123_457, 501);
    let local = root.join("local.bin");
    std::fs::write(&local, &data).unwrap();
    let file_seed = format!("file://{}", local.display());
    let ngx = Nginx::start(&root);

    // Only a file:// seed: a downloaded torrent cannot use it.
    let meta = mktorrent(
        &local,
        15,
        std::slice::from_ref(&file_seed),
        &root.join("fileseed.torrent"),
    );
    match Handle::open_uri(&ngx.url("fileseed.torrent")) {
        Err((code, msg)) => {
            assert_eq!(code, libc::EINVAL, "{msg}");
            assert!(
                msg.contains("none of the torrent's web seeds is usable"),
                "{msg}"
            );
        }
        Ok(h) => {
            // Opening may succeed only if reading then fails.
            for off in [0u64, 50_000, 123_000] {
                assert!(
                    h.pread(100, off).is_err(),
                    "a remote torrent read a local file:// seed"
                );
            }
        }
    }

    // A file:// seed beside an http seed that lacks the file: the only
    // usable seed 404s, so nothing comes back; the local file (whose bytes
    // would pass every SHA-1) is never read.
    let meta2 = mktorrent(
        &local,
        15,
        &[file_seed.clone(), ngx.url("missing/local.bin")],
        &root.join("mixed.torrent"),
    );
    let h = Handle::open_uri(&ngx.url("mixed.torrent")).expect("one usable (http) seed");
    for (len, off) in [(100usize, 0u64), (1, 70_000), (40_000, 83_457)] {
        match h.pread(len, off) {
            Ok(b) => panic!(
                "a remote torrent returned {} bytes from a file:// seed",
                b.len()
            ),
            Err((code, msg)) => {
                assert_ne!(code, 0);
                assert!(!msg.contains("file://"), "file seed was tried: {msg}");
            }
        }
    }
    drop(h);

    // The same metainfo given locally may read file:// seeds.
    for m in [&meta, &meta2] {
        let h = Handle::open_gto(m).unwrap();
        let boundaries = [0u64, data.len() as u64];
        check_reads(&h, &data, &boundaries, 1 << 15, 77);
    }
    // And so may a file:// URI of the .torrent (local origin).
    let h = Handle::open_uri(&format!(
        "file://{}",
        root.join("fileseed.torrent").display()
    ))
    .unwrap();
    assert!(h.read_all(&[10_007]) == data);
}

// ---------------------------------------------------------------------------
// BEP 47 pad files

#[test]
fn bep47_pad_files_are_hidden_zero_and_never_fetched() {
    let root = tempdir();
    let name = "padded";
    let piece: u64 = 16_384;
    let a = test_data(20_000, 601);
    let b = test_data(50_001, 602);
    let c = test_data(7_777, 603);
    std::fs::create_dir(root.join(name)).unwrap();
    for (n, d) in [("a.bin", &a), ("b.bin", &b), ("c.bin", &c)] {
        std::fs::write(root.join(name).join(n), d).unwrap();
    }
    // No pad file exists on the server: asking for one would 404 and fail
    // the read, so a passing read proves pads are never requested.
    let pad1 = 2 * piece - a.len() as u64; // a.bin: 0..20000, pad to 32768
    let b_off = a.len() as u64 + pad1;
    let pad2 = (b_off + b.len() as u64).next_multiple_of(piece) - (b_off + b.len() as u64);
    let c_off = b_off + b.len() as u64 + pad2;
    assert!(pad1 > 0 && pad2 > 0);
    let ngx = Nginx::start(&root);

    let mut stream = a.clone();
    stream.resize(b_off as usize, 0);
    stream.extend_from_slice(&b);
    stream.resize(c_off as usize, 0);
    stream.extend_from_slice(&c);
    let pieces: Vec<u8> = stream
        .chunks(piece as usize)
        .flat_map(|ch| Sha1::digest(ch).to_vec())
        .collect();

    let file = |len: u64, path: Vec<&str>, attr: Option<&str>| {
        let mut entries = Vec::new();
        if let Some(a) = attr {
            entries.push(("attr", s(a)));
        }
        entries.push(("length", B::I(len as i64)));
        entries.push(("path", B::L(path.into_iter().map(s).collect())));
        d(entries)
    };
    let pad1_name = pad1.to_string();
    let meta_value = d(vec![
        (
            "info",
            d(vec![
                (
                    "files",
                    B::L(vec![
                        file(a.len() as u64, vec!["a.bin"], None),
                        // BEP 47: attr "p", conventionally under .pad/.
                        file(pad1, vec![".pad", &pad1_name], Some("p")),
                        file(b.len() as u64, vec!["b.bin"], Some("x")),
                        // BitComet's pre-BEP 47 convention: no attr.
                        file(pad2, vec!["_____padding_file_0_"], None),
                        file(c.len() as u64, vec!["c.bin"], None),
                    ]),
                ),
                ("name", s(name)),
                ("piece length", B::I(piece as i64)),
                ("pieces", B::S(pieces)),
            ]),
        ),
        ("url-list", B::L(vec![s(ngx.url(""))])),
    ]);
    let meta = enc(&meta_value);
    std::fs::write(root.join("padded.torrent"), &meta).unwrap();

    let expect_list = vec![
        ("a.bin".to_owned(), 0u64, a.len() as u64),
        ("b.bin".to_owned(), b_off, b.len() as u64),
        ("c.bin".to_owned(), c_off, c.len() as u64),
    ];
    let boundaries = [
        0,
        a.len() as u64,
        b_off,
        b_off + b.len() as u64,
        c_off,
        stream.len() as u64,
    ];
    for h in [
        Handle::open_gto(&meta).unwrap(),
        Handle::open_uri(&ngx.url("padded.torrent")).unwrap(),
    ] {
        assert_eq!(h.file_list(), expect_list, "pad files hidden from the list");
        assert_eq!(h.readdir(), expect_list, "pad files hidden from readdir");
        assert_eq!(h.size(), stream.len() as u64, "pads count in the stream");
        // Across each pad: the tail of the file, the zeros, the next head.
        for (start, end) in [(a.len() as u64, b_off), (b_off + b.len() as u64, c_off)] {
            let off = start - 100;
            let got = h.pread((end - start + 200) as usize, off).unwrap();
            assert!(got == stream[off as usize..(end + 100) as usize]);
            assert!(got[100..100 + (end - start) as usize]
                .iter()
                .all(|&x| x == 0));
            let only_pad = h.pread((end - start) as usize, start).unwrap();
            assert!(only_pad.iter().all(|&x| x == 0) && !only_pad.is_empty());
        }
        check_reads(&h, &stream, &boundaries, piece, 0x9ad);
    }
}
