//! Reads through the C ABI (and the Rust API) against a real nginx on
//! loopback: byte-for-byte against the file on disk, end of stream, lseek,
//! argument checks, threads sharing a handle, ESTALE, credentials and
//! redirects, HTTP errors, HTTPS trust, single-flight.
//!
//! Tests that need a special runtime config run in a child process of their
//! own (`abi_common::isolate`); the others share the default runtime.

mod abi_common;

use std::time::{Duration, Instant};

use abi_common::nginx::AUTH_TOKEN;
use abi_common::*;
use gtio::ffi::*;

const MIB: usize = 1 << 20;

#[test]
fn sequential_reads_cover_the_file_exactly() {
    let fx = fixture();
    let h = open(&fx.url(), None);
    let mut err = new_err();
    assert_eq!(gtio_size(h, &mut err), FILE_LEN as i64);

    // Block sizes that cross piece boundaries at different phases.
    let sizes = [1usize, 4096, 65_537, MIB + 3, 3 * MIB + 1, 777];
    let mut got = Vec::new();
    let mut i = 0;
    loop {
        let bs = sizes[i % sizes.len()];
        i += 1;
        let mut buf = vec![0u8; bs];
        let n = gtio_read(h, buf.as_mut_ptr().cast(), bs, &mut err);
        assert!(n >= 0, "gtio_read: {}", msg(&err));
        let remaining = FILE_LEN - got.len();
        // Short only at the end of the stream.
        assert_eq!(n as usize, bs.min(remaining), "read {i} of {bs} bytes");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n as usize]);
    }
    assert_eq!(got.len(), FILE_LEN);
    assert!(got == fx.data, "sequential read differs from the file");
    // At the end: 0, and again 0.
    let mut buf = [0u8; 16];
    assert_eq!(gtio_read(h, buf.as_mut_ptr().cast(), 16, &mut err), 0);
    assert_eq!(gtio_read(h, buf.as_mut_ptr().cast(), 16, &mut err), 0);
    close(h);
}

#[test]
fn random_preads_match_the_file() {
    let fx = fixture();
    let h = open(&fx.url(), None);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let len = match rng.below(4) {
            0 => rng.below(64) as usize + 1,
            1 => rng.below(70_000) as usize + 1,
            2 => rng.below(2 * MIB as u64) as usize + 1,
            _ => MIB + rng.below(MIB as u64) as usize,
        };
        let off = rng.below(FILE_LEN as u64 + 64);
        let got = pread(h, len, off);
        let want = expect(&fx.data, len, off);
        assert_eq!(got.len(), want.len(), "pread({len} @ {off}) length");
        assert!(got == want, "pread({len} @ {off}) bytes differ");
    }
    // One read spanning every piece, asking for more than there is.
    let got = pread(h, FILE_LEN + 1000, 0);
    assert!(got == fx.data);
    // A read that starts inside the last piece and spans back across pieces.
    let got = pread(h, 3 * MIB, (FILE_LEN - 3 * MIB + 17) as u64);
    assert!(got == fx.data[FILE_LEN - 3 * MIB + 17..]);
    close(h);
}

#[test]
fn end_of_stream_and_huge_offsets() {
    let fx = fixture();
    let h = open(&fx.url(), None);
    let size = FILE_LEN as u64;
    assert_eq!(pread(h, 100, size - 10), fx.data[FILE_LEN - 10..]);
    assert_eq!(pread(h, 1, size - 1), fx.data[FILE_LEN - 1..]);
    for off in [
        size,
        size + 1,
        size + 1_000_000,
        i64::MAX as u64,
        u64::MAX - 5,
        u64::MAX,
    ] {
        let mut buf = [0xA5u8; 100];
        let mut err = new_err();
        let n = gtio_pread(h, buf.as_mut_ptr().cast(), 100, off, &mut err);
        assert_eq!(n, 0, "pread at {off}: {}", msg(&err));
        assert!(
            buf.iter().all(|&b| b == 0xA5),
            "buffer written past the end"
        );
    }
    close(h);
}

