//! Statistics (`gtio_stats_json`, docs/design.md "Statistics"): counts checked
//! against a scripted read sequence and against what an origin served, the
//! `snprintf` length contract, and argument errors.
//!
//! Tests that count run in a child process of their own (`isolate`), so
//! the process-wide figures are theirs alone.

mod abi_common;
#[path = "support/faulty_origin.rs"]
mod faulty_origin;

use std::ffi::c_char;
use std::time::Instant;

use abi_common::*;
use faulty_origin::{Fault, FaultyOrigin};
use gtio::ffi::*;

const BLOCK: u64 = 64 << 10;

/// The JSON of `gtio_stats_json(h)`, through the two-call length protocol.
fn stats_json(h: *mut GTIO) -> String {
    let mut err = new_err();
    let n = gtio_stats_json(h, std::ptr::null_mut(), 0, &mut err);
    assert!(n > 0, "gtio_stats_json: {}", msg(&err));
    let mut buf = vec![0u8; n as usize + 1];
    let m = gtio_stats_json(h, buf.as_mut_ptr().cast(), buf.len(), &mut err);
    // It may have changed in between (a download finished): what the
    // second call says is exact; if it no longer fits, ask again.
    assert!(m > 0, "gtio_stats_json: {}", msg(&err));
    if m as usize >= buf.len() {
        return stats_json(h);
    }
    assert_eq!(buf[m as usize], 0, "NUL-terminated");
    String::from_utf8(buf[..m as usize].to_vec()).expect("UTF-8")
}

