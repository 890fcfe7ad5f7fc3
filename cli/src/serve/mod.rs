//! `gtio serve`: a static-file HTTP/1.1 origin with byte ranges.
//!
//! This is an embedded default for demos and tests, not a production server:
//! gtio reads from real HTTP origins, CDNs and object stores, and this module
//! exists so that a demo or a test has one without installing anything.
//!
//! # Design
//!
//! One accept thread plus one thread per connection, bounded by
//! [`Limits::max_connections`]. A connection over the bound is answered `503`
//! with `Retry-After: 1` by the accept thread itself and closed, so the bound
//! really bounds threads. Threads are simple and, at demo scale, cheaper to
//! get right than an event loop; the bound keeps a misbehaving client from
//! exhausting the process.
//!
//! Each connection serves requests in order (keep-alive, no pipelining
//! tricks: a pipelined request simply waits in the socket buffer). Only `GET`
//! and `HEAD` exist; anything else is `405`. Responses carry a strong `ETag`
//! in nginx's format, `Last-Modified`, `Accept-Ranges: bytes` and a
//! `Content-Type` (`application/x-bittorrent` for `.torrent`).
//!
//! Ranges (see [`http::parse_range`]): one satisfiable range gets `206` with
//! `Content-Range`; none gets `416` with `Content-Range: bytes */SIZE`;
//! several get the full `200`, which RFC 9110 allows and which spares us
//! multipart bodies that no gtio client asks for. `If-Range` that does not
//! match the current validator turns a range request into the full `200`.
//! `HEAD` ignores `Range` (range handling is defined for `GET` only) and
//! answers the headers of the full `200`.
//!
//! File bodies are streamed through a fixed 64 KiB buffer; a file that
//! shrinks while being sent ends the connection, since the promised
//! `Content-Length` can no longer be honoured.
//!
//! Idle connections are closed after [`Limits::idle_timeout`]. Malformed
//! requests get `400`, oversized heads `414`/`431`, and the connection is
//! closed after any error response, because after a framing error the byte
//! stream can no longer be trusted.
//!
//! [`Server::shutdown`] (also run on drop) stops the accept loop by setting a
//! flag and connecting to itself, then shuts down every live connection's
//! socket so blocked reads return at once, and joins every thread: no thread
//! outlives the `Server`.

pub mod files;
pub mod http;

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use http::{RangeRequest, Request, ResponseHead};

/// What to serve and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// The directory whose regular files are served.
    pub root: PathBuf,
    /// Where to listen; port 0 picks a free port (see [`Server::local_addr`]).
    pub addr: SocketAddr,
}

impl Default for ServeConfig {
    /// The current directory on `127.0.0.1:0`.
    fn default() -> Self {
        ServeConfig {
            root: PathBuf::from("."),
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        }
    }
}

impl ServeConfig {
    /// Serve `root` on `127.0.0.1:0`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ServeConfig {
            root: root.into(),
            ..Self::default()
        }
    }
}

/// Resource bounds of a [`Server`]; [`Limits::default`] suits demos and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
    /// How long a connection may sit without sending a byte.
    pub idle_timeout: Duration,
    /// How long one write may block on a client that does not read.
    pub write_timeout: Duration,
    /// Bounds on each request head.
    pub head: http::Limits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            head: http::Limits::default(),
        }
    }
}

/// Bytes of a request body we read and drop to keep the connection usable;
/// larger bodies get 413 and a close (GET and HEAD have no use for a body).
const MAX_DISCARDED_BODY: u64 = 64 * 1024;
/// The file streaming buffer.
const BODY_CHUNK: usize = 64 * 1024;

/// A running server. Dropping it is the same as [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    root: PathBuf,
    limits: Limits,
    stop: AtomicBool,
    conns: Mutex<Conns>,
}

