//! The read engine: pieces, single-flight downloads, the piece cache and the
//! worker pool.
//!
//! A read is cut into piece slices. For each slice the engine either finds
//! the piece in the [`cache`], joins the download already in flight for it,
//! or starts one; a missing run of consecutive pieces becomes one [`Job`], so
//! one range request covers it. Workers take jobs from the [`scheduler`]
//! (urgent first), ask the dataset's [`PieceProvider`] for the pieces, and as
//! each verified piece arrives put it in the cache and copy it into the
//! buffer of every read waiting for it, synchronous or not (see
//! [`request`]): no piece waits in a queue for a reader to run. Runs of tiny
//! pieces are read and cached as one [`units`] piece.
//!
//! Lock order, to keep it deadlock-free: `flights` → scheduler queues; a
//! request's state → its handle's pending table → its ring. No lock is held
//! while a provider fetches or while a caller's callback runs.

pub mod cache;
pub mod helper;
pub mod keys;
pub mod layout;
pub mod readahead;
pub mod request;
pub mod scheduler;
pub mod sources;
pub mod stats;
mod tiers;
pub mod units;
pub mod verify;

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::source::Fault;
use crate::{Config, Error};
use cache::{MemoryLru, PieceStore};
use layout::{Layout, PieceSlice};
use request::ReadRequest;
pub use scheduler::Task;
use scheduler::{Job, Scheduler};
use stats::{DownloadInfo, Gauges, StatSet};

/// A verified piece, shared by the cache and its readers.
pub type Piece = Arc<crate::buffers::PieceBuf>;

pub use keys::{Identity, ObjectId, PieceKey};

/// A dataset as the engine sees it: a layout and a way to fetch its pieces.
pub trait PieceProvider: Send + Sync {
    fn layout(&self) -> &Layout;
    fn key(&self, piece: u32) -> PieceKey;
    /// Fetch `pieces`, calling `deliver` with each one as soon as it is
    /// complete and verified (or with the error that dooms that piece
    /// alone, such as a hash mismatch on every source). Pieces may come in
    /// any order, from several sources at once; a piece delivered twice or
    /// not asked for is ignored (counted as redundant), and one left out is
    /// asked for again. On `Err`, the pieces delivered so far stay
    /// delivered; the engine retries the rest.
    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Result<Piece, Error>),
    ) -> Result<(), Fault>;
    /// The most pieces worth asking for in one job.
    fn max_run(&self) -> u32;
    /// Whether this dataset's keys name the same bytes in every process,
    /// so the persistent store may keep its pieces (a plain object served
    /// without a validator gets a key per open: not worth storing).
    fn keys_persist(&self) -> bool {
        true
    }
    /// Read `range` of the stream into `dest` (its length) without going
    /// through pieces: a cold isolated read smaller than a piece
    /// (`docs/http.md`, "Right-sized requests"). `None`: this provider
    /// only fetches whole pieces. Nothing is cached or retried here; on
    /// `Err` the caller falls back to the piece path.
    fn read_direct(&self, _range: Range<u64>, _dest: &mut [u8]) -> Option<Result<(), Fault>> {
        None
    }
    /// Whether [`read_direct`](Self::read_direct) serves non-empty ranges.
    fn reads_direct(&self) -> bool {
        false
    }
    /// A demand read (urgent) waits for `piece`, queued or in flight: a
    /// provider that orders its own requests (the swarm) serves it before
    /// readahead. Called outside the engine's locks.
    fn demand(&self, _piece: u32) {}
    /// Peer connections serving this dataset now (its swarm's), for the
    /// statistics' `peers_connected`.
    fn peers_connected(&self) -> u64 {
        0
    }
    /// Bytes of pieces that failed verification since the last call (the
    /// statistics' `bytes_hash_failed`).
    fn take_hash_failed_bytes(&self) -> u64 {
        0
    }
    /// Bytes of second copies (endgame) the provider kept out itself since
    /// the last call (the statistics' `bytes_redundant`).
    fn take_redundant_bytes(&self) -> u64 {
        0
    }
}

/// Which pieces of a job have arrived (or failed for good): a bitset, not
/// "the highest so far", so a source that skips a piece cannot leave it in
/// flight for ever.
struct Completion {
    pieces: Range<u32>,
    words: Vec<u64>,
    left: usize,
}

impl Completion {
    fn new(pieces: Range<u32>) -> Completion {
        let n = (pieces.end - pieces.start) as usize;
        Completion {
            pieces,
            words: vec![0; n.div_ceil(64)],
            left: n,
        }
    }

