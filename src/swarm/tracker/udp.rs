//! UDP trackers (BEP 15).
//!
//! An announce is two exchanges: `connect` gets a connection ID (valid for
//! a minute: BEP 15 lets the client reuse it for 60 s and the tracker
//! accept it for two), then `announce` gets the peers. A lost datagram is
//! sent again after 15·2^n seconds (n = 0, 1, …; the BEP's rule), but never
//! past the caller's deadline, so a dead tracker costs a bounded time: the
//! deadline, not the BEP's 8 retries (an hour). A `connect` is redone when
//! the ID has expired or an announce times out (the tracker may have
//! restarted and forgotten it).
//!
//! Every answer is checked: its action and transaction ID must match the
//! request (anything else is a stray or forged datagram and is ignored,
//! not fatal), and its size must fit its action.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::{AnnounceParams, AnnounceReply, Event};
use crate::error::redact_url;
use crate::{Error, Result};

const PROTOCOL_ID: u64 = 0x0417_2710_1980;
const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_ERROR: u32 = 3;
/// BEP 15: a client may use a connection ID for one minute.
const CONNECTION_ID_TTL: Duration = Duration::from_secs(60);

/// Retransmit timing: try n waits `base · 2^n` (BEP 15: 15 s).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub base: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            base: Duration::from_secs(15),
        }
    }
}

/// One UDP tracker: its address and the connection ID it gave us.
#[derive(Debug)]
pub struct UdpTracker {
    url: String,
    conn: Option<(u64, Instant)>,
    timing: Timing,
    /// A per-tracker counter so transaction IDs differ between requests.
    seq: u32,
}

impl UdpTracker {
    pub fn new(url: &str, timing: Timing) -> UdpTracker {
        UdpTracker {
            url: url.to_string(),
            conn: None,
            timing,
            seq: super::random_u32(),
        }
    }

    fn addr(&self) -> Result<SocketAddr> {
        let u = url::Url::parse(&self.url).map_err(|e| Error::invalid(format!("bad URL: {e}")))?;
        let host = u
            .host_str()
            .ok_or_else(|| Error::invalid("tracker URL has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = u
            .port()
            .ok_or_else(|| Error::invalid("udp tracker URL has no port"))?;
        (host, port)
            .to_socket_addrs()
            .map_err(|e| Error::from(e).context("resolving"))?
            .next()
            .ok_or_else(|| Error::io("tracker host has no address"))
    }

    /// Announce, giving up at `deadline`.
    pub fn announce(&mut self, p: &AnnounceParams, deadline: Instant) -> Result<AnnounceReply> {
        let what = format!("tracker {}", redact_url(&self.url));
        self.announce_inner(p, deadline)
            .map_err(|e| e.context(&what))
    }

    fn announce_inner(&mut self, p: &AnnounceParams, deadline: Instant) -> Result<AnnounceReply> {
        let addr = self.addr()?;
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().map_err(|_| Error::io("bind"))?
        } else {
            "[::]:0".parse().map_err(|_| Error::io("bind"))?
        };
        let sock = UdpSocket::bind(bind)?;
        sock.connect(addr)?;
        let mut tries = 0u32;
        loop {
            let conn = match self.conn {
                Some((id, at)) if at.elapsed() < CONNECTION_ID_TTL => id,
                _ => {
                    let id = self.connect(&sock, &mut tries, deadline)?;
                    self.conn = Some((id, Instant::now()));
                    id
                }
            };
            let tid = self.next_tid();
            let req = announce_packet(conn, tid, p);
            match exchange(
                &sock,
                &req,
                tid,
                ACTION_ANNOUNCE,
                self.wait(tries),
                deadline,
            )? {
                Some(body) => return parse_announce(&body, addr.is_ipv6()),
                None => {
                    // Lost, or the tracker forgot our ID: connect afresh.
                    self.conn = None;
                    tries += 1;
                }
            }
        }
    }

    fn wait(&self, tries: u32) -> Duration {
        self.timing.base.saturating_mul(1 << tries.min(8))
    }

    fn next_tid(&mut self) -> u32 {
        self.seq = self.seq.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.seq
    }

    fn connect(&mut self, sock: &UdpSocket, tries: &mut u32, deadline: Instant) -> Result<u64> {
        loop {
            let tid = self.next_tid();
            let mut req = Vec::with_capacity(16);
            req.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
            req.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
            req.extend_from_slice(&tid.to_be_bytes());
            if let Some(body) =
                exchange(sock, &req, tid, ACTION_CONNECT, self.wait(*tries), deadline)?
            {
                if body.len() < 8 {
                    return Err(Error::io("connect answer too short"));
                }
                return Ok(u64::from_be_bytes(body[..8].try_into().unwrap_or([0; 8])));
            }
            *tries += 1;
        }
    }
}

/// Send `req` and wait up to `wait` (never past `deadline`) for the answer
/// with transaction `tid`: `Some(payload after the 8-byte header)`, or
/// `None` when this try timed out (retransmit). Past the deadline: an error.
fn exchange(
    sock: &UdpSocket,
    req: &[u8],
    tid: u32,
    action: u32,
    wait: Duration,
    deadline: Instant,
) -> Result<Option<Vec<u8>>> {
    let now = Instant::now();
    if now >= deadline {
        return Err(Error::new(libc::ETIMEDOUT, "no answer before the deadline"));
    }
    let until = (now + wait).min(deadline);
    // A refused send (ICMP port unreachable from an earlier datagram) is
    // the same as a lost one: retransmit until the deadline.
    let _ = sock.send(req);
    let mut buf = [0u8; 2048];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left))?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    // Nothing listens there: wait out this try so a dead
                    // tracker is not hammered, but do not spin.
                    std::thread::sleep(left.min(Duration::from_millis(200)));
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let b = &buf[..n];
        if n < 8 {
            continue;
        }
        let got_action = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let got_tid = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        if got_tid != tid {
            continue;
        }
        if got_action == ACTION_ERROR {
            let msg = String::from_utf8_lossy(&b[8..n.min(208)]);
            return Err(Error::io(format!("tracker refused: {msg}")));
        }
        if got_action != action {
            continue;
        }
        return Ok(Some(b[8..].to_vec()));
    }
}

