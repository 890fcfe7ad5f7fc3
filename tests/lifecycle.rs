//! The library's lifetime through the C ABI, against a real nginx:
//! `gtio_lib_init`/`gtio_lib_fini` with handles and reads in flight, and
//! `fork()`. Each test runs in a child process of its own
//! (`abi_common::isolate`): they start and stop the process-global runtime.

mod abi_common;

use std::time::{Duration, Instant};

use abi_common::*;
use gtio::ffi::*;

const MIB: usize = 1 << 20;
const LIMIT: Duration = Duration::from_secs(20);

fn assert_ebadf(h: *mut GTIO, what: &str) {
    let mut buf = [0u8; 8];
    let mut e = new_err();
    assert_eq!(gtio_size(h, &mut e), -1, "{what}: size");
    assert_eq!(e.code, libc::EBADF, "{what}: {}", msg(&e));
    let mut e = new_err();
    assert_eq!(
        gtio_pread(h, buf.as_mut_ptr().cast(), 8, 0, &mut e),
        -1,
        "{what}"
    );
    assert_eq!(e.code, libc::EBADF, "{what}: {}", msg(&e));
    let mut e = new_err();
    assert_eq!(gtio_close(h, &mut e), -1, "{what}: close");
    assert_eq!(e.code, libc::EBADF, "{what}: {}", msg(&e));
}

