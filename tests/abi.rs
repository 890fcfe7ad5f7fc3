//! The C ABI's contract, called from Rust against a real nginx: bad and
//! stale handles, panics, per-thread completion rings, callbacks that call
//! back into gtio, cancel, close with reads pending, backpressure and the
//! poller thread.
//!
//! Tests that need a special runtime config (or env) run in a child process
//! of their own (`abi_common::isolate`).

mod abi_common;

use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use abi_common::*;
use gtio::ffi::*;

const MIB: usize = 1 << 20;
const LIMIT: Duration = Duration::from_secs(20);

fn assert_err<T: PartialEq + std::fmt::Debug>(
    got: T,
    fail: T,
    e: &GTIO_Error,
    code: i32,
    what: &str,
) {
    assert_eq!(got, fail, "{what}: expected failure");
    assert_eq!(e.code, code, "{what}: {}", msg(e));
}

/// Every handle-taking function refuses `h` with EBADF, and nothing is
/// queued or written.
fn assert_ebadf_everywhere(h: *mut GTIO, what: &str) {
    let ebadf = libc::EBADF;
    let mut buf = [0x5Au8; 64];
    let p = buf.as_mut_ptr().cast::<c_void>();
    let mut e = new_err();
    assert_err(
        gtio_size(h, &mut e),
        -1,
        &e,
        ebadf,
        &format!("{what}: size"),
    );
    let mut e = new_err();
    assert_err(
        gtio_pread(h, p, 64, 0, &mut e),
        -1,
        &e,
        ebadf,
        &format!("{what}: pread"),
    );
    let mut e = new_err();
    assert_err(
        gtio_read(h, p, 64, &mut e),
        -1,
        &e,
        ebadf,
        &format!("{what}: read"),
    );
    let mut e = new_err();
    assert_err(
        gtio_lseek(h, 0, libc::SEEK_SET, &mut e),
        -1,
        &e,
        ebadf,
        &format!("{what}: lseek"),
    );
    let mut e = new_err();
    assert_err(
        gtio_prefetch(h, 0, 100, &mut e),
        -1,
        &e,
        ebadf,
        &format!("{what}: prefetch"),
    );
    let mut fi: *mut GTIO_FileInfo = std::ptr::null_mut();
    let mut e = new_err();
    assert_err(
        gtio_get_file_list(h, &mut fi, &mut e),
        -1,
        &e,
        ebadf,
        &format!("{what}: file list"),
    );
    assert!(fi.is_null());
    let mut e = new_err();
    let d = gtio_opendir(h, &mut e);
    assert!(d.is_null(), "{what}: opendir");
    assert_eq!(e.code, ebadf, "{what}: opendir: {}", msg(&e));
    let r = AsyncReq::new(64, 0);
    let (rc, e) = AsyncReq::submit(r, h, 0);
    assert_err(rc, -1, &e, ebadf, &format!("{what}: pread_async"));
    let mut e = new_err();
    assert_err(
        gtio_cancel(h, AsyncReq::ucb(r), &mut e),
        -1,
        &e,
        ebadf,
        &format!("{what}: cancel"),
    );
    let mut e = new_err();
    assert_err(
        gtio_close(h, &mut e),
        -1,
        &e,
        ebadf,
        &format!("{what}: close"),
    );
    // NULL err everywhere.
    assert_eq!(gtio_size(h, std::ptr::null_mut()), -1);
    assert_eq!(gtio_pread(h, p, 64, 0, std::ptr::null_mut()), -1);
    assert_eq!(gtio_close(h, std::ptr::null_mut()), -1);
    // Nothing was queued, nothing written.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(poll_once(), 0, "{what}: a refused submission completed");
    assert_eq!(AsyncReq::calls(r), 0);
    assert!(buf.iter().all(|&b| b == 0x5A));
    // SAFETY: never queued.
    unsafe { AsyncReq::free(r) };
}

