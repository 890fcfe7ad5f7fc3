//! The swarm: reading a torrent's pieces from BitTorrent peers.
//!
//! - [`wire`]: the peer protocol codec (BEP 3, 6, 10), strict and bounded.
//! - [`tracker`]: HTTP and UDP announces over BEP 12 tiers.
//! - `session`: the one library thread that runs a mio loop over every peer
//!   connection; `peer` and `pieces` are its per-connection and per-piece
//!   state.
//!
//! A [`Swarm`] is one open torrent's membership; [`Swarm::shared`] gives
//! every open of the same info-hash in the process the same one, so the
//! tracker sees one peer that starts at the first open and stops at the
//! last close, and two handles never compete for the same peers.
//! [`Swarm::join`] registers
//! the torrent with the loop and starts its announcer: a small thread that
//! sends `started`, hands the peers it learns to the loop, re-announces at
//! the tracker's interval, and sends `stopped` when the swarm is dropped
//! (bounded by [`STOP_WAIT`], so closing never hangs on a dead tracker).
//! Tracker I/O is blocking on that thread rather than on the event loop: an
//! announce is one request every half hour, and a blocking exchange with a
//! deadline is far simpler to get right than a state machine for two
//! protocols; peers, where the traffic is, stay on the loop.
//!
//! [`Swarm::fetch`] is the blocking call a piece provider makes: it asks the
//! loop for a run of pieces, then verifies each one as it arrives (SHA-1 on
//! the caller's thread, so hashing is spread over the engine's workers and
//! never slows the loop). A piece that fails its hash is reported back: when
//! one peer sent all of it that peer is banned; when several did, the piece
//! is fetched again from a single peer, so a second failure names the
//! culprit. A piece is tried [`MAX_ATTEMPTS`] times before its read fails.

pub(crate) mod peer;
pub(crate) mod pieces;
pub(crate) mod session;
pub mod tracker;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use sha1::{Digest, Sha1};

use crate::engine::Piece;
use crate::source::Fault;
use crate::{Error, Result};
use session::{Cmd, Shared, TorrentSpec};
use tracker::{AnnounceParams, Event, Trackers};

pub use session::{CONNECT_TIMEOUT, GLOBAL_MAX_PEERS, STALL, STALL_DROP, UNCHOKE_WAIT};

/// How long dropping a swarm waits for its `stopped` announce.
pub const STOP_WAIT: Duration = Duration::from_secs(2);
/// Tries of one piece (hash failures) before its read fails.
pub const MAX_ATTEMPTS: u32 = 5;
/// Peers asked of a tracker.
const NUMWANT: u32 = 80;
/// The first announce gets this long per tracker: a reader may be waiting.
const FIRST_ANNOUNCE_PER_TRACKER: Duration = Duration::from_secs(5);
const ANNOUNCE_PER_TRACKER: Duration = Duration::from_secs(15);
/// With no peer connected, announce again this soon rather than at the
/// tracker's interval (often 30 min): a seeder that joined after us, or
/// peers that all went away, are found in seconds, not half an hour.
pub const NO_PEER_REANNOUNCE: Duration = Duration::from_secs(15);

/// What the swarm needs to know of a torrent.
#[derive(Clone)]
pub struct TorrentInfo {
    pub info_hash: [u8; 20],
    pub piece_len: u64,
    pub total_len: u64,
    pub hashes: Arc<Vec<[u8; 20]>>,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub max_peers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_peers: 30 }
    }
}

/// Counters of one swarm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwarmStats {
    pub peers_connected: usize,
    pub peers_unchoked: usize,
    pub bytes_peer: u64,
    pub bytes_redundant: u64,
    pub bytes_hash_failed: u64,
    pub peers_banned: usize,
    pub announces_ok: u64,
}

