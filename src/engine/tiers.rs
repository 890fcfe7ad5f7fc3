//! The disk tier behind the memory cache (see `store` for the design).
//!
//! A worker that takes a job first asks the disk store for each of its
//! pieces: a piece on disk is loaded (verified) and completed like a fetched
//! one; a piece another process is fetching is waited for; the rest, the
//! pieces this process claimed, are fetched in runs of consecutive pieces.
//! Fetched pieces go to disk after their readers have been served, so the
//! store costs a cold read one write off its critical path.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::stats::{SourceKind, StatSet};
use super::{Piece, PieceKey, PieceProvider};
use crate::buffers::PieceBuf;
use crate::store::{Claim, ClaimGuard, DiskStore, StoreKey, CLAIM_TIMEOUT};

/// The store's name for a piece, when it can outlive the process: a
/// torrent piece by its SHA-1; a plain object's block by a digest of its
/// object id (URI, validator, block size: `keys`) and index, when the
/// provider's keys persist.
pub fn store_key(key: &PieceKey, persistent: bool) -> Option<StoreKey> {
    use sha1::{Digest, Sha1};
    match key {
        PieceKey::Sha1(h) => Some(StoreKey::Torrent(*h)),
        PieceKey::Object(id, index) if persistent => {
            let mut h = Sha1::new();
            h.update(b"gtio object block v1\0");
            h.update(id.to_bytes());
            h.update(index.to_be_bytes());
            Some(StoreKey::Object(h.finalize().into()))
        }
        PieceKey::Object(..) => None,
    }
}

impl super::Engine {
    /// Whether a persistent store is behind the memory cache.
    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// The thread that helps readers load stored pieces, if any.
    pub fn store_helper(&self) -> Option<&super::helper::Helper> {
        self.store_helper.as_ref()
    }

    /// Whether the store has a file for `piece` of `provider` (a stat; not
    /// checked until loaded).
    pub fn store_has(&self, provider: &Arc<dyn PieceProvider>, piece: u32) -> bool {
        let Some(store) = &self.store else {
            return false;
        };
        store_key(&provider.key(piece), provider.keys_persist()).is_some_and(|k| store.contains(&k))
    }

    /// Serve `piece` of `provider`, a whole piece, from the store straight
    /// into `dest` on the calling thread (a synchronous reader's direct hit:
    /// `handle::stored`, docs/store.md "Speed"): no job, no worker, no piece
    /// buffer, not put in the memory cache. Counted as the engine's path
    /// counts a store hit (`store_hits`, bytes fetched from the store).
    /// False, with nothing counted, when there is no store, the piece is not
    /// a plain object's block, it is in flight already (single flight: the
    /// reader joins it on the engine's path), or the store has no good copy
    /// (the engine's path then deletes a bad one and fetches it again).
    pub fn load_stored_into(
        &self,
        provider: &Arc<dyn PieceProvider>,
        stats: &StatSet,
        piece: u32,
        dest: &mut [u8],
    ) -> bool {
        let Some(store) = &self.store else {
            return false;
        };
        let key = provider.key(piece);
        // Plain objects only. A torrent piece's check is SHA-1, which costs
        // several times the copy (docs/store.md "Speed"): on the reader's
        // thread alone it made a 256 MiB pass slower (0.21 s against
        // 0.15-0.17 s) than the workers' readahead, which hashes pieces
        // ahead of the reader on every core.
        let Some(skey @ StoreKey::Object(_)) = store_key(&key, provider.keys_persist()) else {
            return false;
        };
        if self
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&key)
        {
            return false;
        }
        if !store.load_into(&skey, dest) {
            return false;
        }
        self.counters.store_hits.fetch_add(1, Ordering::Relaxed);
        stats.fetched(SourceKind::Store, dest.len() as u64);
        true
    }
}

/// What the disk tier made of a job's pieces.
pub struct Settled {
    /// Pieces completed from the store.
    pub stored: Vec<u32>,
    /// Claims to release once each piece is saved (or failed).
    pub claims: HashMap<u32, ClaimGuard>,
    /// Pieces another process is fetching: wait for them with
    /// [`wait_for_others`] *after* fetching our own runs (two processes
    /// that each claimed part of a job would otherwise wait on each other).
    pub theirs: Vec<(u32, StoreKey)>,
}

/// Resolve what the store can of `pieces`, calling `complete` for each
/// piece it gives; return the runs left to fetch.
pub fn settle(
    store: &DiskStore,
    provider: &Arc<dyn PieceProvider>,
    pieces: Range<u32>,
    complete: &mut dyn FnMut(u32, Piece),
) -> Settled {
    let mut stored = Vec::new();
    let mut claims = HashMap::new();
    let mut waits = Vec::new();
    let persistent = provider.keys_persist();
    for piece in pieces {
        let Some(key) = store_key(&provider.key(piece), persistent) else {
            continue;
        };
        match store.claim(&key) {
            Claim::Stored(data) => {
                complete(piece, Arc::new(PieceBuf::from(data)));
                stored.push(piece);
            }
            Claim::Theirs => waits.push((piece, key)),
            Claim::Mine(guard) => {
                claims.insert(piece, guard);
            }
        }
    }
    Settled {
        stored,
        claims,
        theirs: waits,
    }
}