#[test]
fn stale_and_foreign_handles_are_ebadf() {
    let fx = fixture();
    let h = open(&fx.url(), None);
    assert!(pread(h, 10, 0) == fx.data[..10]);
    let mut e = new_err();
    let d = gtio_opendir(h, &mut e);
    assert!(!d.is_null(), "{}", msg(&e));
    close(h);
    assert_ebadf_everywhere(h, "closed handle");
    assert_ebadf_everywhere(std::ptr::null_mut(), "NULL");
    assert_ebadf_everywhere(0x1234 as *mut GTIO, "0x1234");
    let mut on_stack = [0u64; 8];
    assert_ebadf_everywhere(on_stack.as_mut_ptr().cast(), "stack pointer");
    assert_eq!(on_stack, [0; 8]);
    assert_ebadf_everywhere(usize::MAX as *mut GTIO, "all ones");

    // The directory cursor outlives its dataset; it reads, then closes once.
    let mut ent: Box<GTIO_Dirent> = Box::new(GTIO_Dirent {
        name: [0; GTIO_NAME_MAX],
        offset: 0,
        size: 0,
    });
    let mut e = new_err();
    assert_eq!(gtio_readdir(d, &mut *ent, &mut e), 0, "{}", msg(&e));
    // SAFETY: NUL-terminated by the library.
    let name = unsafe { std::ffi::CStr::from_ptr(ent.name.as_ptr()) };
    assert_eq!(name.to_str().unwrap(), FILE_NAME);
    assert_eq!((ent.offset, ent.size), (0, FILE_LEN as u64));
    assert_eq!(gtio_readdir(d, &mut *ent, &mut e), 1);
    assert_eq!(gtio_closedir(d, &mut e), 0, "{}", msg(&e));
    let mut e = new_err();
    assert_err(
        gtio_closedir(d, &mut e),
        -1,
        &e,
        libc::EBADF,
        "double closedir",
    );
    let mut e = new_err();
    assert_err(
        gtio_readdir(d, &mut *ent, &mut e),
        -1,
        &e,
        libc::EBADF,
        "readdir after closedir",
    );
    for bad in [0x1234usize, on_stack.as_mut_ptr() as usize, 0] {
        let bad = bad as *mut GTIO_Dir;
        let mut e = new_err();
        assert_err(
            gtio_closedir(bad, &mut e),
            -1,
            &e,
            libc::EBADF,
            "foreign closedir",
        );
        let mut e = new_err();
        assert_err(
            gtio_readdir(bad, &mut *ent, &mut e),
            -1,
            &e,
            libc::EBADF,
            "foreign readdir",
        );
    }
    // Freeing a list that gtio never gave is ignored.
    gtio_free_file_list(on_stack.as_mut_ptr().cast(), 3);
    gtio_free_file_list(std::ptr::null_mut(), 3);
    assert_eq!(on_stack, [0; 8]);

    // A file list, freed once (a second free is ignored).
    let h = open(&fx.url(), None);
    let mut fi: *mut GTIO_FileInfo = std::ptr::null_mut();
    let mut e = new_err();
    assert_eq!(gtio_get_file_list(h, &mut fi, &mut e), 1, "{}", msg(&e));
    // SAFETY: one entry, as returned.
    let f = unsafe { &*fi };
    assert_eq!((f.offset, f.size), (0, FILE_LEN as u64));
    gtio_free_file_list(fi, 1);
    gtio_free_file_list(fi, 1);
    close(h);
    assert_ebadf_everywhere(h, "second handle, closed");
}

