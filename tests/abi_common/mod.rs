//! Shared helpers for the `engine_*`, `abi_*` and `lifecycle_*` integration
//! tests: calling the C ABI from Rust, running a test in its own process
//! (the runtime's config is process-global), async request bookkeeping, and a
//! throttling TCP proxy that makes nginx slow enough to cancel against.
#![allow(dead_code)]

use std::ffi::{c_void, CStr, CString};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gtio::ffi::*;

#[path = "../support/nginx.rs"]
pub mod nginx;

use nginx::{tempdir, test_data, Nginx, TempDir};

/// 5 MiB and an odd tail: six pieces at the default 1 MiB block size, the
/// last one short.
pub const FILE_LEN: usize = 5 * 1024 * 1024 + 12_345;
pub const FILE_NAME: &str = "data.bin";

/// The environment variable that tells a re-executed test binary which test
/// it is running as an isolated child.
const ROLE_ENV: &str = "GTIO_TEST_ISOLATED";

/// Run the test named `name` in a child process of its own (the test binary
/// re-executed with `--exact name`), with `envs` added. Returns true in the
/// child, where the caller runs the test body; in the parent it waits for
/// the child, fails with its output unless it passed, and returns false.
///
/// ```ignore
/// #[test]
/// fn my_test() {
///     if !isolate("my_test", &[]) { return; }
///     // body, alone in its process
/// }
/// ```
pub fn isolate(name: &str, envs: &[(&str, &str)]) -> bool {
    if std::env::var(ROLE_ENV).as_deref() == Ok(name) {
        return true;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let out_dir = tempdir();
    let (out_path, err_path) = (out_dir.join("stdout"), out_dir.join("stderr"));
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, name)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("re-exec the test binary");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) if s.success() && out.contains("1 passed") => false,
        Some(s) => {
            panic!("isolated test {name} failed ({s})\n--- stdout\n{out}\n--- stderr\n{err}")
        }
        None => panic!("isolated test {name} hung (> 60 s)\n--- stdout\n{out}\n--- stderr\n{err}"),
    }
}

/// A temp dir with `data.bin` (FILE_LEN seeded bytes) and nginx serving it.
pub struct Fixture {
    pub ngx: Nginx,
    pub data: Vec<u8>,
    pub dir: TempDir,
}

pub fn fixture() -> Fixture {
    fixture_with(FILE_LEN, 0x5eed)
}

pub fn fixture_with(len: usize, seed: u64) -> Fixture {
    let dir = tempdir();
    let data = test_data(len, seed);
    std::fs::write(dir.join(FILE_NAME), &data).unwrap();
    let ngx = Nginx::start(&dir);
    Fixture { ngx, data, dir }
}

impl Fixture {
    pub fn url(&self) -> String {
        self.ngx.url(FILE_NAME)
    }
}

pub fn new_err() -> GTIO_Error {
    GTIO_Error {
        code: 0,
        http_status: 0,
        message: [0; 512],
    }
}

