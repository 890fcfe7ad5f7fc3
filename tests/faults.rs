//! Faults cost time, never bytes: each fault of the misbehaving origin alone,
//! then a soak of random reads against an origin that fails a quarter of its
//! requests, then torrent web seeds that corrupt data.
//!
//! The whole file runs in one process with one runtime configuration (short
//! timeouts, a small cache, no readahead so that scripts hit demand reads).

#[path = "support/faulty_origin.rs"]
mod faulty_origin;
#[path = "support/nginx.rs"]
mod nginx;

use std::sync::Once;
use std::time::{Duration, Instant};

use faulty_origin::{Fault, FaultyOrigin};
use gtio::{Config, Dataset};

const TIMEOUT_MS: u32 = 1000;
const RETRIES: u32 = 3;
const BLOCK: usize = 64 << 10;

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gtio::runtime::init(Config {
            timeout_ms: TIMEOUT_MS,
            retries: RETRIES,
            block_size: BLOCK as u32,
            cache_bytes: 4 << 20,
            readahead_max_bytes: 0,
            workers: 8,
            ..Config::default()
        })
        .expect("runtime starts");
    });
}

/// The longest a read may take: every attempt timing out, plus the longest
/// backoffs (5 s cap each), plus slack for a loaded machine.
fn read_deadline() -> Duration {
    Duration::from_millis(u64::from(TIMEOUT_MS) * u64::from(RETRIES + 1))
        + Duration::from_millis(100 + 200 + 400)
        + Duration::from_secs(5)
}

fn origin(len: usize, seed: u64) -> (FaultyOrigin, Vec<u8>) {
    let data = nginx::test_data(len, seed);
    let o = FaultyOrigin::single(data.clone());
    // Requests without a Range are served cleanly; faults hit the ranged
    // ones, the open's (a GET of the first block) included.
    o.only_ranged(true);
    (o, data)
}

fn read_at(ds: &Dataset, off: usize, len: usize) -> gtio::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = ds.pread(&mut buf, off as u64)?;
    buf.truncate(n);
    Ok(buf)
}

/// Open, apply `faults` to the next range requests, read one block-spanning
/// range, and return (result, expected bytes, range requests the origin
/// answered beyond the first, time taken). Counting at the origin, not in
/// the engine: ureq itself retries once on a reset pooled connection, and
/// the engine's counters are shared by every test in this process.
fn read_through(faults: Vec<Fault>) -> (gtio::Result<Vec<u8>>, Vec<u8>, usize, Duration) {
    init();
    let (o, data) = origin(3 * BLOCK + 123, 7);
    let ds = Dataset::open(&o.url("/obj.bin"), None).expect("open");
    // The open's request brought block 0 (cached); the read below fetches
    // block 1.
    let opened = o.request_count();
    let n_faults = faults.len();
    o.script(faults);
    let t = Instant::now();
    let got = read_at(&ds, BLOCK - 10, BLOCK + 20);
    let took = t.elapsed();
    let ranged: Vec<_> = o
        .requests()
        .into_iter()
        .skip(opened)
        .filter(|r| r.header("Range").is_some())
        .collect();
    let faulted = ranged.iter().filter(|r| r.fault.is_some()).count();
    assert_eq!(faulted, n_faults, "every scripted fault was served");
    (
        got,
        data[BLOCK - 10..2 * BLOCK + 10].to_vec(),
        ranged.len() - 1,
        took,
    )
}

#[test]
fn resets_before_the_reply_are_retried() {
    let (got, want, retries, _) = read_through(vec![Fault::ResetBeforeReply]);
    assert_eq!(got.unwrap(), want);
    assert!(retries >= 1);
}

#[test]
fn resets_mid_body_are_retried() {
    let (got, want, retries, _) = read_through(vec![Fault::ResetMidBody]);
    assert_eq!(got.unwrap(), want);
    assert!(retries >= 1);
}

#[test]
fn server_errors_are_retried() {
    let (got, want, retries, _) =
        read_through(vec![Fault::Status(503, None), Fault::Status(500, None)]);
    assert_eq!(got.unwrap(), want);
    assert!(retries >= 2);
}

#[test]
fn retry_after_is_honoured() {
    let (got, want, retries, took) = read_through(vec![Fault::Status(429, Some(1))]);
    assert_eq!(got.unwrap(), want);
    assert!(retries >= 1);
    // A lower bound is behaviour, not speed: we must have waited.
    assert!(took >= Duration::from_millis(990), "waited only {took:?}");
}

