//! An open dataset: the Rust API that the C ABI, the Python package and the
//! command-line tool all stand on.
//!
//! A [`Dataset`] turns reads into piece slices and hands them to the engine.
//! Synchronous reads copy cache hits on the calling thread with no queue
//! round-trip; for misses they wait for their own pieces (never for the
//! thread's completion ring). Asynchronous reads complete on the ring of the
//! submitting thread. `pread` is safe from any number of threads; `read` and
//! `seek` share the handle's offset.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::completion::{self, Completion};
use crate::dataset::{FileEntry, PieceSlice};
use crate::engine::readahead::Readahead;
use crate::engine::request::{BorrowedBuf, Meter, PendingTable, ReadRequest, ReadTarget};
use crate::engine::stats::{self, SourceKind, StatSet, TIMED_READ_BYTES};
use crate::engine::{PieceProvider, Waiter};
use crate::runtime::Runtime;
use crate::{Error, Result};

mod direct;
mod open;
mod reader;
mod stored;

pub use reader::Reader;

/// `lseek`'s origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    Set,
    Current,
    End,
}

/// An open dataset.
pub struct Dataset {
    runtime: Arc<Runtime>,
    /// The dataset's own provider: its layout has the files and pieces.
    provider: Arc<dyn PieceProvider>,
    /// What reads go through: `provider`, or runs of its tiny pieces as one
    /// unit (`engine::units`).
    reads: Arc<dyn PieceProvider>,
    /// The handle's own offset and readahead: one reader (`read`, `seek`).
    cursor: Mutex<Cursor>,
    /// The window of positional reads (`pread`, `pread_async`), which have
    /// no reader of their own.
    readahead: Mutex<Readahead>,
    /// Blocks read by right-sized requests once (`direct`).
    direct_seen: Mutex<direct::DirectSeen>,
    pending: PendingTable,
    /// This dataset's counters (`gtio_stats_json`).
    stats: Arc<StatSet>,
    closed: AtomicBool,
    /// The torrent's name, or the URI's last path segment (set by `open`).
    name: String,
    /// The metainfo's creation date or the object's modification time.
    mtime: Option<std::time::SystemTime>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("size", &self.size())
            .field("files", &self.files().len())
            .finish_non_exhaustive()
    }
}

