//! Memory stays bounded by `cache_bytes` whatever the read, the reader or the
//! piece length: peak RSS ≤ the caller's buffer + `cache_bytes` + a small
//! constant, through nginx.
//!
//! Each test runs in a process of its own (`abi_common::isolate`), so VmHWM
//! measures only its own reads (plus the test harness, which is small) and
//! each can start the process-global runtime with its own cache size.

mod abi_common;

#[path = "support/bencode.rs"]
mod bencode;

use std::io::Write;
use std::path::Path;

use abi_common::isolate;
use abi_common::nginx;

const MIB: u64 = 1 << 20;

fn vm_hwm_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Reset VmHWM to the current RSS and return that, so that a peak is the
/// peak of what follows (an open's parse, say, cannot hide a read's).
fn reset_peak() -> u64 {
    // "5" resets the peak RSS (proc(5), clear_refs).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    vm_hwm_bytes()
}

/// Byte `i` of the test object: cheap to generate and to check, and
/// different in every 4 KiB page so misplaced pieces are caught.
fn byte_at(i: u64) -> u8 {
    ((i >> 12) as u8) ^ (i as u8).wrapping_mul(31)
}

fn write_object(path: &Path, size: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut chunk = vec![0u8; MIB as usize];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(MIB) as usize;
        for (j, b) in chunk[..n].iter_mut().enumerate() {
            *b = byte_at(at + j as u64);
        }
        f.write_all(&chunk[..n]).unwrap();
        at += n as u64;
    }
}

fn start(cache_bytes: u64) {
    gtio::runtime::init(gtio::Config {
        cache_bytes,
        readahead_max_bytes: 16 << 20,
        ..gtio::Config::default()
    })
    .unwrap();
}

/// Assert `peak - before ≤ allowed`, printing the figure either way.
fn check_peak(what: &str, before: u64, allowed: u64) {
    let peak = vm_hwm_bytes();
    let above = peak.saturating_sub(before);
    eprintln!(
        "{what}: peak RSS {} MiB, {} MiB above the start (allowed {} MiB)",
        peak / MIB,
        above / MIB,
        allowed / MIB
    );
    assert!(
        above <= allowed,
        "{what}: peak RSS {} MiB above the start, allowed {} MiB",
        above / MIB,
        allowed / MIB
    );
}

#[test]
fn a_1gib_sequential_read_stays_within_the_cache_bound() {
    if !isolate("a_1gib_sequential_read_stays_within_the_cache_bound", &[]) {
        return;
    }
    const CACHE: u64 = 64 << 20;
    const SIZE: u64 = 1 << 30;
    let dir = nginx::tempdir();
    write_object(&dir.join("big.bin"), SIZE);
    let server = nginx::Nginx::start(&dir);
    start(CACHE);
    let before = reset_peak();
    let ds = gtio::Dataset::open(&server.url("/big.bin"), None).unwrap();
    assert_eq!(ds.size(), SIZE);
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0u64;
    loop {
        let n = ds.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        // Spot-check a few bytes of every buffer (checking all would make
        // this test about the checker's speed).
        for k in [0, n / 3, n / 2, n - 1] {
            assert_eq!(buf[k], byte_at(pos + k as u64), "byte {}", pos + k as u64);
        }
        pos += n as u64;
    }
    assert_eq!(pos, SIZE);
    check_peak("1 GiB in 1 MiB reads", before, CACHE + 32 * MIB);

    // Many handles reading sequentially at once, each earning a readahead
    // window (mountpoint-s3 #502/#987: prefetch memory that grows with the
    // number of handles). 32 handles × 16 MiB windows would be 512 MiB if
    // windows were per handle; the shared cache bounds them all.
    let handles: Vec<_> = (0..32)
        .map(|_| gtio::Dataset::open(&server.url("/big.bin"), None).unwrap())
        .collect();
    let mut chunk = vec![0u8; 64 << 10];
    for step in 0..128u64 {
        for (h, ds) in handles.iter().enumerate() {
            let pos = h as u64 * (SIZE / 32) + step * (64 << 10);
            let n = ds.pread(&mut chunk, pos).unwrap();
            assert_eq!(n, chunk.len());
            assert_eq!(chunk[n / 2], byte_at(pos + n as u64 / 2));
        }
    }
    check_peak("32 sequential readers", before, CACHE + 32 * MIB);
}

/// Put the calling thread in the idle scheduling class: it runs only when
/// no other thread wants the CPU, as a reader on a busy machine would.
fn make_this_thread_slow() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; param is a valid pointer.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    assert_eq!(rc, 0, "sched_setscheduler(SCHED_IDLE)");
}

#[test]
fn one_1gib_pread_from_a_slow_reader_holds_no_more_than_the_cache() {
    if !isolate(
        "one_1gib_pread_from_a_slow_reader_holds_no_more_than_the_cache",
        &[],
    ) {
        return;
    }
    const CACHE: u64 = 4 << 20;
    const SIZE: u64 = 1 << 30;
    let dir = nginx::tempdir();
    write_object(&dir.join("big.bin"), SIZE);
    let server = nginx::Nginx::start(&dir);
    start(CACHE);
    let ds = gtio::Dataset::open(&server.url("/big.bin"), None).unwrap();
    let before = reset_peak();
    let buf = std::thread::spawn(move || {
        make_this_thread_slow();
        let mut buf = vec![0u8; SIZE as usize];
        assert_eq!(ds.pread(&mut buf, 0).unwrap(), SIZE as usize);
        buf
    })
    .join()
    .unwrap();
    for k in (0..SIZE).step_by(4093) {
        assert_eq!(buf[k as usize], byte_at(k), "byte {k}");
    }
    check_peak("1 GiB pread, slow reader", before, SIZE + CACHE + 16 * MIB);
}

#[test]
fn four_byte_pieces_cost_memory_in_proportion_to_the_bytes() {
    if !isolate(
        "four_byte_pieces_cost_memory_in_proportion_to_the_bytes",
        &[],
    ) {
        return;
    }
    use bencode::{d, enc, s, B};
    use sha1::Digest;
    const CACHE: u64 = 4 << 20;
    const SIZE: u64 = 4 << 20;
    const PIECE: u64 = 4;
    let dir = nginx::tempdir();
    write_object(&dir.join("tiny.bin"), SIZE);
    let data = std::fs::read(dir.join("tiny.bin")).unwrap();
    let server = nginx::Nginx::start(&dir);
    let mut pieces = Vec::with_capacity((SIZE / PIECE * 20) as usize);
    for p in data.chunks(PIECE as usize) {
        pieces.extend_from_slice(&sha1::Sha1::digest(p));
    }
    let meta = enc(&d(vec![
        (
            "info",
            d(vec![
                ("length", B::I(SIZE as i64)),
                ("name", s("tiny.bin")),
                ("piece length", B::I(PIECE as i64)),
                ("pieces", B::S(pieces)),
            ]),
        ),
        ("url-list", s(server.url("/tiny.bin"))),
    ]));
    drop(data);
    start(CACHE);
    let ds = gtio::Dataset::open_gto(&meta, None).unwrap();
    drop(meta);
    let before = reset_peak();
    let mut buf = vec![0u8; SIZE as usize];
    assert_eq!(ds.pread(&mut buf, 0).unwrap(), SIZE as usize);
    for k in (0..SIZE).step_by(997) {
        assert_eq!(buf[k as usize], byte_at(k), "byte {k}");
    }
    check_peak(
        "4 MiB pread of 4-byte pieces",
        before,
        SIZE + CACHE + 8 * MIB,
    );
}