#[test]
fn truncated_bodies_are_retried() {
    let (got, want, retries, _) = read_through(vec![Fault::TruncateBody]);
    assert_eq!(got.unwrap(), want);
    assert!(retries >= 1);
}

#[test]
fn stalls_are_cut_by_the_timeout_and_retried() {
    let (got, want, retries, took) =
        read_through(vec![Fault::StallMidBody(Duration::from_secs(30))]);
    assert_eq!(got.unwrap(), want);
    assert!(retries >= 1);
    assert!(
        took < read_deadline(),
        "a 30 s stall must not hold the read: {took:?}"
    );
}

#[test]
fn a_lying_content_length_costs_time_not_bytes() {
    let (got, want, _, took) = read_through(vec![Fault::LieContentLength]);
    assert_eq!(got.unwrap(), want);
    assert!(took < read_deadline());
}

#[test]
fn a_server_that_ignores_ranges_is_reported_not_downloaded() {
    let (got, _, retries, _) = read_through(vec![Fault::IgnoreRange]);
    let e = got.unwrap_err();
    assert_eq!(e.errno(), libc::EOPNOTSUPP, "{e:?}");
    assert_eq!(retries, 0, "not worth a retry");
}

#[test]
fn an_object_that_changes_gives_estale_never_mixed_bytes() {
    init();
    let (o, data) = origin(4 * BLOCK, 11);
    let ds = Dataset::open(&o.url("/obj.bin"), None).unwrap();
    assert_eq!(read_at(&ds, 0, BLOCK).unwrap(), data[..BLOCK]);
    o.script(vec![Fault::ChangeEtag]);
    let e = read_at(&ds, 2 * BLOCK, BLOCK).unwrap_err();
    assert_eq!(e.errno(), libc::ESTALE, "{e:?}");
    // The cached block is still the old version, never the new one.
    assert_eq!(read_at(&ds, 0, BLOCK).unwrap(), data[..BLOCK]);
    // Reopening sees the new version whole.
    let ds2 = Dataset::open(&o.url("/obj.bin"), None).unwrap();
    let new = read_at(&ds2, 2 * BLOCK, BLOCK).unwrap();
    assert!(new
        .iter()
        .zip(&data[2 * BLOCK..3 * BLOCK])
        .all(|(a, b)| *a == !*b));
}

#[test]
fn persistent_failure_ends_in_a_clear_error_within_the_bound() {
    init();
    let (o, _) = origin(2 * BLOCK, 13);
    let ds = Dataset::open(&o.url("/obj.bin"), None).unwrap();
    o.set_rate(1.0, vec![Fault::Status(500, None)], 1);
    let before = o.request_count();
    let t = Instant::now();
    // Block 1: block 0 came with the open and is cached.
    let e = read_at(&ds, BLOCK, 100).unwrap_err();
    assert!(t.elapsed() < read_deadline());
    assert_eq!(e.errno(), libc::EIO);
    assert_eq!(e.http_status(), 500);
    assert!(e.message().contains("HTTP 500"), "{e}");
    assert_eq!(
        o.request_count() - before,
        RETRIES as usize + 1,
        "one try plus retries"
    );
}

#[test]
fn redirects_to_other_schemes_are_refused() {
    init();
    let (o, _) = origin(1000, 17);
    o.only_ranged(false);
    o.redirect("/obj.bin", Some(("file:///etc/passwd".into(), 302)));
    let e = Dataset::open(&o.url("/obj.bin"), None).unwrap_err();
    assert_eq!(e.errno(), libc::EACCES, "{e:?}");
    assert!(e.message().contains("refused redirect"), "{e}");
}

#[test]
fn the_credential_goes_to_its_host_only() {
    init();
    let data = nginx::test_data(5000, 19);
    let other = FaultyOrigin::single(data.clone());
    let origin = FaultyOrigin::single(data.clone());
    origin.redirect("/away", Some((other.url("/obj.bin"), 302)));
    origin.redirect("/here", Some((origin.url("/obj.bin"), 307)));

    let ds = Dataset::open(&origin.url("/here"), Some("tok-123")).unwrap();
    assert_eq!(read_at(&ds, 0, 5000).unwrap(), data);
    let sent: Vec<_> = origin.requests();
    assert!(sent
        .iter()
        .all(|r| r.header("Authorization") == Some("Bearer tok-123")));

    let ds = Dataset::open(&origin.url("/away"), Some("tok-123")).unwrap();
    assert_eq!(read_at(&ds, 0, 5000).unwrap(), data);
    let reqs = other.requests();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter().all(|r| r.header("Authorization").is_none()),
        "credential leaked to another host: {reqs:?}"
    );
}

