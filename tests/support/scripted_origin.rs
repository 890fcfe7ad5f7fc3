//! A scripted misbehaving HTTP origin: each accepted connection plays a
//! script of byte sequences and delays, nothing more.
//!
//! `faulty_origin` is a real server that breaks on demand; this one is a tape
//! recorder. Tests that need an exact byte sequence on the wire (a `1xx`
//! before the answer, headers dripping one byte a second, a pooled
//! connection that answers once and then goes silent) write it here as
//! [`Step`]s. Connection *i* (in accept order) plays `scripts[i]`; later
//! connections play the `then` script, or are closed at once when there is
//! none. When a script ends the connection is closed (FIN).
//!
//! Every request head read by a [`Step::Read`] is recorded, and every
//! accepted connection counted, so tests can assert what the client sent
//! and how often (or that it sent nothing at all).
//!
//! Dropping the origin stops it: a flag plus a connection to itself wakes
//! the accept loop, live sockets are shut down, sleeps run in short slices
//! that watch the flag, and every thread is joined.
//!
//! Include it with `#[path = "support/scripted_origin.rs"] mod scripted_origin;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One step of a connection's script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Read one request head (up to the blank line) and record it. If the
    /// client closes first, the script ends.
    Read,
    /// Write these bytes at once.
    Send(Vec<u8>),
    /// Write these bytes one at a time, sleeping `every` before each.
    Drip(Vec<u8>, Duration),
    /// Write these bytes in chunks of `chunk` bytes, one chunk per `every`.
    Trickle(Vec<u8>, usize, Duration),
    /// Do nothing for a while.
    Sleep(Duration),
    /// Keep the connection open and silent until the origin stops.
    Hold,
}

/// A full response: status line, headers, blank line, body.
pub fn response(status_line: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{status_line}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A `206` for `data[a..=b]` of an object of `data.len()` bytes.
pub fn partial(data: &[u8], a: usize, b: usize, extra: &[(&str, &str)]) -> Vec<u8> {
    let range = format!("bytes {a}-{b}/{}", data.len());
    let len = (b + 1 - a).to_string();
    let mut headers = vec![
        ("Content-Range", range.as_str()),
        ("Content-Length", len.as_str()),
        ("ETag", "\"v1\""),
    ];
    headers.extend_from_slice(extra);
    response("HTTP/1.1 206 Partial Content", &headers, &data[a..=b])
}

/// The answer to an open (a GET of the first `block` bytes): a `206` for
/// the first block of `data`, or all of it when it is shorter.
pub fn opened(data: &[u8], block: usize) -> Vec<u8> {
    partial(data, 0, block.min(data.len()) - 1, &[])
}

/// A `200` to HEAD for an object of `len` bytes that advertises ranges.
pub fn head_ok(len: usize) -> Vec<u8> {
    let len = len.to_string();
    response(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Length", len.as_str()),
            ("Accept-Ranges", "bytes"),
            ("ETag", "\"v1\""),
        ],
        b"",
    )
}

struct Shared {
    stop: AtomicBool,
    accepted: AtomicUsize,
    requests: Mutex<Vec<String>>,
    live: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The origin; stops on drop.
pub struct ScriptedOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl ScriptedOrigin {
    /// Connection `i` plays `scripts[i]`, later ones play `then` (closed at
    /// once when `None`).
    pub fn start(scripts: Vec<Vec<Step>>, then: Option<Vec<Step>>) -> ScriptedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            live: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let sh = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = conn.set_nodelay(true);
                let i = sh.accepted.fetch_add(1, Ordering::SeqCst);
                let script = scripts.get(i).cloned().or_else(|| then.clone());
                let Some(script) = script else {
                    drop(conn);
                    continue;
                };
                if let Ok(dup) = conn.try_clone() {
                    sh.live.lock().unwrap().push(dup);
                }
                let sh2 = Arc::clone(&sh);
                let t = std::thread::spawn(move || play(conn, script, &sh2));
                sh.threads.lock().unwrap().push(t);
            }
        });
        ScriptedOrigin {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Every connection plays `script`.
    pub fn always(script: Vec<Step>) -> ScriptedOrigin {
        ScriptedOrigin::start(Vec::new(), Some(script))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Request heads read so far, as text, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for s in self.shared.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let threads: Vec<_> = self.shared.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Sleep `d` in slices; false when the origin is stopping.
fn nap(d: Duration, sh: &Shared) -> bool {
    let end = Instant::now() + d;
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

fn play(mut conn: TcpStream, script: Vec<Step>, sh: &Shared) {
    // Short read timeouts so that a Read step notices the stop flag.
    let _ = conn.set_read_timeout(Some(Duration::from_millis(50)));
    let mut pending: Vec<u8> = Vec::new();
    for step in script {
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        let ok = match step {
            Step::Read => read_head(&mut conn, &mut pending, sh),
            Step::Send(bytes) => conn.write_all(&bytes).is_ok(),
            Step::Drip(bytes, every) => bytes
                .iter()
                .all(|b| nap(every, sh) && conn.write_all(&[*b]).is_ok()),
            Step::Trickle(bytes, chunk, every) => bytes
                .chunks(chunk.max(1))
                .all(|c| nap(every, sh) && conn.write_all(c).is_ok()),
            Step::Sleep(d) => nap(d, sh),
            Step::Hold => {
                while nap(Duration::from_millis(100), sh) {}
                false
            }
        };
        if !ok {
            break;
        }
    }
    // Close now: the duplicate kept for Drop would otherwise hold the
    // socket open, and the client would see silence instead of a FIN.
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
}

fn read_head(conn: &mut TcpStream, pending: &mut Vec<u8>, sh: &Shared) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = find_blank_line(pending) {
            let head: Vec<u8> = pending.drain(..end).collect();
            sh.requests
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            return true;
        }
        if sh.stop.load(Ordering::SeqCst) || pending.len() > 1 << 20 {
            return false;
        }
        match conn.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
    }
}

fn find_blank_line(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}
