//! Memory stays bounded whatever the dataset size: a 1 GiB sequential read
//! through nginx keeps the process's peak RSS within `cache_bytes` + 32 MiB.
//!
//! One test in its own process, so VmHWM measures only this read (plus the
//! test harness, which is small).

#[path = "support/nginx.rs"]
mod nginx;

use std::io::Write;

const CACHE: u64 = 64 << 20;
const SIZE: u64 = 1 << 30;

fn vm_hwm_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Byte `i` of the test object: cheap to generate and to check, and
/// different in every 4 KiB page so misplaced pieces are caught.
fn byte_at(i: u64) -> u8 {
    ((i >> 12) as u8) ^ (i as u8).wrapping_mul(31)
}

#[test]
fn a_1gib_sequential_read_stays_within_the_cache_bound() {
    let dir = nginx::tempdir();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("big.bin")).unwrap());
        let mut chunk = vec![0u8; 1 << 20];
        for c in 0..SIZE >> 20 {
            for (j, b) in chunk.iter_mut().enumerate() {
                *b = byte_at((c << 20) + j as u64);
            }
            f.write_all(&chunk).unwrap();
        }
    }
    let server = nginx::Nginx::start(&dir);
    gtio::runtime::init(gtio::Config {
        cache_bytes: CACHE,
        readahead_max_bytes: 16 << 20,
        ..gtio::Config::default()
    })
    .unwrap();
    let before = vm_hwm_bytes();
    let ds = gtio::Dataset::open(&server.url("/big.bin"), None).unwrap();
    assert_eq!(ds.size(), SIZE);
    let mut buf = vec![0u8; 1 << 20];
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
    let peak = vm_hwm_bytes();
    eprintln!(
        "peak RSS {} MiB (before the read {} MiB), cache bound {} MiB",
        peak >> 20,
        before >> 20,
        CACHE >> 20
    );
    assert!(
        peak <= CACHE + (32 << 20) + before,
        "peak RSS {} MiB exceeds cache {} MiB + 32 MiB (+{} MiB baseline)",
        peak >> 20,
        CACHE >> 20,
        before >> 20
    );

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
    let peak = vm_hwm_bytes();
    eprintln!("peak RSS after 32 sequential readers: {} MiB", peak >> 20);
    assert!(
        peak <= CACHE + (32 << 20) + before,
        "with 32 readers, peak RSS {} MiB exceeds cache {} MiB + 32 MiB",
        peak >> 20,
        CACHE >> 20
    );
}