/// Needs the library's test hook: `cargo test --features test-hooks` (as
/// `make test` runs it).
#[cfg(feature = "test-hooks")]
#[test]
fn panic_in_an_export_is_an_error_not_an_abort() {
    if !isolate(
        "panic_in_an_export_is_an_error_not_an_abort",
        &[("GTIO_TEST_PANIC_IN", "gtio_size")],
    ) {
        return;
    }
    let fx = fixture();
    let h = open(&fx.url(), None);
    for _ in 0..3 {
        let mut e = new_err();
        assert_eq!(gtio_size(h, &mut e), -1);
        assert_eq!(e.code, libc::EIO, "{}", msg(&e));
        assert!(msg(&e).contains("internal error"), "{}", msg(&e));
        assert_eq!(gtio_size(h, std::ptr::null_mut()), -1);
    }
    // Still usable: reads, async reads, a new handle.
    assert!(pread(h, 3 * MIB, 100) == fx.data[100..3 * MIB + 100]);
    let r = AsyncReq::new(1000, 4 * MIB as u64);
    assert_eq!(AsyncReq::submit(r, h, 0).0, 0);
    poll_until(LIMIT, || AsyncReq::calls(r) == 1);
    assert_eq!(AsyncReq::ret(r), 1000);
    assert!(AsyncReq::bytes(r) == &fx.data[4 * MIB..4 * MIB + 1000]);
    // SAFETY: completed.
    unsafe { AsyncReq::free(r) };
    close(h);
    let h = open(&fx.url(), None);
    assert!(pread(h, 10, 5) == fx.data[5..15]);
    close(h);
}

#[test]
fn each_thread_polls_only_its_own_completions() {
    let fx = fixture();
    let h = open(&fx.url(), None) as usize;
    let data = &fx.data;
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                let h = h as *mut GTIO;
                let me = gettid();
                let mut rng = Rng(0xabcdef + t);
                let reqs: Vec<*mut AsyncReq> = (0..24)
                    .map(|i| {
                        let len = rng.below(MIB as u64 * 2) as usize + 1;
                        let off = rng.below(FILE_LEN as u64 + 100);
                        let r = AsyncReq::new(len, off);
                        AsyncReq::get(r).tag.store(t as i64, Ordering::SeqCst);
                        let flags = if i % 3 == 0 { GTIO_READ_BACKGROUND } else { 0 };
                        let (rc, e) = AsyncReq::submit(r, h, flags);
                        assert_eq!(rc, 0, "thread {t}: submit: {}", msg(&e));
                        r
                    })
                    .collect();
                let ran = poll_until(LIMIT, || reqs.iter().all(|&r| AsyncReq::calls(r) >= 1));
                assert_eq!(ran, reqs.len(), "thread {t} ran a foreign completion");
                std::thread::sleep(Duration::from_millis(20));
                assert_eq!(poll_once(), 0, "thread {t}: extra completions");
                for &r in &reqs {
                    let a = AsyncReq::get(r);
                    assert_eq!(AsyncReq::calls(r), 1);
                    assert_eq!(
                        a.tid.load(Ordering::SeqCst),
                        me,
                        "callback on another thread"
                    );
                    assert_eq!(a.tag.load(Ordering::SeqCst), t as i64);
                    let want = expect(data, a.len, a.offset);
                    assert_eq!(AsyncReq::ret(r), want.len() as i64);
                    assert!(
                        &AsyncReq::bytes(r)[..want.len()] == want,
                        "thread {t}: bytes"
                    );
                    // SAFETY: completed.
                    unsafe { AsyncReq::free(r) };
                }
            });
        }
    });
    close(h as *mut GTIO);
}

/// What a re-entering callback works with (pointed to by `AsyncReq::tag`).
struct Reenter {
    h: *mut GTIO,
    sync_off: u64,
    sync_bytes: Mutex<Option<Vec<u8>>>,
    nested: *mut AsyncReq,
    nested_rc: AtomicI32,
}

