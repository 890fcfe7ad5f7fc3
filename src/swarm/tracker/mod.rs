//! Trackers: where a torrent's peers are found.
//!
//! A torrent names its trackers in `announce` and, since BEP 12, in
//! `announce-list`: a list of tiers, each a list of URLs. BEP 12's rules are
//! followed: each tier is shuffled once, tiers are tried in order and the
//! trackers of a tier one after another, the first that answers ends the
//! announce, and that tracker moves to the front of its tier so the next
//! announce asks it first. `http://` (BEP 3, [`http`]) and `udp://`
//! (BEP 15, [`udp`]) trackers are spoken; other schemes are skipped.
//!
//! Every announce is bounded: each tracker gets at most `per_tracker` of
//! the caller's time and the whole announce ends at its deadline, so a dead
//! tracker in `announce-list` costs a bounded delay and a `stopped` at close
//! cannot hang.

pub mod http;
pub mod udp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::bencode;
use crate::{Error, Result};

/// Our client prefix in peer IDs (Azureus style: `-XXvvvv-`).
pub const PEER_ID_PREFIX: &[u8; 8] = b"-GT0100-";

/// The announce event. BEP 3's `completed` is never sent: a reader fetches
/// the pieces it is asked for, so it never finishes a download in the
/// tracker's sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    None,
    Started,
    Stopped,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::None => "",
            Event::Started => "started",
            Event::Stopped => "stopped",
        }
    }
}

/// What we tell a tracker.
#[derive(Clone, Debug)]
pub struct AnnounceParams {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    pub numwant: u32,
    /// BEP 7's `key`: lets the tracker know us across address changes.
    pub key: u32,
}

/// What a tracker answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceReply {
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    pub peers: Vec<SocketAddr>,
    pub seeders: Option<u64>,
    pub leechers: Option<u64>,
}

/// BEP 23 compact IPv4 peers: 6 bytes each (address, port); a trailing
/// partial entry is ignored.
pub fn compact_v4(b: &[u8]) -> Vec<SocketAddr> {
    b.chunks_exact(6)
        .map(|c| {
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
                u16::from_be_bytes([c[4], c[5]]),
            )
        })
        .collect()
}

/// BEP 7 compact IPv6 peers: 18 bytes each.
pub fn compact_v6(b: &[u8]) -> Vec<SocketAddr> {
    b.chunks_exact(18)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&c[..16]);
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a)),
                u16::from_be_bytes([c[16], c[17]]),
            )
        })
        .collect()
}

/// Random bytes from the kernel (no crate needed for a peer ID and a few
/// shuffles); falls back to the clock if /dev/urandom cannot be read.
pub fn random_bytes(out: &mut [u8]) {
    use std::io::Read;
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(out))
        .is_ok()
    {
        return;
    }
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(std::process::id());
    for b in out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    random_bytes(&mut b);
    u32::from_ne_bytes(b)
}

/// A fresh peer ID: our prefix and 12 random alphanumerics.
pub fn new_peer_id() -> [u8; 20] {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(PEER_ID_PREFIX);
    let mut r = [0u8; 12];
    random_bytes(&mut r);
    for (d, s) in id[8..].iter_mut().zip(r) {
        *d = ALPHABET[usize::from(s) % ALPHABET.len()];
    }
    id
}