struct Announcer {
    stop: Sender<()>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

/// One open torrent's membership of its swarm.
pub struct Swarm {
    id: u64,
    session: Arc<session::Handle>,
    info: TorrentInfo,
    shared: Arc<Shared>,
    announcer: Mutex<Option<Announcer>>,
    announces_ok: Arc<std::sync::atomic::AtomicU64>,
    /// Pieces readers wait for that no fetch has asked the loop for yet
    /// (bounded by [`MAX_DEMANDED`]).
    demanded: Mutex<std::collections::HashSet<u32>>,
}

/// Demanded pieces remembered before their fetch; past this the set is
/// cleared (a demand piece a web seed served is never fetched here, and
/// losing a mark only costs its priority).
const MAX_DEMANDED: usize = 4096;

/// The swarms of this process by info-hash (fresh in a fork child).
static SWARMS: crate::fork_safe::ForkSafe<Mutex<HashMap<[u8; 20], std::sync::Weak<Swarm>>>> =
    crate::fork_safe::ForkSafe::new(|| Mutex::new(HashMap::new()));

/// Peer connections of every swarm of this process (`gtio_stats_json`).
pub fn peers_connected_all() -> u64 {
    let live: Vec<Arc<Swarm>> = SWARMS
        .get()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    live.iter().map(|s| s.stats().peers_connected as u64).sum()
}

impl Swarm {
    /// The process's swarm of `info`, joined by the first caller and left
    /// (`stopped`) when the last `Arc` drops.
    pub fn shared(
        info: TorrentInfo,
        tiers: &[Vec<String>],
        settings: &Settings,
    ) -> Result<Arc<Swarm>> {
        let mut all = SWARMS.get().lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = all.get(&info.info_hash).and_then(std::sync::Weak::upgrade) {
            return Ok(s);
        }
        let hash = info.info_hash;
        let s = Arc::new(Swarm::join(info, tiers, settings)?);
        all.insert(hash, Arc::downgrade(&s));
        Ok(s)
    }