#[test]
fn lseek_whence_and_bounds() {
    let fx = fixture();
    let h = open(&fx.url(), None);
    let size = FILE_LEN as i64;
    let mut err = new_err();
    let read = |n: usize| {
        let mut buf = vec![0u8; n];
        let mut e = new_err();
        let got = gtio_read(h, buf.as_mut_ptr().cast(), n, &mut e);
        assert!(got >= 0, "gtio_read: {}", msg(&e));
        buf.truncate(got as usize);
        buf
    };
    assert_eq!(gtio_lseek(h, 100, libc::SEEK_SET, &mut err), 100);
    assert_eq!(read(50), fx.data[100..150]);
    assert_eq!(gtio_lseek(h, 0, libc::SEEK_CUR, &mut err), 150);
    assert_eq!(gtio_lseek(h, 10, libc::SEEK_CUR, &mut err), 160);
    assert_eq!(gtio_lseek(h, -60, libc::SEEK_CUR, &mut err), 100);
    assert_eq!(read(MIB + 5), fx.data[100..100 + MIB + 5]);
    assert_eq!(gtio_lseek(h, 0, libc::SEEK_END, &mut err), size);
    assert_eq!(read(10), b"");
    assert_eq!(gtio_lseek(h, -7, libc::SEEK_END, &mut err), size - 7);
    assert_eq!(read(100), fx.data[FILE_LEN - 7..]);
    assert_eq!(gtio_lseek(h, 0, libc::SEEK_CUR, &mut err), size);
    // Past the end is allowed; reads there give 0.
    assert_eq!(gtio_lseek(h, 5, libc::SEEK_END, &mut err), size + 5);
    assert_eq!(read(10), b"");
    assert_eq!(gtio_lseek(h, i64::MAX, libc::SEEK_SET, &mut err), i64::MAX);
    assert_eq!(read(10), b"");

    // Errors: EINVAL, and the offset stays where it was.
    assert_eq!(gtio_lseek(h, 1234, libc::SEEK_SET, &mut err), 1234);
    let bad: &[(i64, i32)] = &[
        (-1, libc::SEEK_SET),
        (i64::MIN, libc::SEEK_SET),
        (-1235, libc::SEEK_CUR),
        (i64::MAX, libc::SEEK_CUR),
        (-(size + 1), libc::SEEK_END),
        (i64::MAX, libc::SEEK_END),
        (0, 3),
        (0, -1),
        (0, 42),
    ];
    for &(off, whence) in bad {
        let mut e = new_err();
        assert_eq!(
            gtio_lseek(h, off, whence, &mut e),
            -1,
            "lseek({off}, {whence})"
        );
        assert_eq!(e.code, libc::EINVAL, "lseek({off}, {whence}): {}", msg(&e));
        assert_eq!(gtio_lseek(h, off, whence, std::ptr::null_mut()), -1);
        assert_eq!(gtio_lseek(h, 0, libc::SEEK_CUR, &mut err), 1234);
    }
    assert_eq!(read(3), fx.data[1234..1237]);
    close(h);
}

