//! Every failure of the C ABI comes with a non-zero `code` and a message:
//! each export is called through the crate's exported functions with bad
//! inputs of every kind it can get (NULL and non-UTF-8 pointers, oversized
//! counts, malformed and oversized metainfo, a stream past INT64_MAX, bad
//! whence, closed handles and cursors), and each call must return its
//! failure value (-1 or NULL) with `code != 0` — a caller testing `code`
//! must never read a failure as success. No network is needed: datasets are
//! local files and in-memory torrents.

mod abi_common;

use std::ffi::{c_char, c_void};

use abi_common::{cstr, msg};
use gtio::ffi::*;

/// A `GTIO_Error` poisoned so that an unfilled one is noticed: code 0 and a
/// message that is not the library's.
fn poisoned() -> GTIO_Error {
    let mut e = GTIO_Error {
        code: 0,
        http_status: -7,
        message: [0; 512],
    };
    for (d, s) in e.message.iter_mut().zip(b"untouched\0") {
        *d = *s as c_char;
    }
    e
}

/// `got` is the failure value, and `e` was filled with a non-zero code
/// (`want` if given) and a message of its own.
fn failed<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: T,
    fail: T,
    e: &GTIO_Error,
    want: Option<i32>,
) {
    assert_eq!(got, fail, "{what}: expected the failure value");
    assert_ne!(e.code, 0, "{what}: failed with code 0 ({:?})", msg(e));
    if let Some(want) = want {
        assert_eq!(e.code, want, "{what}: {}", msg(e));
    }
    let m = msg(e);
    assert!(!m.is_empty() && m != "untouched", "{what}: message {m:?}");
    assert!(e.http_status >= 0, "{what}: http_status not filled");
}

fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{}:", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// A single-file torrent of `length` bytes in pieces of `piece` (zero
/// hashes), with a file:// seed.
fn torrent(length: u64, piece: u64, pieces: usize, files: Option<&[(u64, &str)]>) -> Vec<u8> {
    let mut info = b"d".to_vec();
    if let Some(files) = files {
        info.extend_from_slice(b"5:filesl");
        for (len, name) in files {
            info.extend_from_slice(format!("d6:lengthi{len}e4:pathl").as_bytes());
            bstr(&mut info, name.as_bytes());
            info.extend_from_slice(b"ee");
        }
        info.push(b'e');
    } else {
        info.extend_from_slice(format!("6:lengthi{length}e").as_bytes());
    }
    info.extend_from_slice(b"4:name2:ds");
    info.extend_from_slice(format!("12:piece lengthi{piece}e6:pieces").as_bytes());
    bstr(&mut info, &vec![0u8; 20 * pieces]);
    info.push(b'e');
    let mut t = b"d4:info".to_vec();
    t.extend_from_slice(&info);
    t.extend_from_slice(b"8:url-list");
    bstr(&mut t, b"file:///nonexistent/ds");
    t.push(b'e');
    t
}

fn open_gto(buf: &[u8], e: &mut GTIO_Error) -> *mut GTIO {
    gtio_open_gto(buf.as_ptr().cast(), buf.len(), std::ptr::null(), e)
}