#[test]
fn the_credential_never_appears_in_errors() {
    init();
    let secret = "SUPER-SECRET-token-4242";
    let (o, _) = origin(3 * BLOCK, 23);
    // Fail open in several ways, and reads in several others.
    let mut messages = Vec::new();
    o.only_ranged(false);
    for status in [401u16, 403, 404, 500] {
        o.script(vec![Fault::Status(status, None); 8]);
        let e = Dataset::open(&o.url(&format!("/x?sig={secret}")), Some(secret)).unwrap_err();
        messages.push(format!("{e} {e:?}"));
    }
    // The opens above each took one fault: drop the rest.
    o.clear_script();
    o.only_ranged(true);
    let ds = Dataset::open(&o.url(&format!("/x?sig={secret}")), Some(secret)).unwrap();
    messages.push(format!("{ds:?}"));
    o.set_rate(1.0, vec![Fault::ResetBeforeReply], 3);
    // Not block 0, which came with the open and is cached.
    let e = read_at(&ds, BLOCK, 10).unwrap_err();
    messages.push(format!("{e} {e:?}"));
    o.set_rate(1.0, vec![Fault::ChangeEtag], 3);
    let e = read_at(&ds, 2 * BLOCK, 10).unwrap_err();
    messages.push(format!("{e} {e:?}"));
    let e = Dataset::open("http://127.0.0.1:9/nothing-listens", Some(secret)).unwrap_err();
    messages.push(format!("{e} {e:?}"));
    for m in &messages {
        assert!(!m.contains(secret), "credential in a message: {m}");
        assert!(!m.contains("SUPER-SECRET"), "credential in a message: {m}");
    }
    assert!(
        messages.iter().any(|m| m.contains("?…")),
        "URLs are shown, redacted"
    );
}

