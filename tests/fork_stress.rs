//! `fork()` while other threads use the library: a child must never wait on
//! a lock that a parent thread held at the moment of the fork (the handle
//! registry, the identity interner, the runtime slot, the ring list, the
//! buffer pool). Eight parent threads open, read and close handles without
//! pause while the main thread forks 100 children; every child opens the
//! object and reads it. A child that has not exited within its bound is
//! counted as hung and killed.
//!
//! One test in this binary: it owns the process-global runtime.

mod abi_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_common::*;
use gtio::ffi::*;

const CHILDREN: usize = 100;
const THREADS: usize = 8;
/// A child opens and reads 64 KiB from a local nginx: well under a second
/// even on a loaded machine; 10 s is a hang.
const CHILD_LIMIT: Duration = Duration::from_secs(10);

/// The child's work: exit code 0, or which step failed.
fn child(url: &str, data: &[u8], seed: u64) -> i32 {
    let Ok(h) = try_open(url, None) else {
        return 20;
    };
    let off = (seed * 65_537) % (data.len() as u64 - 65_536);
    let mut buf = vec![0u8; 65_536];
    let mut e = new_err();
    if gtio_pread(h, buf.as_mut_ptr().cast(), buf.len(), off, &mut e) != buf.len() as i64 {
        return 21;
    }
    if buf[..] != data[off as usize..off as usize + buf.len()] {
        return 22;
    }
    let mut e = new_err();
    if gtio_close(h, &mut e) != 0 {
        return 23;
    }
    0
}

/// Wait for `pid` up to `limit`; `None` if it is still running (then killed).
fn wait_bounded(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    let mut status = 0;
    loop {
        // SAFETY: our own child; status is a valid out-pointer.
        let w = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(w >= 0, "waitpid failed: errno {}", errno());
        if w == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                1000 + status
            });
        }
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: reap it, so no zombie is left.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn forks_during_eight_thread_activity_never_hang() {
    let fx = fixture();
    let url = fx.url();
    let data = Arc::new(fx.data.clone());
    // Start the runtime and the fork hooks before the threads race.
    close(open(&url, None));

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, ops, url, data) = (stop.clone(), ops.clone(), url.clone(), data.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(t as u64 + 1);
                let shared = open(&url, None);
                while !stop.load(Ordering::Relaxed) {
                    if t % 2 == 1 {
                        // Cache hits in a tight loop: the registry's read
                        // lock and the cache's locks taken at a high rate.
                        for _ in 0..1000 {
                            let mut e = new_err();
                            assert_eq!(gtio_size(shared, &mut e), data.len() as i64);
                            let off = rng.below(65_536);
                            assert!(
                                pread(shared, 512, off) == data[off as usize..off as usize + 512]
                            );
                        }
                        ops.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    // Open/close churn (registry, interner, runtime slot) and
                    // reads, sync and async (engine, rings, buffer pool).
                    let h = open(&url, None);
                    let off = rng.below(data.len() as u64 - 8192);
                    assert!(pread(h, 8192, off) == data[off as usize..off as usize + 8192]);
                    close(h);
                    let off = rng.below(data.len() as u64 - 4096);
                    assert!(pread(shared, 4096, off) == data[off as usize..off as usize + 4096]);
                    let r = AsyncReq::new(4096, off);
                    assert_eq!(AsyncReq::submit(r, shared, 0).0, 0);
                    poll_until(Duration::from_secs(20), || AsyncReq::calls(r) == 1);
                    assert_eq!(AsyncReq::ret(r), 4096);
                    // SAFETY: completed.
                    unsafe { AsyncReq::free(r) };
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                close(shared);
            })
        })
        .collect();
    while ops.load(Ordering::Relaxed) < 50 {
        std::thread::sleep(Duration::from_millis(5));
    }

    let (mut hung, mut failed) = (0, Vec::new());
    for i in 0..CHILDREN {
        // SAFETY: fork; the child runs `child` and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed: errno {}", errno());
        if pid == 0 {
            let code = std::panic::catch_unwind(|| child(&url, &data, i as u64)).unwrap_or(99);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        match wait_bounded(pid, CHILD_LIMIT) {
            None => hung += 1,
            Some(0) => {}
            Some(code) => failed.push(code),
        }
        // Let the threads move on to other locks before the next fork.
        std::thread::sleep(Duration::from_millis(1 + (i % 7) as u64));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    eprintln!(
        "{CHILDREN} forks during {} parent operations: {hung} hung, {} failed {failed:?}",
        ops.load(Ordering::Relaxed),
        failed.len()
    );
    assert_eq!(hung, 0, "children hung after fork");
    assert!(failed.is_empty(), "children failed: exit codes {failed:?}");
}