    /// Mark `piece` done; false if outside the job or done already.
    fn mark(&mut self, piece: u32) -> bool {
        if !self.pieces.contains(&piece) {
            return false;
        }
        let i = (piece - self.pieces.start) as usize;
        let (w, b) = (i / 64, 1u64 << (i % 64));
        if self.words[w] & b != 0 {
            return false;
        }
        self.words[w] |= b;
        self.left -= 1;
        true
    }

    fn is_done(&self, piece: u32) -> bool {
        let i = (piece - self.pieces.start) as usize;
        self.words[i / 64] & (1u64 << (i % 64)) != 0
    }

    fn left(&self) -> usize {
        self.left
    }

    fn missing(&self) -> Vec<u32> {
        self.pieces.clone().filter(|&p| !self.is_done(p)).collect()
    }

    /// The missing pieces as runs of consecutive ones.
    fn missing_runs(&self) -> Vec<Range<u32>> {
        let mut runs: Vec<Range<u32>> = Vec::new();
        for p in self.missing() {
            match runs.last_mut() {
                Some(r) if r.end == p => r.end = p + 1,
                _ => runs.push(p..p + 1),
            }
        }
        runs
    }
}

/// A read waiting for one slice of a piece: whoever completes the piece
/// copies the slice into the read's buffer (see [`request`]).
pub struct Waiter {
    req: Arc<ReadRequest>,
    slice: PieceSlice,
    delivered: bool,
}

impl Waiter {
    pub fn new(req: Arc<ReadRequest>, slice: PieceSlice) -> Waiter {
        Waiter {
            req,
            slice,
            delivered: false,
        }
    }

    /// Drop without failing the read: the caller takes the request back
    /// (nothing was queued).
    fn disarm(mut self) {
        self.delivered = true;
    }

    /// Fill the slice with `bytes`, exactly its bytes, read without a
    /// piece (a right-sized read).
    pub fn deliver_bytes(mut self, bytes: &[u8]) {
        self.delivered = true;
        let slice = PieceSlice {
            piece: self.slice.piece,
            within: 0..bytes.len(),
            dest: self.slice.dest,
        };
        self.req.fill(&slice, bytes);
    }

    /// Fail the read this slice belongs to.
    pub fn fail(mut self, error: &Error) {
        self.delivered = true;
        self.req.fail(error);
    }

    fn deliver(mut self, result: &Result<Piece, Error>) {
        self.delivered = true;
        match result {
            Ok(piece) => self.req.fill(&self.slice, piece),
            Err(e) => self.req.fail(e),
        }
    }
}

impl Drop for Waiter {
    /// A waiter dropped undelivered (a download abandoned by a path that
    /// forgot it) fails its read rather than leave a reader waiting.
    fn drop(&mut self) {
        if !self.delivered {
            self.req.fail(&Error::new(
                libc::ECANCELED,
                "read abandoned: its download was dropped",
            ));
        }
    }
}

/// One piece being downloaded, and the reads waiting for it.
///
/// Pieces are keyed by content (a torrent piece by its SHA-1), so reads of
/// two datasets may wait on one flight while the download runs on the
/// sources of only one of them. A failure belongs to those sources: a waiter
/// that came from another dataset is sent back to fetch with its own
/// (once), so one dataset's dead web seed never fails another's read.
struct Flight {
    waiters: Vec<FlightWaiter>,
    job: u64,
    /// The dataset whose sources fetch this piece.
    provider: Arc<dyn PieceProvider>,
}

struct FlightWaiter {
    waiter: Waiter,
    provider: Arc<dyn PieceProvider>,
    /// The waiting dataset's counters (for a reroute).
    stats: Arc<StatSet>,
    piece: u32,
    /// Already sent back once after another dataset's failure.
    rerouted: bool,
}

/// Whether two providers are the same dataset (by address only: the vtable
/// part of a `dyn` pointer may differ between codegen units).
fn same_provider(a: &Arc<dyn PieceProvider>, b: &Arc<dyn PieceProvider>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

/// Where a download stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownloadState {
    Queued,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl DownloadState {
    pub fn name(self) -> &'static str {
        match self {
            DownloadState::Queued => "queued",
            DownloadState::InProgress => "in_progress",
            DownloadState::Completed => "completed",
            DownloadState::Failed => "failed",
            DownloadState::Cancelled => "cancelled",
        }
    }
}

