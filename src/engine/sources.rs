//! Several sources for one dataset's pieces: choosing one per run of
//! pieces by availability and measured speed, verifying what each sends in
//! one place, and the endgame (a second source for pieces the first is slow
//! to send; the first verified copy wins).
//!
//! A [`PieceSource`] is one place pieces come from: a torrent's web seed,
//! a BitTorrent peer, an HTTP mirror. It only moves bytes; it does not
//! retry, verify or choose. A [`SourceSet`] holds a dataset's sources and
//! their health: bytes per second measured over each request (an EWMA),
//! requests in flight, cool-down after a transient failure, and a ban after
//! a piece that failed its SHA-1 (while another source remains: the last
//! one is never banned, so only its bad pieces fail). [`MultiSource`] is a
//! [`PieceProvider`] over a layout, the pieces' SHA-1s and a set, so a new
//! kind of source (the swarm's peers) plugs in without touching the
//! engine's core: it implements [`PieceSource`] and joins the set.
//!
//! Choosing: a source must have every piece of the run; among those, not
//! banned and not cooling down, the highest `speed / (busy + 1)` wins, a
//! source not measured yet counting as the fastest (so every source gets
//! tried, as anacrolix/torrent treats a web seed as one more peer). The
//! faster source thus takes more runs, and parallel jobs spread over
//! sources.
//!
//! Endgame: a run is fetched on a helper thread while the worker delivers
//! what arrives. If the first piece of the run is not in after
//! [`HEDGE_AFTER`] (or the source stops sending for that long), and
//! another source can serve the missing pieces, they are asked of it too.
//! Each piece is delivered once, the first verified copy; later copies are
//! counted as redundant bytes. Readers are served by whichever copy comes
//! first; the job itself ends when both requests have (each one's wait is
//! bounded by the network timeouts).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::stats::SourceKind;
use super::verify::{sha1_matches, HashFailures};
use super::Piece;
use crate::source::Fault;
use crate::Error;

/// How long a request may go without sending a piece before the missing
/// pieces are also asked of another source.
pub const HEDGE_AFTER: Duration = Duration::from_millis(1500);

/// Pieces in transit between a source's thread and the worker.
const IN_TRANSIT: usize = 16;

/// How long a source that failed transiently is skipped while others are
/// available.
pub const COOLDOWN: Duration = Duration::from_secs(5);

thread_local! {
    /// The kind of the source whose piece [`SourceSet::fetch`] is handing
    /// to its caller right now (the caller's `deliver` runs on this thread,
    /// inside that call).
    static DELIVERING: std::cell::Cell<Option<SourceKind>> = const { std::cell::Cell::new(None) };
}

/// Inside a `deliver` called by [`SourceSet::fetch`]: the kind of source the
/// piece came from, so the engine counts `bytes_fetched` by the source that
/// served each piece (a torrent's web seeds and peers apart), not by the
/// dataset's kind. `None` elsewhere.
pub fn delivering_kind() -> Option<SourceKind> {
    DELIVERING.with(|d| d.get())
}

/// One place pieces come from.
pub trait PieceSource: Send + Sync {
    fn kind(&self) -> SourceKind;
    /// For messages: no credentials.
    fn label(&self) -> String;
    /// Whether it can serve `piece` now (a peer's bitfield; a web seed has
    /// every piece).
    fn has(&self, _piece: u32) -> bool {
        true
    }
    /// A demand read waits for `piece` (`PieceProvider::demand`).
    fn demand(&self, _piece: u32) {}
    /// Send the bytes of `pieces`, each piece whole, in any order. Not
    /// verified here: the set checks every piece.
    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Piece),
    ) -> std::result::Result<(), Fault>;
}

#[derive(Debug, Default, Clone)]
struct Health {
    /// Bytes per second, EWMA over requests; `None` until measured.
    speed: Option<f64>,
    busy: u32,
    cooldown_until: Option<Instant>,
    banned: bool,
}

