//! Opening a torrent costs memory in proportion to its metainfo: a metainfo
//! with a huge file list once peaked at 18 times its size at open (1.07 GiB
//! for 58 MB and 1.6 M files), most of it a decoded bencode tree and a
//! `Vec<String>` per file. The peak RSS growth of `gtio_open_gto` plus a
//! full listing must stay within a small multiple of the metainfo's size.
//!
//! The test runs in a process of its own (`abi_common::isolate`), so VmHWM
//! measures only the open. `GTIO_TEST_METAINFO_FILES` sets the file count
//! (default 200 000, ~7 MB of metainfo; the 1.6 M case is ~59 MB).

mod abi_common;

use std::ffi::c_void;

use abi_common::{init, isolate, msg, new_err};
use gtio::ffi::*;

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A multi-file metainfo of `n` small files in directories of 2000, with a
/// real piece count (hashes are zeros: nothing is read).
fn many_files_torrent(n: usize) -> Vec<u8> {
    fn bstr(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(format!("{}:", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
    let mut info = b"d5:filesl".to_vec();
    let mut total = 0u64;
    for i in 0..n {
        let len = (i % 7) as u64;
        total += len;
        info.extend_from_slice(format!("d6:lengthi{len}e4:pathl").as_bytes());
        bstr(&mut info, format!("d{:03}", i / 2000).as_bytes());
        bstr(&mut info, format!("f{i:07}").as_bytes());
        info.extend_from_slice(b"ee");
    }
    let piece = 1u64 << 20;
    info.extend_from_slice(b"e4:name4:many12:piece length");
    info.extend_from_slice(format!("i{piece}e6:pieces").as_bytes());
    bstr(&mut info, &vec![0u8; 20 * total.div_ceil(piece) as usize]);
    info.push(b'e');
    let mut t = b"d4:info".to_vec();
    t.extend_from_slice(&info);
    t.extend_from_slice(b"8:url-list");
    bstr(&mut t, b"http://127.0.0.1:9/");
    t.push(b'e');
    t
}

#[test]
fn open_memory_is_a_small_multiple_of_the_metainfo() {
    if !isolate("open_memory_is_a_small_multiple_of_the_metainfo", &[]) {
        return;
    }
    let n: usize = std::env::var("GTIO_TEST_METAINFO_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let meta = many_files_torrent(n);
    init(|_| {});
    let mut err = new_err();
    // "5" resets VmHWM to the current RSS (proc(5), clear_refs): the peak
    // measured is the open's, not the generator's.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let before = vm_kib("VmRSS:");
    let t = std::time::Instant::now();
    let h = gtio_open_gto(
        meta.as_ptr().cast::<c_void>(),
        meta.len(),
        std::ptr::null(),
        &mut err,
    );
    assert!(!h.is_null(), "{}", msg(&err));
    let open_time = t.elapsed();
    let open_growth = (vm_kib("VmHWM:") - before) * 1024;
    let mut list: *mut GTIO_FileInfo = std::ptr::null_mut();
    let count = gtio_get_file_list(h, &mut list, &mut err);
    assert_eq!(count, n as i64, "{}", msg(&err));
    gtio_free_file_list(list, count);
    let growth = (vm_kib("VmHWM:") - before) * 1024;
    let ratio = growth as f64 / meta.len() as f64;
    println!(
        "metainfo {} bytes, {n} files: open {open_time:?}, peak RSS growth {} KiB ({:.2}x the metainfo) at open, {} KiB ({ratio:.2}x) through open + gtio_get_file_list",
        meta.len(),
        open_growth / 1024,
        open_growth as f64 / meta.len() as f64,
        growth / 1024
    );
    assert!(
        ratio <= 8.0,
        "open + listing grew RSS by {growth} bytes, {ratio:.1}x the {}-byte metainfo (allowed 8x)",
        meta.len()
    );
    assert_eq!(gtio_close(h, &mut err), 0);
}