impl Dataset {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        provider: Arc<dyn PieceProvider>,
        kind: SourceKind,
    ) -> Dataset {
        let readahead = Readahead::new(runtime.config().readahead_max_bytes);
        let name = provider
            .layout()
            .files()
            .first()
            .map(|f| f.name.clone())
            .unwrap_or_default();
        let reads =
            crate::engine::units::coalesce(Arc::clone(&provider), runtime.config().cache_bytes);
        Dataset {
            runtime,
            provider,
            reads,
            cursor: Mutex::new(Cursor {
                pos: 0,
                readahead: readahead.clone(),
            }),
            readahead: Mutex::new(readahead),
            direct_seen: Mutex::default(),
            pending: Arc::new(Mutex::new(HashMap::new())),
            stats: StatSet::new(kind),
            closed: AtomicBool::new(false),
            name,
            mtime: None,
        }
    }

    /// The dataset's name: a torrent's `info.name` (the top directory of a
    /// multi-file torrent, the file name of a single-file one), or a plain
    /// object's last URI path segment.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the dataset last changed, as far as its origin says: a
    /// torrent's `creation date`, an object's `Last-Modified` or a local
    /// file's mtime. `None` when the origin does not say.
    pub fn mtime(&self) -> Option<std::time::SystemTime> {
        self.mtime
    }

    /// Size of the stream in bytes.
    pub fn size(&self) -> u64 {
        self.provider.layout().size()
    }

    /// The dataset's files, in stream order.
    pub fn files(&self) -> &[FileEntry] {
        self.provider.layout().files()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) || !self.runtime.is_current_process() {
            return Err(Error::bad_handle());
        }
        if self.runtime.engine().is_shut_down() {
            return Err(Error::new(
                libc::EBADF,
                "gtio was shut down (gtio_lib_fini)",
            ));
        }
        Ok(())
    }

    /// Read up to `buf.len()` bytes at `offset`; 0 at or past the end, a
    /// short count only at the end of the stream.
    ///
    /// Cache hits are copied on this thread; the workers copy the rest into
    /// `buf` as the pieces arrive, while this thread waits.
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.read_in(buf, offset, &mut Window::Positional)
    }

    /// A read whose readahead goes to `window`.
    pub(crate) fn read_in(
        &self,
        buf: &mut [u8],
        offset: u64,
        window: &mut Window<'_>,
    ) -> Result<usize> {
        self.check_open()?;
        let result = self.pread_inner(buf, offset, window);
        if let Err(e) = &result {
            self.stats.read_failed(e.errno());
        }
        result
    }

    fn pread_inner(&self, buf: &mut [u8], offset: u64, window: &mut Window<'_>) -> Result<usize> {
        let layout = self.reads.layout();
        let range = layout.clip(offset, buf.len() as u64);
        if range.is_empty() {
            return Ok(0);
        }
        let len = (range.end - range.start) as usize;
        // Small hits are not timed (see `engine::stats`).
        let mut started = (len >= TIMED_READ_BYTES).then(Instant::now);
        let engine = self.runtime.engine();
        let mut misses: Vec<PieceSlice> = Vec::new();
        let mut hits = 0u64;
        for slice in layout.slices(&range) {
            match engine.cached(&self.reads.key(slice.piece)) {
                Some(piece) => {
                    copy_slice(buf, &slice, &piece);
                    hits += 1;
                }
                None => misses.push(slice),
            }
        }
        if misses.is_empty() {
            self.stats.lookups(hits, 0);
            self.stats
                .delivered(len as u64, started.map(|t| t.elapsed()));
            self.advance(window, &range);
            return Ok(len);
        }
        let started = *started.get_or_insert_with(Instant::now);
        if let Some(done) = self.try_stored(buf, &range, &mut misses, hits, window, started) {
            return done;
        }
        if let Some(done) = self.try_direct(buf, &range, &misses, hits, window, started) {
            return done;
        }
        self.stats.lookups(hits, 0);
        // SAFETY: `buf` is borrowed for this whole call, and the call
        // returns only once `req` is finished (waited for, or cancelled),
        // after which no worker writes through the target.
        let target = unsafe { BorrowedBuf::new(buf) };
        let req = ReadRequest::waited(len, misses.len(), Box::new(target));
        let wants = misses
            .into_iter()
            .map(|slice| (slice.piece, Waiter::new(Arc::clone(&req), slice)))
            .collect();
        if let Err(e) = engine.request(&self.reads, &self.stats, wants, true) {
            req.cancel();
            return Err(e);
        }
        self.advance(window, &range);
        let n = req.wait()?;
        self.stats.delivered(n as u64, Some(started.elapsed()));
        Ok(n)
    }

    /// Read at the handle's offset and advance it.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.check_open()?;
        let mut guard = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *guard;
        let n = self.read_in(buf, c.pos, &mut Window::Own(&mut c.readahead, u64::MAX))?;
        c.pos += n as u64;
        Ok(n)
    }

    /// Move the handle's offset; returns the new offset. Offsets past the
    /// end are allowed (reads there return 0), negative ones are not.
    pub fn seek(&self, offset: i64, whence: Whence) -> Result<u64> {
        self.check_open()?;
        let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        c.pos = seek_target(c.pos, self.size(), offset, whence)?;
        Ok(c.pos)
    }

    /// The handle's offset.
    pub fn tell(&self) -> u64 {
        self.cursor.lock().unwrap_or_else(|e| e.into_inner()).pos
    }

    /// Submit an asynchronous read of `len` bytes at `offset` into `target`.
    /// Exactly one completion tagged `user_data` follows on the calling
    /// thread's ring; `EAGAIN` if that ring is full (nothing is queued).
    pub fn pread_async(
        &self,
        offset: u64,
        len: usize,
        target: Box<dyn ReadTarget>,
        background: bool,
        user_data: u64,
    ) -> Result<()> {
        self.check_open()?;
        let ring = completion::current(self.runtime.config().ring_entries as usize)?;
        ring.reserve()?;
        let layout = self.reads.layout();
        let range = layout.clip(offset, len as u64);
        if range.is_empty() {
            ring.post(Completion {
                user_data,
                result: 0,
            });
            return Ok(());
        }
        let slices: Vec<PieceSlice> = layout.slices(&range).collect();
        let req = ReadRequest::to_ring(
            user_data,
            (range.end - range.start) as usize,
            slices.len(),
            target,
            Arc::clone(&ring),
            Arc::clone(&self.pending),
            Some(Meter {
                stats: Arc::clone(&self.stats),
                started: Instant::now(),
            }),
        );
        {
            // Checked under the table lock, so `close` either sees this
            // request or we see it closed.
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.load(Ordering::Acquire) {
                drop(pending);
                ring.unreserve();
                return Err(Error::bad_handle());
            }
            if pending.contains_key(&user_data) {
                drop(pending);
                ring.unreserve();
                return Err(Error::invalid(
                    "this callback struct is already in use by a pending read; \
                     use one per request",
                ));
            }
            pending.insert(user_data, Arc::clone(&req));
        }
        // Hits are looked up here, outside the engine's in-flight lock, and
        // copied once the misses are queued (so a failure queues nothing).
        // A lone cold miss may go as one right-sized request (`direct`),
        // which cannot be refused: once shut down it fails with ECANCELED.
        let engine = self.runtime.engine();
        let mut hits = Vec::new();
        let mut misses = Vec::new();
        for slice in slices {
            match engine.cached(&self.reads.key(slice.piece)) {
                Some(piece) => hits.push((slice, piece)),
                None => misses.push(slice),
            }
        }
        if !background && self.try_direct_async(&range, &misses, &req) {
            misses.clear();
        }
        let wants: Vec<_> = misses
            .into_iter()
            .map(|slice| (slice.piece, Waiter::new(Arc::clone(&req), slice)))
            .collect();
        if !wants.is_empty() {
            if let Err(e) = engine.request(&self.reads, &self.stats, wants, !background) {
                // Nothing was queued: take the request back silently.
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&user_data);
                ring.unreserve();
                return Err(e);
            }
        }
        self.stats.lookups(hits.len() as u64, 0);
        for (slice, piece) in hits {
            req.fill(&slice, &piece);
        }
        if !background {
            self.read_ahead(&range);
        }
        Ok(())
    }

    /// Cancel the pending read tagged `user_data`: it completes with
    /// `-ECANCELED`. `ENOENT` if no such read is pending (it may have
    /// completed already).
    pub fn cancel(&self, user_data: u64) -> Result<()> {
        self.check_open()?;
        let req = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&user_data);
        match req {
            Some(req) if req.cancel() => Ok(()),
            _ => Err(Error::new(
                libc::ENOENT,
                "no pending read with this callback struct (already completed?)",
            )),
        }
    }

    /// Hint: fetch `len` bytes at `offset` in the background. At most half
    /// the cache is prefetched per call (more would evict itself).
    pub fn prefetch(&self, offset: u64, len: u64) -> Result<()> {
        self.check_open()?;
        let half_cache = self.runtime.config().cache_bytes / 2;
        let range = self.reads.layout().clip(offset, len.min(half_cache));
        if !range.is_empty() {
            self.runtime
                .engine()
                .prefetch(&self.reads, &self.stats, range, false);
        }
        Ok(())
    }

    /// Close: cancel every pending async read (each completes with
    /// `-ECANCELED`) and return once no worker can touch their buffers.
    /// Idempotent.
    pub fn close(&self) {
        let reqs: Vec<Arc<ReadRequest>> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, Ordering::Release);
            pending.drain().map(|(_, r)| r).collect()
        };
        for r in reqs {
            // Waits for a copy in progress (it holds the request's lock).
            r.cancel();
        }
    }

    /// Async reads still pending on this handle.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The engine's counters (downloads, retries, cache hits).
    pub fn engine_stats(&self) -> crate::engine::Stats {
        self.runtime.engine().stats()
    }

    /// This dataset's counters now.
    pub fn stats(&self) -> stats::Snapshot {
        self.stats.snapshot()
    }

    /// This dataset's statistics as `gtio_stats_json` gives them.
    pub fn stats_json(&self) -> String {
        let mut gauges = self.runtime.engine().gauges(Some(&self.stats));
        gauges.peers_connected = self.provider.peers_connected();
        stats::to_json(&self.stats.snapshot(), &gauges)
    }

    fn advance(&self, window: &mut Window<'_>, range: &Range<u64>) {
        match window {
            Window::Positional => self.read_ahead(range),
            Window::Own(ra, end) => self.read_ahead_in(ra, range, *end),
        }
    }

    /// Readahead for a reader's own window, never past `end` (the end of
    /// the reader's range: a file's reader does not fetch the next file).
    fn read_ahead_in(&self, ra: &mut Readahead, range: &Range<u64>, end: u64) {
        let Some(w) = ra.on_read(range) else { return };
        let w = w.start..w.end.min(end);
        if w.is_empty() {
            return;
        }
        if !self
            .runtime
            .engine()
            .prefetch(&self.reads, &self.stats, w.clone(), true)
        {
            ra.retract(w.start);
        }
    }

    fn read_ahead(&self, range: &Range<u64>) {
        let window = self
            .readahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .on_read(range);
        if let Some(w) = window {
            if !self
                .runtime
                .engine()
                .prefetch(&self.reads, &self.stats, w.clone(), true)
            {
                self.readahead
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retract(w.start);
            }
        }
    }
}