pub fn msg(e: &GTIO_Error) -> String {
    // SAFETY: the library always NUL-terminates the message; a zeroed
    // GTIO_Error is an empty string.
    unsafe { CStr::from_ptr(e.message.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Open `uri` (with `cred`) or panic with the library's message.
pub fn open(uri: &str, cred: Option<&str>) -> *mut GTIO {
    match try_open(uri, cred) {
        Ok(h) => h,
        Err(e) => panic!(
            "gtio_open_uri({uri}) failed: errno {} http {}: {}",
            e.code,
            e.http_status,
            msg(&e)
        ),
    }
}

pub fn try_open(uri: &str, cred: Option<&str>) -> Result<*mut GTIO, Box<GTIO_Error>> {
    let u = cstr(uri);
    let c = cred.map(cstr);
    let mut err = new_err();
    let h = gtio_open_uri(
        u.as_ptr(),
        c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        &mut err,
    );
    if h.is_null() {
        assert_ne!(err.code, 0, "NULL handle without an error code");
        Err(Box::new(err))
    } else {
        Ok(h)
    }
}

pub fn close(h: *mut GTIO) {
    let mut err = new_err();
    assert_eq!(gtio_close(h, &mut err), 0, "gtio_close: {}", msg(&err));
}

/// pread into a fresh buffer; panics on error. Returns the bytes read.
pub fn pread(h: *mut GTIO, len: usize, off: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut err = new_err();
    let n = gtio_pread(h, buf.as_mut_ptr().cast(), len, off, &mut err);
    assert!(
        n >= 0,
        "gtio_pread({len} @ {off}) failed: errno {}: {}",
        err.code,
        msg(&err)
    );
    buf.truncate(n as usize);
    buf
}

/// The expected result of reading `len` at `off` from `data`.
pub fn expect(data: &[u8], len: usize, off: u64) -> &[u8] {
    let start = (off.min(data.len() as u64)) as usize;
    let end = start.saturating_add(len).min(data.len());
    &data[start..end]
}

/// Start the runtime with the defaults changed by `f`.
pub fn init(f: impl FnOnce(&mut GTIO_Config)) {
    let mut cfg: GTIO_Config = GTIO_Config {
        cache_bytes: 0,
        block_size: 0,
        workers: 0,
        max_conns_per_host: 0,
        readahead_max_bytes: 0,
        retries: 0,
        timeout_ms: 0,
        ring_entries: 0,
        poller_thread: 0,
        ca_bundle: std::ptr::null(),
    };
    gtio_config_default(&mut cfg);
    f(&mut cfg);
    let mut err = new_err();
    assert_eq!(
        gtio_lib_init(&cfg, &mut err),
        0,
        "gtio_lib_init: {}",
        msg(&err)
    );
}

pub fn gettid() -> i64 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// One asynchronous read: its callback struct, its buffer and what the
/// callback saw. Allocated with [`AsyncReq::new`] (a raw, stable address the
/// library may write to until the completion) and freed with
/// [`AsyncReq::free`].
#[repr(C)]
pub struct AsyncReq {
    pub ucb: gtio_usercb_t,
    pub buf: *mut u8,
    pub len: usize,
    pub offset: u64,
    /// How many times the callback ran (must end at exactly 1).
    pub calls: AtomicUsize,
    pub ret: AtomicI64,
    /// gettid() of the thread the callback ran on.
    pub tid: AtomicI64,
    /// Free for the test's own use (e.g. an owner id).
    pub tag: AtomicI64,
}

/// The callback used by [`AsyncReq`]: records the result and the thread.
pub unsafe extern "C" fn record_cb(ucb: *mut gtio_usercb_t) {
    // SAFETY: cb_data is the AsyncReq that owns this ucb (set by new).
    let r = unsafe { &*((*ucb).cb_data as *const AsyncReq) };
    // SAFETY: ucb is valid until the completion, which this is.
    r.ret.store(unsafe { (*ucb).ret }, Ordering::SeqCst);
    r.tid.store(gettid(), Ordering::SeqCst);
    r.calls.fetch_add(1, Ordering::SeqCst);
}

impl AsyncReq {
    pub fn new(len: usize, offset: u64) -> *mut AsyncReq {
        Self::with_cb(len, offset, record_cb)
    }

    pub fn with_cb(
        len: usize,
        offset: u64,
        cb: unsafe extern "C" fn(*mut gtio_usercb_t),
    ) -> *mut AsyncReq {
        let buf = Box::into_raw(vec![0u8; len].into_boxed_slice()).cast::<u8>();
        let r = Box::into_raw(Box::new(AsyncReq {
            ucb: gtio_usercb_t {
                cb_func: Some(cb),
                cb_data: std::ptr::null_mut(),
                ret: i64::MIN,
            },
            buf,
            len,
            offset,
            calls: AtomicUsize::new(0),
            ret: AtomicI64::new(i64::MIN),
            tid: AtomicI64::new(0),
            tag: AtomicI64::new(0),
        }));
        // SAFETY: r was just allocated.
        unsafe { (*r).ucb.cb_data = r.cast::<c_void>() };
        r
    }

    /// The request's `ucb`, for gtio_pread_async / gtio_cancel.
    pub fn ucb(r: *mut AsyncReq) -> *mut gtio_usercb_t {
        // SAFETY: r is live; addr_of_mut avoids making a reference.
        unsafe { std::ptr::addr_of_mut!((*r).ucb) }
    }

    /// Submit; returns gtio_pread_async's return value and the error.
    pub fn submit(r: *mut AsyncReq, h: *mut GTIO, flags: u32) -> (i32, GTIO_Error) {
        let mut err = new_err();
        // SAFETY: r is live.
        let (buf, len, off) = unsafe { ((*r).buf, (*r).len, (*r).offset) };
        let rc = gtio_pread_async(h, buf.cast(), len, off, flags, Self::ucb(r), &mut err);
        (rc, err)
    }

    pub fn get(r: *mut AsyncReq) -> &'static AsyncReq {
        // SAFETY: r is live until freed; callers only read atomics and, after
        // the completion, the buffer.
        unsafe { &*r }
    }

    /// The buffer (read it only after the completion, or after close).
    pub fn bytes(r: *mut AsyncReq) -> &'static mut [u8] {
        let a = Self::get(r);
        // SAFETY: buf is a live allocation of len bytes.
        unsafe { std::slice::from_raw_parts_mut(a.buf, a.len) }
    }

    pub fn calls(r: *mut AsyncReq) -> usize {
        Self::get(r).calls.load(Ordering::SeqCst)
    }

    pub fn ret(r: *mut AsyncReq) -> i64 {
        Self::get(r).ret.load(Ordering::SeqCst)
    }

    /// # Safety
    /// `r` came from `new` and no library thread can touch it any more.
    pub unsafe fn free(r: *mut AsyncReq) {
        // SAFETY: per the contract.
        let a = unsafe { Box::from_raw(r) };
        // SAFETY: buf/len are the boxed slice made in new.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(a.buf, a.len)) });
    }
}

/// Drain the calling thread's ring once: run every completion's
/// `ucp_fun`. Returns how many ran.
pub fn poll_once() -> usize {
    let mut comps: Vec<gtio_usercomp_t> = (0..64)
        .map(|_| gtio_usercomp_t {
            ucp_fun: None,
            ucp_res: 0,
            ucp_arg: std::ptr::null_mut(),
        })
        .collect();
    let mut total = 0;
    loop {
        let n = gtio_poll(comps.as_mut_ptr(), comps.len() as i32);
        assert!(n >= 0, "gtio_poll failed: errno {}", errno());
        for c in &comps[..n as usize] {
            let f = c.ucp_fun.expect("gtio_poll gave a NULL ucp_fun");
            // SAFETY: as the API says: call ucp_fun(ucp_res, ucp_arg).
            unsafe { f(c.ucp_res, c.ucp_arg) };
        }
        total += n as usize;
        if n == 0 {
            return total;
        }
    }
}

/// Wait on this thread's poll fd and drain until `done()` holds; panics
/// after `limit` (a hang, not a slow machine). Returns how many completions
/// this thread ran.
pub fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> usize {
    let fd = gtio_poll_fd();
    assert!(fd >= 0, "gtio_poll_fd failed: errno {}", errno());
    let deadline = Instant::now() + limit;
    let mut total = 0;
    loop {
        total += poll_once();
        if done() {
            return total;
        }
        assert!(
            Instant::now() < deadline,
            "completions did not arrive within {limit:?}"
        );
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 50) };
    }
}

/// Wait (sleeping) until `done()` holds; panics after `limit`.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP proxy to `127.0.0.1:upstream` that passes requests through at once
/// and responses at about `bytes_per_sec` (chunks with sleeps in between):
/// nginx made slow, so reads stay pending long enough to cancel them.
pub struct SlowProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    pub fn start(upstream: u16, bytes_per_sec: usize) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        const CHUNK: usize = 16 * 1024;
        let pause = Duration::from_secs_f64(CHUNK as f64 / bytes_per_sec as f64);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let stop3 = Arc::clone(&stop2);
                // Requests: straight through.
                std::thread::spawn(move || pump(client, server, None, &stop3));
                let stop4 = Arc::clone(&stop2);
                // Responses: throttled.
                std::thread::spawn(move || pump(s2, c2, Some((CHUNK, pause)), &stop4));
            }
        });
        SlowProxy { port, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    throttle: Option<(usize, Duration)>,
    stop: &AtomicBool,
) {
    let chunk = throttle.map_or(64 * 1024, |t| t.0);
    let mut buf = vec![0u8; chunk];
    loop {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some((_, pause)) = throttle {
            std::thread::sleep(pause);
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Deterministic xorshift64 for random offsets.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    test_data(len, seed)
}