/// Wait (bounded) for the pieces other processes fetch, completing each
/// that lands; return the runs left for us to fetch after all.
pub fn wait_for_others(
    store: &DiskStore,
    theirs: Vec<(u32, StoreKey)>,
    complete: &mut dyn FnMut(u32, Piece),
) -> Vec<Range<u32>> {
    let deadline = Instant::now() + CLAIM_TIMEOUT;
    let mut runs = Vec::new();
    for (piece, key) in theirs {
        match store.wait_for(&key, deadline) {
            Some(data) => complete(piece, Arc::new(PieceBuf::from(data))),
            None => push_piece(&mut runs, piece),
        }
    }
    runs
}

fn push_piece(runs: &mut Vec<Range<u32>>, piece: u32) {
    match runs.last_mut() {
        Some(r) if r.end == piece => r.end += 1,
        _ => runs.push(piece..piece + 1),
    }
}

/// Saves fetched pieces to the store on a thread of its own, so a piece
/// write (and its flushes) never delays the download of the next piece or a
/// reader. The thread takes what is queued as one batch (up to
/// [`BATCH_PIECES`]): every piece is written to its temporary file, then the
/// batch is flushed and renamed into place together, so the flushes of many
/// small pieces overlap and each directory is flushed once per batch, not
/// once per piece. The queue is bounded in bytes: past the bound a save is
/// skipped, never waited for, so the store costs memory no more
/// than the bound. The claim on a piece goes with its save: another process
/// waiting for it finds the file once the marker is gone. The thread also
/// lists the store's pieces when it starts (`DiskStore::scan`), so opening a
/// large store costs the opener nothing.
pub struct Writer {
    tx: std::sync::Mutex<Option<crossbeam_channel::Sender<Save>>>,
    queued: Arc<std::sync::atomic::AtomicU64>,
    /// Saves sent and not yet committed (written or given up).
    pending: Arc<std::sync::atomic::AtomicU64>,
    limit: u64,
    /// Set by `finish`: the start-up walk of the store is not waited for.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How long the writer waits for a first save before listing the store.
const SCAN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Pieces written per batch, at most.
pub const BATCH_PIECES: usize = 64;

struct Save {
    key: StoreKey,
    piece: Piece,
    _claim: Option<ClaimGuard>,
}

impl Writer {
    pub fn start(store: Arc<DiskStore>, limit: u64) -> Writer {
        let (tx, rx) = crossbeam_channel::unbounded::<Save>();
        let queued = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let q = Arc::clone(&queued);
        let pending = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let p = Arc::clone(&pending);
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let thread = std::thread::Builder::new()
            .name("gtio-store".into())
            .spawn(move || {
                lower_priority();
                // The listing is for eviction and the gauge: a process
                // that only reads from the store has no use for it soon,
                // and on a small machine the walk takes CPU its readers
                // want (`docs/store.md`). A first save lists first.
                let mut waiting = match rx.recv_timeout(SCAN_AFTER) {
                    Ok(save) => Some(save),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        store.scan_unless(&|| stop.load(std::sync::atomic::Ordering::Relaxed));
                        None
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                };
                while let Some(first) = waiting.take().or_else(|| rx.recv().ok()) {
                    let mut staged = Vec::new();
                    let mut claims = Vec::new();
                    let mut next = Some(first);
                    while let Some(save) = next.take() {
                        staged.extend(store.stage(&save.key, &save.piece));
                        // In the page cache now: the queue has room again.
                        q.fetch_sub(
                            save.piece.len() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        claims.push(save._claim);
                        if claims.len() < BATCH_PIECES {
                            next = rx.try_recv().ok();
                        }
                    }
                    let n = claims.len() as u64;
                    store.commit_then(staged, &mut || claims.clear());
                    p.fetch_sub(n, std::sync::atomic::Ordering::Release);
                }
            })
            .ok();
        Writer {
            tx: std::sync::Mutex::new(thread.as_ref().map(|_| tx)),
            queued,
            pending,
            stopping,
            limit,
            thread: std::sync::Mutex::new(thread),
        }
    }

    pub fn save(&self, key: StoreKey, piece: Piece, claim: Option<ClaimGuard>) {
        use std::sync::atomic::Ordering::Relaxed;
        let len = piece.len() as u64;
        if self.queued.load(Relaxed) + len > self.limit {
            return;
        }
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref() {
            self.queued.fetch_add(len, Relaxed);
            self.pending.fetch_add(1, Relaxed);
            let _ = tx.send(Save {
                key,
                piece,
                _claim: claim,
            });
        }
    }

    /// Wait (at most `limit`) until every save sent so far is committed:
    /// for a summary that should show what the store made of them.
    pub fn wait_idle(&self, limit: std::time::Duration) {
        let deadline = Instant::now() + limit;
        while self.pending.load(std::sync::atomic::Ordering::Acquire) > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Write what is queued, then stop.
    pub fn finish(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// Give the writer thread a low CPU priority (nice 10) and the idle I/O
/// class: on a machine with few cores it otherwise takes CPU (copying
/// pieces into the page cache, submitting their write-back) from the
/// threads that serve readers (measured: a third of a cold read's CPU
/// samples on 2 cores), and a cold read with a store should cost what one
/// without costs. Not the lowest: a close waits for the queue to be
/// written. Best effort: a refusal changes nothing.
fn lower_priority() {
    // SAFETY: gettid, setpriority and ioprio_set take integers and act on
    // this thread only.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
        // IOPRIO_WHO_PROCESS = 1 (a thread id); class idle = 3 << 13.
        libc::syscall(libc::SYS_ioprio_set, 1, tid, 3 << 13);
    }
}