/// Where a read's readahead goes.
pub(crate) enum Window<'a> {
    /// The dataset's window of positional reads.
    Positional,
    /// A reader's own window, prefetching up to the end offset given.
    Own(&'a mut Readahead, u64),
}

/// A reader's offset and its readahead window.
struct Cursor {
    pos: u64,
    readahead: Readahead,
}

/// The offset `lseek` moves to from `pos` in a stream of `size` bytes.
/// Past the end is allowed (reads there return 0); negative is not.
pub(crate) fn seek_target(pos: u64, size: u64, offset: i64, whence: Whence) -> Result<u64> {
    let base: i128 = match whence {
        Whence::Set => 0,
        Whence::Current => i128::from(pos),
        Whence::End => i128::from(size),
    };
    let new = base + i128::from(offset);
    if new < 0 || new > i128::from(i64::MAX) {
        return Err(Error::invalid(format!(
            "seek to {new} is outside 0..=i64::MAX"
        )));
    }
    Ok(new as u64)
}

impl Drop for Dataset {
    fn drop(&mut self) {
        self.close();
    }
}

fn copy_slice(buf: &mut [u8], slice: &PieceSlice, piece: &[u8]) {
    let src = &piece[slice.within.clone()];
    buf[slice.dest..slice.dest + src.len()].copy_from_slice(src);
}