#[test]
fn argument_checks() {
    let fx = fixture();
    let h = open(&fx.url(), None);
    let mut buf = [0u8; 8];
    let p = buf.as_mut_ptr().cast::<std::ffi::c_void>();
    let null = std::ptr::null_mut::<std::ffi::c_void>();
    let over = i64::MAX as usize + 1;

    let check = |rc: i64, e: &GTIO_Error, what: &str| {
        assert_eq!(rc, -1, "{what}");
        assert_eq!(e.code, libc::EINVAL, "{what}: {}", msg(e));
    };
    for count in [over, usize::MAX] {
        let mut e = new_err();
        check(
            gtio_pread(h, p, count, 0, &mut e),
            &e,
            "pread count > INT64_MAX",
        );
        let mut e = new_err();
        check(gtio_read(h, p, count, &mut e), &e, "read count > INT64_MAX");
        let mut e = new_err();
        let r = AsyncReq::new(8, 0);
        let rc = gtio_pread_async(h, p, count, 0, 0, AsyncReq::ucb(r), &mut e);
        check(rc.into(), &e, "pread_async count > INT64_MAX");
        // SAFETY: never submitted.
        unsafe { AsyncReq::free(r) };
    }
    let mut e = new_err();
    check(gtio_pread(h, null, 1, 0, &mut e), &e, "pread NULL buf");
    let mut e = new_err();
    check(gtio_read(h, null, 1, &mut e), &e, "read NULL buf");
    assert_eq!(gtio_pread(h, null, 1, 0, std::ptr::null_mut()), -1);
    // NULL buf with count 0 is a valid empty read.
    let mut e = new_err();
    assert_eq!(gtio_pread(h, null, 0, 0, &mut e), 0, "{}", msg(&e));
    assert_eq!(gtio_read(h, null, 0, &mut e), 0, "{}", msg(&e));
    // The read above did not move the offset.
    assert_eq!(gtio_lseek(h, 0, libc::SEEK_CUR, &mut e), 0);
    // NULL ucb, unknown flags.
    let mut e = new_err();
    let rc = gtio_pread_async(h, p, 8, 0, 0, std::ptr::null_mut(), &mut e);
    check(rc.into(), &e, "pread_async NULL ucb");
    let r = AsyncReq::new(8, 0);
    let mut e = new_err();
    let rc = gtio_pread_async(h, p, 8, 0, 0x80, AsyncReq::ucb(r), &mut e);
    check(rc.into(), &e, "pread_async unknown flag");
    // SAFETY: never submitted.
    unsafe { AsyncReq::free(r) };
    // Empty async reads (count 0 with NULL buf, or past the end) complete
    // with 0.
    let r0 = AsyncReq::new(0, 0);
    let mut e = new_err();
    let rc = gtio_pread_async(h, null, 0, 0, 0, AsyncReq::ucb(r0), &mut e);
    assert_eq!(rc, 0, "{}", msg(&e));
    let r1 = AsyncReq::new(10, u64::MAX);
    assert_eq!(AsyncReq::submit(r1, h, 0).0, 0);
    poll_until(Duration::from_secs(10), || {
        AsyncReq::calls(r0) == 1 && AsyncReq::calls(r1) == 1
    });
    assert_eq!((AsyncReq::ret(r0), AsyncReq::ret(r1)), (0, 0));
    // SAFETY: completed.
    unsafe {
        AsyncReq::free(r0);
        AsyncReq::free(r1);
    }
    // On success err is left untouched.
    let mut e = new_err();
    e.code = 12345;
    assert_eq!(gtio_pread(h, p, 8, 3, &mut e), 8);
    assert_eq!(e.code, 12345, "err was written on success");
    assert_eq!(buf, fx.data[3..11]);
    // NULL uri, bad scheme, not a URI.
    let mut e = new_err();
    assert!(gtio_open_uri(std::ptr::null(), std::ptr::null(), &mut e).is_null());
    assert_eq!(e.code, libc::EINVAL);
    for bad in ["ftp://127.0.0.1/x", "no-scheme-here"] {
        let e = try_open(bad, None).unwrap_err();
        assert_eq!(e.code, libc::EINVAL, "{bad}: {}", msg(&e));
    }
    close(h);
}

#[test]
fn eight_threads_share_one_handle() {
    let fx = fixture();
    let h = open(&fx.url(), None) as usize;
    let data = &fx.data;
    std::thread::scope(|s| {
        for t in 0..8u64 {
            s.spawn(move || {
                let h = h as *mut GTIO;
                let mut rng = Rng(0x1234_5678 + t * 7919);
                for _ in 0..40 {
                    let len = rng.below(MIB as u64 + MIB as u64 / 2) as usize + 1;
                    let off = rng.below(FILE_LEN as u64);
                    let got = pread(h, len, off);
                    assert!(
                        got == expect(data, len, off),
                        "thread {t}: pread({len} @ {off}) differs"
                    );
                }
            });
        }
    });
    close(h as *mut GTIO);
}

/// Replace `path` by `content` atomically (temp + rename), with an mtime
/// that surely differs from the old one.
fn replace_file(path: &std::path::Path, content: &[u8]) {
    let old_mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&tmp).unwrap();
    f.set_modified(old_mtime + Duration::from_secs(3600))
        .unwrap();
    drop(f);
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn replaced_object_gives_estale_never_mixed_bytes() {
    let fx = fixture();
    let h = open(&fx.url(), None);
    // Piece 0 is now cached.
    assert!(pread(h, 1000, 0) == fx.data[..1000]);
    let new = test_bytes(FILE_LEN, 0xbad);
    assert_eq!(new.len(), fx.data.len());
    replace_file(&fx.dir.join(FILE_NAME), &new);

    // Uncached, one piece: ESTALE, and the buffer untouched.
    let mut buf = vec![0xA5u8; 5000];
    let mut err = new_err();
    let n = gtio_pread(
        h,
        buf.as_mut_ptr().cast(),
        buf.len(),
        4 * MIB as u64,
        &mut err,
    );
    assert_eq!(n, -1, "read of a replaced object succeeded");
    assert_eq!(err.code, libc::ESTALE, "{}", msg(&err));
    assert!(buf.iter().all(|&b| b == 0xA5), "new bytes leaked in");
    // Cached piece 0 plus uncached piece 1: ESTALE, never old + new.
    let mut buf = vec![0u8; 2 * MIB];
    let mut err = new_err();
    let n = gtio_pread(h, buf.as_mut_ptr().cast(), buf.len(), 0, &mut err);
    assert_eq!(n, -1, "a read mixed two versions");
    assert_eq!(err.code, libc::ESTALE, "{}", msg(&err));
    // The same through the async path.
    let r = AsyncReq::new(3000, 2 * MIB as u64 + 5);
    let (rc, e) = AsyncReq::submit(r, h, 0);
    assert_eq!(rc, 0, "{}", msg(&e));
    poll_until(Duration::from_secs(10), || AsyncReq::calls(r) == 1);
    assert_eq!(AsyncReq::ret(r), -i64::from(libc::ESTALE));
    close(h);
    // SAFETY: completed.
    unsafe { AsyncReq::free(r) };

    // A new handle sees the new version.
    let h = open(&fx.url(), None);
    assert!(pread(h, 2 * MIB, 0) == new[..2 * MIB]);
    assert!(pread(h, 5000, 4 * MIB as u64) == new[4 * MIB..4 * MIB + 5000]);
    close(h);
}