/// A callback that reads synchronously and submits another async read.
unsafe extern "C" fn reenter_cb(ucb: *mut gtio_usercb_t) {
    // SAFETY: cb_data is the owning AsyncReq; its tag is a live Reenter.
    unsafe { record_cb(ucb) };
    let r = unsafe { &*((*ucb).cb_data as *const AsyncReq) };
    let ctx = unsafe { &*(r.tag.load(Ordering::SeqCst) as usize as *const Reenter) };
    let mut buf = vec![0u8; 70_000];
    let mut e = new_err();
    let n = gtio_pread(
        ctx.h,
        buf.as_mut_ptr().cast(),
        buf.len(),
        ctx.sync_off,
        &mut e,
    );
    if n >= 0 {
        buf.truncate(n as usize);
        *ctx.sync_bytes.lock().unwrap() = Some(buf);
    }
    let (rc, _) = AsyncReq::submit(ctx.nested, ctx.h, 0);
    ctx.nested_rc.store(rc, Ordering::SeqCst);
}

/// A callback that drains the ring itself (runs what it finds).
unsafe extern "C" fn polling_cb(ucb: *mut gtio_usercb_t) {
    // SAFETY: as record_cb.
    unsafe { record_cb(ucb) };
    let r = unsafe { &*((*ucb).cb_data as *const AsyncReq) };
    r.tag.store(poll_once() as i64, Ordering::SeqCst);
}

#[test]
fn callbacks_may_call_back_into_gtio() {
    let fx = fixture();
    let h = open(&fx.url(), None);
    let me = gettid();

    // 1. Sync pread (of an uncached piece) and async submit from a callback.
    let nested = AsyncReq::new(5000, 5 * MIB as u64 + 10);
    let ctx = Box::new(Reenter {
        h,
        sync_off: 3 * MIB as u64 - 7,
        sync_bytes: Mutex::new(None),
        nested,
        nested_rc: AtomicI32::new(99),
    });
    let outer = AsyncReq::with_cb(100, 2 * MIB as u64, reenter_cb);
    AsyncReq::get(outer)
        .tag
        .store(&*ctx as *const Reenter as i64, Ordering::SeqCst);
    assert_eq!(AsyncReq::submit(outer, h, 0).0, 0);
    poll_until(LIMIT, || {
        AsyncReq::calls(outer) == 1 && AsyncReq::calls(nested) == 1
    });
    assert_eq!(AsyncReq::ret(outer), 100);
    assert!(AsyncReq::bytes(outer) == &fx.data[2 * MIB..2 * MIB + 100]);
    let sync = ctx
        .sync_bytes
        .lock()
        .unwrap()
        .take()
        .expect("sync pread in callback failed");
    assert!(sync == fx.data[3 * MIB - 7..3 * MIB - 7 + 70_000]);
    assert_eq!(ctx.nested_rc.load(Ordering::SeqCst), 0);
    assert_eq!(AsyncReq::ret(nested), 5000);
    assert!(AsyncReq::bytes(nested) == &fx.data[5 * MIB + 10..5 * MIB + 5010]);
    assert_eq!(AsyncReq::get(nested).tid.load(Ordering::SeqCst), me);

    // 2. A callback that calls gtio_poll: take one completion at the top
    // level, and let its callback drain the other.
    assert!(pread(h, MIB, 0).len() == MIB); // cache piece 0: completions are immediate
    let a = AsyncReq::with_cb(10, 0, polling_cb);
    let b = AsyncReq::new(20, 100);
    assert_eq!(AsyncReq::submit(a, h, 0).0, 0);
    assert_eq!(AsyncReq::submit(b, h, 0).0, 0);
    let mut comps = [gtio_usercomp_t {
        ucp_fun: None,
        ucp_res: 0,
        ucp_arg: std::ptr::null_mut(),
    }];
    let fd = gtio_poll_fd();
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(
        unsafe { libc::poll(&mut p, 1, 5000) },
        1,
        "poll fd not readable"
    );
    assert_eq!(gtio_poll(comps.as_mut_ptr(), 1), 1);
    assert_eq!(comps[0].ucp_arg, AsyncReq::ucb(a).cast::<c_void>());
    // SAFETY: as the API says.
    unsafe { (comps[0].ucp_fun.unwrap())(comps[0].ucp_res, comps[0].ucp_arg) };
    assert_eq!(AsyncReq::calls(a), 1);
    assert_eq!(
        AsyncReq::get(a).tag.load(Ordering::SeqCst),
        1,
        "nested gtio_poll"
    );
    assert_eq!(AsyncReq::calls(b), 1);
    assert_eq!((AsyncReq::ret(a), AsyncReq::ret(b)), (10, 20));
    assert!(AsyncReq::bytes(b) == &fx.data[100..120]);
    assert_eq!(poll_once(), 0);
    // gtio_poll argument checks.
    assert_eq!(gtio_poll(std::ptr::null_mut(), 0), 0);
    assert_eq!(gtio_poll(std::ptr::null_mut(), 4), -1);
    assert_eq!(errno(), libc::EINVAL);

    // A ucb already in flight is refused (EINVAL), and nothing is lost.
    let slow = AsyncReq::new(1000, 4 * MIB as u64 + 3);
    assert_eq!(AsyncReq::submit(slow, h, 0).0, 0);
    let (rc, e) = AsyncReq::submit(slow, h, 0);
    if rc == -1 {
        assert_eq!(e.code, libc::EINVAL, "{}", msg(&e));
    }
    // Either refused (pending), or accepted because the first had completed:
    // completions = accepted submissions.
    let want = if rc == 0 { 2 } else { 1 };
    poll_until(LIMIT, || AsyncReq::calls(slow) == want);
    assert_eq!(AsyncReq::ret(slow), 1000);

    close(h);
    // SAFETY: all completed; the context outlived every callback.
    unsafe {
        for r in [outer, nested, a, b, slow] {
            AsyncReq::free(r);
        }
    }
    drop(ctx);
}

