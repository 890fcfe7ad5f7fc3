//! The swarm thread: one mio event loop over every peer connection of every
//! open torrent (docs/design.md "Threads"). Callers never touch a socket: they
//! send [`Cmd`]s through a channel and wake the loop; pieces come back on
//! each fetch's own channel. The loop never blocks on a caller.
//!
//! What the loop does for a torrent:
//!
//! - **Connections.** Up to `max_peers` per torrent (and [`GLOBAL_MAX_PEERS`]
//!   in all), to addresses the trackers gave; TCP_NODELAY on each, since one
//!   lone request on loopback otherwise waits 40 ms for a delayed ACK
//!   (docs/references.md). A failed address is retried with exponential backoff;
//!   a banned one never.
//! - **Listening.** gtio downloads and never uploads, so it needs no
//!   inbound connections: it dials every peer a tracker gives. A library
//!   that bound every interface would open a port on the host for each
//!   program that reads a torrent (and firewalls would ask about it). The
//!   listener is therefore bound to 127.0.0.1 only, on a port the system
//!   picks, and that port is the one announced: a seeder on the same host
//!   that joins after us (found through the tracker) can still dial us and
//!   join the torrent its handshake names; remote peers cannot, and do not
//!   need to.
//! - **Handshake.** Ours first (extension protocol and fast extension
//!   bits), then theirs must name the same info-hash and not our own peer
//!   ID. Then the BEP 10 handshake (our `reqq` and client name),
//!   `have-none` when the fast extension is on, and
//!   `interested`.
//! - **Requests.** A peer that unchoked us (or allowed a piece fast) gets
//!   16 KiB block requests up to its pipeline depth, taken from demand
//!   pieces (a reader waits for them) first, then readahead pieces, each in
//!   the order they were wanted (`pieces`). A piece is spread over every
//!   peer with room, so several peers fill one demand piece at once. A
//!   peer's depth follows its measured rate: about [`QUEUE_TIME`] of its
//!   bytes (at least [`peer::MIN_PIPELINE`] blocks, at most its `reqq` and
//!   [`peer::MAX_PIPELINE`]; [`peer::INITIAL_PIPELINE`] until measured), so
//!   a slow peer holds few blocks and a fast one keeps its pipe full.
//! - **Endgame.** When every block of a demand piece is asked for, a peer
//!   with room, before it takes readahead, also asks for the blocks that one
//!   other peer owes and that it would deliver clearly sooner (the owing
//!   peer's queue ahead of the block at its rate takes at least
//!   [`ENDGAME_WORTH`] and more than twice this peer's, or the owing peer
//!   is not measured yet and the block has waited [`ENDGAME_UNMEASURED`]);
//!   a block waits at least [`ENDGAME_MIN_AGE`] first, so equal peers do
//!   not double every request. Whichever copy comes
//!   first is kept and the other peer gets a `cancel`. When no block of any
//!   piece is missing, the blocks of the oldest pieces owed by one peer are
//!   asked of another too by the same rule (the classic endgame).
//! - **Faults.** A peer that owes blocks and sends none for [`STALL`] has
//!   them handed to other peers (a late answer is still taken); one silent
//!   for [`STALL_DROP`] is dropped, and so is one that never unchokes us
//!   within [`UNCHOKE_WAIT`]. Choke without the fast extension frees the
//!   peer's blocks; with it, rejects do. Any protocol violation drops the
//!   peer. Hash failures are judged by the fetch (see `super`), which bans
//!   a peer that alone sent a bad piece.
//! - **Being a correct peer.** Requests are answered with `reject` (fast
//!   extension) or ignored while we choke them, which we always do; a
//!   keep-alive goes out after [`KEEPALIVE`] of silence.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::peer::Peer;
use super::pieces::{Delivery, Jobs};
use super::wire::{Decoder, Message};
use crate::fork_safe::ForkSafe;

mod conn;
mod requests;
use crate::{Error, Result};

const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);
const FIRST_PEER: usize = 2;

/// Connections in all torrents together.
pub const GLOBAL_MAX_PEERS: usize = 200;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that owes blocks and sends none for this long has them asked of
/// others.
pub const STALL: Duration = Duration::from_secs(2);
/// ... and is dropped after this long.
pub const STALL_DROP: Duration = Duration::from_secs(20);
/// A peer that has not unchoked us this long after the handshake is dropped
/// (Transmission unchokes at its rechoke, 2–10 s: docs/references.md).
pub const UNCHOKE_WAIT: Duration = Duration::from_secs(20);
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// No byte from a peer for this long (it owes us keep-alives every 2 min).
pub const IDLE_DROP: Duration = Duration::from_secs(150);
/// How often timers run.
const TICK: Duration = Duration::from_millis(100);
/// How many of the oldest pieces endgame considers.
const ENDGAME_PIECES: usize = 4;
/// A peer's pipeline holds about this much of its measured rate.
pub const QUEUE_TIME: Duration = Duration::from_millis(500);
/// A block of a demand piece is asked of a second peer no sooner than this.
pub const ENDGAME_MIN_AGE: Duration = Duration::from_millis(20);
/// ... and only when the peer owing it would take this long or more to
/// deliver it (its queue ahead of the block, at its rate).
pub const ENDGAME_WORTH: Duration = Duration::from_millis(100);
/// ... or, when the peer owing it has no measured rate yet, after this.
pub const ENDGAME_UNMEASURED: Duration = Duration::from_millis(300);
/// Peer errors kept per torrent for error messages.
const KEEP_ERRORS: usize = 8;

