//! A misbehaving HTTP origin for fault tests.
//!
//! `FaultyOrigin` serves in-memory objects (one, at any path, or a map of
//! paths for a multi-file web seed) over HTTP/1.1 with keep-alive, ranges,
//! `ETag`/`If-Range`, and then breaks the responses on demand: resets before
//! or in the middle of a reply, 5xx/429 with `Retry-After`, truncated bodies,
//! stalls, a lying `Content-Length`, ignored ranges, corrupted bytes, content
//! that changes under the client, and redirects.
//!
//! Faults are chosen per request, from a script (a queue consumed by the next
//! requests, in order) first and then from a rate (probability `p`, a seeded
//! xorshift so that a failing run can be replayed). With
//! [`FaultyOrigin::only_ranged`] set, requests without `Range` are served
//! cleanly and do not consume the script. Every request is recorded with its
//! headers, so tests can assert what the client sent (e.g. no
//! `Authorization` after a cross-host redirect).
//!
//! Request parsing reuses `gtio_cli::serve::http`, so the fault server is exactly
//! as strict as `gtio serve`. A "reset" is a real TCP RST: `SO_LINGER` with a
//! zero timeout, then close.
//!
//! Dropping the origin stops it: a flag plus a connection to itself wakes the
//! accept loop, live sockets are shut down so blocked reads return, stalls
//! sleep in short slices that watch the flag, and every thread is joined.
//!
//! Include it from an integration test with
//! `#[path = "support/faulty_origin.rs"] mod faulty_origin;`.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use gtio_cli::serve::files;
use gtio_cli::serve::http::{self, ByteRange, RangeRequest, Request, ResponseHead};

/// What to do to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Read the request, then close with RST and no reply.
    ResetBeforeReply,
    /// Send the head and half the body, then RST.
    ResetMidBody,
    /// Answer this status (503, 500, 429, ...) with an optional `Retry-After`.
    Status(u16, Option<u32>),
    /// Promise the full `Content-Length`, send half the body, close (FIN).
    TruncateBody,
    /// Send the head and half the body, sleep, then close (FIN).
    StallMidBody(Duration),
    /// Send the whole body under a `Content-Length` 16 bytes larger, then
    /// keep the connection open and idle until the client gives up.
    LieContentLength,
    /// Answer a range request with 200 and the full body.
    IgnoreRange,
    /// Flip one byte (the middle one) of the body sent.
    CorruptBytes,
    /// Before answering, replace the object with new content of the same
    /// size (every byte inverted) and a new `ETag`; the reply then follows
    /// the usual If-Range rules against the new version.
    ChangeEtag,
    /// Answer with a redirect to `to`.
    Redirect { to: String, status: u16 },
    /// Serve normally: a placeholder in a script.
    Pass,
}

/// One request as the origin saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The request-target as sent (query included).
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The fault applied to it, if any.
    pub fault: Option<Fault>,
}

impl RecordedRequest {
    /// First value of a header, name case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Object {
    bytes: Arc<Vec<u8>>,
    etag: String,
    modified: u64,
}

struct Rate {
    p: f64,
    faults: Vec<Fault>,
    rng: u64,
}

#[derive(Default)]
struct State {
    objects: HashMap<String, Object>,
    generation: u64,
    script: VecDeque<Fault>,
    rate: Option<Rate>,
    only_ranged: bool,
    redirects: HashMap<String, (String, u16)>,
    requests: Vec<RecordedRequest>,
}

impl State {
    /// Install a new version: a fresh ETag even when the bytes are the same,
    /// because the point of the exercise is "the object changed".
    fn put(&mut self, path: &str, bytes: Vec<u8>) {
        self.generation += 1;
        let obj = Object {
            etag: format!("\"v{}-{:x}\"", self.generation, bytes.len()),
            // A distinct Last-Modified per version, so date If-Range fails too.
            modified: 1_700_000_000 + self.generation,
            bytes: Arc::new(bytes),
        };
        self.objects.insert(normalize(path), obj);
    }