struct Entry {
    source: Arc<dyn PieceSource>,
    health: Mutex<Health>,
    /// Pieces this source delivered first (for tests and diagnostics).
    won: AtomicU64,
}

/// What the set counted since the engine last asked.
#[derive(Debug, Default)]
struct Counts {
    redundant: AtomicU64,
    hash_failed: HashFailures,
}

pub struct SourceSet {
    entries: Vec<Entry>,
    counts: Counts,
}

impl SourceSet {
    pub fn new(sources: Vec<Arc<dyn PieceSource>>) -> SourceSet {
        SourceSet {
            entries: sources
                .into_iter()
                .map(|source| Entry {
                    source,
                    health: Mutex::new(Health::default()),
                    won: AtomicU64::new(0),
                })
                .collect(),
            counts: Counts::default(),
        }
    }

    fn health(&self, i: usize) -> std::sync::MutexGuard<'_, Health> {
        self.entries[i]
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Pieces each source delivered first (the tests check the faster
    /// source took more).
    #[cfg(test)]
    pub fn wins(&self) -> Vec<u64> {
        self.entries
            .iter()
            .map(|e| e.won.load(Ordering::Relaxed))
            .collect()
    }

    /// The best source for `pieces`, other than `not`: see the module docs.
    pub fn choose(&self, pieces: &[u32], not: Option<usize>) -> Option<usize> {
        let now = Instant::now();
        let mut best: Option<(bool, f64, usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            if Some(i) == not || !pieces.iter().all(|&p| e.source.has(p)) {
                continue;
            }
            let h = self.health(i).clone();
            if h.banned {
                continue;
            }
            let ready = h.cooldown_until.is_none_or(|t| t <= now);
            let score = h.speed.unwrap_or(f64::MAX) / f64::from(h.busy + 1);
            let better = match best {
                None => true,
                Some((r, s, _)) => (ready, score) > (r, s),
            };
            if better {
                best = Some((ready, score, i));
            }
        }
        best.map(|(_, _, i)| i)
    }

    /// A piece from source `i` failed its hash: ban it if another source
    /// remains. Returns whether it was banned.
    fn on_bad_piece(&self, i: usize) -> bool {
        let others = (0..self.entries.len())
            .filter(|&j| j != i && !self.health(j).banned)
            .count();
        if others > 0 {
            self.health(i).banned = true;
        }
        others > 0
    }

    fn finished(&self, i: usize, bytes: u64, took: Duration, failed: bool) {
        let mut h = self.health(i);
        h.busy = h.busy.saturating_sub(1);
        if bytes > 0 {
            let rate = bytes as f64 / took.as_secs_f64().max(1e-6);
            h.speed = Some(match h.speed {
                Some(s) => 0.7 * s + 0.3 * rate,
                None => rate,
            });
        }
        if failed {
            h.cooldown_until = Some(Instant::now() + COOLDOWN);
        }
    }

    /// Fetch `pieces`, delivering each verified piece once (any order);
    /// `hashes` are the pieces' SHA-1s. See the module docs for choosing
    /// and the endgame.
    pub fn fetch(
        &self,
        pieces: Range<u32>,
        hashes: &[[u8; 20]],
        deliver: &mut dyn FnMut(u32, Result<Piece, Error>),
    ) -> std::result::Result<(), Fault> {
        let wanted: Vec<u32> = pieces.clone().collect();
        let Some(first) = self.choose(&wanted, None) else {
            return Err(Fault::permanent(Error::io(format!(
                "pieces {}-{}: no source has them (or all failed their SHA-1 checks)",
                pieces.start,
                pieces.end.saturating_sub(1)
            ))));
        };
        let mut done = vec![false; wanted.len()];
        let mut left = wanted.len();
        // Bounded: a source sending faster than the worker hands pieces on
        // waits, so what is in transit stays a few pieces (a torrent of
        // 4-byte pieces queued a million of them).
        let (tx, rx) = mpsc::sync_channel::<Msg>(IN_TRANSIT);
        let result = std::thread::scope(|scope| {
            let start = |i: usize, run: Range<u32>| {
                self.health(i).busy += 1;
                let tx = tx.clone();
                let source = Arc::clone(&self.entries[i].source);
                scope.spawn(move || {
                    let t = Instant::now();
                    let mut bytes = 0u64;
                    let r = source.fetch(run, &mut |p, data| {
                        bytes += data.len() as u64;
                        let _ = tx.send(Msg::Piece(i, p, data));
                    });
                    let _ = tx.send(Msg::Done(i, bytes, t.elapsed(), r));
                });
            };
            start(first, pieces.clone());
            let mut running = 1;
            let mut hedged = false;
            let mut last_progress = Instant::now();
            let mut fault: Option<Fault> = None;
            while running > 0 {
                let msg = match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if !hedged && left > 0 && last_progress.elapsed() >= HEDGE_AFTER {
                            let missing: Vec<u32> = wanted
                                .iter()
                                .zip(&done)
                                .filter(|(_, d)| !**d)
                                .map(|(p, _)| *p)
                                .collect();
                            if let Some(second) = self.choose(&missing, Some(first)) {
                                hedged = true;
                                let run = missing[0]..missing[missing.len() - 1] + 1;
                                start(second, run);
                                running += 1;
                            }
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                };
                match msg {
                    Msg::Piece(i, p, data) => {
                        let Some(k) = p.checked_sub(pieces.start).map(|k| k as usize) else {
                            continue;
                        };
                        if k >= done.len() || done[k] {
                            self.counts
                                .redundant
                                .fetch_add(data.len() as u64, Ordering::Relaxed);
                            continue;
                        }
                        let ok = hashes
                            .get(p as usize)
                            .is_some_and(|h| sha1_matches(h, &data));
                        if !ok {
                            self.counts.hash_failed.record(data.len() as u64);
                            if self.on_bad_piece(i) {
                                // Another source will be asked (retry).
                                continue;
                            }
                            done[k] = true;
                            left -= 1;
                            deliver(
                                p,
                                Err(Error::io(format!(
                                    "piece {p} failed its SHA-1 check on every source \
                                     (the sources serve different data than the torrent \
                                     describes)"
                                ))),
                            );
                            continue;
                        }
                        done[k] = true;
                        left -= 1;
                        last_progress = Instant::now();
                        self.entries[i].won.fetch_add(1, Ordering::Relaxed);
                        let kind = self.entries[i].source.kind();
                        DELIVERING.with(|d| d.set(Some(kind)));
                        deliver(p, Ok(data));
                        DELIVERING.with(|d| d.set(None));
                    }
                    Msg::Done(i, bytes, took, r) => {
                        running -= 1;
                        self.finished(i, bytes, took, r.as_ref().is_err_and(|f| f.transient));
                        if let Err(f) = r {
                            let label = self.entries[i].source.label();
                            fault.get_or_insert(Fault {
                                error: f.error.context(label),
                                ..f
                            });
                        }
                    }
                }
            }
            match fault {
                Some(f) if left > 0 => Err(f),
                _ => Ok(()),
            }
        });
        result
    }

    /// A demand read waits for `piece`: every source hears it.
    pub fn demand(&self, piece: u32) {
        for e in &self.entries {
            e.source.demand(piece);
        }
    }

    /// Bytes of second copies since the last call.
    pub fn take_redundant_bytes(&self) -> u64 {
        self.counts.redundant.swap(0, Ordering::Relaxed)
    }

    /// Bytes that failed verification since the last call.
    pub fn take_hash_failed_bytes(&self) -> u64 {
        self.counts.hash_failed.take()
    }
}

enum Msg {
    Piece(usize, u32, Piece),
    Done(usize, u64, Duration, std::result::Result<(), Fault>),
}

#[cfg(test)]
mod tests;
