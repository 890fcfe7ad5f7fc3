//! HTTP trackers (BEP 3) with compact peer lists (BEP 23, and `peers6` for
//! IPv6).
//!
//! An announce is one `GET` whose query carries the info-hash and peer id as
//! percent-encoded raw bytes; the answer is a bencoded dictionary. The
//! request is written by hand over a `TcpStream` as HTTP/1.0 (so the server
//! closes the connection after the body and never chunks it): a tracker
//! needs none of the machinery of the object client, and keeping this here
//! keeps the swarm independent of it. Every step is bounded by one deadline
//! (connect, each write and read), and the answer by `MAX_REPLY` bytes.
//! `https://` trackers are not spoken here and are skipped by the tier list.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{AnnounceParams, AnnounceReply, Event};
use crate::bencode::{self, Limits, Value};
use crate::error::redact_url;
use crate::{Error, Result};

/// Largest tracker answer read: 200 IPv6 peers take 3.6 KiB compact, 20 KiB
/// as dictionaries.
const MAX_REPLY: usize = 1 << 20;

/// Percent-encode every byte that is not unreserved (RFC 3986).
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The announce URL: the tracker's URL with our query appended (after its
/// own query, if it has one, as private trackers' passkeys often are).
pub fn announce_url(base: &str, p: &AnnounceParams) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut u = format!(
        "{base}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&no_peer_id=1&numwant={}&key={:08x}",
        percent_encode(&p.info_hash),
        percent_encode(&p.peer_id),
        p.port,
        p.uploaded,
        p.downloaded,
        p.left,
        p.numwant,
        p.key,
    );
    match p.event {
        Event::None => {}
        e => {
            u.push_str("&event=");
            u.push_str(e.name());
        }
    }
    u
}

/// Announce to the HTTP tracker at `base`, giving up at `deadline`.
pub fn announce(base: &str, p: &AnnounceParams, deadline: Instant) -> Result<AnnounceReply> {
    let url = announce_url(base, p);
    let what = format!("tracker {}", redact_url(base));
    let body = get(&url, deadline).map_err(|e| e.context(&what))?;
    parse_reply(&body).map_err(|e| e.context(&what))
}

fn left(deadline: Instant) -> Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d < Duration::from_millis(1) {
        return Err(Error::new(libc::ETIMEDOUT, "timed out"));
    }
    Ok(d)
}

/// A bounded HTTP/1.0 GET; returns the body of a 200 answer.
fn get(url: &str, deadline: Instant) -> Result<Vec<u8>> {
    let u = url::Url::parse(url).map_err(|e| Error::invalid(format!("bad URL: {e}")))?;
    if u.scheme() != "http" {
        return Err(Error::invalid("only http:// trackers are spoken over TCP"));
    }
    let host = u
        .host_str()
        .ok_or_else(|| Error::invalid("tracker URL has no host"))?;
    let port = u.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::from(e).context("resolving"))?
        .collect();
    let mut stream = None;
    let mut last = Error::io("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, left(deadline)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Error::from(e).context(format!("connecting to {a}")),
        }
    }
    let mut s = stream.ok_or(last)?;
    let _ = s.set_nodelay(true);
    let mut target = u.path().to_string();
    if let Some(q) = u.query() {
        target.push('?');
        target.push_str(q);
    }
    let host_hdr = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let req = format!(
        "GET {target} HTTP/1.0\r\nHost: {host_hdr}\r\nUser-Agent: gtio/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    s.set_write_timeout(Some(left(deadline)?))?;
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(left(deadline)?))?;
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::from(e).context("reading the answer")),
        };
        if n == 0 {
            break;
        }
        if buf.len() + n > MAX_REPLY {
            return Err(Error::io(format!(
                "answer is larger than {} KiB",
                MAX_REPLY >> 10
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let Some(end) = find(&buf, b"\r\n\r\n") else {
        return Err(Error::io("answer ended inside its header"));
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::io("not an HTTP answer"))?;
    if status != 200 {
        return Err(Error::io(format!("HTTP {status}")).with_http_status(status));
    }
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = buf.split_off(end + 4);
    if chunked {
        return dechunk(&body);
    }
    Ok(body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Undo `Transfer-Encoding: chunked` (a server may chunk even for 1.0).
fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n").ok_or_else(|| Error::io("bad chunked body"))?;
        let size_s = String::from_utf8_lossy(&b[..eol]);
        let size_s = size_s.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_s, 16).map_err(|_| Error::io("bad chunk size"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err(Error::io("chunked body ends early"));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Parse a tracker's bencoded answer.
pub fn parse_reply(body: &[u8]) -> Result<AnnounceReply> {
    let limits = Limits {
        max_depth: 8,
        max_values: 64 << 10,
    };
    let v = bencode::decode_with(body, limits).map_err(|e| e.context("tracker answer"))?;
    let d = v
        .as_dict()
        .ok_or_else(|| Error::io("tracker answer is not a dictionary"))?;
    if let Some(reason) = d.get(b"failure reason").and_then(Value::as_bytes) {
        return Err(Error::io(format!(
            "tracker refused: {}",
            String::from_utf8_lossy(&reason[..reason.len().min(200)])
        )));
    }
    let secs = |k: &[u8]| {
        d.get(k)
            .and_then(Value::as_int)
            .filter(|i| *i > 0)
            .map(|i| Duration::from_secs(i.min(86_400) as u64))
    };
    let mut peers = Vec::new();
    match d.get(b"peers") {
        Some(Value::Bytes(b)) => peers.extend(super::compact_v4(b)),
        // The original, non-compact form: a list of {ip, port} dictionaries.
        Some(Value::List(l)) => {
            for p in l {
                let Some(pd) = p.as_dict() else { continue };
                let ip = pd
                    .get(b"ip")
                    .and_then(Value::as_bytes)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<std::net::IpAddr>().ok());
                let port = pd
                    .get(b"port")
                    .and_then(Value::as_int)
                    .and_then(|p| u16::try_from(p).ok());
                if let (Some(ip), Some(port)) = (ip, port) {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
        _ => {}
    }
    if let Some(b) = d.get(b"peers6").and_then(Value::as_bytes) {
        peers.extend(super::compact_v6(b));
    }
    Ok(AnnounceReply {
        interval: secs(b"interval").unwrap_or(Duration::from_secs(1800)),
        min_interval: secs(b"min interval"),
        peers,
        seeders: d
            .get(b"complete")
            .and_then(Value::as_int)
            .map(|i| i.max(0) as u64),
        leechers: d
            .get(b"incomplete")
            .and_then(Value::as_int)
            .map(|i| i.max(0) as u64),
    })
}