/// The number after `"key":` in `json`, below the object `within` if given.
fn num(json: &str, within: Option<&str>, key: &str) -> u64 {
    let base = match within {
        Some(obj) => {
            let at = json
                .find(&format!("\"{obj}\":{{"))
                .unwrap_or_else(|| panic!("no {obj} in {json}"));
            &json[at..]
        }
        None => json,
    };
    let pat = format!("\"{key}\":");
    let at = base
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let digits: String = base[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

/// Sum of a histogram's buckets.
fn hist_total(json: &str, name: &str) -> u64 {
    let at = json.find(&format!("\"{name}\":{{")).unwrap();
    let body = &json[at..];
    let body = &body[..body.find('}').unwrap()];
    body.split(',')
        .map(|kv| kv.rsplit(':').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn local_object(len: usize) -> (nginx::TempDir, Vec<u8>, String) {
    let dir = nginx::tempdir();
    let data = test_bytes(len, 11);
    let path = dir.join("obj.bin");
    std::fs::write(&path, &data).unwrap();
    let uri = format!("file://{}", path.display());
    (dir, data, uri)
}

fn pread_at(h: *mut GTIO, len: usize, off: u64) -> usize {
    let mut buf = vec![0u8; len];
    let mut err = new_err();
    let n = gtio_pread(h, buf.as_mut_ptr().cast(), len, off, &mut err);
    assert!(n >= 0, "gtio_pread: {}", msg(&err));
    n as usize
}

#[test]
fn scripted_reads_give_exact_hits_misses_and_bytes() {
    if !isolate("scripted_reads_give_exact_hits_misses_and_bytes", &[]) {
        return;
    }
    // No readahead: every download below is a demand read of this script.
    init(|c| {
        c.readahead_max_bytes = 0;
        c.block_size = BLOCK as u32;
    });
    let (_dir, _data, uri) = local_object(40 * BLOCK as usize);
    let h = open(&uri, None);
    let b = BLOCK as usize;
    // (len, offset) -> slices: hit/miss so far
    let script = [
        (100, 0),            // piece 0: miss
        (100, 0),            // piece 0: hit
        (20, BLOCK - 10),    // piece 0 hit, piece 1 miss
        (3 * b, 0),          // pieces 0, 1 hit; piece 2 miss
        (b, 10 * BLOCK),     // piece 10: miss
        (7, 40 * BLOCK + 5), // past the end: nothing
    ];
    let mut delivered = 0;
    for (len, off) in script {
        delivered += pread_at(h, len, off);
    }
    assert_eq!(delivered, 100 + 100 + 20 + 3 * b + b);
    let json = stats_json(h);
    assert_eq!(num(&json, None, "cache_hits"), 1 + 1 + 2, "{json}");
    assert_eq!(num(&json, None, "cache_misses"), 1 + 1 + 1 + 1, "{json}");
    assert_eq!(num(&json, None, "bytes_delivered"), delivered as u64);
    assert_eq!(num(&json, Some("bytes_fetched"), "file"), 4 * BLOCK);
    assert_eq!(num(&json, Some("bytes_fetched"), "http"), 0);
    assert_eq!(
        num(&json, None, "requests"),
        4,
        "one fetch per missed piece"
    );
    assert_eq!(num(&json, None, "errors"), 0);
    // A download is marked done just after its last piece wakes the read.
    wait_until(std::time::Duration::from_secs(5), || {
        num(&stats_json(h), None, "downloads_active") == 0
    });
    let json = stats_json(h);
    assert_eq!(json.matches("\"state\":\"completed\"").count(), 4, "{json}");
    // Every read that returned bytes is in read_us; every fetch once in
    // first_byte_us.
    assert_eq!(hist_total(&json, "read_us"), 5, "{json}");
    assert_eq!(hist_total(&json, "first_byte_us"), 4, "{json}");
    assert!(num(&json, None, "cache_bytes_used") >= 4 * BLOCK);

    // The Rust API agrees.
    let mut err = new_err();
    let e = gtio_pread(h, std::ptr::null_mut(), 10, 0, &mut err);
    assert_eq!((e, err.code), (-1, libc::EINVAL));
    close(h);

    // A second dataset, then the process: both datasets summed, the closed
    // one included.
    let h2 = open(&uri, None);
    pread_at(h2, 1000, 20 * BLOCK);
    let mine = stats_json(h2);
    assert_eq!(num(&mine, None, "cache_hits"), 0, "{mine}");
    assert_eq!(num(&mine, None, "cache_misses"), 1);
    assert_eq!(num(&mine, None, "bytes_delivered"), 1000);
    let all = stats_json(std::ptr::null_mut());
    assert_eq!(num(&all, None, "cache_hits"), 4, "{all}");
    assert_eq!(num(&all, None, "cache_misses"), 5, "{all}");
    assert_eq!(num(&all, None, "bytes_delivered"), delivered as u64 + 1000);
    assert_eq!(num(&all, Some("bytes_fetched"), "file"), 5 * BLOCK);
    close(h2);
}

#[test]
fn fetched_bytes_requests_and_retries_match_what_the_origin_served() {
    if !isolate(
        "fetched_bytes_requests_and_retries_match_what_the_origin_served",
        &[],
    ) {
        return;
    }
    init(|c| {
        c.readahead_max_bytes = 0;
        c.block_size = BLOCK as u32;
        c.retries = 2;
    });
    let data = test_bytes(3 << 20, 5);
    let origin = FaultyOrigin::single(data.clone());
    origin.only_ranged(true);
    let h = open(&origin.url("/obj.bin"), None);
    // The first ranged request fails with a 503: one retry.
    origin.script(vec![Fault::Status(503, None)]);
    let mut buf = vec![0u8; 1 << 20];
    let mut err = new_err();
    let n = gtio_pread(h, buf.as_mut_ptr().cast(), buf.len(), 100_000, &mut err);
    assert_eq!(n, 1 << 20, "{}", msg(&err));
    assert!(buf == data[100_000..100_000 + (1 << 20)]);
    // An async read too: its bytes count when it completes.
    let r = AsyncReq::new(5000, 2 << 20);
    assert_eq!(AsyncReq::submit(r, h, 0).0, 0);
    poll_until(std::time::Duration::from_secs(10), || {
        AsyncReq::calls(r) == 1
    });
    assert_eq!(AsyncReq::ret(r), 5000);

    // What the origin served: the Range of every successful ranged GET.
    let mut served = 0u64;
    let mut ranged = 0u64;
    for req in origin.requests() {
        let Some(range) = req.header("range") else {
            continue;
        };
        ranged += 1;
        if req.fault.is_some() {
            continue;
        }
        let (a, b) = range.trim_start_matches("bytes=").split_once('-').unwrap();
        served += b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1;
    }
    let json = stats_json(h);
    assert_eq!(num(&json, Some("bytes_fetched"), "http"), served, "{json}");
    assert_eq!(num(&json, None, "requests"), ranged, "{json}");
    assert_eq!(num(&json, None, "retries"), 1, "{json}");
    assert_eq!(num(&json, None, "bytes_delivered"), (1 << 20) + 5000);
    assert_eq!(hist_total(&json, "read_us"), 2, "{json}");
    close(h);
}

#[test]
fn failed_reads_count_as_errors() {
    if !isolate("failed_reads_count_as_errors", &[]) {
        return;
    }
    init(|c| {
        c.readahead_max_bytes = 0;
        c.retries = 0;
    });
    let origin = FaultyOrigin::single(test_bytes(1 << 20, 3));
    origin.only_ranged(true);
    let h = open(&origin.url("/x"), None);
    origin.script(vec![Fault::Status(500, None)]);
    // A whole block, so that the read is a download of the engine's (a
    // cold read of a few pages is one request of its own: docs/http.md);
    // block 1, since block 0 came with the open.
    let mut buf = vec![0u8; 64 << 10];
    let mut err = new_err();
    assert_eq!(
        gtio_pread(h, buf.as_mut_ptr().cast(), buf.len(), 64 << 10, &mut err),
        -1
    );
    let json = stats_json(h);
    assert_eq!(num(&json, None, "errors"), 1, "{json}");
    assert_eq!(num(&json, None, "downloads_failed"), 1, "{json}");
    assert_eq!(num(&json, None, "bytes_delivered"), 0, "{json}");
    assert!(json.contains("\"state\":\"failed\""), "{json}");
    close(h);
}

#[test]
fn length_contract_is_snprintf_like() {
    let (_dir, _data, uri) = local_object(100_000);
    let h = open(&uri, None);
    pread_at(h, 10, 0);
    let mut err = new_err();
    let n = gtio_stats_json(h, std::ptr::null_mut(), 0, &mut err);
    assert!(n > 100, "{n}");
    let n = n as usize;
    // Too small by one (no room for the NUL) down to 1: nothing written,
    // the length needed returned.
    for len in [n, n - 1, 10, 1] {
        let mut buf = vec![0xAAu8; n + 8];
        let got = gtio_stats_json(h, buf.as_mut_ptr().cast(), len, &mut err);
        assert_eq!(got as usize, n, "len {len}");
        assert!(buf.iter().all(|&b| b == 0xAA), "len {len}: buffer written");
    }
    // Exactly enough, and more: the object and its NUL, nothing past it.
    for extra in [1, 8] {
        let mut buf = vec![0xAAu8; n + 8];
        let got = gtio_stats_json(h, buf.as_mut_ptr().cast(), n + extra, &mut err);
        assert_eq!(got as usize, n);
        assert_eq!(buf[n], 0);
        assert!(buf[n + 1..].iter().all(|&b| b == 0xAA));
        let s = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(s.starts_with('{') && s.ends_with('}'), "{s}");
        for key in [
            "cache_hits",
            "cache_misses",
            "bytes_delivered",
            "bytes_fetched",
            "bytes_redundant",
            "bytes_hash_failed",
            "requests",
            "retries",
            "errors",
            "downloads_active",
            "peers_connected",
            "cache_bytes_used",
            "store_bytes_used",
            "first_byte_us",
            "read_us",
        ] {
            assert!(s.contains(&format!("\"{key}\":")), "{key} missing: {s}");
        }
        for kind in ["http", "webseed", "peer", "store"] {
            num(s, Some("bytes_fetched"), kind);
        }
    }
    close(h);
}

#[test]
fn bad_arguments_are_errors_not_crashes() {
    let (_dir, _data, uri) = local_object(1000);
    let h = open(&uri, None);
    let mut err = new_err();
    // NULL buffer with a length.
    assert_eq!(gtio_stats_json(h, std::ptr::null_mut(), 16, &mut err), -1);
    assert_eq!(err.code, libc::EINVAL, "{}", msg(&err));
    // err may be NULL.
    assert_eq!(
        gtio_stats_json(h, std::ptr::null_mut(), 16, std::ptr::null_mut()),
        -1
    );
    close(h);
    // A closed handle, and one that never was.
    let mut buf = [0 as c_char; 4096];
    let mut err = new_err();
    assert_eq!(
        gtio_stats_json(h, buf.as_mut_ptr(), buf.len(), &mut err),
        -1
    );
    assert_eq!(err.code, libc::EBADF);
    let bogus = 0x1234_5678usize as *mut GTIO;
    let mut err = new_err();
    assert_eq!(
        gtio_stats_json(bogus, buf.as_mut_ptr(), buf.len(), &mut err),
        -1
    );
    assert_eq!(err.code, libc::EBADF);
    // Process-wide works with no handle at all.
    assert!(gtio_stats_json(std::ptr::null_mut(), buf.as_mut_ptr(), buf.len(), &mut err) > 0);
}

/// Not a test: ns per 4 KiB cache-hit pread, one thread (run with
/// `--ignored --nocapture`); the "cache-hit path loses <= 2 %".
#[test]
#[ignore]
fn cache_hit_ns() {
    let (_dir, _data, uri) = local_object(16 << 20);
    let ds = gtio::Dataset::open(&uri, None).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for off in (0..16u64 << 20).step_by(1 << 20) {
        ds.pread(&mut buf, off).unwrap();
    }
    let mut rng = Rng(88172645463325252);
    let n = 2_000_000;
    let offs: Vec<u64> = (0..n)
        .map(|_| rng.below((16 << 20) / 4096 - 1) * 4096)
        .collect();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for &o in &offs {
            ds.pread(&mut buf[..4096], o).unwrap();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    println!("cache hit: {best:.1} ns per 4 KiB pread (best of 5)");
}

#[test]
fn a_reopened_object_hits_the_cache_under_its_stable_key() {
    if !isolate("a_reopened_object_hits_the_cache_under_its_stable_key", &[]) {
        return;
    }
    init(|c| c.readahead_max_bytes = 0);
    let origin = FaultyOrigin::single(test_bytes(1 << 20, 9));
    assert!(origin.etag("/").is_some(), "the origin sends a validator");
    // Re-signed URLs name the same object: signature parameters are not
    // part of the key.
    // Reads of most of block 1, which are cached whole (a cold read of a
    // few pages is not: docs/http.md, "Right-sized requests"). Block 0
    // comes with every open: each open is one request, the first block's
    // bytes redundant when they are cached already under the same key.
    let at = (64 << 10) + 5000;
    let h = open(&origin.url("/o.bin?part=1&X-Amz-Signature=aaaa"), None);
    pread_at(h, 40_000, at);
    assert_eq!(num(&stats_json(h), None, "requests"), 2);
    close(h);
    let h = open(&origin.url("/o.bin?part=1&X-Amz-Signature=bbbb"), None);
    pread_at(h, 40_000, at);
    let json = stats_json(h);
    assert_eq!(num(&json, None, "cache_hits"), 1, "{json}");
    assert_eq!(num(&json, None, "requests"), 1, "{json}");
    assert_eq!(num(&json, None, "bytes_redundant"), 64 << 10, "{json}");
    close(h);
    // Another selecting parameter is another object.
    let h = open(&origin.url("/o.bin?part=2&X-Amz-Signature=bbbb"), None);
    pread_at(h, 40_000, at);
    assert_eq!(num(&stats_json(h), None, "cache_misses"), 1);
    close(h);
}

#[test]
fn hash_failures_and_web_seed_bytes_are_counted() {
    if !isolate("hash_failures_and_web_seed_bytes_are_counted", &[]) {
        return;
    }
    init(|c| c.readahead_max_bytes = 0);
    let dir = nginx::tempdir();
    let piece = 1usize << 15;
    let data = test_bytes(8 * piece, 21);
    std::fs::write(dir.join("t.bin"), &data).unwrap();
    // The only web seed serves a copy with one byte of piece 5 flipped.
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let mut corrupt = data.clone();
    corrupt[5 * piece + 100] ^= 1;
    std::fs::write(bad.join("t.bin"), &corrupt).unwrap();
    let out = dir.join("t.torrent");
    gtio_cli::tools::create::create(
        &dir.join("t.bin"),
        &[format!("file://{}/", bad.display())],
        &[],
        Some(15),
        &out,
    )
    .unwrap();
    let h = open(&format!("file://{}", out.display()), None);
    let mut buf = vec![0u8; data.len()];
    let mut err = new_err();
    assert_eq!(
        gtio_pread(h, buf.as_mut_ptr().cast(), buf.len(), 0, &mut err),
        -1
    );
    assert_eq!(err.code, libc::EIO, "{}", msg(&err));
    // Counted before the read is told.
    let json = stats_json(h);
    assert_eq!(
        num(&json, None, "bytes_hash_failed"),
        piece as u64,
        "{json}"
    );
    // The run's later pieces may still be arriving.
    wait_until(std::time::Duration::from_secs(5), || {
        num(&stats_json(h), None, "downloads_active") == 0
    });
    let json = stats_json(h);
    assert_eq!(
        num(&json, Some("bytes_fetched"), "webseed"),
        7 * piece as u64
    );
    assert_eq!(num(&json, Some("bytes_fetched"), "file"), 0);
    assert_eq!(num(&json, None, "errors"), 1);
    close(h);
}

#[test]
fn an_open_is_one_request_that_caches_the_first_block() {
    if !isolate("an_open_is_one_request_that_caches_the_first_block", &[]) {
        return;
    }
    init(|c| c.readahead_max_bytes = 0);
    let data = test_bytes(1 << 20, 31);
    let origin = FaultyOrigin::single(data.clone());
    let h = open(&origin.url("/o.bin"), None);
    let sent = origin.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].header("range"), Some("bytes=0-65535"));
    let json = stats_json(h);
    assert_eq!(num(&json, None, "requests"), 1, "{json}");
    assert_eq!(num(&json, Some("bytes_fetched"), "http"), BLOCK, "{json}");
    // The first block is read from the cache: no request, every byte right.
    let mut buf = vec![0u8; BLOCK as usize];
    let mut err = new_err();
    let n = gtio_pread(h, buf.as_mut_ptr().cast(), buf.len(), 0, &mut err);
    assert_eq!(n, BLOCK as i64, "{}", msg(&err));
    assert!(buf == data[..BLOCK as usize]);
    assert_eq!(origin.request_count(), 1);
    assert_eq!(num(&stats_json(h), None, "cache_hits"), 1);
    close(h);
}

#[test]
fn an_open_with_blocks_over_1_mib_asks_for_one_byte() {
    if !isolate("an_open_with_blocks_over_1_mib_asks_for_one_byte", &[]) {
        return;
    }
    init(|c| {
        c.readahead_max_bytes = 0;
        c.block_size = 2 << 20;
    });
    let origin = FaultyOrigin::single(test_bytes(5 << 20, 32));
    let h = open(&origin.url("/o.bin"), None);
    let sent = origin.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].header("range"), Some("bytes=0-0"));
    let mut err = new_err();
    assert_eq!(gtio_size(h, &mut err), 5 << 20);
    // Nothing was kept: the first read of block 0 is a request of its own.
    assert_eq!(pread_at(h, 100, 0), 100);
    assert_eq!(origin.request_count(), 2);
    close(h);
}
