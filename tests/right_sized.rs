//! Right-sized requests (`docs/http.md`): what the origin sees for cold
//! random reads, repeated reads and sequential reads. Every read's bytes are
//! checked; the origin records each request's `Range`.

#[path = "support/faulty_origin.rs"]
mod faulty_origin;
#[path = "support/nginx.rs"]
mod nginx;

use std::sync::Once;

use faulty_origin::{Fault, FaultyOrigin};
use gtio::{Config, Dataset};

const BLOCK: usize = 64 << 10;
const SIZE: usize = 8 << 20;

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gtio::runtime::init(Config {
            block_size: BLOCK as u32,
            timeout_ms: 2000,
            ..Config::default()
        })
        .expect("runtime starts");
    });
}

fn origin(seed: u64) -> (FaultyOrigin, Vec<u8>) {
    let data = nginx::test_data(SIZE, seed);
    let o = FaultyOrigin::single(data.clone());
    (o, data)
}

/// The byte ranges of the range requests seen so far, in order, after the
/// open's (a GET of the first block, which the cache keeps).
fn ranges(o: &FaultyOrigin) -> Vec<(usize, usize)> {
    let all = o.requests();
    assert_eq!(
        all.first().and_then(|r| r.header("range")),
        Some(format!("bytes=0-{}", BLOCK - 1).as_str()),
        "an open is one GET of the first block"
    );
    all[1..]
        .iter()
        .filter_map(|r| {
            let v = r.header("range")?.strip_prefix("bytes=")?;
            let (a, b) = v.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

fn check(ds: &Dataset, data: &[u8], off: usize, len: usize) {
    let mut buf = vec![0u8; len];
    assert_eq!(ds.pread(&mut buf, off as u64).unwrap(), len);
    assert!(buf == data[off..off + len], "bytes at {off}+{len}");
}

#[test]
fn a_cold_random_read_fetches_its_pages_not_a_block() {
    init();
    let (o, data) = origin(1);
    let ds = Dataset::open(&o.url("/obj"), None).unwrap();
    // Far apart, so none continues the previous one; none in block 0,
    // which came with the open.
    let offsets = [3 << 20, BLOCK + 17, 6 << 20, (1 << 20) + 5000, 7_777_777];
    for &off in &offsets {
        check(&ds, &data, off, 3000);
    }
    let got = ranges(&o);
    let want: Vec<(usize, usize)> = offsets
        .iter()
        .map(|&off| {
            let a = off / 4096 * 4096;
            let b = (off + 3000).div_ceil(4096) * 4096;
            (a, b - 1)
        })
        .collect();
    assert_eq!(got, want, "one page-aligned request per cold read");
    // The open's request and its block count too.
    let st = ds.stats();
    assert_eq!(st.requests, offsets.len() as u64 + 1);
    assert!(
        st.fetched_total() <= (BLOCK + 2 * 4096 * offsets.len()) as u64,
        "{} bytes fetched for {} reads of 3000",
        st.fetched_total(),
        offsets.len()
    );
}

#[test]
fn a_block_read_twice_is_fetched_whole_then_cached() {
    init();
    let (o, data) = origin(2);
    let ds = Dataset::open(&o.url("/obj"), None).unwrap();
    let off = 5 * BLOCK + 100;
    check(&ds, &data, off, 4096);
    // Elsewhere, so that coming back is not a continuation.
    check(&ds, &data, 100 * BLOCK, 4096);
    check(&ds, &data, off + 8192, 4096);
    let block5 = (5 * BLOCK, 6 * BLOCK - 1);
    let got = ranges(&o);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[2], block5,
        "the second cold read of a block fetches the whole block"
    );
    let touches = |o: &FaultyOrigin| {
        ranges(o)
            .iter()
            .filter(|(a, b)| *a <= block5.1 && *b >= block5.0)
            .count()
    };
    let before = touches(&o);
    for k in 0..16 {
        check(&ds, &data, 5 * BLOCK + k * 4096, 4096);
    }
    assert_eq!(touches(&o), before, "the block is served from the cache");
}

#[test]
fn sequential_reads_grow_into_large_requests() {
    init();
    let (o, data) = origin(3);
    let ds = Dataset::open(&o.url("/obj"), None).unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = ds.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    assert!(all == data, "every byte right");
    let got = ranges(&o);
    // 8 MiB in 4 KiB reads: a handful of requests (readahead from 1 MiB,
    // doubling), never one per read or per block.
    assert!(got.len() <= 16, "{} requests: {got:?}", got.len());
    let largest = got.iter().map(|(a, b)| b - a + 1).max().unwrap();
    assert!(largest >= 1 << 20, "largest request {largest} bytes");
}

#[test]
fn a_failed_direct_read_is_retried_and_right() {
    init();
    let (o, data) = origin(4);
    o.only_ranged(true);
    let ds = Dataset::open(&o.url("/obj"), None).unwrap();
    o.script(vec![Fault::Status(503, None), Fault::TruncateBody]);
    check(&ds, &data, 4 << 20, 4096);
    check(&ds, &data, 2 << 20, 4096);
}

/// An asynchronous read's destination: the test keeps a handle to it.
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl gtio::engine::request::ReadTarget for Shared {
    fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        self.0.lock().unwrap()[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
}

/// Submit reads of `len` at each offset, all at once (asynchronous,
/// urgent), and wait (bounded) for their completions on this thread's
/// ring: each read's result and bytes, by offset.
fn read_async(ds: &Dataset, offsets: &[usize], len: usize) -> Vec<(i64, Vec<u8>)> {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let bufs: Vec<Arc<Mutex<Vec<u8>>>> = offsets
        .iter()
        .map(|_| Arc::new(Mutex::new(vec![0u8; len])))
        .collect();
    for (i, &off) in offsets.iter().enumerate() {
        let target = Box::new(Shared(Arc::clone(&bufs[i])));
        ds.pread_async(off as u64, len, target, false, i as u64)
            .expect("submitted");
    }
    let ring = gtio::completion::current_if_any().expect("this thread's ring");
    let mut results = vec![None; offsets.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while results.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "async reads never completed");
        for c in ring.drain(64) {
            results[c.user_data as usize] = Some(c.result);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    results
        .into_iter()
        .zip(bufs)
        .map(|(r, b)| (r.unwrap(), b.lock().unwrap().clone()))
        .collect()
}

#[test]
fn cold_random_async_reads_fetch_their_pages_not_blocks() {
    init();
    let (o, data) = origin(5);
    let ds = Dataset::open(&o.url("/obj"), None).unwrap();
    // Sixteen in flight at once, each far from the others and out of
    // order (no read continues the one before it), none in block 0.
    let offsets: Vec<usize> = (1..=16)
        .map(|k| (k * 7 % 17) * 7 * BLOCK + k * 1000)
        .collect();
    for ((result, bytes), &off) in read_async(&ds, &offsets, 3000).iter().zip(&offsets) {
        assert_eq!(*result, 3000, "read at {off}");
        assert!(bytes[..] == data[off..off + 3000], "bytes at {off}");
    }
    let mut got = ranges(&o);
    got.sort_unstable();
    let mut want: Vec<(usize, usize)> = offsets
        .iter()
        .map(|&off| (off / 4096 * 4096, (off + 3000).div_ceil(4096) * 4096 - 1))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want, "one page-aligned request per cold async read");
    let st = ds.stats();
    assert_eq!(st.requests, offsets.len() as u64 + 1);
    assert_eq!(st.cache_misses, offsets.len() as u64);
}

#[test]
fn a_failed_async_direct_read_is_retried_and_right() {
    init();
    let (o, data) = origin(6);
    o.only_ranged(true);
    let ds = Dataset::open(&o.url("/obj"), None).unwrap();
    o.script(vec![Fault::Status(503, None), Fault::ResetMidBody]);
    let off = 3 << 20;
    let [(result, bytes)] = &read_async(&ds, &[off], 4096)[..] else {
        unreachable!()
    };
    assert_eq!(*result, 4096);
    assert!(bytes[..] == data[off..off + 4096]);
    assert_eq!(ds.stats().retries, 2);
}

#[test]
fn an_async_direct_read_of_a_replaced_object_fails_stale() {
    init();
    let (o, _) = origin(7);
    let ds = Dataset::open(&o.url("/obj"), None).unwrap();
    o.script(vec![Fault::ChangeEtag]);
    let [(result, _)] = &read_async(&ds, &[5 << 20], 4096)[..] else {
        unreachable!()
    };
    assert_eq!(*result, -i64::from(libc::ESTALE));
    assert_eq!(ds.stats().downloads_failed, 1);
}