/// The tiers of a metainfo's trackers: `announce-list` when present (BEP 12
/// says it then replaces `announce`), else `announce` as one tier. Entries
/// of the wrong type and empty strings are skipped; duplicates dropped.
pub fn tiers_from_metainfo(bytes: &[u8]) -> Vec<Vec<String>> {
    // Read in place: a metainfo of a million files would decode to a tree
    // many times its size, and only two top-level keys matter here.
    // Every bencode value takes at least two bytes, so half the document's
    // length bounds its values exactly (the caller bounded the document).
    let limits = bencode::Limits {
        max_values: bytes.len() / 2 + 1,
        ..bencode::Limits::default()
    };
    let Some(d) = bencode::raw::parse(bytes, limits)
        .ok()
        .and_then(|r| r.dict())
    else {
        return Vec::new();
    };
    let s = |v: bencode::raw::Raw<'_>| {
        v.as_bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let mut seen = std::collections::HashSet::new();
    let mut tiers = Vec::new();
    if let Some(list) = d.get(b"announce-list").and_then(|v| v.list()) {
        // Bounded: a hostile announce-list cannot make thousands of tiers.
        for tier in list.take(64) {
            let Some(urls) = tier.list() else { continue };
            let urls: Vec<String> = urls
                .take(64)
                .filter_map(s)
                .filter(|u| seen.insert(u.clone()))
                .collect();
            if !urls.is_empty() {
                tiers.push(urls);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(u) = d.get(b"announce").and_then(s) {
            tiers.push(vec![u]);
        }
    }
    tiers
}

/// Whether any tracker of `tiers` is one we speak (`http://`, `udp://`).
pub fn usable(tiers: &[Vec<String>]) -> bool {
    tiers.iter().flatten().any(|u| {
        let scheme = u.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        matches!(scheme.as_deref(), Some("http") | Some("udp"))
    })
}

enum Kind {
    Http,
    Udp(udp::UdpTracker),
}

struct Tracker {
    url: String,
    kind: Kind,
}

/// A torrent's trackers in BEP 12 tiers.
pub struct Trackers {
    tiers: Vec<Vec<Tracker>>,
}

impl Trackers {
    /// Trackers we can speak, each tier shuffled (BEP 12).
    pub fn new(tiers: &[Vec<String>], udp_timing: udp::Timing) -> Trackers {
        let mut out = Vec::new();
        for tier in tiers {
            let mut t: Vec<Tracker> = tier
                .iter()
                .filter_map(|u| {
                    let scheme = u.split_once("://")?.0.to_ascii_lowercase();
                    let kind = match scheme.as_str() {
                        "http" => Kind::Http,
                        "udp" => Kind::Udp(udp::UdpTracker::new(u, udp_timing)),
                        _ => return None,
                    };
                    Some(Tracker {
                        url: u.clone(),
                        kind,
                    })
                })
                .collect();
            // Fisher-Yates.
            for i in (1..t.len()).rev() {
                let j = random_u32() as usize % (i + 1);
                t.swap(i, j);
            }
            if !t.is_empty() {
                out.push(t);
            }
        }
        Trackers { tiers: out }
    }

    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// The order trackers are asked in (the tests check BEP 12's shuffle).
    #[cfg(test)]
    pub fn order(&self) -> Vec<Vec<String>> {
        self.tiers
            .iter()
            .map(|t| t.iter().map(|x| x.url.clone()).collect())
            .collect()
    }

    /// Announce: tiers in order, trackers of a tier in order, each for at
    /// most `per_tracker`, all before `deadline`. The first answer wins and
    /// its tracker moves to the front of its tier.
    pub fn announce(
        &mut self,
        p: &AnnounceParams,
        per_tracker: Duration,
        deadline: Instant,
    ) -> Result<AnnounceReply> {
        let mut errors = Vec::new();
        for tier in &mut self.tiers {
            for i in 0..tier.len() {
                let now = Instant::now();
                if now >= deadline {
                    errors.push("deadline reached".to_string());
                    return Err(all_failed(errors));
                }
                let until = (now + per_tracker).min(deadline);
                let t = &mut tier[i];
                let r = match &mut t.kind {
                    Kind::Http => http::announce(&t.url, p, until),
                    Kind::Udp(u) => u.announce(p, until),
                };
                match r {
                    Ok(reply) => {
                        let t = tier.remove(i);
                        tier.insert(0, t);
                        return Ok(reply);
                    }
                    Err(e) => errors.push(e.message().to_string()),
                }
            }
        }
        Err(all_failed(errors))
    }
}

fn all_failed(errors: Vec<String>) -> Error {
    Error::io(format!(
        "no tracker answered the announce: {}",
        if errors.is_empty() {
            "none is usable".to_string()
        } else {
            errors.join("; ")
        }
    ))
}

/// Drop peers that cannot be ours to dial: port 0, unspecified or multicast
/// addresses, our own listening address, and duplicates.
pub fn filter_peers(peers: Vec<SocketAddr>, own_port: u16) -> Vec<SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    peers
        .into_iter()
        .filter(|a| a.port() != 0 && !a.ip().is_unspecified() && !a.ip().is_multicast())
        .filter(|a| !(a.port() == own_port && is_local(a.ip())))
        .filter(|a| seen.insert(*a))
        .collect()
}

/// An address of this machine: loopback or one of its interfaces'.
fn is_local(ip: IpAddr) -> bool {
    if ip.is_loopback() {
        return true;
    }
    // Binding succeeds only for an address some interface holds.
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests;