/// A download in the state table: its state, the counters it belongs to
/// (by id, to list one dataset's downloads) and its pieces.
struct DownloadEntry {
    state: DownloadState,
    owner: u64,
    pieces: Range<u32>,
}

/// Finished downloads stay listed (as completed, failed or cancelled) among
/// the last this many, so a short one is seen at all.
const RECENT_DOWNLOADS: usize = 32;

/// Counters for tests, benchmarks and diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub jobs_started: u64,
    pub jobs_completed: u64,
    pub jobs_failed: u64,
    pub jobs_cancelled: u64,
    pub pieces_fetched: u64,
    pub bytes_fetched: u64,
    pub retries: u64,
    pub cache_hits: u64,
    /// Pieces found in the persistent store instead of fetched.
    pub store_hits: u64,
}

#[derive(Default)]
struct Counters {
    jobs_started: AtomicU64,
    jobs_completed: AtomicU64,
    jobs_failed: AtomicU64,
    jobs_cancelled: AtomicU64,
    pieces_fetched: AtomicU64,
    bytes_fetched: AtomicU64,
    retries: AtomicU64,
    store_hits: AtomicU64,
}

pub struct Engine {
    config: Config,
    cache: Box<dyn PieceStore>,
    /// The persistent tier behind `cache`, when `cache_dir` is set, and
    /// the thread that writes to it (`tiers`).
    store: Option<Arc<crate::store::DiskStore>>,
    store_writer: Option<tiers::Writer>,
    /// A second thread for readers' direct store hits (`helper`).
    store_helper: Option<helper::Helper>,
    flights: Mutex<HashMap<PieceKey, Flight>>,
    scheduler: Scheduler,
    states: Mutex<Downloads>,
    next_job: AtomicU64,
    readahead_in_flight: AtomicU64,
    counters: Counters,
    shut_down: AtomicBool,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// Live downloads and the last few finished ones.
#[derive(Default)]
struct Downloads {
    live: HashMap<u64, DownloadEntry>,
    recent: VecDeque<(u64, DownloadEntry)>,
}

impl Engine {
    pub fn start(config: &Config) -> Arc<Engine> {
        Engine::start_with_store(config, None)
    }