    /// Join the swarm of `info`: register with the loop and, when `tiers`
    /// names usable trackers, start announcing (`started` at once).
    pub fn join(info: TorrentInfo, tiers: &[Vec<String>], settings: &Settings) -> Result<Swarm> {
        let session = session::get()?;
        let id = session.new_id();
        let shared = Arc::new(Shared::default());
        let peer_id = tracker::new_peer_id();
        session.send(Cmd::Add(
            id,
            TorrentSpec {
                info_hash: info.info_hash,
                peer_id,
                decoder: wire::Decoder::new(info.total_len, info.piece_len),
                max_peers: settings.max_peers.max(1),
                shared: Arc::clone(&shared),
            },
        ));
        let announces_ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let trackers = Trackers::new(tiers, tracker::udp::Timing::default());
        let announcer = if trackers.is_empty() {
            None
        } else {
            let (stop, stop_rx) = crossbeam_channel::bounded(1);
            let (done_tx, done) = crossbeam_channel::bounded(1);
            let params = AnnounceParams {
                info_hash: info.info_hash,
                peer_id,
                port: session.port(),
                uploaded: 0,
                downloaded: 0,
                left: info.total_len,
                event: Event::Started,
                numwant: NUMWANT,
                key: tracker::random_u32(),
            };
            let ctx = AnnounceCtx {
                trackers,
                params,
                session: Arc::clone(&session),
                id,
                shared: Arc::clone(&shared),
                ok: Arc::clone(&announces_ok),
            };
            let thread = std::thread::Builder::new()
                .name("gtio-announce".into())
                .spawn(move || {
                    ctx.run(stop_rx);
                    let _ = done_tx.send(());
                })
                .map_err(|e| Error::from(e).context("starting the announce thread"))?;
            Some(Announcer {
                stop,
                done,
                thread: Some(thread),
            })
        };
        Ok(Swarm {
            id,
            session,
            info,
            shared,
            announcer: Mutex::new(announcer),
            announces_ok,
            demanded: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Add peers by address (besides those the trackers give).
    pub fn add_peers(&self, peers: Vec<SocketAddr>) {
        let peers = tracker::filter_peers(peers, self.session.port());
        self.session.send(Cmd::Peers(self.id, peers));
    }

    /// A reader waits for `piece` (the engine's urgent priority): when it is
    /// fetched, or is being fetched as readahead, its blocks are asked for
    /// before any readahead's, and its last blocks go to a second peer when
    /// that is sooner (endgame; `session`).
    pub fn demand(&self, piece: u32) {
        if piece as usize >= self.info.hashes.len() {
            return;
        }
        {
            let mut d = self.demanded.lock().unwrap_or_else(|e| e.into_inner());
            if d.len() >= MAX_DEMANDED {
                d.clear();
            }
            d.insert(piece);
        }
        self.session.send(Cmd::Demand {
            torrent: self.id,
            piece,
        });
    }

    pub fn stats(&self) -> SwarmStats {
        let s = &self.shared;
        SwarmStats {
            peers_connected: s.peers_connected.load(Ordering::Relaxed),
            peers_unchoked: s.peers_unchoked.load(Ordering::Relaxed),
            bytes_peer: s.bytes_peer.load(Ordering::Relaxed),
            bytes_redundant: s.bytes_redundant.load(Ordering::Relaxed),
            bytes_hash_failed: s.bytes_hash_failed.load(Ordering::Relaxed),
            peers_banned: s.banned.load(Ordering::Relaxed),
            announces_ok: self.announces_ok.load(Ordering::Relaxed),
        }
    }

    /// Redundant bytes (blocks got twice, or not asked for) since the last
    /// call, for a dataset's `bytes_redundant`: each byte is taken once, by
    /// whichever dataset of this swarm asks first.
    pub fn take_redundant(&self) -> u64 {
        self.shared.untaken_redundant.swap(0, Ordering::Relaxed)
    }

    /// Bytes of pieces that failed their hash since the last call (as
    /// [`Swarm::take_redundant`], for `bytes_hash_failed`).
    pub fn take_hash_failed(&self) -> u64 {
        self.shared.untaken_hash_failed.swap(0, Ordering::Relaxed)
    }

    /// Recent peer and tracker errors, newest last (for messages and tests).
    pub fn recent_errors(&self) -> Vec<String> {
        self.shared.recent_errors()
    }

    /// Fetch `pieces` from peers, calling `deliver` with each verified piece
    /// as it arrives (any order), or with the error that dooms a piece alone
    /// (it failed its hash [`MAX_ATTEMPTS`] times). Pieces not in by
    /// `deadline` are given up: `Err` (`ETIMEDOUT`; transient while some peer
    /// is connected, permanent when none is), the ones delivered stay.
    pub fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Result<Piece>),
        deadline: Instant,
    ) -> std::result::Result<(), Fault> {
        let count = self.info.hashes.len() as u32;
        let pieces = pieces.start.min(count)..pieces.end.min(count);
        if pieces.is_empty() {
            return Ok(());
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let fetch = self.session.new_id();
        let demand: std::collections::HashSet<u32> = {
            let mut d = self.demanded.lock().unwrap_or_else(|e| e.into_inner());
            pieces.clone().filter(|p| d.remove(p)).collect()
        };
        let want = |piece: u32, exclusive: bool| Cmd::Want {
            torrent: self.id,
            piece,
            fetch,
            exclusive,
            demand: demand.contains(&piece),
            reply: tx.clone(),
        };
        self.session
            .send_all(pieces.clone().map(|p| want(p, false)));
        let mut left: HashMap<u32, u32> = pieces.clone().map(|p| (p, 0)).collect();
        while !left.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let d = match rx.recv_timeout(deadline - now) {
                Ok(d) => d,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let Some(tries) = left.get_mut(&d.piece) else {
                continue;
            };
            let want_hash = self.info.hashes.get(d.piece as usize);
            if want_hash.is_some_and(|h| Sha1::digest(&d.data[..]).as_slice() == h.as_slice()) {
                left.remove(&d.piece);
                deliver(d.piece, Ok(d.data));
                continue;
            }
            *tries += 1;
            let tries = *tries;
            let bad = d.data.len() as u64;
            self.shared
                .bytes_hash_failed
                .fetch_add(bad, Ordering::Relaxed);
            self.shared
                .untaken_hash_failed
                .fetch_add(bad, Ordering::Relaxed);
            self.session.send(Cmd::HashFailed {
                torrent: self.id,
                from: d.from,
            });
            if tries >= MAX_ATTEMPTS {
                left.remove(&d.piece);
                deliver(
                    d.piece,
                    Err(Error::io(format!(
                        "piece {} failed its SHA-1 check {tries} times from peers \
                         (they serve different data than the torrent describes)",
                        d.piece
                    ))),
                );
            } else {
                // From one peer only this time, so a failure names it.
                self.session.send(want(d.piece, true));
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        let mut missing: Vec<u32> = left.keys().copied().collect();
        missing.sort_unstable();
        self.session
            .send_all(missing.iter().map(|&piece| Cmd::Unwant {
                torrent: self.id,
                piece,
                fetch,
            }));
        let st = self.stats();
        let errs = self.recent_errors();
        let mut msg = format!(
            "{} of pieces {}-{} not received from peers in time ({} connected, {} unchoked us)",
            missing.len(),
            pieces.start,
            pieces.end - 1,
            st.peers_connected,
            st.peers_unchoked
        );
        if let Some(last) = errs.last() {
            msg.push_str(&format!("; last: {last}"));
        }
        let error = Error::new(libc::ETIMEDOUT, msg);
        // With peers connected a retry may finish the job; with none, a
        // retry would only wait as long again (the engine retries transient
        // faults): give the reader its error now.
        if st.peers_connected > 0 {
            Err(Fault::transient(error))
        } else {
            Err(Fault::permanent(error))
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.session.send(Cmd::Remove(self.id));
        let a = self
            .announcer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut a) = a {
            let _ = a.stop.try_send(());
            // The stopped announce is bounded by STOP_WAIT; wait that long
            // and a little, then leave the thread to finish alone.
            if a.done
                .recv_timeout(STOP_WAIT + Duration::from_millis(500))
                .is_ok()
            {
                if let Some(t) = a.thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

struct AnnounceCtx {
    trackers: Trackers,
    params: AnnounceParams,
    session: Arc<session::Handle>,
    id: u64,
    shared: Arc<Shared>,
    ok: Arc<std::sync::atomic::AtomicU64>,
}

impl AnnounceCtx {
    fn run(mut self, stop: Receiver<()>) {
        let mut started = false;
        let mut failures = 0u32;
        loop {
            self.params.event = if started { Event::None } else { Event::Started };
            self.params.downloaded = self.shared.bytes_peer.load(Ordering::Relaxed);
            let per = if started {
                ANNOUNCE_PER_TRACKER
            } else {
                FIRST_ANNOUNCE_PER_TRACKER
            };
            let wait = match self
                .trackers
                .announce(&self.params, per, Instant::now() + 4 * per)
            {
                Ok(r) => {
                    started = true;
                    failures = 0;
                    self.ok.fetch_add(1, Ordering::Relaxed);
                    let peers = tracker::filter_peers(r.peers, self.params.port);
                    self.session.send(Cmd::Peers(self.id, peers));
                    r.interval.max(r.min_interval.unwrap_or_default())
                }
                Err(e) => {
                    self.shared.note(e.message().to_string());
                    failures += 1;
                    Duration::from_secs(1u64 << failures.min(6))
                }
            };
            if !self.wait(&stop, wait) {
                break;
            }
        }
        self.stopped(started);
    }

    /// Wait `wait`, or less when no peer is connected: false when stopped.
    fn wait(&self, stop: &Receiver<()>, wait: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            let elapsed = t0.elapsed();
            if elapsed >= wait {
                return true;
            }
            let idle = self.shared.peers_connected.load(Ordering::Relaxed) == 0;
            if idle && elapsed >= NO_PEER_REANNOUNCE {
                return true;
            }
            let step = (wait - elapsed).min(Duration::from_secs(1));
            match stop.recv_timeout(step) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return false,
            }
        }
    }

    fn stopped(&mut self, started: bool) {
        if started {
            self.params.event = Event::Stopped;
            self.params.numwant = 0;
            let _ = self
                .trackers
                .announce(&self.params, STOP_WAIT, Instant::now() + STOP_WAIT);
        }
    }
}
