//! Store hits read straight into the reader's buffer (`handle::stored`,
//! docs/store.md "Speed"): a synchronous read of whole blocks the store has
//! is served on the reader's thread, with no job and no origin request, and
//! a damaged piece file is never served that way (the read falls back to
//! the engine's path, which deletes the file and fetches the block again).
//!
//! Each test runs in a process of its own (`isolate`): the runtime, and so
//! the store's setting, is process-wide, and each test restarts it
//! (`runtime::fini`) to read its store as a second process would.

mod abi_common;
#[path = "support/faulty_origin.rs"]
mod faulty_origin;

use std::path::{Path, PathBuf};

use abi_common::isolate;
use faulty_origin::FaultyOrigin;
use gtio::engine::stats::SourceKind;
use gtio::Dataset;

const BLOCK: usize = 64 << 10;
/// 32 whole blocks and a short last one: every block, the short one too,
/// is a whole piece of its own.
const LEN: usize = 32 * BLOCK + 1000;
const PIECES: u64 = 33;

/// The parent's store directory for a test; the child, whose pid differs,
/// takes it from `GTIO_CACHE_DIR`.
fn cache_dir(tag: &str) -> PathBuf {
    match std::env::var_os("GTIO_CACHE_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            std::env::temp_dir().join(format!("gtio-store-direct-{tag}-{}", std::process::id()))
        }
    }
}

/// Pseudo-random bytes with no repeating block.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Bytes the origin sent in answer to range requests, but for each open's
/// one byte (with a store, an open asks for `bytes=0-0`: docs/http.md).
fn origin_bytes(origin: &FaultyOrigin) -> u64 {
    origin
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .filter_map(|r| r.header("Range"))
        .filter(|v| *v != "bytes=0-0")
        .filter_map(|v| {
            let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
            Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1)
        })
        .sum()
}

/// Read the whole object with synchronous 1 MiB `pread`s (block-aligned,
/// so every slice is a whole block), in a runtime of its own: the
/// runtime is stopped afterwards, which writes every fetched block to the
/// store. Returns the bytes and the dataset's counters.
fn read_all(url: &str) -> (Vec<u8>, gtio::engine::stats::Snapshot, gtio::engine::Stats) {
    let ds = Dataset::open(url, None).expect("open");
    let mut out = vec![0u8; LEN];
    let mut at = 0;
    while at < LEN {
        let end = (at + (1 << 20)).min(LEN);
        let n = ds.pread(&mut out[at..end], at as u64).expect("pread");
        assert!(n > 0, "short read at {at}");
        at += n;
    }
    let (stats, engine) = (ds.stats(), ds.engine_stats());
    drop(ds);
    assert!(gtio::runtime::fini(), "a runtime ran");
    (out, stats, engine)
}

fn piece_files(cache: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for shard in std::fs::read_dir(cache.join("gtio-store-v1/pieces")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            v.push(f.unwrap().path());
        }
    }
    v.sort();
    v
}

