//! Connections: connect (name lookup, TCP, TLS) with bounded waits, a
//! keep-alive pool, and the [`Pace`] that bounds every wait on a
//! connection, fresh or reused.
//!
//! Every blocking call sets the socket's timeout to what is left of the
//! current budget first, so no read or write can wait longer than the
//! settings allow; `SO_RCVTIMEO` is per call, not per connection, which is
//! what makes a pooled connection exactly as bounded as a fresh one.
//!
//! Response heads, chunk-size lines and trailers are consumed exactly: on
//! plain TCP the bytes are peeked, then only the head's bytes are read; on
//! TLS the head is taken from rustls' plaintext buffer without copying the
//! rest. Body bytes therefore never pass through a buffer of ours: the body
//! reader (`response.rs`) receives them straight into the caller's buffer,
//! one user-space copy per byte (the kernel's, or rustls' decryption).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

pub use super::pace::Pace;
use super::pace::MIN_WAIT;
use super::wire::{self, head_end, Head, WireError, MAX_HEAD_BYTES};

/// Why a connection could not do what was asked. `response.rs` and `mod.rs`
/// turn these into errno, retry advice and a message that says it once.
#[derive(Debug)]
pub enum Failure {
    /// The socket (or rustls, for TLS) failed.
    Io(io::Error),
    /// The host name did not resolve.
    Dns(String),
    /// Connecting, the TLS handshake or sending the request took longer
    /// than the timeout.
    Timeout {
        during: &'static str,
        after: Duration,
    },
    /// The server closed the connection where more was expected.
    Closed,
    /// Nothing at all arrived within the timeout.
    NoAnswer(Duration),
    /// Bytes arrived, but fewer than the minimum rate over a window.
    Stall { min_rate: u64, window: Duration },
    /// The caller's total deadline (an open's) passed.
    Deadline(Duration),
    /// The server's bytes are not HTTP we accept.
    Wire(WireError),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl From<WireError> for Failure {
    fn from(e: WireError) -> Failure {
        Failure::Wire(e)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    // SO_RCVTIMEO/SO_SNDTIMEO expire as EAGAIN on Linux.
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

/// One connection to one origin.
pub struct Conn {
    stream: Stream,
    scratch: Vec<u8>,
    /// Taken from the pool (the server may have closed it meanwhile).
    pub reused: bool,
    idle_since: Instant,
    /// The socket's current `SO_RCVTIMEO` and `SO_SNDTIMEO`, to skip a
    /// system call per read or request.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// Where a connection goes: scheme, host, port, and the TLS name.
#[derive(Clone, Debug)]
pub struct Target {
    pub tls: bool,
    pub host: url::Host<String>,
    pub port: u16,
}

impl Target {
    /// The pool key: connections are shared by scheme, host and port.
    pub fn key(&self) -> String {
        format!(
            "{}://{}:{}",
            if self.tls { "https" } else { "http" },
            self.host,
            self.port
        )
    }
}

impl Conn {
    /// Resolve, connect and (for https) handshake, each bounded by `pace`.
    pub fn open(
        target: &Target,
        tls: &Arc<rustls::ClientConfig>,
        pace: &Pace,
    ) -> Result<Conn, Failure> {
        let end = pace.whole()?;
        let addrs = resolve(&target.host, target.port, end)?;
        let mut last = None;
        let mut sock = None;
        for addr in addrs {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let sock = match (sock, last) {
            (Some(s), _) => s,
            (None, Some(e)) if !is_timeout(&e) => return Err(Failure::Io(e)),
            _ => return Err(timeout_at_end(pace, end, "connecting")),
        };
        // Requests are one small write each; Nagle would only delay them.
        sock.set_nodelay(true)?;
        let stream = if target.tls {
            let name = match &target.host {
                url::Host::Domain(d) => ServerName::try_from(d.clone())
                    .map_err(|_| Failure::Dns(format!("{d} is not a valid TLS server name")))?,
                url::Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(*ip).into()),
                url::Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(*ip).into()),
            };
            let conn = rustls::ClientConnection::new(Arc::clone(tls), name)
                .map_err(|e| Failure::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            let mut s = rustls::StreamOwned::new(conn, sock);
            while s.conn.is_handshaking() {
                set_timeouts(&s.sock, end, pace, "the TLS handshake")?;
                match s.conn.complete_io(&mut s.sock) {
                    Ok((0, 0)) => return Err(Failure::Closed),
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) => {
                        if Instant::now() >= end {
                            return Err(timeout_at_end(pace, end, "the TLS handshake"));
                        }
                    }
                    Err(e) => return Err(Failure::Io(e)),
                }
            }
            Stream::Tls(Box::new(s))
        } else {
            Stream::Plain(sock)
        };
        Ok(Conn {
            stream,
            scratch: vec![0; 4096],
            reused: false,
            idle_since: Instant::now(),
            read_timeout: None,
            write_timeout: None,
        })
    }

    /// Write the whole request, bounded by `pace` as one exchange.
    pub fn send(&mut self, bytes: &[u8], pace: &Pace) -> Result<(), Failure> {
        let end = pace.whole()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout_at_end(pace, end, "sending the request"));
        }
        // Only the send timeout: reads keep theirs, set per wait.
        if !close_enough(self.write_timeout, left) {
            self.stream.tcp().set_write_timeout(Some(left))?;
            self.write_timeout = Some(left);
        }
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes),
            Stream::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => Err(timeout_at_end(pace, end, "sending the request")),
            Err(e) => Err(Failure::Io(e)),
        }
    }

    /// Read one response head, consuming exactly its bytes.
    pub fn read_head(&mut self, pace: &mut Pace) -> Result<Head, Failure> {
        let mut out = Vec::with_capacity(512);
        self.read_until(&mut out, MAX_HEAD_BYTES, pace, head_end)?;
        match wire::parse_head(&out)? {
            Some((head, _)) => Ok(head),
            None => Err(Failure::Wire(WireError("incomplete response head".into()))),
        }
    }

    /// Read one line (chunk size, trailer), consuming exactly its bytes.
    pub fn read_line(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        pace: &mut Pace,
    ) -> Result<(), Failure> {
        out.clear();
        self.read_until(out, limit, pace, |b| {
            b.iter().position(|&c| c == b'\n').map(|i| i + 1)
        })
    }

    /// Append bytes to `out` up to and including the end `find` reports,
    /// taking nothing beyond it. More than `limit` bytes is an error.
    fn read_until(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        pace: &mut Pace,
        find: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<(), Failure> {
        loop {
            self.set_read_timeout(pace.budget()?)?;
            let t = Instant::now();
            let scratch = &mut self.scratch;
            let before = out.len();
            let r = with_available(&mut self.stream, scratch, |avail| {
                // Search the tail of what we have plus what is available; a
                // delimiter may straddle the two.
                let from = before.saturating_sub(4);
                let mut joined = out[from..].to_vec();
                joined.extend_from_slice(avail);
                let take = match find(&joined) {
                    Some(end) => end - (before - from),
                    None => avail.len(),
                };
                out.extend_from_slice(&avail[..take]);
                take
            });
            let took = t.elapsed();
            match r {
                Ok(0) => return Err(Failure::Closed),
                Ok(n) => {
                    pace.account(took, n)?;
                    let from = before.saturating_sub(4);
                    if find(&out[from..]).is_some_and(|e| from + e == out.len()) {
                        return Ok(());
                    }
                    if out.len() > limit {
                        return Err(Failure::Wire(WireError(format!(
                            "response head or line longer than {} KiB",
                            limit >> 10
                        ))));
                    }
                }
                Err(e) if is_timeout(&e) => pace.account(took, 0)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }

    /// Read body bytes straight into `buf`. `Ok(0)` is the server's close.
    pub fn read(&mut self, buf: &mut [u8], pace: &mut Pace) -> Result<usize, Failure> {
        loop {
            self.set_read_timeout(pace.budget()?)?;
            let t = Instant::now();
            let r = match &mut self.stream {
                Stream::Plain(s) => s.read(buf),
                Stream::Tls(s) => tls_read(s, buf),
            };
            let took = t.elapsed();
            match r {
                Ok(n) => {
                    pace.account(took, n)?;
                    // A short read drained the socket, so the next one
                    // waits for the server: acknowledge now, or a server
                    // holding its last small segment for our ACK (nginx
                    // with `tcp_nopush on`) stalls the tail by a delayed
                    // ACK's 40 ms (docs/http.md, "Acknowledging at once").
                    if n > 0 && n < buf.len() {
                        crate::source::tcp::ack_now(self.stream.tcp());
                    }
                    return Ok(n);
                }
                Err(e) if is_timeout(&e) => pace.account(took, 0)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }

    /// Make the next read wait about `budget`. The socket option is left
    /// alone when it is already close to it ([`close_enough`]): reads on a
    /// busy transfer, and requests on a pooled connection, cost one `recv`
    /// each, not a `setsockopt` too.
    fn set_read_timeout(&mut self, budget: Duration) -> Result<(), Failure> {
        let budget = budget.max(MIN_WAIT);
        if close_enough(self.read_timeout, budget) {
            return Ok(());
        }
        self.stream.tcp().set_read_timeout(Some(budget))?;
        self.read_timeout = Some(budget);
        Ok(())
    }

    /// Cheap check before reuse: an idle connection with something to read
    /// (the server's FIN, stray bytes) is not reusable. On TLS, records that
    /// carry no data (a late session ticket) are processed and allowed; a
    /// close_notify or any plaintext is not.
    fn looks_idle(&mut self) -> bool {
        if self.stream.tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let idle = match &mut self.stream {
            Stream::Plain(s) => {
                let mut b = [0u8; 1];
                matches!(s.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(s) => tls_idle(s),
        };
        self.stream.tcp().set_nonblocking(false).is_ok() && idle
    }
}

fn tls_idle(s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> bool {
    use std::io::BufRead;
    if s.conn.wants_write() {
        return false;
    }
    // Bounded: a peer cannot keep a non-blocking socket readable for ever
    // without sending plaintext, which ends the loop; cap it anyway.
    for _ in 0..16 {
        match s.conn.read_tls(&mut s.sock) {
            Ok(0) => return false,
            Ok(_) => {
                if s.conn.process_new_packets().is_err() {
                    return false;
                }
                if !matches!(s.conn.reader().fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                {
                    return false;
                }
            }
            Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
        }
    }
    false
}

/// A socket timeout `cur` may stand for `budget` when it is within 1/64
/// (or 5 ms) of it: a little longer overshoots by that much at most; a
/// little shorter only ends a wait early, and the caller then waits again
/// for what is left.
fn close_enough(cur: Option<Duration>, budget: Duration) -> bool {
    let slack = (budget / 64).max(Duration::from_millis(5));
    cur.is_some_and(|cur| cur.abs_diff(budget) <= slack)
}

/// Offer the bytes available without consuming them to `take`, which
/// returns how many to consume. Blocks (within the socket timeout) until at
/// least one byte or the end of the stream (`Ok(0)`, nothing offered).
fn with_available(
    stream: &mut Stream,
    scratch: &mut [u8],
    take: impl FnOnce(&[u8]) -> usize,
) -> io::Result<usize> {
    use std::io::BufRead;
    match stream {
        Stream::Plain(s) => {
            let k = s.peek(scratch)?;
            if k == 0 {
                return Ok(0);
            }
            let n = take(&scratch[..k]);
            // Those bytes are in the socket's queue: this returns at once.
            s.read_exact(&mut scratch[..n])?;
            Ok(n)
        }
        Stream::Tls(s) => loop {
            match s.conn.reader().fill_buf() {
                Ok([]) => return Ok(0),
                Ok(avail) => {
                    let n = take(avail);
                    s.conn.reader().consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let (read, _) = s.conn.complete_io(&mut s.sock)?;
                    if read == 0 && !s.conn.wants_read() {
                        // Neither plaintext nor a way to get more: closed.
                        return Ok(0);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
        },
    }
}

/// rustls read that reports socket timeouts instead of retrying them, so
/// the caller's [`Pace`] decides.
fn tls_read(
    s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match s.conn.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let (read, _) = s.conn.complete_io(&mut s.sock)?;
                if read == 0 && !s.conn.wants_read() {
                    return Ok(0);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
    }
}

fn set_timeouts(
    tcp: &TcpStream,
    end: Instant,
    pace: &Pace,
    during: &'static str,
) -> Result<(), Failure> {
    let left = end.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timeout_at_end(pace, end, during));
    }
    tcp.set_read_timeout(Some(left))?;
    tcp.set_write_timeout(Some(left))?;
    Ok(())
}

/// The failure for a whole-exchange bound that ran out: the caller's
/// deadline if that was the nearer bound, else the timeout.
fn timeout_at_end(pace: &Pace, end: Instant, during: &'static str) -> Failure {
    match pace.deadline {
        Some((at, setting)) if at <= end => Failure::Deadline(setting),
        _ => Failure::Timeout {
            during,
            after: pace.window,
        },
    }
}

/// Resolve a host, bounded: `getaddrinfo` has no timeout of its own, so a
/// name is looked up on a helper thread that is abandoned if it is late.
fn resolve(host: &url::Host<String>, port: u16, end: Instant) -> Result<Vec<SocketAddr>, Failure> {
    let name = match host {
        url::Host::Ipv4(ip) => return Ok(vec![SocketAddr::new(IpAddr::V4(*ip), port)]),
        url::Host::Ipv6(ip) => return Ok(vec![SocketAddr::new(IpAddr::V6(*ip), port)]),
        url::Host::Domain(d) => d.clone(),
    };
    let (tx, rx) = mpsc::channel();
    let lookup = name.clone();
    std::thread::Builder::new()
        .name("gtio-dns".into())
        .spawn(move || {
            let _ = tx.send(
                (lookup.as_str(), port)
                    .to_socket_addrs()
                    .map(Vec::from_iter),
            );
        })
        .map_err(Failure::Io)?;
    let left = end.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(Failure::Dns(format!("{name} has no address"))),
        Ok(Err(e)) => {
            let text = e.to_string();
            let why = text
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&text);
            Err(Failure::Dns(format!("cannot resolve {name}: {why}")))
        }
        Err(_) => Err(Failure::Dns(format!(
            "looking up {name} took longer than {}",
            super::fmt_duration(end.saturating_duration_since(Instant::now()).max(left))
        ))),
    }
}

/// Idle keep-alive connections, per target.
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    per_target: usize,
}

/// An idle connection older than this is closed rather than reused:
/// servers close theirs after 5 s (Apache) to 75 s (nginx).
const MAX_IDLE: Duration = Duration::from_secs(30);

impl Pool {
    pub fn new(per_target: usize) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(HashMap::new()),
            per_target: per_target.max(1),
        })
    }

    /// The most recently used live idle connection to `key`, if any.
    pub fn take(&self, key: &str) -> Option<Conn> {
        loop {
            let mut conn = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let list = idle.get_mut(key)?;
                let c = list.pop();
                if list.is_empty() {
                    idle.remove(key);
                }
                c?
            };
            if conn.idle_since.elapsed() < MAX_IDLE && conn.looks_idle() {
                conn.reused = true;
                return Some(conn);
            }
        }
    }

    pub fn put(&self, key: &str, mut conn: Conn) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key.to_string()).or_default();
        if list.len() < self.per_target {
            list.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_end_at_the_blank_line() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n\nbody"), Some(17));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
    }
}