#[test]
fn credentials_scope_and_errors() {
    let fx = fixture();
    let auth = fx.ngx.url(&format!("auth/{FILE_NAME}"));
    let wrong = "wrong-s3cret-XYZZY";
    let mut messages = Vec::new();

    // No credential.
    let e = try_open(&auth, None).unwrap_err();
    assert_eq!((e.code, e.http_status), (libc::EACCES, 401), "{}", msg(&e));
    messages.push(msg(&e));
    // A wrong one.
    let e = try_open(&auth, Some(wrong)).unwrap_err();
    assert_eq!((e.code, e.http_status), (libc::EACCES, 401), "{}", msg(&e));
    messages.push(msg(&e));
    // The right one, bare and with its scheme word.
    for cred in [AUTH_TOKEN.to_string(), format!("Bearer {AUTH_TOKEN}")] {
        let h = open(&auth, Some(&cred));
        assert!(pread(h, 3 * MIB, MIB as u64 - 7) == fx.data[MIB - 7..4 * MIB - 7]);
        close(h);
    }
    // A same-host redirect keeps the credential ...
    let h = open(
        &fx.ngx.url(&format!("redir/auth/{FILE_NAME}")),
        Some(AUTH_TOKEN),
    );
    assert!(pread(h, 100_000, 5 * MIB as u64) == fx.data[5 * MIB..]);
    close(h);
    // ... a redirect to another host drops it: the same /auth/ location on
    // the same server, reached as "localhost", refuses the request.
    let e = try_open(
        &fx.ngx.url(&format!("redir-other/auth/{FILE_NAME}")),
        Some(AUTH_TOKEN),
    )
    .unwrap_err();
    assert_eq!((e.code, e.http_status), (libc::EACCES, 401), "{}", msg(&e));
    messages.push(msg(&e));
    // ... while without the credential the other host serves the public
    // path, so the redirect itself works.
    let h = open(&fx.ngx.url(&format!("redir-other/{FILE_NAME}")), None);
    assert!(pread(h, 10, 0) == fx.data[..10]);
    close(h);

    // Other failures with the credential in hand.
    let e = try_open(&fx.ngx.url("auth/missing.bin"), Some(AUTH_TOKEN)).unwrap_err();
    assert_eq!((e.code, e.http_status), (libc::ENOENT, 404), "{}", msg(&e));
    messages.push(msg(&e));
    let e = try_open(
        &format!("http://127.0.0.1:{}/auth/x", dead_port()),
        Some(AUTH_TOKEN),
    )
    .unwrap_err();
    messages.push(msg(&e));
    let e = try_open(
        &fx.ngx.url(&format!("noranges/{FILE_NAME}")),
        Some(AUTH_TOKEN),
    )
    .unwrap_err();
    messages.push(msg(&e));
    let e = try_open(&fx.ngx.url(&format!("auth/{FILE_NAME}")), Some(wrong)).unwrap_err();
    messages.push(msg(&e));
    // An ESTALE read failure on an authenticated handle.
    let h = open(&auth, Some(AUTH_TOKEN));
    replace_file(&fx.dir.join(FILE_NAME), &test_bytes(FILE_LEN, 77));
    let mut buf = vec![0u8; 10];
    let mut err = new_err();
    // (Pieces 0-3 of this URL are cached from above; piece 4 is not.)
    assert_eq!(
        gtio_pread(h, buf.as_mut_ptr().cast(), 10, 4 * MIB as u64 + 1, &mut err),
        -1
    );
    assert_eq!(err.code, libc::ESTALE, "{}", msg(&err));
    messages.push(msg(&err));
    close(h);

    for m in &messages {
        assert!(!m.is_empty());
        for secret in [AUTH_TOKEN, wrong, "s3cret", "Bearer"] {
            assert!(!m.contains(secret), "message leaks {secret:?}: {m}");
        }
    }
}