#[test]
fn every_failure_has_a_nonzero_code() {
    let dir = std::env::temp_dir().join(format!("gtio-abi-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data.bin");
    std::fs::write(&file, vec![7u8; 10_000]).unwrap();
    let uri = cstr(&format!("file://{}", file.display()));
    let null = std::ptr::null::<c_char>();

    // --- opening
    let mut e = poisoned();
    failed(
        "open_uri(NULL)",
        gtio_open_uri(null, null, &mut e),
        std::ptr::null_mut(),
        &e,
        Some(libc::EINVAL),
    );
    let not_utf8 = [0xffu8 as c_char, 0xfeu8 as c_char, 0];
    let mut e = poisoned();
    failed(
        "open_uri(non-UTF-8)",
        gtio_open_uri(not_utf8.as_ptr(), null, &mut e),
        std::ptr::null_mut(),
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    failed(
        "open_uri(cred non-UTF-8)",
        gtio_open_uri(uri.as_ptr(), not_utf8.as_ptr(), &mut e),
        std::ptr::null_mut(),
        &e,
        Some(libc::EINVAL),
    );
    for bad in [
        "gopher://x/y",
        "",
        "file:///nonexistent/gtio/x.bin",
        "file://relative",
        "http://[::1",
    ] {
        let u = cstr(bad);
        let mut e = poisoned();
        failed(
            &format!("open_uri({bad:?})"),
            gtio_open_uri(u.as_ptr(), null, &mut e),
            std::ptr::null_mut(),
            &e,
            None,
        );
    }
    let mut e = poisoned();
    failed(
        "open_gto(NULL)",
        gtio_open_gto(std::ptr::null(), 10, null, &mut e),
        std::ptr::null_mut(),
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    let one = [b'd'];
    failed(
        "open_gto(65 MiB)",
        gtio_open_gto(one.as_ptr().cast(), 65 << 20, null, &mut e),
        std::ptr::null_mut(),
        &e,
        Some(libc::EINVAL),
    );
    let zero_total = torrent(0, 16384, 0, None);
    let past_int64 = torrent(0, 1 << 62, 2, Some(&[(1 << 62, "a"), (1 << 62, "b")]));
    let huge_piece = torrent(1 << 41, 1 << 40, 2, None);
    let cases: [(&str, &[u8], Option<i32>); 7] = [
        ("garbage", b"not bencode", Some(libc::EINVAL)),
        ("empty", b"", Some(libc::EINVAL)),
        ("a list", b"le", Some(libc::EINVAL)),
        ("deep nesting", &[b'l'; 100_000], Some(libc::EINVAL)),
        ("no data", &zero_total, Some(libc::EINVAL)),
        ("total past INT64_MAX", &past_int64, Some(libc::EFBIG)),
        (
            "string longer than input",
            b"d4:infod4:name99999:x",
            Some(libc::EINVAL),
        ),
    ];
    for (what, buf, want) in cases {
        let mut e = poisoned();
        failed(
            &format!("open_gto({what})"),
            open_gto(buf, &mut e),
            std::ptr::null_mut(),
            &e,
            want,
        );
        if what == "total past INT64_MAX" {
            assert!(msg(&e).contains("INT64_MAX"), "{}", msg(&e));
        }
    }

    // A piece no cache can hold: refused with EFBIG at open or, where the
    // open path does not check yet, at the first read; never an abort.
    let mut e = poisoned();
    let h = open_gto(&huge_piece, &mut e);
    if h.is_null() {
        failed(
            "open_gto(2^40-byte piece)",
            h,
            std::ptr::null_mut(),
            &e,
            Some(libc::EFBIG),
        );
    } else {
        let mut b = [0u8; 16];
        let mut e = poisoned();
        failed(
            "pread(2^40-byte piece)",
            gtio_pread(h, b.as_mut_ptr().cast(), 16, 0, &mut e),
            -1,
            &e,
            Some(libc::EFBIG),
        );
        let mut e = poisoned();
        assert_eq!(gtio_close(h, &mut e), 0);
    }

    // --- a live handle, misused
    let mut e = poisoned();
    let h = gtio_open_uri(uri.as_ptr(), null, &mut e);
    assert!(!h.is_null(), "{}", msg(&e));
    let mut e = poisoned();
    assert_eq!(gtio_size(h, &mut e), 10_000);
    assert_eq!(e.code, 0, "success leaves err untouched");
    let mut buf = [0u8; 16];
    let p = buf.as_mut_ptr().cast::<c_void>();
    let mut e = poisoned();
    failed(
        "pread(NULL buf)",
        gtio_pread(h, std::ptr::null_mut(), 16, 0, &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    failed(
        "read(NULL buf)",
        gtio_read(h, std::ptr::null_mut(), 16, &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    failed(
        "pread(count > INT64_MAX)",
        gtio_pread(h, p, usize::MAX, 0, &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    failed(
        "read(count > INT64_MAX)",
        gtio_read(h, p, usize::MAX, &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    for (off, whence) in [
        (0, 99),
        (-1, libc::SEEK_SET),
        (i64::MAX, libc::SEEK_END),
        (i64::MIN, libc::SEEK_CUR),
    ] {
        let mut e = poisoned();
        failed(
            &format!("lseek({off}, {whence})"),
            gtio_lseek(h, off, whence, &mut e),
            -1,
            &e,
            Some(libc::EINVAL),
        );
    }
    let mut e = poisoned();
    failed(
        "get_file_list(NULL fi)",
        gtio_get_file_list(h, std::ptr::null_mut(), &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    let mut ucb = gtio_usercb_t {
        cb_func: None,
        cb_data: std::ptr::null_mut(),
        ret: 0,
    };
    let mut e = poisoned();
    failed(
        "pread_async(NULL ucb)",
        gtio_pread_async(h, p, 16, 0, 0, std::ptr::null_mut(), &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    failed(
        "pread_async(NULL buf)",
        gtio_pread_async(h, std::ptr::null_mut(), 16, 0, 0, &mut ucb, &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    failed(
        "pread_async(bad flags)",
        gtio_pread_async(h, p, 16, 0, 0xdead_0000, &mut ucb, &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    failed(
        "pread_async(count > INT64_MAX)",
        gtio_pread_async(h, p, usize::MAX, 0, 0, &mut ucb, &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    failed(
        "cancel(NULL ucb)",
        gtio_cancel(h, std::ptr::null_mut(), &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );

    // --- directory cursors
    let mut e = poisoned();
    let dirp = gtio_opendir(h, &mut e);
    assert!(!dirp.is_null(), "{}", msg(&e));
    let mut e = poisoned();
    failed(
        "readdir(NULL ent)",
        gtio_readdir(dirp, std::ptr::null_mut(), &mut e),
        -1,
        &e,
        Some(libc::EINVAL),
    );
    let mut e = poisoned();
    assert_eq!(gtio_closedir(dirp, &mut e), 0);
    let mut ent = GTIO_Dirent {
        name: [0; GTIO_NAME_MAX],
        offset: 0,
        size: 0,
    };
    let mut e = poisoned();
    failed(
        "readdir(closed)",
        gtio_readdir(dirp, &mut ent, &mut e),
        -1,
        &e,
        Some(libc::EBADF),
    );
    let mut e = poisoned();
    failed(
        "closedir(closed)",
        gtio_closedir(dirp, &mut e),
        -1,
        &e,
        Some(libc::EBADF),
    );
    let mut e = poisoned();
    failed(
        "closedir(NULL)",
        gtio_closedir(std::ptr::null_mut(), &mut e),
        -1,
        &e,
        Some(libc::EBADF),
    );

    // --- after close: every handle-taking export is EBADF with a code
    let mut e = poisoned();
    assert_eq!(gtio_close(h, &mut e), 0);
    let ebadf = Some(libc::EBADF);
    let mut e = poisoned();
    failed("close(closed)", gtio_close(h, &mut e), -1, &e, ebadf);
    let mut e = poisoned();
    failed("size(closed)", gtio_size(h, &mut e), -1, &e, ebadf);
    let mut e = poisoned();
    failed("read(closed)", gtio_read(h, p, 16, &mut e), -1, &e, ebadf);
    let mut e = poisoned();
    failed(
        "pread(closed)",
        gtio_pread(h, p, 16, 0, &mut e),
        -1,
        &e,
        ebadf,
    );
    let mut e = poisoned();
    failed(
        "lseek(closed)",
        gtio_lseek(h, 0, libc::SEEK_SET, &mut e),
        -1,
        &e,
        ebadf,
    );
    let mut e = poisoned();
    failed(
        "prefetch(closed)",
        gtio_prefetch(h, 0, 16, &mut e),
        -1,
        &e,
        ebadf,
    );
    let mut fi: *mut GTIO_FileInfo = std::ptr::null_mut();
    let mut e = poisoned();
    failed(
        "get_file_list(closed)",
        gtio_get_file_list(h, &mut fi, &mut e),
        -1,
        &e,
        ebadf,
    );
    let mut e = poisoned();
    failed(
        "opendir(closed)",
        gtio_opendir(h, &mut e),
        std::ptr::null_mut(),
        &e,
        ebadf,
    );
    let mut e = poisoned();
    failed(
        "pread_async(closed)",
        gtio_pread_async(h, p, 16, 0, 0, &mut ucb, &mut e),
        -1,
        &e,
        ebadf,
    );
    let mut e = poisoned();
    failed(
        "cancel(closed)",
        gtio_cancel(h, &mut ucb, &mut e),
        -1,
        &e,
        ebadf,
    );
    let mut e = poisoned();
    failed(
        "size(NULL)",
        gtio_size(std::ptr::null_mut(), &mut e),
        -1,
        &e,
        ebadf,
    );

    // --- gtio_poll reports through errno (it has no err argument)
    // SAFETY: reading and resetting this thread's errno.
    unsafe { *libc::__errno_location() = 0 };
    assert_eq!(gtio_poll(std::ptr::null_mut(), 4), -1);
    // SAFETY: as above.
    assert_eq!(unsafe { *libc::__errno_location() }, libc::EINVAL);

    // --- err may be NULL everywhere: failures still return their value
    assert!(gtio_open_uri(null, null, std::ptr::null_mut()).is_null());
    assert_eq!(gtio_size(h, std::ptr::null_mut()), -1);

    std::fs::remove_dir_all(&dir).unwrap();
}