#[test]
fn a_stored_block_is_read_on_the_readers_thread_without_the_origin() {
    let dir = cache_dir("hit");
    let dir_s = dir.to_str().unwrap().to_string();
    if !isolate(
        "a_stored_block_is_read_on_the_readers_thread_without_the_origin",
        &[("GTIO_CACHE_DIR", &dir_s)],
    ) {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = data(LEN, 11);
    let origin = FaultyOrigin::start(vec![("/obj.bin".into(), bytes.clone())]);
    let url = origin.url("/obj.bin");
    let (first, _, _) = read_all(&url);
    assert!(first == bytes);
    assert_eq!(
        piece_files(&dir).len(),
        PIECES as usize,
        "every block stored"
    );

    let before = origin_bytes(&origin);
    let (second, stats, engine) = read_all(&url);
    assert!(second == bytes, "wrong bytes from the store");
    assert_eq!(
        origin_bytes(&origin),
        before,
        "the origin was asked for data"
    );
    // Every block came from the store, counted as the engine's path counts
    // a store hit, and none through a job: the reader's thread read them.
    assert_eq!(engine.store_hits, PIECES);
    assert_eq!(engine.jobs_started, 0, "a worker served a stored block");
    assert_eq!(stats.fetched(SourceKind::Store), LEN as u64);
    assert_eq!(stats.fetched(SourceKind::Http), 0);
    assert_eq!(stats.cache_misses, PIECES);
    assert_eq!(stats.bytes_delivered, LEN as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_block_file_is_refetched_not_served_by_the_direct_path() {
    let dir = cache_dir("damaged");
    let dir_s = dir.to_str().unwrap().to_string();
    if !isolate(
        "a_damaged_block_file_is_refetched_not_served_by_the_direct_path",
        &[("GTIO_CACHE_DIR", &dir_s)],
    ) {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = data(LEN, 12);
    let origin = FaultyOrigin::start(vec![("/obj.bin".into(), bytes.clone())]);
    let url = origin.url("/obj.bin");
    assert!(read_all(&url).0 == bytes);
    let files = piece_files(&dir);
    assert_eq!(files.len(), PIECES as usize);
    // One bit flipped in block 3's data (the size and trailer still fit:
    // only the CRC-32C can tell), and block 20's file cut short. Each is
    // the first damaged block of its 1 MiB read, so the direct path tries
    // it (it stops trying at a read's first failure).
    let block_file = |i: usize| {
        let want = &bytes[i * BLOCK..i * BLOCK + 64];
        files
            .iter()
            .find(|f| std::fs::read(f).unwrap().starts_with(want))
            .expect("a file per block")
            .clone()
    };
    let (flipped, cut) = (block_file(3), block_file(20));
    let mut b = std::fs::read(&flipped).unwrap();
    b[1234] ^= 0x01;
    std::fs::write(&flipped, &b).unwrap();
    let b = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &b[..b.len() - 100]).unwrap();

    let before = origin_bytes(&origin);
    let (got, stats, engine) = read_all(&url);
    assert!(got == bytes, "a damaged block was served");
    assert_eq!(
        origin_bytes(&origin) - before,
        2 * BLOCK as u64,
        "exactly the two damaged blocks are fetched again"
    );
    assert_eq!(engine.store_hits, PIECES - 2);
    assert_eq!(stats.fetched(SourceKind::Store), (LEN - 2 * BLOCK) as u64);
    // Good copies replaced them: a third reader needs the origin no more.
    let before = origin_bytes(&origin);
    let (third, _, engine) = read_all(&url);
    assert!(third == bytes);
    assert_eq!(origin_bytes(&origin), before);
    assert_eq!(engine.store_hits, PIECES);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_small_read_of_a_stored_block_asks_the_store_not_the_origin() {
    let dir = cache_dir("small");
    let dir_s = dir.to_str().unwrap().to_string();
    if !isolate(
        "a_small_read_of_a_stored_block_asks_the_store_not_the_origin",
        &[("GTIO_CACHE_DIR", &dir_s)],
    ) {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = data(LEN, 13);
    let origin = FaultyOrigin::start(vec![("/obj.bin".into(), bytes.clone())]);
    let url = origin.url("/obj.bin");
    assert!(read_all(&url).0 == bytes);
    // A cold isolated 4 KiB read would be one right-sized range request
    // (docs/http.md): the block is stored, so it is loaded from the store.
    let before = origin_bytes(&origin);
    let ds = Dataset::open(&url, None).expect("open");
    let at = 5 * BLOCK + 100;
    let mut buf = vec![0u8; 4096];
    assert_eq!(ds.pread(&mut buf, at as u64).unwrap(), 4096);
    assert!(buf[..] == bytes[at..at + 4096]);
    assert_eq!(origin_bytes(&origin), before, "the origin was asked");
    assert_eq!(ds.engine_stats().store_hits, 1);
    drop(ds);
    gtio::runtime::fini();
    let _ = std::fs::remove_dir_all(&dir);
}
