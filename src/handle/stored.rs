//! Store hits read straight into the caller's buffer (`docs/store.md`,
//! "Speed").
//!
//! A synchronous read that misses the memory cache would go to a worker as
//! a job: a thread hand-off and two wake-ups, the piece loaded from its
//! file into a fresh piece buffer, checked, put in the memory cache, then
//! copied again into the caller's buffer. For the slices of a read that
//! cover whole pieces the store has, none of that is needed: the reader's
//! own thread has the kernel read each piece file into its buffer and checks
//! it there (length, trailer, CRC-32C: the same checks as the engine's
//! path). Only whole pieces, because the checksum covers the piece; only
//! plain objects' blocks (a torrent piece's SHA-1 is better spread over
//! the workers: `Engine::load_stored_into`).
//! Most of a hit is the kernel's copy out of the page cache, which one
//! thread does slower than the engine's workers do on two cores, so a read
//! of many stored pieces offers a share of them to the engine's helper
//! thread (`engine::helper`): both take pieces from one counter, each
//! writing only the disjoint parts of the buffer it took, and the read
//! returns once no load is in progress.
//!
//! Anything else takes the engine's path unchanged: a piece in flight (one
//! fetch per piece, whoever asks), a piece the store lacks, and a piece
//! file that fails a check (the engine's path deletes it and fetches the
//! piece again, overwriting what the failed try left in the buffer). The
//! first piece the store lacks ends the tries for that read: its next
//! pieces are most likely cold too.
//!
//! Readahead: while reads are served this way, the engine is not asked to
//! load the pieces ahead into memory (workers would load, check and cache
//! what this thread loads as cheaply itself, and the cached copies would
//! cost fresh memory). The reader's window is still tracked and kept grown,
//! so the first read that needs the engine's path prefetches a full window
//! ahead of itself.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::{Dataset, Window};
use crate::dataset::PieceSlice;
use crate::engine::helper::Share;
use crate::Result;

/// A read with at least this many whole stored pieces has them loaded by
/// two threads (this one and the engine's helper), when the machine has two
/// cores or more: the kernel's copy out of the page cache is most of a
/// hit, and one thread alone was slower than the engine's workers on a
/// loaded machine (docs/store.md "Speed").
const SPLIT_PIECES: usize = 8;

impl Dataset {
    /// Serve from the store the `misses` that are whole pieces, removing
    /// each one served. `Some` with the read's outcome when nothing is left
    /// (`hits` slices were cache hits), `None` to go on with what is left.
    pub(super) fn try_stored(
        &self,
        buf: &mut [u8],
        range: &Range<u64>,
        misses: &mut Vec<PieceSlice>,
        hits: u64,
        window: &mut Window<'_>,
        started: Instant,
    ) -> Option<Result<usize>> {
        let engine = self.runtime.engine();
        if !engine.has_store() {
            return None;
        }
        let layout = self.reads.layout();
        // The whole-piece slices, each with its own part of `buf` (slices
        // of one read never overlap).
        let mut wanted: Vec<(usize, u32, &mut [u8])> = Vec::new();
        let mut rest: &mut [u8] = buf;
        let mut consumed = 0;
        let mut order: Vec<usize> = (0..misses.len()).collect();
        order.sort_by_key(|&i| misses[i].dest);
        for i in order {
            let slice = &misses[i];
            let piece = layout.piece_range(slice.piece);
            let whole = (piece.end - piece.start) as usize;
            if slice.within.start != 0 || slice.within.len() != whole || slice.dest < consumed {
                continue;
            }
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(slice.dest - consumed);
            let (dest, tail) = tail.split_at_mut(whole);
            rest = tail;
            consumed = slice.dest + whole;
            wanted.push((i, slice.piece, dest));
        }
        if wanted.is_empty() {
            return None;
        }
        let helper = engine.store_helper().filter(|_| two_cores());
        let served_idx = match helper {
            Some(helper) if wanted.len() >= SPLIT_PIECES => self.load_shared(helper, wanted),
            _ => self.load_stored(wanted),
        };
        if served_idx.is_empty() {
            return None;
        }
        let served = served_idx.len() as u64;
        let mut keep = vec![true; misses.len()];
        for i in served_idx {
            keep[i] = false;
        }
        let mut k = keep.iter();
        misses.retain(|_| *k.next().unwrap_or(&true));
        // Misses of the memory cache, as on the engine's path.
        self.stats.lookups(0, served);
        if !misses.is_empty() {
            return None;
        }
        self.stats.lookups(hits, 0);
        let len = range.end - range.start;
        self.stats.delivered(len, Some(started.elapsed()));
        let ra = match window {
            Window::Positional => &mut *self.readahead.lock().unwrap_or_else(|e| e.into_inner()),
            Window::Own(ra, _) => &mut **ra,
        };
        // Tracked, not issued: taken back, so that a read the store cannot
        // serve asks for the window from its own end.
        if ra.on_read(range).is_some() {
            ra.retract(range.end);
        }
        Some(Ok(len as usize))
    }

    /// Load `wanted` with the engine's helper thread taking a share
    /// (`engine::helper`); the indexes of those served.
    fn load_shared(
        &self,
        helper: &crate::engine::helper::Helper,
        wanted: Vec<(usize, u32, &mut [u8])>,
    ) -> Vec<usize> {
        let index: Vec<usize> = wanted.iter().map(|w| w.0).collect();
        let places: Vec<(u32, Dest)> = wanted
            .into_iter()
            .map(|(_, piece, d)| (piece, Dest(d.as_mut_ptr(), d.len())))
            .collect();
        let engine = Arc::clone(self.runtime.engine());
        let reads = Arc::clone(&self.reads);
        let stats = Arc::clone(&self.stats);
        let share = Share::new(
            places.len(),
            Box::new(move |i| {
                let (piece, Dest(ptr, len)) = places[i];
                // SAFETY: `ptr..ptr + len` is a part of the reader's buffer
                // that no other piece of this read covers, and only the
                // thread that took piece `i` writes it. The reader's
                // `Share::run` returns only once no load is in progress and
                // none can start (the share is closed), and the read returns
                // only after it, so the buffer outlives every write here.
                let dest = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
                engine.load_stored_into(&reads, &stats, piece, dest)
            }),
        );
        helper.offer(&share);
        let served = share.run();
        index
            .into_iter()
            .zip(served)
            .filter_map(|(i, ok)| ok.then_some(i))
            .collect()
    }

    /// Load each `(index, piece, dest)` in turn, up to the first the store
    /// cannot serve; the indexes of those served.
    fn load_stored(&self, wanted: Vec<(usize, u32, &mut [u8])>) -> Vec<usize> {
        let engine = self.runtime.engine();
        let mut served = Vec::with_capacity(wanted.len());
        for (i, piece, dest) in wanted {
            if !engine.load_stored_into(&self.reads, &self.stats, piece, dest) {
                break;
            }
            served.push(i);
        }
        served
    }
}

/// A piece's place in the reader's buffer, for the helper thread.
#[derive(Clone, Copy)]
struct Dest(*mut u8, usize);

// SAFETY: a `Dest` is only dereferenced by `Share::run`'s loads, which all
// end before the read that owns the buffer returns (see `load_shared`);
// the places of one read are disjoint.
unsafe impl Send for Dest {}
// SAFETY: as above; a place is written by the one thread that took it.
unsafe impl Sync for Dest {}

/// Whether a second core is there to load with (asked once).
fn two_cores() -> bool {
    static TWO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TWO.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}