/// Counters a torrent's [`super::Swarm`] reads without asking the loop.
#[derive(Default)]
pub struct Shared {
    pub peers_connected: AtomicUsize,
    pub peers_unchoked: AtomicUsize,
    pub bytes_peer: AtomicU64,
    pub bytes_redundant: AtomicU64,
    pub bytes_hash_failed: AtomicU64,
    /// Of the two above, what no dataset's statistics took yet
    /// ([`super::Swarm::take_counts`]).
    pub untaken_redundant: AtomicU64,
    pub untaken_hash_failed: AtomicU64,
    pub banned: AtomicUsize,
    pub errors: Mutex<VecDeque<String>>,
}

impl Shared {
    /// A block we did not need (a second copy, or not asked for).
    pub fn redundant(&self, bytes: u64) {
        self.bytes_redundant.fetch_add(bytes, Ordering::Relaxed);
        self.untaken_redundant.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn note(&self, msg: String) {
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() >= KEEP_ERRORS {
            e.pop_front();
        }
        e.push_back(msg);
    }

    pub fn recent_errors(&self) -> Vec<String> {
        let e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        e.iter().cloned().collect()
    }
}

pub struct TorrentSpec {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub decoder: Decoder,
    pub max_peers: usize,
    pub shared: Arc<Shared>,
}

pub enum Cmd {
    Add(u64, TorrentSpec),
    Remove(u64),
    Peers(u64, Vec<SocketAddr>),
    Want {
        torrent: u64,
        piece: u32,
        fetch: u64,
        exclusive: bool,
        /// A reader waits for it (else readahead).
        demand: bool,
        reply: Sender<Delivery>,
    },
    /// A reader now waits for `piece`: if it is wanted as readahead, it
    /// becomes demand (before all readahead).
    Demand {
        torrent: u64,
        piece: u32,
    },
    Unwant {
        torrent: u64,
        piece: u32,
        fetch: u64,
    },
    /// A piece assembled from these peers failed its hash.
    HashFailed {
        torrent: u64,
        from: Vec<SocketAddr>,
    },
}

/// The running loop, as callers see it.
pub struct Handle {
    tx: Sender<Cmd>,
    waker: Waker,
    port: u16,
    next_id: AtomicU64,
}

impl Handle {
    pub fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Send several commands with one wake-up.
    pub fn send_all(&self, cmds: impl IntoIterator<Item = Cmd>) {
        for c in cmds {
            let _ = self.tx.send(c);
        }
        let _ = self.waker.wake();
    }

    /// The port we announce (the loop listens on it).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// The loop of this process, started on first use; fresh in a fork child.
static SESSION: ForkSafe<Mutex<Option<Arc<Handle>>>> = ForkSafe::new(|| Mutex::new(None));

pub fn get() -> Result<Arc<Handle>> {
    let mut slot = SESSION.get().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(Arc::clone(h));
    }
    let h = Arc::new(start()?);
    *slot = Some(Arc::clone(&h));
    Ok(h)
}

fn start() -> Result<Handle> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    // Loopback only (module docs, "Listening").
    let local: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut listener = TcpListener::bind(local)?;
    let port = listener.local_addr()?.port();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut lp = Loop {
        poll,
        rx,
        listener,
        torrents: HashMap::new(),
        peers: HashMap::new(),
        next_token: FIRST_PEER,
        dirty: HashSet::new(),
    };
    std::thread::Builder::new()
        .name("gtio-swarm".into())
        .spawn(move || lp.run())
        .map_err(|e| Error::from(e).context("starting the swarm thread"))?;
    Ok(Handle {
        tx,
        waker,
        port,
        next_id: AtomicU64::new(1),
    })
}

struct AddrInfo {
    connected: bool,
    banned: bool,
    failures: u32,
    retry_at: Instant,
}

struct Torrent {
    spec: TorrentSpec,
    peers: HashSet<Token>,
    addrs: HashMap<SocketAddr, AddrInfo>,
    jobs: Jobs,
}

