//! Readers (`gtio_reader_*`): a byte range of a dataset with its own offset
//! and readahead. Two readers of one dataset read two files in turn, chunk
//! by chunk, and keep their windows: few requests. The same pattern through
//! one window (a handle's offset moved back and forth) resets it at every
//! read and fetches piece by piece — what Python's `open_file` readers did
//! when the window was the dataset's.

mod abi_common;

use abi_common::*;
use gtio::ffi::*;

const MIB: u64 = 1 << 20;
const CHUNK: usize = 64 << 10;

fn local_object(name: &str, len: usize, seed: u64) -> (nginx::TempDir, Vec<u8>, String) {
    let dir = nginx::tempdir();
    let data = test_bytes(len, seed);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    let uri = format!("file://{}", path.display());
    (dir, data, uri)
}

/// A number of the dataset's `gtio_stats_json`.
fn stat(h: *mut GTIO, key: &str) -> u64 {
    let mut buf = vec![0u8; 8192];
    let mut err = new_err();
    let n = gtio_stats_json(h, buf.as_mut_ptr().cast(), buf.len(), &mut err);
    assert!(n > 0 && (n as usize) < buf.len(), "{}", msg(&err));
    let json = std::str::from_utf8(&buf[..n as usize]).unwrap();
    let pat = format!("\"{key}\":");
    let at = json.find(&pat).unwrap() + pat.len();
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn reader(h: *mut GTIO, offset: u64, len: u64) -> *mut GTIO_Reader {
    let mut err = new_err();
    let r = gtio_reader_open(h, offset, len, &mut err);
    assert!(!r.is_null(), "gtio_reader_open: {}", msg(&err));
    r
}

fn read_chunk(r: *mut GTIO_Reader, buf: &mut [u8]) -> usize {
    let mut err = new_err();
    let n = gtio_reader_read(r, buf.as_mut_ptr().cast(), buf.len(), &mut err);
    assert!(n >= 0, "gtio_reader_read: {}", msg(&err));
    n as usize
}

fn reader_close(r: *mut GTIO_Reader) {
    let mut err = new_err();
    assert_eq!(gtio_reader_close(r, &mut err), 0, "{}", msg(&err));
}

#[test]
fn two_interleaved_readers_keep_their_windows() {
    if !isolate("two_interleaved_readers_keep_their_windows", &[]) {
        return;
    }
    // 64 KiB pieces, readahead up to 32 MiB: two 8 MiB "files" are 256
    // pieces.
    init(|c| c.block_size = 64 << 10);
    let (_d1, data, uri) = local_object("two.bin", 16 * MIB as usize, 1);
    let h = open(&uri, None);
    let half = 8 * MIB;
    let (a, b) = (reader(h, 0, half), reader(h, half, half));
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_chunk(a, &mut buf);
        got_a.extend_from_slice(&buf[..n]);
        let m = read_chunk(b, &mut buf);
        got_b.extend_from_slice(&buf[..m]);
        if n == 0 && m == 0 {
            break;
        }
    }
    assert!(got_a == data[..half as usize], "reader a's bytes");
    assert!(got_b == data[half as usize..], "reader b's bytes");
    let per_reader = stat(h, "requests");
    println!("two readers, own windows: {per_reader} requests");
    // One window shared by both would be reset at every read: one request
    // per piece, 256.
    assert!(
        per_reader <= 40,
        "{per_reader} requests: windows were reset"
    );
    reader_close(a);
    reader_close(b);
    close(h);

    // The contrast, on a cold object: the same reads through one window
    // (the handle's offset, moved between the two halves each time).
    let (_d2, data, uri) = local_object("one.bin", 16 * MIB as usize, 2);
    let h = open(&uri, None);
    let (mut pos_a, mut pos_b) = (0u64, half);
    let mut err = new_err();
    while pos_a < half || pos_b < 2 * half {
        for pos in [&mut pos_a, &mut pos_b] {
            let limit = if *pos < half { half } else { 2 * half };
            if *pos >= limit {
                continue;
            }
            assert_eq!(
                gtio_lseek(h, *pos as i64, libc::SEEK_SET, &mut err),
                *pos as i64
            );
            let n = gtio_read(h, buf.as_mut_ptr().cast(), CHUNK, &mut err);
            assert_eq!(n, CHUNK as i64, "{}", msg(&err));
            assert!(buf[..] == data[*pos as usize..*pos as usize + CHUNK]);
            *pos += CHUNK as u64;
        }
    }
    let shared = stat(h, "requests");
    println!("one shared window: {shared} requests");
    assert!(
        shared > 4 * per_reader,
        "shared {shared} vs per reader {per_reader}"
    );
    close(h);
}