/// Reads through a throttled proxy stay pending long enough to cancel.
#[test]
fn cancel_pending_and_finished_reads() {
    let fx = fixture();
    let proxy = SlowProxy::start(fx.ngx.port, 2 << 20);
    let h = open(&proxy.url(FILE_NAME), None);

    // Finished reads: ENOENT, whether the completion was drained or not.
    let r = AsyncReq::new(100, 7);
    assert_eq!(AsyncReq::submit(r, h, 0).0, 0);
    poll_until(LIMIT, || AsyncReq::calls(r) == 1);
    assert_eq!(AsyncReq::ret(r), 100);
    assert!(AsyncReq::bytes(r) == &fx.data[7..107]);
    let mut e = new_err();
    assert_err(
        gtio_cancel(h, AsyncReq::ucb(r), &mut e),
        -1,
        &e,
        libc::ENOENT,
        "cancel finished",
    );
    // A cache hit completes at submission: its completion waits in the ring.
    let hit = AsyncReq::new(50, 500);
    assert_eq!(AsyncReq::submit(hit, h, 0).0, 0);
    let mut e = new_err();
    assert_err(
        gtio_cancel(h, AsyncReq::ucb(hit), &mut e),
        -1,
        &e,
        libc::ENOENT,
        "cancel hit",
    );
    poll_until(LIMIT, || AsyncReq::calls(hit) == 1);
    assert_eq!(AsyncReq::ret(hit), 50);
    assert!(AsyncReq::bytes(hit) == &fx.data[500..550]);

    // Pending reads, one per uncached piece, cancelled at once.
    let reqs: Vec<*mut AsyncReq> = (1..6)
        .map(|p| AsyncReq::new(MIB / 2, (p * MIB + 1000) as u64))
        .collect();
    let mut cancelled = Vec::new();
    for &r in &reqs {
        let (rc, e) = AsyncReq::submit(r, h, 0);
        assert_eq!(rc, 0, "{}", msg(&e));
        let mut e = new_err();
        let c = gtio_cancel(h, AsyncReq::ucb(r), &mut e);
        if c == -1 {
            assert_eq!(e.code, libc::ENOENT, "{}", msg(&e));
        }
        cancelled.push(c == 0);
        // A second cancel never succeeds.
        let mut e = new_err();
        assert_err(
            gtio_cancel(h, AsyncReq::ucb(r), &mut e),
            -1,
            &e,
            libc::ENOENT,
            "cancel twice",
        );
    }
    assert!(
        cancelled.iter().any(|&c| c),
        "no read was still pending behind a 2 MiB/s proxy"
    );
    poll_until(LIMIT, || reqs.iter().all(|&r| AsyncReq::calls(r) >= 1));
    for (&r, &c) in reqs.iter().zip(&cancelled) {
        let a = AsyncReq::get(r);
        if c {
            assert_eq!(AsyncReq::ret(r), -i64::from(libc::ECANCELED));
        } else {
            assert_eq!(AsyncReq::ret(r), a.len as i64);
            assert!(AsyncReq::bytes(r) == expect(&fx.data, a.len, a.offset));
        }
        // After its completion the library never touches the buffer.
        AsyncReq::bytes(r).fill(0xC3);
    }
    // Let the downloads behind the cancelled reads finish (~0.5 s each at
    // 2 MiB/s), then check: still exactly one completion each, buffers
    // untouched.
    let mut probe = vec![0u8; 10];
    let mut e = new_err();
    for p in 1..6u64 {
        // A sync read of each piece returns once its download is done.
        assert_eq!(
            gtio_pread(h, probe.as_mut_ptr().cast(), 10, p * MIB as u64, &mut e),
            10,
            "{}",
            msg(&e)
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(poll_once(), 0, "a second completion arrived");
    for &r in &reqs {
        assert_eq!(AsyncReq::calls(r), 1);
        assert!(
            AsyncReq::bytes(r).iter().all(|&b| b == 0xC3),
            "buffer written after completion"
        );
    }
    close(h);
    // SAFETY: all completed.
    unsafe {
        for r in reqs.into_iter().chain([r, hit]) {
            AsyncReq::free(r);
        }
    }
}

#[test]
fn close_cancels_pending_reads_and_lets_go_of_buffers() {
    let fx = fixture();
    let proxy = SlowProxy::start(fx.ngx.port, 2 << 20);
    let h = open(&proxy.url(FILE_NAME), None);
    let reqs: Vec<*mut AsyncReq> = (0..5)
        .map(|p| AsyncReq::new(MIB - 100, (p * MIB + 50) as u64))
        .collect();
    for &r in &reqs {
        let (rc, e) = AsyncReq::submit(r, h, 0);
        assert_eq!(rc, 0, "{}", msg(&e));
    }
    // A sync read on another thread, running across the close, finishes
    // normally.
    let hu = h as usize;
    let data = &fx.data;
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut buf = vec![0u8; 1000];
            let mut e = new_err();
            // Piece 4: joins the download of the 5th async read (single
            // flight), which takes ~0.5 s behind the proxy.
            let n = gtio_pread(
                hu as *mut GTIO,
                buf.as_mut_ptr().cast(),
                1000,
                4 * MIB as u64 + 500,
                &mut e,
            );
            (n, e.code, buf)
        });
        std::thread::sleep(Duration::from_millis(100));
        close(h);
        // close returned: no library thread may write these buffers again.
        for &r in &reqs {
            AsyncReq::bytes(r).fill(0xEE);
        }
        let (n, code, buf) = reader.join().unwrap();
        // Started before the close: it either finished or, had it raced
        // the registry, saw EBADF; it never saw other bytes.
        if n >= 0 {
            assert_eq!(n, 1000);
            assert!(buf == data[4 * MIB + 500..4 * MIB + 1500]);
        } else {
            assert_eq!(code, libc::EBADF);
        }
    });
    poll_until(LIMIT, || reqs.iter().all(|&r| AsyncReq::calls(r) >= 1));
    for &r in &reqs {
        assert_eq!(AsyncReq::ret(r), -i64::from(libc::ECANCELED));
    }
    // The downloads behind them finish now (~0.5 s at 2 MiB/s); their bytes
    // must not land in the buffers.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(poll_once(), 0, "a second completion arrived");
    for &r in &reqs {
        assert_eq!(AsyncReq::calls(r), 1);
        assert!(
            AsyncReq::bytes(r).iter().all(|&b| b == 0xEE),
            "buffer written after gtio_close returned"
        );
    }
    // SAFETY: completed, handle closed.
    unsafe {
        for r in reqs {
            AsyncReq::free(r);
        }
    }
}