struct Loop {
    poll: Poll,
    rx: Receiver<Cmd>,
    listener: TcpListener,
    torrents: HashMap<u64, Torrent>,
    peers: HashMap<Token, Peer>,
    next_token: usize,
    /// Torrents whose peers may have new work (filled once per turn).
    dirty: HashSet<u64>,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut last_tick = Instant::now();
        loop {
            let timeout = if self.torrents.is_empty() {
                None
            } else {
                Some(TICK)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    // Nothing sensible is left to do; callers time out.
                    return;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    t => self.on_event(t, ev.is_readable(), ev.is_writable() || ev.is_error()),
                }
            }
            if !self.commands() {
                return;
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick();
            }
            let dirty: Vec<u64> = self.dirty.drain().collect();
            for t in dirty {
                self.fill_torrent(t);
            }
        }
    }

    /// Incoming connections: a peer that learnt our address from a tracker.
    /// Which torrent it wants is known only from its handshake
    /// (`conn::incoming_handshake`).
    fn accept(&mut self) {
        while let Ok((mut s, addr)) = self.listener.accept() {
            if self.peers.len() >= GLOBAL_MAX_PEERS || self.torrents.is_empty() {
                continue; // dropped: closed at once
            }
            let tok = Token(self.next_token);
            self.next_token += 1;
            if self
                .poll
                .registry()
                .register(&mut s, tok, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            let mut p = Peer::new(addr, 0, s, 0);
            p.state = super::peer::State::Incoming;
            let _ = p.stream.set_nodelay(true);
            self.peers.insert(tok, p);
        }
    }

    /// Apply queued commands; false when every sender is gone.
    fn commands(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(c) => self.command(c),
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Add(id, spec) => {
                self.torrents.insert(
                    id,
                    Torrent {
                        spec,
                        peers: HashSet::new(),
                        addrs: HashMap::new(),
                        jobs: Jobs::default(),
                    },
                );
            }
            Cmd::Remove(id) => {
                if let Some(t) = self.torrents.get(&id) {
                    let toks: Vec<Token> = t.peers.iter().copied().collect();
                    for tok in toks {
                        self.drop_peer(tok, None, false);
                    }
                }
                self.torrents.remove(&id);
            }
            Cmd::Peers(id, addrs) => {
                if let Some(t) = self.torrents.get_mut(&id) {
                    let now = Instant::now();
                    for a in addrs {
                        t.addrs.entry(a).or_insert(AddrInfo {
                            connected: false,
                            banned: false,
                            failures: 0,
                            retry_at: now,
                        });
                    }
                    self.connect_more(id);
                }
            }
            Cmd::Want {
                torrent,
                piece,
                fetch,
                exclusive,
                demand,
                reply,
            } => {
                if let Some(t) = self.torrents.get_mut(&torrent) {
                    let len = t.spec.decoder.piece_size(piece) as u32;
                    if len > 0 {
                        t.jobs.want(piece, len, fetch, reply, exclusive, demand);
                        self.dirty.insert(torrent);
                    }
                }
            }
            Cmd::Demand { torrent, piece } => {
                if let Some(t) = self.torrents.get_mut(&torrent) {
                    if t.jobs.demand(piece) {
                        self.dirty.insert(torrent);
                    }
                }
            }
            Cmd::Unwant {
                torrent,
                piece,
                fetch,
            } => {
                let Some(t) = self.torrents.get_mut(&torrent) else {
                    return;
                };
                let Some(j) = t.jobs.by_piece.get_mut(&piece) else {
                    return;
                };
                j.waiters.retain(|(f, _)| *f != fetch);
                if j.waiters.is_empty() {
                    self.abandon_job(torrent, piece);
                }
            }
            Cmd::HashFailed { torrent, from } => {
                if from.len() == 1 {
                    self.ban(torrent, from[0]);
                }
            }
        }
    }

    fn ban(&mut self, torrent: u64, addr: SocketAddr) {
        let Some(t) = self.torrents.get_mut(&torrent) else {
            return;
        };
        if let Some(a) = t.addrs.get_mut(&addr) {
            if !a.banned {
                a.banned = true;
                t.spec.shared.banned.fetch_add(1, Ordering::Relaxed);
            }
        }
        let tok = t
            .peers
            .iter()
            .copied()
            .find(|tok| self.peers.get(tok).is_some_and(|p| p.addr == addr));
        if let Some(tok) = tok {
            self.drop_peer(
                tok,
                Some("sent a piece that failed its SHA-1 check: banned".into()),
                true,
            );
        }
    }

    /// Forget a job nobody waits for; cancel its requests.
    fn abandon_job(&mut self, torrent: u64, piece: u32) {
        let Some(t) = self.torrents.get_mut(&torrent) else {
            return;
        };
        let Some(j) = t.jobs.remove(piece) else {
            return;
        };
        for (i, b) in j.blocks.iter().enumerate() {
            let r = j.block_ref(piece, i);
            for tok in &b.reqs {
                if let Some(p) = self.peers.get_mut(tok) {
                    if p.take_outstanding(&r) {
                        p.queue(&Message::Cancel(r));
                    }
                }
            }
        }
        let toks: Vec<Token> = t.peers.iter().copied().collect();
        for tok in toks {
            self.flush(tok);
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64 << failures.min(9)).min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    /// The listener takes connections on 127.0.0.1 only (module docs,
    /// "Listening"): the kernel's table shows it bound there, not 0.0.0.0.
    #[test]
    fn the_listener_is_on_loopback_only() {
        let port = super::get().unwrap().port();
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let suffix = format!(":{port:04X}");
        let listening: Vec<&str> = tcp
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // local_address, state 0A = LISTEN
                (f.len() > 3 && f[1].ends_with(&suffix) && f[3] == "0A").then_some(f[1])
            })
            .collect();
        assert_eq!(listening, vec![format!("0100007F{suffix}")], "{tcp}");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }
}