    /// The key an incoming target maps to: its decoded path, or the only
    /// object when there is just one.
    fn key_for(&self, target: &str) -> Option<String> {
        let raw = files::target_path(target).unwrap_or(target);
        let decoded = files::percent_decode(raw)
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| raw.to_string());
        for k in [decoded, raw.to_string()] {
            if self.objects.contains_key(&k) {
                return Some(k);
            }
        }
        match self.objects.len() {
            1 => self.objects.keys().next().cloned(),
            _ => None,
        }
    }

    fn next_random(&mut self) -> Option<Fault> {
        let rate = self.rate.as_mut()?;
        if rate.faults.is_empty() {
            return None;
        }
        let roll = xorshift(&mut rate.rng) as f64 / u64::MAX as f64;
        if roll >= rate.p {
            return None;
        }
        let i = (xorshift(&mut rate.rng) % rate.faults.len() as u64) as usize;
        rate.faults.get(i).cloned()
    }
}

/// xorshift64: tiny, seeded, good enough to pick faults.
fn xorshift(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

fn normalize(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    conns: Mutex<Conns>,
}

/// Live sockets (duplicates, so Drop can shut them down) and thread handles.
#[derive(Default)]
struct Conns {
    next_id: u64,
    live: HashMap<u64, TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fault-injecting origin; stops on drop.
pub struct FaultyOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultyOrigin {
    /// Serve `objects` on 127.0.0.1 with a free port. Panics if it cannot
    /// bind: this is test support.
    pub fn start(objects: Vec<(String, Vec<u8>)>) -> FaultyOrigin {
        let mut state = State::default();
        for (p, b) in objects {
            state.put(&p, b);
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind faulty origin");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("faulty-origin-accept".into())
            .spawn(move || accept_loop(listener, s))
            .expect("spawn");
        FaultyOrigin {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// A single object served at any path.
    pub fn single(bytes: Vec<u8>) -> FaultyOrigin {
        Self::start(vec![("/".to_string(), bytes)])
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path` (a `/` is added if missing).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, normalize(path))
    }

    /// Apply `faults` to the next requests, one each, in order (appended to
    /// whatever is still queued).
    pub fn script(&self, faults: Vec<Fault>) {
        self.shared.state().script.extend(faults);
    }

    /// Drop what is left of the script.
    pub fn clear_script(&self) {
        self.shared.state().script.clear();
    }

    /// For every request the script does not cover: with probability `p`
    /// apply one of `faults`, picked by a xorshift seeded with `seed`.
    pub fn set_rate(&self, p: f64, faults: Vec<Fault>, seed: u64) {
        // xorshift has a fixed point at 0.
        let rng = if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        };
        self.shared.state().rate = Some(Rate { p, faults, rng });
    }

    /// Stop random faults (the script is unaffected).
    pub fn clear_rate(&self) {
        self.shared.state().rate = None;
    }

    /// Only requests with a `Range` header get faults (scripted or random).
    pub fn only_ranged(&self, yes: bool) {
        self.shared.state().only_ranged = yes;
    }

    /// Replace the object `path` maps to (with a single object, that object,
    /// whatever the path), or add one at `path` if it maps to nothing. The
    /// new version gets a new ETag and Last-Modified, even for equal bytes.
    pub fn set_object(&self, path: &str, bytes: Vec<u8>) {
        let mut st = self.shared.state();
        let key = st
            .key_for(&normalize(path))
            .unwrap_or_else(|| normalize(path));
        st.put(&key, bytes);
    }

    /// The current ETag of the object a path maps to.
    pub fn etag(&self, path: &str) -> Option<String> {
        let st = self.shared.state();
        let key = st.key_for(&normalize(path))?;
        st.objects.get(&key).map(|o| o.etag.clone())
    }

    /// Redirect every request for `path` (exact target path, query ignored)
    /// when no other fault applies; `None` removes the redirect.
    pub fn redirect(&self, path: &str, to: Option<(String, u16)>) {
        let mut st = self.shared.state();
        match to {
            Some(t) => st.redirects.insert(normalize(path), t),
            None => st.redirects.remove(&normalize(path)),
        };
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.state().requests.len()
    }

    /// Requests whose target path (query ignored) is `path`.
    pub fn request_count_for(&self, path: &str) -> usize {
        let want = normalize(path);
        self.shared
            .state()
            .requests
            .iter()
            .filter(|r| files::target_path(&r.path).unwrap_or(&r.path) == want)
            .count()
    }
}

impl Drop for FaultyOrigin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).is_ok() {
            if let Some(a) = self.accept.take() {
                let _ = a.join();
            }
        }
        let threads = {
            let mut c = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
            for s in c.live.values() {
                let _ = s.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut c.threads)
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let mut c = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        c.threads.retain(|t| !t.is_finished());
        let id = c.next_id;
        c.next_id += 1;
        c.live.insert(id, clone);
        let s = Arc::clone(&shared);
        let t = std::thread::Builder::new()
            .name("faulty-origin-conn".into())
            .spawn(move || {
                serve_connection(stream, &s);
                // Dropping the last duplicate of the socket is what sends
                // the FIN (or, after SO_LINGER 0, the RST).
                s.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .live
                    .remove(&id);
            });
        if let Ok(t) = t {
            c.threads.push(t);
        } else {
            c.live.remove(&id);
        }
    }
}

/// Arrange for close() to send RST instead of FIN.
fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd owned by `s`, and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// What the origin decided for one request, taken under the state lock.
struct Plan {
    fault: Option<Fault>,
    object: Option<(Arc<Vec<u8>>, String, u64)>,
}

fn plan(shared: &Shared, req: &Request) -> Plan {
    let mut st = shared.state();
    let eligible = !st.only_ranged || req.header("range").is_some();
    let mut fault = None;
    if eligible {
        fault = st.script.pop_front().or_else(|| st.next_random());
        if fault == Some(Fault::Pass) {
            fault = None;
        }
    }
    let path = files::target_path(&req.target)
        .unwrap_or(&req.target)
        .to_string();
    if fault.is_none() {
        if let Some((to, status)) = st.redirects.get(&path) {
            fault = Some(Fault::Redirect {
                to: to.clone(),
                status: *status,
            });
        }
    }
    let key = st.key_for(&req.target);
    if let (Some(Fault::ChangeEtag), Some(k)) = (&fault, &key) {
        let inverted = st
            .objects
            .get(k)
            .map(|o| o.bytes.iter().map(|b| !b).collect());
        if let Some(bytes) = inverted {
            st.put(k, bytes);
        }
    }
    let object = key
        .and_then(|k| st.objects.get(&k))
        .map(|o| (Arc::clone(&o.bytes), o.etag.clone(), o.modified));
    st.requests.push(RecordedRequest {
        method: req.method.clone(),
        path: req.target.clone(),
        headers: req.headers.clone(),
        fault: fault.clone(),
    });
    Plan { fault, object }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    // A backstop only: Drop unblocks reads by shutting the socket down.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut w = stream;
    while !shared.stop.load(Ordering::SeqCst) {
        let req = match http::read_request(&mut reader, &http::Limits::default()) {
            Ok(r) => r,
            Err(e) => {
                if let Some(status) = e.status() {
                    let _ = ResponseHead::new(status)
                        .with("Content-Length", 0)
                        .with("Connection", "close")
                        .write_to(&mut w);
                }
                return;
            }
        };
        if req.body_len > 0 {
            let n = req.body_len;
            if io::copy(&mut (&mut reader).take(n), &mut io::sink()).ok() != Some(n) {
                return;
            }
        }
        let plan = plan(shared, &req);
        match respond(&mut w, &req, plan, shared) {
            Ok(true) if req.keep_alive() => {}
            _ => return,
        }
    }
}

/// Sleep up to `d`, waking early when the origin is dropped.
fn interruptible_sleep(shared: &Shared, d: Duration) {
    let step = Duration::from_millis(10);
    let mut slept = Duration::ZERO;
    while slept < d && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(step.min(d - slept));
        slept += step;
    }
}

/// Write one response, faults included. `Ok(true)`: the connection may go on.
fn respond(w: &mut TcpStream, req: &Request, plan: Plan, shared: &Shared) -> io::Result<bool> {
    let close = !req.keep_alive();
    let conn = |mut h: ResponseHead| {
        if close {
            h.push("Connection", "close");
        }
        h
    };
    match &plan.fault {
        Some(Fault::ResetBeforeReply) => {
            set_linger_zero(w);
            return Ok(false);
        }
        Some(Fault::Status(code, retry_after)) => {
            let body = format!("{code} {}\n", http::reason_phrase(*code));
            let mut h = conn(ResponseHead::new(*code)).with("Content-Length", body.len());
            if let Some(s) = retry_after {
                h.push("Retry-After", s);
            }
            let mut out = h.to_bytes();
            if req.method != "HEAD" {
                out.extend_from_slice(body.as_bytes());
            }
            w.write_all(&out)?;
            return Ok(true);
        }
        Some(Fault::Redirect { to, status }) => {
            conn(ResponseHead::new(*status))
                .with("Location", to)
                .with("Content-Length", 0)
                .write_to(w)?;
            return Ok(true);
        }
        _ => {}
    }
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            conn(ResponseHead::new(405))
                .with("Allow", "GET, HEAD")
                .with("Content-Length", 0)
                .write_to(w)?;
            return Ok(true);
        }
    };
    let Some((bytes, etag, modified)) = plan.object else {
        conn(ResponseHead::new(404))
            .with("Content-Length", 0)
            .write_to(w)?;
        return Ok(true);
    };
    let size = bytes.len() as u64;
    let mut range = match (head_only, &plan.fault, req.header("range")) {
        (false, Some(Fault::IgnoreRange), _) | (_, _, None) | (true, _, _) => RangeRequest::Ignore,
        (false, _, Some(v)) => http::parse_range(v, size),
    };
    if range != RangeRequest::Ignore {
        if let Some(ir) = req.header("if-range") {
            if !http::if_range_matches(ir, &etag, modified) {
                range = RangeRequest::Ignore;
            }
        }
    }
    let full = ByteRange {
        start: 0,
        end: size.saturating_sub(1),
    };
    let (status, span) = match range {
        RangeRequest::Single(r) => (206, Some(r)),
        RangeRequest::Unsatisfiable => (416, None),
        _ => (200, (size > 0).then_some(full)),
    };
    let mut body: Vec<u8> = match span {
        Some(r) if !head_only => bytes
            .get(r.start as usize..=r.end as usize)
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let promised = match (status, span) {
        (416, _) | (_, None) => 0,
        (_, Some(r)) => r.len(),
    };
    let mut h = conn(ResponseHead::new(status))
        .with("Accept-Ranges", "bytes")
        .with("ETag", &etag)
        .with("Last-Modified", http::fmt_http_date(modified))
        .with("Content-Type", "application/octet-stream");
    match (status, span) {
        (416, _) => h.push("Content-Range", http::unsatisfied_content_range(size)),
        (206, Some(r)) => h.push("Content-Range", r.content_range(size)),
        _ => {}
    }
    let lie = matches!(plan.fault, Some(Fault::LieContentLength));
    h.push("Content-Length", if lie { promised + 16 } else { promised });
    if matches!(plan.fault, Some(Fault::CorruptBytes)) {
        let mid = body.len() / 2;
        if let Some(b) = body.get_mut(mid) {
            *b ^= 0xff;
        }
    }
    let half = body.len() / 2;
    let mut out = h.to_bytes();
    match &plan.fault {
        Some(Fault::ResetMidBody) => {
            out.extend_from_slice(&body[..half]);
            w.write_all(&out)?;
            w.flush()?;
            // Give the bytes a moment to leave before the RST overtakes
            // them (an RST discards unsent data).
            std::thread::sleep(Duration::from_millis(50));
            set_linger_zero(w);
            Ok(false)
        }
        Some(Fault::TruncateBody) => {
            out.extend_from_slice(&body[..half]);
            w.write_all(&out)?;
            Ok(false)
        }
        Some(Fault::StallMidBody(d)) => {
            out.extend_from_slice(&body[..half]);
            w.write_all(&out)?;
            interruptible_sleep(shared, *d);
            Ok(false)
        }
        Some(Fault::LieContentLength) => {
            out.extend_from_slice(&body);
            w.write_all(&out)?;
            // Hold the connection open and silent until the client (or
            // Drop) closes it; whatever the client sends is ignored.
            let mut scratch = [0u8; 4096];
            let _ = w.set_read_timeout(None);
            while !shared.stop.load(Ordering::SeqCst) {
                match w.read(&mut scratch) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            Ok(false)
        }
        _ => {
            out.extend_from_slice(&body);
            w.write_all(&out)?;
            Ok(true)
        }
    }
}