#[test]
fn a_reader_stays_inside_its_range() {
    if !isolate("a_reader_stays_inside_its_range", &[]) {
        return;
    }
    init(|c| {
        c.block_size = 64 << 10;
        c.readahead_max_bytes = 16 * MIB;
    });
    let (_d, data, uri) = local_object("r.bin", 8 * MIB as usize, 3);
    let h = open(&uri, None);
    // A 1 MiB "file" at the start of an 8 MiB stream, read sequentially to
    // its end: readahead must not fetch the bytes after it.
    let r = reader(h, 0, MIB);
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    loop {
        let n = read_chunk(r, &mut buf);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data[..MIB as usize]);
    assert_eq!(read_chunk(r, &mut buf), 0, "0 at the end, again");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let fetched = stat(h, "file");
    assert!(fetched <= MIB, "fetched {fetched} bytes for a 1 MiB range");
    reader_close(r);

    // Offsets are the range's; SEEK_END is its end; past it reads 0.
    let r = reader(h, 3 * MIB + 5, 1000);
    let mut err = new_err();
    assert_eq!(gtio_reader_lseek(r, -10, libc::SEEK_END, &mut err), 990);
    let n = read_chunk(r, &mut buf);
    assert_eq!(
        &buf[..n],
        &data[(3 * MIB + 5 + 990) as usize..(3 * MIB + 5 + 1000) as usize]
    );
    assert_eq!(gtio_reader_lseek(r, 0, libc::SEEK_CUR, &mut err), 1000);
    assert_eq!(gtio_reader_lseek(r, 5000, libc::SEEK_SET, &mut err), 5000);
    assert_eq!(read_chunk(r, &mut buf), 0);
    assert_eq!(gtio_reader_lseek(r, -1, libc::SEEK_SET, &mut err), -1);
    assert_eq!(err.code, libc::EINVAL);
    assert_eq!(gtio_reader_lseek(r, 0, 42, &mut err), -1);
    assert_eq!(err.code, libc::EINVAL);
    reader_close(r);
    close(h);
}

#[test]
fn bad_ranges_and_handles_are_errors() {
    let (_d, _data, uri) = local_object("e.bin", 100_000, 4);
    let h = open(&uri, None);
    let mut err = new_err();
    for (off, len) in [
        (0, 100_001),
        (100_001, 0),
        (u64::MAX, 2),
        (50_000, u64::MAX),
    ] {
        let r = gtio_reader_open(h, off, len, &mut err);
        assert!(r.is_null(), "{off}+{len} accepted");
        assert_eq!(err.code, libc::EINVAL, "{}", msg(&err));
    }
    // The whole stream, and an empty range at its end, are fine.
    reader_close(reader(h, 0, 100_000));
    let r = reader(h, 100_000, 0);
    let mut buf = [0u8; 10];
    assert_eq!(read_chunk(r, &mut buf), 0);
    reader_close(r);
    // NULL buffer with a count.
    let r = reader(h, 0, 10);
    assert_eq!(gtio_reader_read(r, std::ptr::null_mut(), 5, &mut err), -1);
    assert_eq!(err.code, libc::EINVAL);
    // The dataset closed: EBADF, and the reader still closes.
    close(h);
    assert_eq!(
        gtio_reader_read(r, buf.as_mut_ptr().cast(), 5, &mut err),
        -1
    );
    assert_eq!(err.code, libc::EBADF, "{}", msg(&err));
    reader_close(r);
    // Closed twice, never opened, NULL: EBADF.
    assert_eq!(gtio_reader_close(r, &mut err), -1);
    assert_eq!(err.code, libc::EBADF);
    assert_eq!(
        gtio_reader_close(std::ptr::null_mut(), std::ptr::null_mut()),
        -1
    );
    let bogus = 0x4242_4240usize as *mut GTIO_Reader;
    assert_eq!(
        gtio_reader_read(bogus, buf.as_mut_ptr().cast(), 5, &mut err),
        -1
    );
    assert_eq!(err.code, libc::EBADF);
    // A closed dataset handle cannot open a reader.
    assert!(gtio_reader_open(h, 0, 1, &mut err).is_null());
    assert_eq!(err.code, libc::EBADF);
}