#[test]
fn http_errors_map_to_errno() {
    let fx = fixture();
    let e = try_open(&fx.ngx.url("missing.bin"), None).unwrap_err();
    assert_eq!((e.code, e.http_status), (libc::ENOENT, 404), "{}", msg(&e));

    let e = try_open(&fx.ngx.url(&format!("noranges/{FILE_NAME}")), None).unwrap_err();
    assert_eq!(e.code, libc::EOPNOTSUPP, "{}", msg(&e));

    let start = Instant::now();
    let e = try_open(&format!("http://127.0.0.1:{}/x.bin", dead_port()), None).unwrap_err();
    assert_eq!(e.code, libc::ECONNREFUSED, "{}", msg(&e));
    // Default retries (4) with backoff capped well below this: a hang
    // detector, not a timing assertion.
    assert!(start.elapsed() < Duration::from_secs(15));

    // Through the Rust API as well.
    let e = gtio::Dataset::open(&fx.ngx.url("missing.bin"), None).unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT);
}

#[test]
fn https_untrusted_certificate_is_refused() {
    let fx = fixture();
    let e = try_open(&fx.ngx.tls_url(FILE_NAME), None).unwrap_err();
    let m = msg(&e).to_lowercase();
    assert!(
        m.contains("certificate") || m.contains("tls"),
        "unclear TLS error (errno {}): {m}",
        e.code
    );
}

#[test]
fn https_with_ca_bundle() {
    if !isolate("https_with_ca_bundle", &[]) {
        return;
    }
    let fx = fixture();
    let ca = cstr(fx.ngx.ca_cert().to_str().unwrap());
    init(|c| c.ca_bundle = ca.as_ptr());
    let h = open(&fx.ngx.tls_url(FILE_NAME), None);
    assert!(pread(h, FILE_LEN, 0) == fx.data);
    assert!(pread(h, 10, FILE_LEN as u64 - 3) == fx.data[FILE_LEN - 3..]);
    close(h);
    let h = open(
        &fx.ngx.tls_url(&format!("redir/auth/{FILE_NAME}")),
        Some(AUTH_TOKEN),
    );
    assert!(pread(h, MIB + 1, 12) == fx.data[12..MIB + 13]);
    close(h);
    let e = try_open(
        &fx.ngx.tls_url(&format!("redir-other/auth/{FILE_NAME}")),
        Some(AUTH_TOKEN),
    )
    .unwrap_err();
    assert_eq!((e.code, e.http_status), (libc::EACCES, 401), "{}", msg(&e));
}

#[test]
fn single_flight_one_download_per_cold_piece() {
    if !isolate("single_flight_one_download_per_cold_piece", &[]) {
        return;
    }
    // No readahead: every job is a demand read of these tests. 1 MiB pieces,
    // so that the reads below cover every piece.
    init(|c| {
        c.readahead_max_bytes = 0;
        c.block_size = MIB as u32;
    });
    let fx = fixture();
    let ds = gtio::Dataset::open(&fx.url(), None).unwrap();
    let pieces = FILE_LEN.div_ceil(MIB);
    // Piece 0 came with the open's request (docs/http.md, "Opening an
    // object"): cached already, so its four readers start no download.
    for piece in 0..pieces {
        let want = if piece == 0 { 0 } else { 1 };
        let before = ds.engine_stats().jobs_started;
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for t in 0..4usize {
                let (ds, barrier, data) = (&ds, &barrier, &fx.data);
                s.spawn(move || {
                    let off = piece * MIB + t * 1000;
                    let len = 5000.min(FILE_LEN - off);
                    let mut buf = vec![0u8; len];
                    barrier.wait();
                    let n = ds.pread(&mut buf, off as u64).unwrap();
                    assert_eq!(n, len);
                    assert!(buf == data[off..off + len]);
                });
            }
        });
        let after = ds.engine_stats().jobs_started;
        assert_eq!(
            after - before,
            want,
            "piece {piece}: {} downloads",
            after - before
        );
    }
    // Cached now: no more downloads, and hits are counted.
    let stats = ds.engine_stats();
    let mut buf = vec![0u8; FILE_LEN];
    assert_eq!(ds.pread(&mut buf, 0).unwrap(), FILE_LEN);
    assert!(buf == fx.data);
    let again = ds.engine_stats();
    assert_eq!(again.jobs_started, stats.jobs_started);
    assert!(again.cache_hits >= stats.cache_hits + pieces as u64);
}