#[test]
fn full_ring_gives_eagain_and_loses_nothing() {
    if !isolate("full_ring_gives_eagain_and_loses_nothing", &[]) {
        return;
    }
    init(|c| c.ring_entries = 4);
    let fx = fixture();
    let h = open(&fx.url(), None);
    let reqs: Vec<*mut AsyncReq> = (0..5).map(|i| AsyncReq::new(1000, i * 777_777)).collect();
    for &r in &reqs[..4] {
        let (rc, e) = AsyncReq::submit(r, h, 0);
        assert_eq!(rc, 0, "{}", msg(&e));
    }
    let (rc, e) = AsyncReq::submit(reqs[4], h, 0);
    assert_err(rc, -1, &e, libc::EAGAIN, "5th submission");
    // Completions that wait undrained still hold their slots.
    wait_until(LIMIT, || {
        let mut p = libc::pollfd {
            fd: gtio_poll_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 10) == 1 }
    });
    std::thread::sleep(Duration::from_millis(300));
    let (rc, e) = AsyncReq::submit(reqs[4], h, 0);
    assert_err(
        rc,
        -1,
        &e,
        libc::EAGAIN,
        "5th submission, completions undrained",
    );
    let ran = poll_until(LIMIT, || reqs[..4].iter().all(|&r| AsyncReq::calls(r) == 1));
    assert_eq!(ran, 4);
    assert_eq!(
        AsyncReq::calls(reqs[4]),
        0,
        "a refused submission completed"
    );
    let (rc, e) = AsyncReq::submit(reqs[4], h, 0);
    assert_eq!(rc, 0, "after draining: {}", msg(&e));
    poll_until(LIMIT, || AsyncReq::calls(reqs[4]) == 1);
    for &r in &reqs {
        let a = AsyncReq::get(r);
        assert_eq!(AsyncReq::ret(r), 1000);
        assert!(AsyncReq::bytes(r) == expect(&fx.data, a.len, a.offset));
    }

    // Flow control by EAGAIN: 200 reads through a 4-entry ring, every one
    // completes exactly once.
    let mut rng = Rng(42);
    let all: Vec<*mut AsyncReq> = (0..200)
        .map(|_| AsyncReq::new(rng.below(300_000) as usize + 1, rng.below(FILE_LEN as u64)))
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for &r in &all {
        loop {
            let (rc, e) = AsyncReq::submit(r, h, 0);
            if rc == 0 {
                accepted += 1;
                break;
            }
            assert_eq!(e.code, libc::EAGAIN, "{}", msg(&e));
            refused += 1;
            let done =
                |all: &[*mut AsyncReq]| all.iter().map(|&r| AsyncReq::calls(r)).sum::<usize>();
            let before = done(&all);
            poll_until(LIMIT, || done(&all) > before);
        }
    }
    poll_until(LIMIT, || all.iter().all(|&r| AsyncReq::calls(r) >= 1));
    assert_eq!(accepted, 200);
    assert!(refused > 0, "a 4-entry ring never filled");
    for &r in &all {
        let a = AsyncReq::get(r);
        assert_eq!(AsyncReq::calls(r), 1);
        let want = expect(&fx.data, a.len, a.offset);
        assert_eq!(AsyncReq::ret(r), want.len() as i64);
        assert!(&AsyncReq::bytes(r)[..want.len()] == want);
    }
    close(h);
}