    /// Start with a persistent store behind the memory cache.
    pub fn start_with_store(
        config: &Config,
        store: Option<crate::store::DiskStore>,
    ) -> Arc<Engine> {
        let store = store.map(|s| {
            Arc::new(
                s.with_check(verify::sha1_matches)
                    .with_buffers(|len| crate::buffers::PieceBuf::reuse(len).into_vec()),
            )
        });
        // A quarter of the memory cache may wait to be written.
        let store_writer = store
            .as_ref()
            .map(|s| tiers::Writer::start(Arc::clone(s), config.cache_bytes / 4));
        let engine = Arc::new(Engine {
            cache: Box::new(MemoryLru::new(config.cache_bytes)),
            store_helper: store.as_ref().and_then(|_| helper::Helper::start()),
            store,
            store_writer,
            flights: Mutex::new(HashMap::new()),
            scheduler: Scheduler::new(config.workers as usize),
            states: Mutex::new(Downloads::default()),
            next_job: AtomicU64::new(1),
            readahead_in_flight: AtomicU64::new(0),
            counters: Counters::default(),
            shut_down: AtomicBool::new(false),
            workers: Mutex::new(Vec::new()),
            config: config.clone(),
        });
        let mut handles = Vec::new();
        for i in 0..config.workers {
            let e = Arc::clone(&engine);
            let spawned = std::thread::Builder::new()
                .name(format!("gtio-worker-{i}"))
                .spawn(move || e.worker_loop());
            match spawned {
                Ok(h) => handles.push(h),
                // Fewer workers is slower, not wrong; zero is handled below.
                Err(_) => break,
            }
        }
        *engine.workers.lock().unwrap_or_else(|e| e.into_inner()) = handles;
        engine
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// The cached piece, if any. Not counted here: the reader counts its
    /// hits once per read, into its own dataset's [`StatSet`].
    #[inline]
    pub fn cached(&self, key: &PieceKey) -> Option<Piece> {
        self.cache.get(key)
    }

    /// A piece that arrived outside a job (a plain object's first block,
    /// the body of the request that opened it): cached like a fetched piece
    /// of `provider`, and counted in `stats` as one request and its bytes,
    /// fetched, or redundant when a copy is cached or in flight already (a
    /// reopened object). Not written to the persistent store.
    pub fn seed(&self, provider: &dyn PieceProvider, stats: &StatSet, piece: u32, data: Piece) {
        let key = provider.key(piece);
        let len = data.len() as u64;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        {
            // Under the flights lock, as a finishing download inserts: a
            // reader that finds no flight then finds the piece.
            let flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if flights.contains_key(&key) || self.cache.contains(&key) {
                stats.bytes_redundant.fetch_add(len, Ordering::Relaxed);
                return;
            }
            self.cache.insert(key, data);
        }
        self.counters.pieces_fetched.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_fetched
            .fetch_add(len, Ordering::Relaxed);
        stats.fetched(stats.kind(), len);
    }

    /// Ask for pieces on behalf of waiters (demand reads). Pieces already
    /// cached are delivered at once, on this thread; pieces in flight get
    /// the waiter added (and their job promoted when `urgent`); the rest are
    /// fetched in runs of consecutive pieces. Each want counts as a hit or a
    /// miss in `stats`.
    pub fn request(
        &self,
        provider: &Arc<dyn PieceProvider>,
        stats: &Arc<StatSet>,
        wants: Vec<(u32, Waiter)>,
        urgent: bool,
    ) -> Result<(), Error> {
        // Refused before anything is queued: the waiters are handed back
        // undelivered, so an asynchronous read refused here gets no
        // completion (its submission fails instead).
        if let Err(e) = self.admit(provider) {
            for (_, w) in wants {
                w.disarm();
            }
            return Err(e);
        }
        let wants = wants
            .into_iter()
            .map(|(piece, waiter)| FlightWaiter {
                waiter,
                provider: Arc::clone(provider),
                stats: Arc::clone(stats),
                piece,
                rerouted: false,
            })
            .collect();
        self.request_waiters(provider, stats, wants, urgent, true)
    }

    fn request_waiters(
        &self,
        provider: &Arc<dyn PieceProvider>,
        stats: &Arc<StatSet>,
        wants: Vec<FlightWaiter>,
        urgent: bool,
        count: bool,
    ) -> Result<(), Error> {
        if self.is_shut_down() {
            return Err(shut_down_error());
        }
        self.check_piece_size(provider)?;
        let mut ready = Vec::new();
        let mut missing: Vec<(u32, u64)> = Vec::new();
        let mut promote = Vec::new();
        let mut demanded = Vec::new();
        let mut misses = 0u64;
        {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            for waiter in wants {
                let piece = waiter.piece;
                let key = provider.key(piece);
                if let Some(f) = flights.get_mut(&key) {
                    f.waiters.push(waiter);
                    misses += 1;
                    if urgent {
                        promote.push(f.job);
                        demanded.push(piece);
                    }
                    continue;
                }
                // Checked under the flights lock: a finishing download puts
                // its piece in the cache before it removes its flight.
                if let Some(p) = self.cache.get(&key) {
                    ready.push((waiter.waiter, p));
                    continue;
                }
                misses += 1;
                if urgent {
                    demanded.push(piece);
                }
                let job = self.job_for(&mut missing, piece, provider.max_run());
                flights.insert(
                    key,
                    Flight {
                        waiters: vec![waiter],
                        job,
                        provider: Arc::clone(provider),
                    },
                );
            }
            self.enqueue_runs(provider, stats, &missing, urgent, false);
        }
        if count {
            stats.lookups(ready.len() as u64, misses);
        }
        for id in promote {
            self.scheduler.promote(id);
        }
        for piece in demanded {
            provider.demand(piece);
        }
        for (waiter, piece) in ready {
            waiter.deliver(&Ok(piece));
        }
        Ok(())
    }

    /// Queue background downloads of the pieces covering `range` that are
    /// neither cached nor in flight. With `readahead`, the global readahead
    /// budget (half the cache) applies: returns false when it is spent.
    pub fn prefetch(
        &self,
        provider: &Arc<dyn PieceProvider>,
        stats: &Arc<StatSet>,
        range: Range<u64>,
        readahead: bool,
    ) -> bool {
        if self.is_shut_down() || self.check_piece_size(provider).is_err() {
            return false;
        }
        let layout = provider.layout();
        let range = layout.clip(range.start, range.end.saturating_sub(range.start));
        let pieces = layout.pieces_of(&range);
        if readahead {
            let budget = self.config.cache_bytes / 2;
            let want = (range.end - range.start).min(budget);
            if self.readahead_in_flight.load(Ordering::Relaxed) + want > budget {
                return false;
            }
        }
        let mut missing: Vec<(u32, u64)> = Vec::new();
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        for piece in pieces {
            let key = provider.key(piece);
            if flights.contains_key(&key) || self.cache.contains(&key) {
                continue;
            }
            let job = self.job_for(&mut missing, piece, provider.max_run());
            flights.insert(
                key,
                Flight {
                    waiters: Vec::new(),
                    job,
                    provider: Arc::clone(provider),
                },
            );
        }
        self.enqueue_runs(provider, stats, &missing, false, readahead);
        true
    }

    fn admit(&self, provider: &Arc<dyn PieceProvider>) -> Result<(), Error> {
        if self.is_shut_down() {
            return Err(shut_down_error());
        }
        self.check_piece_size(provider)
    }

    /// Refuse a dataset whose pieces could not be cached: a piece buffer is
    /// as large as a piece, and a metainfo may claim any piece length (2^40
    /// aborted the process on the allocation). The open path refuses such
    /// datasets with the same rule; this keeps the engine safe on its own.
    fn check_piece_size(&self, provider: &Arc<dyn PieceProvider>) -> Result<(), Error> {
        self.check_fits(provider.layout())
    }

    /// Whether a dataset's pieces fit the cache (at most half of it): the
    /// open path refuses a dataset that fails, so no read of it is ever
    /// attempted. The largest real piece is the first one (the piece length,
    /// or the whole stream when that is shorter).
    pub fn check_fits(&self, layout: &Layout) -> Result<(), Error> {
        let r = layout.piece_range(0);
        let largest = r.end - r.start;
        let cache = self.config.cache_bytes;
        if largest <= cache / 2 {
            return Ok(());
        }
        Err(Error::new(
            libc::EFBIG,
            format!(
                "pieces of {largest} bytes do not fit the cache: a piece may be at most \
                 half of cache_bytes ({cache}); raise cache_bytes to at least {}",
                largest.saturating_mul(2)
            ),
        ))
    }

    /// Assign `piece` to the job of the run it extends, or to a new one.
    fn job_for(&self, missing: &mut Vec<(u32, u64)>, piece: u32, max_run: u32) -> u64 {
        if let Some(&(last, job)) = missing.last() {
            let run_len = missing.iter().rev().take_while(|(_, j)| *j == job).count() as u32;
            if last + 1 == piece && run_len < max_run.max(1) {
                missing.push((piece, job));
                return job;
            }
        }
        let job = self.next_job.fetch_add(1, Ordering::Relaxed);
        missing.push((piece, job));
        job
    }

    fn enqueue_runs(
        &self,
        provider: &Arc<dyn PieceProvider>,
        stats: &Arc<StatSet>,
        missing: &[(u32, u64)],
        urgent: bool,
        readahead: bool,
    ) {
        let mut i = 0;
        while i < missing.len() {
            let job = missing[i].1;
            let first = missing[i].0;
            let mut last = first;
            while i < missing.len() && missing[i].1 == job {
                last = missing[i].0;
                i += 1;
            }
            let pieces = first..last + 1;
            let readahead_bytes = if readahead {
                let l = provider.layout();
                l.piece_range(last).end - l.piece_range(first).start
            } else {
                0
            };
            self.readahead_in_flight
                .fetch_add(readahead_bytes, Ordering::Relaxed);
            self.states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .live
                .insert(
                    job,
                    DownloadEntry {
                        state: DownloadState::Queued,
                        owner: stats_owner(stats),
                        pieces: pieces.clone(),
                    },
                );
            self.scheduler.push(Job {
                id: job,
                provider: Arc::clone(provider),
                stats: Arc::clone(stats),
                pieces,
                urgent,
                readahead_bytes,
            });
        }
    }

    /// Run `task` on a worker ahead of readahead (see `scheduler::Task`).
    /// Once shut down the task is dropped unrun, which fails its read.
    pub fn run_urgent(&self, task: Task) {
        if let Err(task) = self.scheduler.push_task(task) {
            drop(task);
        }
    }

    fn worker_loop(self: Arc<Self>) {
        while let Some(work) = self.scheduler.next() {
            let job = match work {
                scheduler::Work::Fetch(job) => job,
                scheduler::Work::Task(task) => {
                    task();
                    continue;
                }
            };
            self.set_state(job.id, DownloadState::InProgress);
            self.counters.jobs_started.fetch_add(1, Ordering::Relaxed);
            let (outcome, doomed) = self.run_job(&job);
            self.readahead_in_flight
                .fetch_sub(job.readahead_bytes, Ordering::Relaxed);
            self.scheduler.done(&job);
            let counter = match outcome {
                DownloadState::Completed => &self.counters.jobs_completed,
                DownloadState::Cancelled => &self.counters.jobs_cancelled,
                _ => {
                    job.stats.downloads_failed.fetch_add(1, Ordering::Relaxed);
                    &self.counters.jobs_failed
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            self.finish_state(job.id, outcome);
            // Readers learn of a failure only now, so that what they see in
            // the statistics already shows the failed download.
            if let Some((pieces, e)) = doomed {
                for piece in pieces {
                    self.complete(&job.provider.key(piece), Err(e.clone()));
                }
            }
        }
    }

    /// Fetch a job's pieces with retries. Sources may deliver the pieces
    /// of a run in any order: completion is tracked per piece, and what a
    /// fetch left out is asked for again (as runs of the missing pieces),
    /// never waited for. Returns how the job ended and, unless it
    /// completed, the pieces still to fail with their error.
    fn run_job(&self, job: &Job) -> (DownloadState, Option<(Vec<u32>, Error)>) {
        let Some(store) = &self.store else {
            let done = Completion::new(job.pieces.clone());
            return self.fetch_pieces(job, done, &mut HashMap::new());
        };
        // The disk tier first (`tiers`): pieces on disk are completed from
        // it, pieces another process fetches are left for after our own.
        let provider = &job.provider;
        let mut done = Completion::new(job.pieces.clone());
        let mut from_store = |piece: u32, p: Piece| {
            self.counters.store_hits.fetch_add(1, Ordering::Relaxed);
            job.stats.fetched(stats::SourceKind::Store, p.len() as u64);
            self.complete_from(&provider.key(piece), Ok(p), true);
        };
        let mut settled = tiers::settle(store, provider, job.pieces.clone(), &mut from_store);
        for &p in settled
            .stored
            .iter()
            .chain(settled.theirs.iter().map(|(p, _)| p))
        {
            done.mark(p);
        }
        let first = self.fetch_pieces(job, done, &mut settled.claims);
        if settled.theirs.is_empty() || first.0 == DownloadState::Cancelled {
            return first;
        }
        let rest = tiers::wait_for_others(store, settled.theirs, &mut from_store);
        if rest.is_empty() {
            return first;
        }
        // Pieces whose other fetcher died or took too long: ours after all.
        let mut done = Completion::new(job.pieces.clone());
        for p in job.pieces.clone() {
            if !rest.iter().any(|r| r.contains(&p)) {
                done.mark(p);
            }
        }
        let second = self.fetch_pieces(job, done, &mut settled.claims);
        match (first, second) {
            ((DownloadState::Completed, _), second) => second,
            (first, (DownloadState::Completed, _)) => first,
            ((state, Some((mut a, e))), (_, Some((b, _)))) => {
                a.extend(b);
                (state, Some((a, e)))
            }
            (first, _) => first,
        }
    }

    /// Fetch the pieces of `job` that `done` does not have yet, with
    /// retries. Fetched pieces go to the persistent store (releasing their
    /// claims) after their readers have been served.
    fn fetch_pieces(
        &self,
        job: &Job,
        mut done: Completion,
        claims: &mut HashMap<u32, crate::store::ClaimGuard>,
    ) -> (DownloadState, Option<(Vec<u32>, Error)>) {
        let provider = &job.provider;
        let stats = &job.stats;
        let kind = stats.kind();
        let mut attempt: u32 = 0;
        if done.left() == 0 {
            return (DownloadState::Completed, None);
        }
        loop {
            if self.is_shut_down() {
                return (
                    DownloadState::Cancelled,
                    Some((done.missing(), shut_down_error())),
                );
            }
            let before = done.left();
            let mut result = Ok(());
            for run in done.missing_runs() {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let mut first_byte = true;
                result = provider.fetch(run, &mut |piece, data| {
                    if first_byte {
                        first_byte = false;
                        stats.first_byte_us.record(started.elapsed());
                    }
                    if !done.mark(piece) {
                        // Not asked for, or a second copy: kept out.
                        if let Ok(d) = &data {
                            stats
                                .bytes_redundant
                                .fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                        return;
                    }
                    if data.is_err() {
                        // A piece failed for good (bad on every source):
                        // its reader wakes now, so count what the provider
                        // saw first.
                        drain_counts(provider.as_ref(), stats);
                    }
                    if let Ok(d) = &data {
                        self.counters.pieces_fetched.fetch_add(1, Ordering::Relaxed);
                        self.counters
                            .bytes_fetched
                            .fetch_add(d.len() as u64, Ordering::Relaxed);
                        // By the source that served it (a torrent's web seed
                        // or peer), else the dataset's kind.
                        let from = sources::delivering_kind().unwrap_or(kind);
                        stats.fetched(from, d.len() as u64);
                    }
                    let key = provider.key(piece);
                    let to_store = data.as_ref().ok().map(Arc::clone);
                    if !self.complete(&key, data) {
                        // Someone else's copy completed it first (endgame).
                        stats.bytes_redundant.fetch_add(
                            provider.layout().piece_range(piece).end
                                - provider.layout().piece_range(piece).start,
                            Ordering::Relaxed,
                        );
                    }
                    let claim = claims.remove(&piece);
                    if let (Some(w), Some(p), Some(k)) = (
                        &self.store_writer,
                        to_store,
                        tiers::store_key(&key, provider.keys_persist()),
                    ) {
                        w.save(k, p, claim);
                    }
                });
                drain_counts(provider.as_ref(), stats);
                if result.is_err() {
                    break;
                }
            }
            if done.left() == 0 {
                return (DownloadState::Completed, None);
            }
            let fault = match result {
                Ok(()) => Fault::transient(Error::io(format!(
                    "the source left out {} of the pieces asked for (first: {})",
                    done.left(),
                    done.missing().first().copied().unwrap_or(0)
                ))),
                Err(f) => f,
            };
            if done.left() < before {
                // Progress resets the count: retries are per piece.
                attempt = 0;
            }
            if !fault.transient || attempt >= self.config.retries {
                return (DownloadState::Failed, Some((done.missing(), fault.error)));
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            stats.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(backoff(attempt, fault.retry_after));
            attempt += 1;
        }
    }

    fn fail_pieces(&self, provider: &Arc<dyn PieceProvider>, pieces: Range<u32>, e: &Error) {
        for piece in pieces {
            self.complete(&provider.key(piece), Err(e.clone()));
        }
    }

    /// A piece arrived (or failed): cache it, then serve its waiters.
    /// False when no download waited for it (another copy came first).
    fn complete(&self, key: &PieceKey, result: Result<Piece, Error>) -> bool {
        self.complete_from(key, result, false)
    }

    /// `complete`; `stored`: the piece was loaded from the persistent
    /// store, so the memory cache lets it go soon after it is read
    /// (`cache`, `insert_loaded`).
    fn complete_from(&self, key: &PieceKey, result: Result<Piece, Error>, stored: bool) -> bool {
        if let Ok(piece) = &result {
            if stored {
                self.cache.insert_loaded(*key, Arc::clone(piece));
            } else {
                self.cache.insert(*key, Arc::clone(piece));
            }
        }
        let flight = self
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let Some(flight) = flight else {
            return false;
        };
        if stored && result.is_ok() && !flight.waiters.is_empty() {
            // Its waiters read it now: that is its first read.
            let _ = self.cache.get(key);
        }
        for w in flight.waiters {
            let foreign = !same_provider(&w.provider, &flight.provider);
            if result.is_err() && foreign && !w.rerouted {
                let provider = Arc::clone(&w.provider);
                let stats = Arc::clone(&w.stats);
                let retry = FlightWaiter {
                    rerouted: true,
                    ..w
                };
                // On failure (shut down) the waiter was dropped inside,
                // which fails its read. Not counted again: the read's
                // miss was counted when it first asked.
                let _ = self.request_waiters(&provider, &stats, vec![retry], true, false);
            } else {
                w.waiter.deliver(&result);
            }
        }
        true
    }

    fn set_state(&self, job: u64, state: DownloadState) {
        let mut st = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = st.live.get_mut(&job) {
            e.state = state;
        }
    }

    /// Finished jobs leave the live table (so it cannot grow with the number
    /// of downloads ever made) for a short list of recent ones.
    fn finish_state(&self, job: u64, state: DownloadState) {
        let mut st = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut e) = st.live.remove(&job) {
            e.state = state;
            if st.recent.len() >= RECENT_DOWNLOADS {
                st.recent.pop_front();
            }
            st.recent.push_back((job, e));
        }
    }

    /// The downloads queued or running now.
    pub fn downloads(&self) -> Vec<(u64, DownloadState)> {
        let mut v: Vec<_> = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .iter()
            .map(|(k, e)| (*k, e.state))
            .collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }

    /// Downloads live and recently finished, of one dataset (by its
    /// counters) or of all: what the statistics list.
    pub fn download_infos(&self, of: Option<&Arc<StatSet>>) -> Vec<DownloadInfo> {
        let owner = of.map(stats_owner);
        let st = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<DownloadInfo> = st
            .recent
            .iter()
            .map(|(k, e)| (k, e))
            .chain(st.live.iter())
            .filter(|(_, e)| owner.is_none_or(|o| o == e.owner))
            .map(|(k, e)| DownloadInfo {
                id: *k,
                state: e.state,
                pieces: e.pieces.clone(),
            })
            .collect();
        v.sort_unstable_by_key(|d| d.id);
        v
    }

    /// The gauges of the statistics for one dataset or the process.
    pub fn gauges(&self, of: Option<&Arc<StatSet>>) -> Gauges {
        Gauges {
            downloads: self.download_infos(of),
            peers_connected: 0,
            cache_bytes_used: self.cache.bytes(),
            store_bytes_used: self.store.as_ref().map_or(0, |s| s.stats().bytes_used),
            store_warning: self.store.as_ref().and_then(|s| s.stats().warning),
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            jobs_started: l(&c.jobs_started),
            jobs_completed: l(&c.jobs_completed),
            jobs_failed: l(&c.jobs_failed),
            jobs_cancelled: l(&c.jobs_cancelled),
            pieces_fetched: l(&c.pieces_fetched),
            bytes_fetched: l(&c.bytes_fetched),
            retries: l(&c.retries),
            cache_hits: stats::process_wide().cache_hits,
            store_hits: l(&c.store_hits),
        }
    }

    /// Wait (bounded) until the pieces fetched so far are in the store, or
    /// given up: a summary printed next (`--stats`) then shows the store's
    /// state, including a full disk.
    pub fn store_settle(&self, timeout: std::time::Duration) {
        if let Some(w) = &self.store_writer {
            w.wait_idle(timeout);
        }
    }

    /// Stop the workers: queued downloads are cancelled, every waiter gets
    /// `ECANCELED`, running downloads finish their current attempt.
    pub fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        for job in self.scheduler.shutdown() {
            self.fail_pieces(&job.provider, job.pieces.clone(), &shut_down_error());
            self.finish_state(job.id, DownloadState::Cancelled);
        }
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            let _ = w.join();
        }
        if let Some(w) = &self.store_writer {
            w.finish();
        }
        if let Some(h) = &self.store_helper {
            h.finish();
        }
        let flights: Vec<Flight> = self
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, f)| f)
            .collect();
        let e = Err(shut_down_error());
        for f in flights {
            for w in f.waiters {
                w.waiter.deliver(&e);
            }
        }
        self.cache.clear();
    }
}

/// Move what the provider counted itself (hash failures, second copies)
/// into the dataset's statistics.
fn drain_counts(provider: &dyn PieceProvider, stats: &StatSet) {
    let failed = provider.take_hash_failed_bytes();
    if failed > 0 {
        stats.bytes_hash_failed.fetch_add(failed, Ordering::Relaxed);
    }
    let redundant = provider.take_redundant_bytes();
    if redundant > 0 {
        stats
            .bytes_redundant
            .fetch_add(redundant, Ordering::Relaxed);
    }
}

/// Identifies a dataset's counters in the download table.
fn stats_owner(stats: &Arc<StatSet>) -> u64 {
    stats.id()
}

fn shut_down_error() -> Error {
    Error::new(libc::ECANCELED, "gtio was shut down (gtio_lib_fini)")
}

/// Exponential backoff with jitter: 100 ms × 2^attempt, capped at 5 s, drawn
/// from [½, 1] of that so clients that failed together retry apart. A
/// server's Retry-After wins, up to 10 s (a longer wait is better reported
/// than hidden inside a read).
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(Duration::from_secs(10));
    }
    let base_ms = (100u64 << attempt.min(6)).min(5000);
    let jitter = jitter_unit();
    Duration::from_millis(base_ms / 2 + (base_ms as f64 / 2.0 * jitter) as u64)
}

/// A number in [0, 1) that differs between threads and calls; no need for a
/// cryptographic or even good generator here.
fn jitter_unit() -> f64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = const { Cell::new(0) });
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&std::thread::current().id(), &mut h);
            x = (t ^ std::hash::Hasher::finish(&h)) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests;