fn announce_packet(conn: u64, tid: u32, p: &AnnounceParams) -> Vec<u8> {
    let event: u32 = match p.event {
        Event::None => 0,
        Event::Started => 2,
        Event::Stopped => 3,
    };
    let mut r = Vec::with_capacity(98);
    r.extend_from_slice(&conn.to_be_bytes());
    r.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    r.extend_from_slice(&tid.to_be_bytes());
    r.extend_from_slice(&p.info_hash);
    r.extend_from_slice(&p.peer_id);
    r.extend_from_slice(&p.downloaded.to_be_bytes());
    r.extend_from_slice(&p.left.to_be_bytes());
    r.extend_from_slice(&p.uploaded.to_be_bytes());
    r.extend_from_slice(&event.to_be_bytes());
    r.extend_from_slice(&0u32.to_be_bytes()); // ip: the sender's
    r.extend_from_slice(&p.key.to_be_bytes());
    r.extend_from_slice(&(p.numwant as i32).to_be_bytes());
    r.extend_from_slice(&p.port.to_be_bytes());
    r
}

/// The announce answer after its action and transaction ID: interval,
/// leechers, seeders, then compact peers (18-byte IPv6 ones when the
/// tracker was reached over IPv6, as BEP 15 says).
fn parse_announce(b: &[u8], v6: bool) -> Result<AnnounceReply> {
    if b.len() < 12 {
        return Err(Error::io("announce answer too short"));
    }
    let u = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let rest = &b[12..];
    let peers = if v6 {
        super::compact_v6(rest)
    } else {
        super::compact_v4(rest)
    };
    Ok(AnnounceReply {
        interval: Duration::from_secs(u64::from(u(0)).clamp(1, 86_400)),
        min_interval: None,
        leechers: Some(u64::from(u(4))),
        seeders: Some(u64::from(u(8))),
        peers,
    })
}

#[cfg(test)]
pub(super) fn test_parse_announce(b: &[u8], v6: bool) -> Result<AnnounceReply> {
    parse_announce(b, v6)
}