#[test]
fn soak_random_reads_against_a_failing_origin_never_return_wrong_bytes() {
    init();
    let (o, data) = origin(6 << 20, 29);
    let ds = Dataset::open(&o.url("/soak.bin"), None).unwrap();
    o.set_rate(
        0.25,
        vec![
            Fault::ResetBeforeReply,
            Fault::ResetMidBody,
            Fault::Status(503, None),
            Fault::Status(500, None),
            Fault::TruncateBody,
        ],
        0x5eed,
    );
    let deadline = read_deadline();
    let (ok, failed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let ds = &ds;
                let data = &data;
                s.spawn(move || {
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                    let mut next = move || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    let (mut ok, mut failed) = (0, 0);
                    for _ in 0..400 {
                        let off = (next() % data.len() as u64) as usize;
                        let len = 1 + (next() % (3 * BLOCK as u64)) as usize;
                        let t0 = Instant::now();
                        match read_at(ds, off, len) {
                            Ok(got) => {
                                let end = (off + len).min(data.len());
                                assert_eq!(got.len(), end - off);
                                assert!(got == data[off..end], "WRONG BYTES at {off}+{len}");
                                ok += 1;
                            }
                            Err(e) => {
                                assert!(
                                    [
                                        libc::EIO,
                                        libc::ETIMEDOUT,
                                        libc::ECONNRESET,
                                        libc::ECONNREFUSED
                                    ]
                                    .contains(&e.errno()),
                                    "unexpected error {e:?}"
                                );
                                assert!(!e.message().is_empty());
                                failed += 1;
                            }
                        }
                        assert!(t0.elapsed() < deadline, "a read took {:?}", t0.elapsed());
                    }
                    (ok, failed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    o.clear_rate();
    eprintln!("soak: {ok} reads correct, {failed} failed cleanly, 0 wrong");
    assert_eq!(ok + failed, 3200);
    // With 3 retries at 25 % failure, nearly every read must succeed.
    assert!(ok >= 3100, "too many failures: {failed}");
}

/// A multi-file torrent served by two origins: one that corrupts bytes, one
/// that is clean.
/// Files of a dataset: (path inside it, bytes).
type NamedFiles = Vec<(String, Vec<u8>)>;

fn torrent_fixture(seed: u64) -> (nginx::TempDir, Vec<u8>, NamedFiles) {
    let dir = nginx::tempdir();
    let root = dir.join("ds");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let files = vec![
        ("a.bin".to_string(), nginx::test_data(300_000, seed)),
        ("sub/b.bin".to_string(), nginx::test_data(123_457, seed + 1)),
        (
            "sub/c d.bin".to_string(),
            nginx::test_data(200_003, seed + 2),
        ),
    ];
    for (name, bytes) in &files {
        std::fs::write(root.join(name), bytes).unwrap();
    }
    let stream: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    (dir, stream, files)
}

fn torrent_with_seeds(dir: &std::path::Path, seeds: &[String]) -> Vec<u8> {
    gtio::dataset::create::create_torrent(&dir.join("ds"), seeds, Some(15)).unwrap()
}

fn serve_files(files: &[(String, Vec<u8>)]) -> FaultyOrigin {
    FaultyOrigin::start(
        files
            .iter()
            .map(|(n, b)| (format!("/ds/{}", n.replace(' ', "%20")), b.clone()))
            .collect(),
    )
}

#[test]
fn torrent_corrupt_seed_beside_a_good_one_reads_correctly() {
    init();
    let (dir, stream, files) = torrent_fixture(100);
    let bad = serve_files(&files);
    let good = serve_files(&files);
    bad.set_rate(1.0, vec![Fault::CorruptBytes], 5);
    let meta = torrent_with_seeds(&dir, &[bad.url("/"), good.url("/")]);
    let ds = Dataset::open_gto(&meta, None).unwrap();
    let mut rng = 77u64;
    for _ in 0..200 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (rng >> 33) as usize % stream.len();
        let len = 1 + (rng >> 13) as usize % 70_000;
        let got = read_at(&ds, off, len).expect("every read succeeds");
        let end = (off + len).min(stream.len());
        assert!(got == stream[off..end], "wrong bytes at {off}");
    }
    assert!(bad.request_count() >= 1, "the corrupt seed was tried");
}

#[test]
fn torrent_lone_corrupt_seed_fails_only_its_piece() {
    init();
    let (dir, stream, files) = torrent_fixture(200);
    let seed = serve_files(&files);
    let meta = torrent_with_seeds(&dir, &[seed.url("/")]);
    let ds = Dataset::open_gto(&meta, None).unwrap();
    // Corrupt only the next request: piece 3 (32 KiB pieces).
    let piece = 32 << 10;
    seed.script(vec![Fault::CorruptBytes]);
    let e = read_at(&ds, 3 * piece + 5, 10).unwrap_err();
    assert_eq!(e.errno(), libc::EIO);
    assert!(e.message().contains("piece 3"), "{e}");
    // Everything else still reads, byte for byte.
    let got = read_at(&ds, 0, 3 * piece).unwrap();
    assert!(got == stream[..3 * piece]);
    let got = read_at(&ds, 4 * piece, stream.len()).unwrap();
    assert!(got == stream[4 * piece..]);
}

#[test]
fn torrent_soak_with_a_flaky_corrupting_seed() {
    init();
    let (dir, stream, files) = torrent_fixture(300);
    let flaky = serve_files(&files);
    let good = serve_files(&files);
    flaky.set_rate(
        0.25,
        vec![
            Fault::CorruptBytes,
            Fault::ResetMidBody,
            Fault::Status(503, None),
        ],
        9,
    );
    good.set_rate(
        0.1,
        vec![Fault::ResetBeforeReply, Fault::Status(503, None)],
        10,
    );
    let meta = torrent_with_seeds(&dir, &[flaky.url("/"), good.url("/")]);
    let ds = Dataset::open_gto(&meta, None).unwrap();
    let failures = std::thread::scope(|s| {
        (0..8u64)
            .map(|t| {
                let (ds, stream) = (&ds, &stream);
                s.spawn(move || {
                    let mut rng = 1234 + t;
                    let mut failed = 0;
                    for _ in 0..150 {
                        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                        let off = (rng >> 33) as usize % stream.len();
                        let len = 1 + (rng >> 11) as usize % 50_000;
                        match read_at(ds, off, len) {
                            Ok(got) => {
                                let end = (off + len).min(stream.len());
                                assert!(got == stream[off..end], "WRONG BYTES at {off}");
                            }
                            Err(e) => {
                                assert_eq!(e.errno(), libc::EIO, "{e:?}");
                                failed += 1;
                            }
                        }
                    }
                    failed
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert!(failures <= 12, "{failures} of 1200 reads failed");
}