#[test]
fn poller_thread_runs_the_callbacks() {
    if !isolate("poller_thread_runs_the_callbacks", &[]) {
        return;
    }
    init(|c| c.poller_thread = 1);
    let fx = fixture();
    let h = open(&fx.url(), None);
    let me = gettid();
    let mut rng = Rng(7);
    let mut reqs: Vec<*mut AsyncReq> = (0..16)
        .map(|_| {
            AsyncReq::new(
                rng.below(2 * MIB as u64) as usize + 1,
                rng.below(FILE_LEN as u64),
            )
        })
        .collect();
    for &r in &reqs {
        assert_eq!(AsyncReq::submit(r, h, 0).0, 0);
    }
    // Submitted by a thread that exits at once: still completed.
    let hu = h as usize;
    let from_thread: Vec<usize> = std::thread::spawn(move || {
        (0..4)
            .map(|i| {
                let r = AsyncReq::new(3000, i * MIB as u64 + 11);
                assert_eq!(AsyncReq::submit(r, hu as *mut GTIO, 0).0, 0);
                r as usize
            })
            .collect()
    })
    .join()
    .unwrap();
    reqs.extend(from_thread.into_iter().map(|r| r as *mut AsyncReq));
    // A callback that reads synchronously and submits again, on the poller.
    let nested = AsyncReq::new(4000, 3 * MIB as u64 - 2000);
    let ctx = Box::new(Reenter {
        h,
        sync_off: 4 * MIB as u64 + 5,
        sync_bytes: Mutex::new(None),
        nested,
        nested_rc: AtomicI32::new(99),
    });
    let outer = AsyncReq::with_cb(10, 1, reenter_cb);
    AsyncReq::get(outer)
        .tag
        .store(&*ctx as *const Reenter as i64, Ordering::SeqCst);
    assert_eq!(AsyncReq::submit(outer, h, 0).0, 0);
    reqs.push(outer);

    let deadline = std::time::Instant::now() + LIMIT;
    while !(reqs.iter().all(|&r| AsyncReq::calls(r) >= 1) && AsyncReq::calls(nested) >= 1) {
        if std::time::Instant::now() > deadline {
            let missing: Vec<usize> = reqs
                .iter()
                .enumerate()
                .filter(|(_, &r)| AsyncReq::calls(r) == 0)
                .map(|(i, _)| i)
                .collect();
            panic!(
                "callbacks never ran: requests {missing:?} of {} (16..20 submitted by an \
                 exited thread, 20 re-entering), nested: {}",
                reqs.len(),
                AsyncReq::calls(nested)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    reqs.push(nested);
    let poller = AsyncReq::get(reqs[0]).tid.load(Ordering::SeqCst);
    for &r in &reqs {
        let a = AsyncReq::get(r);
        assert_eq!(AsyncReq::calls(r), 1);
        let tid = a.tid.load(Ordering::SeqCst);
        assert_ne!(tid, me, "callback ran on the submitting thread");
        assert_eq!(tid, poller, "callbacks on several threads");
        let want = expect(&fx.data, a.len, a.offset);
        assert_eq!(AsyncReq::ret(r), want.len() as i64);
        assert!(&AsyncReq::bytes(r)[..want.len()] == want);
    }
    assert_eq!(ctx.nested_rc.load(Ordering::SeqCst), 0);
    let sync = ctx
        .sync_bytes
        .lock()
        .unwrap()
        .take()
        .expect("sync pread on the poller failed");
    assert!(sync == fx.data[4 * MIB + 5..4 * MIB + 5 + 70_000]);
    close(h);
    std::thread::sleep(Duration::from_millis(50));
    for &r in &reqs {
        assert_eq!(AsyncReq::calls(r), 1);
    }
}