#[test]
fn version_is_the_crate_version() {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(gtio_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn lib_init_is_ebusy_once_running() {
    if !isolate("lib_init_is_ebusy_once_running", &[]) {
        return;
    }
    let mut e = new_err();
    assert_eq!(gtio_lib_init(std::ptr::null(), &mut e), 0, "{}", msg(&e));
    let mut e = new_err();
    assert_eq!(gtio_lib_init(std::ptr::null(), &mut e), -1);
    assert_eq!(e.code, libc::EBUSY, "{}", msg(&e));
    assert_eq!(gtio_lib_fini(&mut e), 0);
    // Not running: fini is still 0, init works again.
    assert_eq!(gtio_lib_fini(&mut e), 0);
    init(|c| c.block_size = 256 * 1024);
    let mut e = new_err();
    assert_eq!(gtio_lib_init(std::ptr::null(), &mut e), -1);
    assert_eq!(e.code, libc::EBUSY, "{}", msg(&e));
    // The config took: 256 KiB pieces, so a read of most of piece 1 alone
    // is one 256 KiB download (a cold read of a few pages would be one
    // right-sized request instead: docs/http.md).
    let fx = fixture();
    let ds = gtio::Dataset::open(&fx.url(), None).unwrap();
    let before = ds.engine_stats();
    let mut buf = vec![0u8; 200 * 1024];
    ds.pread(&mut buf, 300 * 1024).unwrap();
    assert!(buf == fx.data[300 * 1024..500 * 1024]);
    assert_eq!(
        ds.engine_stats().bytes_fetched - before.bytes_fetched,
        256 * 1024
    );
    drop(ds);
    // After fini, the first call starts the defaults; init is then EBUSY.
    assert_eq!(gtio_lib_fini(&mut e), 0);
    let h = open(&fx.url(), None);
    let mut e = new_err();
    assert_eq!(gtio_lib_init(std::ptr::null(), &mut e), -1);
    assert_eq!(e.code, libc::EBUSY);
    close(h);
}

#[test]
fn lib_fini_with_handles_and_reads_in_flight() {
    if !isolate("lib_fini_with_handles_and_reads_in_flight", &[]) {
        return;
    }
    let fx = fixture();
    let proxy = SlowProxy::start(fx.ngx.port, 2 << 20);
    let slow = open(&proxy.url(FILE_NAME), None);
    let fast = open(&fx.url(), None);
    assert!(pread(fast, 1000, 0) == fx.data[..1000]);
    let reqs: Vec<*mut AsyncReq> = (0..4)
        .map(|p| AsyncReq::new(MIB / 2, (p * MIB + 99) as u64))
        .collect();
    for &r in &reqs {
        let (rc, e) = AsyncReq::submit(r, slow, 0);
        assert_eq!(rc, 0, "{}", msg(&e));
    }
    let mut e = new_err();
    let t = Instant::now();
    assert_eq!(gtio_lib_fini(&mut e), 0, "{}", msg(&e));
    assert!(t.elapsed() < LIMIT, "gtio_lib_fini hung");
    // fini joined every library thread: nothing may write these any more.
    for &r in &reqs {
        AsyncReq::bytes(r).fill(0x77);
    }
    let ran = poll_until(LIMIT, || reqs.iter().all(|&r| AsyncReq::calls(r) >= 1));
    assert_eq!(ran, reqs.len());
    for &r in &reqs {
        assert_eq!(AsyncReq::calls(r), 1);
        assert_eq!(AsyncReq::ret(r), -i64::from(libc::ECANCELED));
    }
    assert_ebadf(slow, "slow handle after fini");
    assert_ebadf(fast, "fast handle after fini");

    // A new open starts the library again and works, sync and async.
    let h = open(&fx.url(), None);
    assert!(pread(h, 3 * MIB, 3 * MIB as u64) == fx.data[3 * MIB..]);
    let r = AsyncReq::new(5000, 123_456);
    assert_eq!(AsyncReq::submit(r, h, 0).0, 0);
    poll_until(LIMIT, || AsyncReq::calls(r) == 1);
    assert_eq!(AsyncReq::ret(r), 5000);
    assert!(AsyncReq::bytes(r) == &fx.data[123_456..128_456]);
    // The old handles stay dead in the new runtime.
    assert_ebadf(slow, "slow handle after restart");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(poll_once(), 0);
    for &q in &reqs {
        assert_eq!(AsyncReq::calls(q), 1);
        assert!(AsyncReq::bytes(q).iter().all(|&b| b == 0x77));
    }
    close(h);
    assert_eq!(gtio_lib_fini(&mut e), 0);
    // SAFETY: all completed, library stopped.
    unsafe {
        for q in reqs.into_iter().chain([r]) {
            AsyncReq::free(q);
        }
    }
}

/// The child's side of the fork test: exit code 0, or which check failed.
fn fork_child(old: *mut GTIO, url: &str, data: &[u8]) -> i32 {
    let mut buf = vec![0u8; 4096];
    let mut e = new_err();
    if gtio_pread(old, buf.as_mut_ptr().cast(), 4096, 0, &mut e) != -1 || e.code != libc::EBADF {
        return 10;
    }
    let mut e = new_err();
    if gtio_size(old, &mut e) != -1 || e.code != libc::EBADF {
        return 11;
    }
    let mut e = new_err();
    if gtio_close(old, &mut e) != -1 || e.code != libc::EBADF {
        return 12;
    }
    let Ok(h) = try_open(url, None) else {
        return 20;
    };
    let mut all = vec![0u8; data.len()];
    let mut e = new_err();
    if gtio_pread(h, all.as_mut_ptr().cast(), all.len(), 0, &mut e) != data.len() as i64 {
        return 21;
    }
    if all != data {
        return 22;
    }
    // Async: a fresh ring in the child.
    let r = AsyncReq::new(2000, 2 * MIB as u64 + 1);
    if AsyncReq::submit(r, h, 0).0 != 0 {
        return 30;
    }
    let deadline = Instant::now() + LIMIT;
    while AsyncReq::calls(r) == 0 {
        poll_once();
        if Instant::now() > deadline {
            return 31;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if AsyncReq::ret(r) != 2000 || AsyncReq::bytes(r) != &data[2 * MIB + 1..2 * MIB + 2001] {
        return 32;
    }
    // The parent's handle is still not the child's.
    let mut e = new_err();
    if gtio_size(old, &mut e) != -1 || e.code != libc::EBADF {
        return 40;
    }
    let mut e = new_err();
    if gtio_close(h, &mut e) != 0 {
        return 41;
    }
    0
}

#[test]
fn fork_child_starts_afresh_and_parent_keeps_working() {
    if !isolate("fork_child_starts_afresh_and_parent_keeps_working", &[]) {
        return;
    }
    let fx = fixture();
    let url = fx.url();
    let h = open(&url, None);
    assert!(pread(h, 3 * MIB, 0) == fx.data[..3 * MIB]);
    // Give this thread a ring (and the runtime busy workers) before forking.
    let r = AsyncReq::new(1000, 4 * MIB as u64);
    assert_eq!(AsyncReq::submit(r, h, 0).0, 0);
    poll_until(LIMIT, || AsyncReq::calls(r) == 1);
    assert_eq!(AsyncReq::ret(r), 1000);

    // SAFETY: fork; the child only runs fork_child and then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fork_child(h, &url, &fx.data)
        }))
        .unwrap_or(99);
        // SAFETY: leave without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + LIMIT;
    let mut status = 0;
    loop {
        // SAFETY: our own child.
        let w = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(w >= 0, "waitpid failed");
        if w == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("fork child hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        libc::WIFEXITED(status),
        "fork child died: status {status:#x}"
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "fork child failed check (exit code)"
    );

    // The parent's handle and runtime are untouched.
    assert!(pread(h, FILE_LEN, 0) == fx.data);
    let r2 = AsyncReq::new(3000, 5 * MIB as u64);
    assert_eq!(AsyncReq::submit(r2, h, 0).0, 0);
    poll_until(LIMIT, || AsyncReq::calls(r2) == 1);
    assert_eq!(AsyncReq::ret(r2), 3000);
    assert!(AsyncReq::bytes(r2) == &fx.data[5 * MIB..5 * MIB + 3000]);
    close(h);
    let h = open(&url, None);
    assert!(pread(h, 100, 17) == fx.data[17..117]);
    close(h);
    // SAFETY: completed.
    unsafe {
        AsyncReq::free(r);
        AsyncReq::free(r2);
    }
}

#[test]
fn lib_fini_in_poller_mode_runs_every_callback() {
    if !isolate("lib_fini_in_poller_mode_runs_every_callback", &[]) {
        return;
    }
    init(|c| c.poller_thread = 1);
    let fx = fixture();
    let proxy = SlowProxy::start(fx.ngx.port, 2 << 20);
    let h = open(&proxy.url(FILE_NAME), None);
    let reqs: Vec<*mut AsyncReq> = (0..4)
        .map(|p| AsyncReq::new(MIB / 2, (p * MIB + 99) as u64))
        .collect();
    for &r in &reqs {
        let (rc, e) = AsyncReq::submit(r, h, 0);
        assert_eq!(rc, 0, "{}", msg(&e));
    }
    let mut e = new_err();
    assert_eq!(gtio_lib_fini(&mut e), 0, "{}", msg(&e));
    // Nobody polls in poller mode: the library must have run them.
    wait_until(Duration::from_secs(5), || {
        reqs.iter().all(|&r| AsyncReq::calls(r) >= 1)
    });
    for &r in &reqs {
        assert_eq!(AsyncReq::calls(r), 1);
        assert_eq!(AsyncReq::ret(r), -i64::from(libc::ECANCELED));
    }
    assert_ebadf(h, "after fini");
}
