//! Malformed metainfo through `gtio_open_gto`: every kind is refused with
//! NULL and `EINVAL` plus a message, and none crashes, hangs or allocates
//! from a declared length. A well-formed base metainfo (which must open) is
//! changed one defect at a time, so each case fails for its own reason.

use std::ffi::{c_void, CStr};

use gtio::ffi::{gtio_close, gtio_open_gto, gtio_size, GTIO_Error};
use sha1::{Digest, Sha1};

#[path = "support/bencode.rs"]
mod bencode;

use bencode::{d, enc, s, B};

const PIECE: i64 = 16_384;

/// Hashes for `total` bytes of zeros in PIECE-sized pieces (contents do not
/// matter: nothing is downloaded, only the count is checked at open).
fn hashes(total: i64) -> Vec<u8> {
    let n = (total + PIECE - 1) / PIECE;
    (0..n)
        .flat_map(|i| Sha1::digest(i.to_le_bytes()).to_vec())
        .collect()
}

fn file(len: i64, path: &[&str]) -> B {
    d(vec![
        ("length", B::I(len)),
        ("path", B::L(path.iter().map(s).collect())),
    ])
}

/// A valid multi-file metainfo with `files`; the total decides the hashes.
fn multi(files: Vec<B>, total: i64) -> B {
    multi_with(files, PIECE, hashes(total), "ds")
}

fn multi_with(files: Vec<B>, piece: i64, pieces: Vec<u8>, name: &str) -> B {
    d(vec![
        (
            "info",
            d(vec![
                ("files", B::L(files)),
                ("name", s(name)),
                ("piece length", B::I(piece)),
                ("pieces", B::S(pieces)),
            ]),
        ),
        ("url-list", B::L(vec![s("http://127.0.0.1:9/")])),
    ])
}

fn base_files() -> (Vec<B>, i64) {
    (
        vec![
            file(40_000, &["a.bin"]),
            file(0, &["dir", "empty"]),
            file(9_999, &["dir", "b.bin"]),
        ],
        49_999,
    )
}

fn base() -> Vec<u8> {
    let (f, t) = base_files();
    enc(&multi(f, t))
}

fn err() -> GTIO_Error {
    GTIO_Error {
        code: 0,
        http_status: 0,
        message: [0; 512],
    }
}