/// Live connections: a clone of each socket (so shutdown can unblock its
/// thread) and the join handles of every thread not yet reaped.
#[derive(Default)]
struct Conns {
    next_id: u64,
    live: HashMap<u64, TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        // A panicking connection thread must not take the server down with
        // it; the map stays consistent because every update is one call.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Server {
    /// Bind, start the accept thread and return. Fails if the root is not a
    /// directory or the address cannot be bound.
    pub fn start(cfg: ServeConfig) -> io::Result<Server> {
        Self::start_with(cfg, Limits::default())
    }

    /// [`Server::start`] with explicit resource bounds.
    pub fn start_with(cfg: ServeConfig, limits: Limits) -> io::Result<Server> {
        let root = std::fs::canonicalize(&cfg.root)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a directory: {}", root.display()),
            ));
        }
        let listener = TcpListener::bind(cfg.addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            root,
            limits,
            stop: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("gtio-serve-accept".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(Server {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, close every connection and join every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() with a connection of our own; if that
        // fails the accept thread cannot be woken, and joining it would hang,
        // so it is left to die with the process instead.
        let woke =
            TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(2)).is_ok();
        if woke {
            let _ = accept.join();
        }
        let threads = {
            let mut c = self.shared.conns();
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

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where to connect to reach our own listener: an unspecified bind address
/// is reached through loopback.
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let mut conns = shared.conns();
        // Reap finished threads so the handle list stays small.
        conns.threads.retain(|t| !t.is_finished());
        if conns.live.len() >= shared.limits.max_connections {
            drop(conns);
            reject_busy(stream);
            continue;
        }
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let id = conns.next_id;
        conns.next_id += 1;
        conns.live.insert(id, clone);
        let s = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("gtio-serve-conn".into())
            .spawn(move || {
                serve_connection(stream, &s);
                s.conns().live.remove(&id);
            });
        match spawned {
            Ok(t) => conns.threads.push(t),
            Err(_) => {
                // The stream moved into the failed closure and is gone; the
                // clone is all that is left: refuse politely through it.
                if let Some(s) = conns.live.remove(&id) {
                    drop(conns);
                    reject_busy(s);
                }
            }
        }
    }
}

/// Answer 503 on the accept thread. Reading the request first (briefly)
/// matters: closing a socket with unread input sends RST, and the client
/// might then never see the 503.
fn reject_busy(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let mut scratch = [0u8; 8192];
    let _ = stream.read(&mut scratch);
    let head = ResponseHead::new(503)
        .with("Date", http::http_date_now())
        .with("Retry-After", 1)
        .with("Content-Length", 0)
        .with("Connection", "close");
    let _ = head.write_to(&mut stream);
    close_gracefully(stream);
}

/// Half-close, then drain what the client still sends for a moment, so that
/// our last response is not destroyed by an RST.
fn close_gracefully(mut stream: TcpStream) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut scratch = [0u8; 8192];
    let mut drained = 0;
    while drained < 256 * 1024 {
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let limits = &shared.limits;
    let _ = stream.set_read_timeout(Some(limits.idle_timeout));
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(8192, read_half);
    let mut writer = stream;
    while !shared.stop.load(Ordering::SeqCst) {
        let req = match http::read_request(&mut reader, &limits.head) {
            Ok(r) => r,
            Err(e) => {
                if let Some(status) = e.status() {
                    let _ = simple_response(&mut writer, status, false, false);
                    close_gracefully(writer);
                }
                // Closed, timed out or broken: nothing to say.
                return;
            }
        };
        if req.body_len > 0 {
            if req.body_len > MAX_DISCARDED_BODY {
                let _ = simple_response(&mut writer, 413, false, false);
                close_gracefully(writer);
                return;
            }
            let got = io::copy(&mut (&mut reader).take(req.body_len), &mut io::sink());
            if got.ok() != Some(req.body_len) {
                return;
            }
        }
        let keep_alive = req.keep_alive();
        match respond(&mut writer, &req, shared, keep_alive) {
            Ok(true) if keep_alive => {}
            _ => return,
        }
    }
}

/// The headers every response carries.
fn base_head(status: u16, minor_version: u8, keep_alive: bool) -> ResponseHead {
    let mut head = ResponseHead::new(status)
        .with("Date", http::http_date_now())
        .with("Server", "gtio-serve");
    if !keep_alive {
        head.push("Connection", "close");
    } else if minor_version == 0 {
        head.push("Connection", "keep-alive");
    }
    head
}

/// A short text response (errors, 405). Returns whether the connection can
/// go on.
fn simple_response(
    w: &mut TcpStream,
    status: u16,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<bool> {
    let body = format!("{} {}\n", status, http::reason_phrase(status));
    let mut head = base_head(status, 1, keep_alive)
        .with("Content-Type", "text/plain; charset=utf-8")
        .with("Content-Length", body.len());
    if status == 405 {
        head.push("Allow", "GET, HEAD");
    }
    let mut out = head.to_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    w.write_all(&out)?;
    Ok(keep_alive)
}

/// Answer one request. `Ok(true)` means the response was complete and the
/// connection may serve another.
fn respond(
    w: &mut TcpStream,
    req: &Request,
    shared: &Shared,
    keep_alive: bool,
) -> io::Result<bool> {
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return simple_response(w, 405, false, keep_alive),
    };
    let mut f = match files::open(&shared.root, &req.target) {
        Ok(f) => f,
        Err(e) => return simple_response(w, e.status(), head_only, keep_alive),
    };
    let size = f.size;
    let etag = http::etag(f.mtime, size);

    let mut range = RangeRequest::Ignore;
    let mut ranges = req.headers_named("range");
    // Range on HEAD is ignored (defined for GET only); two Range fields are
    // malformed, so both are ignored and the full body is sent.
    if let (false, Some(v), None) = (head_only, ranges.next(), ranges.next()) {
        range = http::parse_range(v, size);
    }
    if range != RangeRequest::Ignore {
        if let Some(ir) = req.header("if-range") {
            if !http::if_range_matches(ir, &etag, f.mtime) {
                range = RangeRequest::Ignore;
            }
        }
    }

    let (status, body) = match range {
        RangeRequest::Single(r) => (206, Some(r)),
        RangeRequest::Unsatisfiable => (416, None),
        RangeRequest::Ignore | RangeRequest::Multiple => (
            200,
            (size > 0).then(|| http::ByteRange {
                start: 0,
                end: size - 1,
            }),
        ),
    };
    let mut head = base_head(status, req.minor_version, keep_alive)
        .with("Accept-Ranges", "bytes")
        .with("ETag", &etag)
        .with("Last-Modified", http::fmt_http_date(f.mtime));
    match (status, body) {
        (416, _) => {
            head.push("Content-Range", http::unsatisfied_content_range(size));
            head.push("Content-Length", 0);
        }
        (206, Some(r)) => {
            head.push("Content-Type", files::content_type(&f.path));
            head.push("Content-Range", r.content_range(size));
            head.push("Content-Length", r.len());
        }
        _ => {
            head.push("Content-Type", files::content_type(&f.path));
            head.push("Content-Length", size);
        }
    }
    head.write_to(w)?;
    if let (false, Some(r)) = (head_only, body) {
        send_file_range(w, &mut f.file, r)?;
    }
    w.flush()?;
    Ok(true)
}

/// Copy `r` of the file to the socket through one fixed buffer. A file that
/// ends early is an error: the head already promised the length.
fn send_file_range<R: Read + Seek, W: Write>(
    w: &mut W,
    file: &mut R,
    r: http::ByteRange,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(r.start))?;
    let mut buf = vec![0u8; BODY_CHUNK];
    let mut left = r.len();
    while left > 0 {
        let want = usize::try_from(left).map_or(BODY_CHUNK, |l| l.min(BODY_CHUNK));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}