/// `gtio_open_gto` must refuse `buf` with EINVAL and a message.
fn refused(what: &str, buf: &[u8]) -> String {
    let mut e = err();
    let h = gtio_open_gto(
        buf.as_ptr().cast::<c_void>(),
        buf.len(),
        std::ptr::null(),
        &mut e,
    );
    if !h.is_null() {
        gtio_close(h, std::ptr::null_mut());
        panic!("{what}: gtio_open_gto accepted malformed metainfo");
    }
    // SAFETY: the library NUL-terminates the message.
    let msg = unsafe { CStr::from_ptr(e.message.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    assert_eq!(e.code, libc::EINVAL, "{what}: errno (message: {msg})");
    assert!(!msg.is_empty(), "{what}: no message");
    msg
}

#[test]
fn the_base_metainfo_is_valid() {
    let buf = base();
    let mut e = err();
    let h = gtio_open_gto(
        buf.as_ptr().cast::<c_void>(),
        buf.len(),
        std::ptr::null(),
        &mut e,
    );
    assert!(!h.is_null(), "base metainfo refused (code {})", e.code);
    assert_eq!(gtio_size(h, &mut e), 49_999);
    assert_eq!(gtio_close(h, &mut e), 0);
}

#[test]
fn truncated_metainfo() {
    let buf = base();
    for cut in [0, 1, 5, buf.len() / 3, buf.len() / 2, buf.len() - 1] {
        refused(&format!("truncated to {cut} bytes"), &buf[..cut]);
    }
}

#[test]
fn bad_piece_length() {
    let (f, t) = base_files();
    let msg = refused(
        "piece length 0",
        &enc(&multi_with(f.clone(), 0, hashes(t), "ds")),
    );
    assert!(msg.contains("piece length"), "{msg}");
    refused(
        "negative piece length",
        &enc(&multi_with(f.clone(), -16_384, hashes(t), "ds")),
    );
    refused(
        "piece length a string",
        &enc(&d(vec![(
            "info",
            d(vec![
                ("files", B::L(f)),
                ("name", s("ds")),
                ("piece length", s("16384")),
                ("pieces", B::S(hashes(t))),
            ]),
        )])),
    );
}

#[test]
fn pieces_not_a_multiple_of_20() {
    let (f, t) = base_files();
    let mut p = hashes(t);
    p.pop();
    let msg = refused(
        "pieces not a multiple of 20",
        &enc(&multi_with(f, PIECE, p, "ds")),
    );
    assert!(msg.contains("multiple of 20"), "{msg}");
}

#[test]
fn wrong_piece_count() {
    let (f, t) = base_files();
    let mut more = hashes(t);
    more.extend_from_slice(&[7u8; 20]);
    let msg = refused(
        "one hash too many",
        &enc(&multi_with(f.clone(), PIECE, more, "ds")),
    );
    assert!(msg.contains("hashes"), "{msg}");
    let fewer = hashes(t)[20..].to_vec();
    refused(
        "one hash too few",
        &enc(&multi_with(f.clone(), PIECE, fewer, "ds")),
    );
    refused("no hashes", &enc(&multi_with(f, PIECE, Vec::new(), "ds")));
}

#[test]
fn dot_dot_in_path_or_name() {
    let msg = refused(
        "'..' segment",
        &enc(&multi(vec![file(10, &["..", "etc", "passwd"])], 10)),
    );
    assert!(msg.contains(".."), "{msg}");
    refused(
        "'..' deeper",
        &enc(&multi(vec![file(10, &["a", "..", "..", "x"])], 10)),
    );
    refused(
        "'.' segment",
        &enc(&multi(vec![file(10, &["a", ".", "x"])], 10)),
    );
    refused(
        "name '..'",
        &enc(&multi_with(vec![file(10, &["x"])], PIECE, hashes(10), "..")),
    );
}

#[test]
fn absolute_paths() {
    refused(
        "absolute segment",
        &enc(&multi(vec![file(10, &["/etc/passwd"])], 10)),
    );
    refused(
        "slash in a segment",
        &enc(&multi(vec![file(10, &["a/b"])], 10)),
    );
    refused(
        "backslash (Windows) path",
        &enc(&multi(vec![file(10, &["C:\\Windows\\x"])], 10)),
    );
    refused(
        "absolute name",
        &enc(&multi_with(
            vec![file(10, &["x"])],
            PIECE,
            hashes(10),
            "/tmp",
        )),
    );
}

#[test]
fn empty_segments() {
    refused(
        "empty first segment (leading '/')",
        &enc(&multi(vec![file(10, &["", "etc"])], 10)),
    );
    refused(
        "empty middle segment",
        &enc(&multi(vec![file(10, &["a", "", "b"])], 10)),
    );
    refused("empty path list", &enc(&multi(vec![file(10, &[])], 10)));
    refused(
        "empty name",
        &enc(&multi_with(vec![file(10, &["x"])], PIECE, hashes(10), "")),
    );
}

#[test]
fn nul_in_names() {
    let msg = refused(
        "NUL in the torrent name",
        &enc(&multi_with(
            vec![file(10, &["x"])],
            PIECE,
            hashes(10),
            "ds\0.bin",
        )),
    );
    assert!(msg.contains("NUL"), "{msg}");
    refused(
        "NUL in a path segment",
        &enc(&multi(vec![file(10, &["a\0b"])], 10)),
    );
    refused(
        "non-UTF-8 segment",
        &enc(&multi(
            vec![d(vec![
                ("length", B::I(10)),
                ("path", B::L(vec![B::S(vec![0xff, 0xfe])])),
            ])],
            10,
        )),
    );
}

#[test]
fn huge_declared_string_lengths() {
    // Nothing may be allocated from a declared length: these must be
    // refused at once, not after an attempt to reserve terabytes.
    for buf in [
        &b"999999999999:abc"[..],
        b"d4:infod4:name999999999999:xee",
        b"d4:infod6:pieces18446744073709551615:xee",
        b"d4:infod6:pieces99999999999999999999999999:xee",
        b"l4294967296:e",
    ] {
        refused(&String::from_utf8_lossy(buf), buf);
    }
}

#[test]
fn deep_nesting() {
    for depth in [100usize, 10_000, 1_000_000] {
        let mut buf = vec![b'l'; depth];
        buf.extend(std::iter::repeat_n(b'e', depth));
        refused(&format!("{depth} nested lists"), &buf);
        let mut buf = b"d4:info".to_vec();
        buf.extend(std::iter::repeat_n(b'l', depth));
        refused(&format!("{depth} unterminated nested lists in info"), &buf);
    }
    let mut buf = Vec::new();
    for _ in 0..10_000 {
        buf.extend_from_slice(b"d1:a");
    }
    buf.extend_from_slice(b"i0e");
    buf.extend(std::iter::repeat_n(b'e', 10_000));
    refused("10000 nested dictionaries", &buf);
}

#[test]
fn trailing_garbage() {
    let mut buf = base();
    buf.extend_from_slice(b"garbage");
    refused("trailing bytes", &buf);
    let mut buf = base();
    buf.push(b'e');
    refused("trailing 'e'", &buf);
    let mut buf = base();
    buf.extend_from_slice(&base());
    refused("two metainfos", &buf);
}

#[test]
fn over_64_mib_is_refused_before_parsing() {
    // A valid pointer to a real buffer just over the limit: it must be
    // refused by its size, not parsed.
    let mut buf = base();
    buf.resize((64 << 20) + 1, b'0');
    let msg = refused("64 MiB + 1", &buf);
    assert!(msg.contains("64 MiB"), "{msg}");
    buf.resize(100 << 20, b'0');
    refused("100 MiB", &buf);
    // At the limit the size check passes and the parser refuses it.
    buf.truncate(64 << 20);
    let msg = refused("64 MiB of garbage after a valid metainfo", &buf);
    assert!(!msg.contains("larger than"), "{msg}");
}

/// Out-of-order keys and a trailing newline load, as in libtorrent: the
/// info-hash is taken over the raw bytes, so they change nothing.
#[test]
fn unsorted_keys_and_trailing_newline_open() {
    let (f, t) = base_files();
    let B::D(mut entries) = multi(f, t) else {
        unreachable!()
    };
    entries.reverse();
    let mut buf = enc(&B::D(entries));
    buf.push(b'\n');
    let mut e = err();
    let h = gtio_open_gto(
        buf.as_ptr().cast::<c_void>(),
        buf.len(),
        std::ptr::null(),
        &mut e,
    );
    assert!(!h.is_null(), "refused (code {})", e.code);
    gtio_close(h, std::ptr::null_mut());
}

#[test]
fn structural_defects() {
    let (f, t) = base_files();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty buffer", Vec::new()),
        ("not a dictionary", enc(&B::L(vec![B::I(1)]))),
        ("no info", enc(&d(vec![("url-list", s("http://x/"))]))),
        ("info is a list", enc(&d(vec![("info", B::L(vec![]))]))),
        (
            "duplicate key",
            enc(&B::D(vec![
                (b"a".to_vec(), B::I(1)),
                (b"a".to_vec(), B::I(2)),
            ])),
        ),
        ("leading zero integer", b"i03e".to_vec()),
        ("negative zero", b"i-0e".to_vec()),
        ("integer overflow", b"i99999999999999999999999e".to_vec()),
        (
            "negative file length",
            enc(&multi(vec![file(-1, &["a"])], 0)),
        ),
        (
            "total length overflows",
            enc(&multi(
                vec![
                    file(i64::MAX, &["a"]),
                    file(i64::MAX, &["b"]),
                    file(2, &["c"]),
                ],
                0,
            )),
        ),
        (
            "duplicate file path",
            enc(&multi(vec![file(5, &["a"]), file(5, &["a"])], 10)),
        ),
        (
            "file is also a directory",
            enc(&multi(vec![file(5, &["a"]), file(5, &["a", "b"])], 10)),
        ),
        ("empty files list", enc(&multi(Vec::new(), 0))),
        (
            "length and files",
            enc(&d(vec![(
                "info",
                d(vec![
                    ("files", B::L(f.clone())),
                    ("length", B::I(t)),
                    ("name", s("ds")),
                    ("piece length", B::I(PIECE)),
                    ("pieces", B::S(hashes(t))),
                ]),
            )])),
        ),
        (
            "missing name",
            enc(&d(vec![(
                "info",
                d(vec![
                    ("length", B::I(10)),
                    ("piece length", B::I(PIECE)),
                    ("pieces", B::S(hashes(10))),
                ]),
            )])),
        ),
        (
            "url-list of integers",
            enc(&d(vec![
                (
                    "info",
                    d(vec![
                        ("length", B::I(10)),
                        ("name", s("x")),
                        ("piece length", B::I(PIECE)),
                        ("pieces", B::S(hashes(10))),
                    ]),
                ),
                ("url-list", B::L(vec![B::I(1)])),
            ])),
        ),
        (
            "no usable web seed",
            enc(&d(vec![(
                "info",
                d(vec![
                    ("length", B::I(10)),
                    ("name", s("x")),
                    ("piece length", B::I(PIECE)),
                    ("pieces", B::S(hashes(10))),
                ]),
            )])),
        ),
    ];
    for (what, buf) in cases {
        refused(what, &buf);
    }
}

#[test]
fn null_buffer_is_einval() {
    let mut e = err();
    let h = gtio_open_gto(std::ptr::null(), 10, std::ptr::null(), &mut e);
    assert!(h.is_null());
    assert_eq!(e.code, libc::EINVAL);
    // err may be NULL too.
    let h = gtio_open_gto(std::ptr::null(), 10, std::ptr::null(), std::ptr::null_mut());
    assert!(h.is_null());
}

/// Every single-byte truncation and a sweep of one-byte corruptions of the
/// base metainfo: refused or accepted, never a crash.
#[test]
fn byte_mutations_never_crash() {
    let buf = base();
    for cut in 0..buf.len() {
        refused(&format!("cut at {cut}"), &buf[..cut]);
    }
    for i in 0..buf.len() {
        for b in [0u8, b'e', b'i', b'l', b'd', b':', b'9', 0xff] {
            let mut m = buf.clone();
            m[i] = b;
            let mut e = err();
            let h = gtio_open_gto(
                m.as_ptr().cast::<c_void>(),
                m.len(),
                std::ptr::null(),
                &mut e,
            );
            if h.is_null() {
                assert_eq!(e.code, libc::EINVAL, "byte {i} = {b:#x}");
            } else {
                assert_eq!(gtio_close(h, &mut e), 0);
            }
        }
    }
}
