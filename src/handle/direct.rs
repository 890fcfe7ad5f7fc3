//! Right-sized cold reads (`docs/http.md`, "Right-sized requests").
//!
//! The cache's unit is the block (`block_size`, 64 KiB by default), and a
//! block's key names all of its bytes, so a block is only ever cached
//! whole. A cold read far from the reader's previous one, though, needs
//! only its own bytes: fetching the whole block costs a 4 KiB read sixteen
//! times its bytes on the wire. So a read whose missing bytes lie inside
//! one block, cover less than half of it, and do not continue the reader's
//! stream is served by one range request of its bytes rounded out to
//! [`DIRECT_ALIGN`], read by the HTTP client straight into the caller's
//! buffer, and not cached (a partial block would need keys by byte range;
//! piece identity stays what it was).
//!
//! A block read this way is remembered (a bounded set per dataset): the
//! second cold read of it fetches the whole block through the engine and
//! caches it, so data read twice is read from memory from then on. Reads
//! that continue the stream go the piece way as before, where readahead
//! grows their requests (1 MiB doubling up to `readahead_max_bytes`, each
//! request at most 2 MiB) and consecutive misses are one request. A direct
//! read that fails is retried as a piece would be (`retries`, the engine's
//! backoff, `Retry-After`), each try bounded by the client's timeouts.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Dataset, Window};
pub use crate::dataset::object::DIRECT_ALIGN;
use crate::dataset::PieceSlice;
use crate::engine::backoff;
use crate::Result;

/// Blocks remembered as read directly; the set is emptied when full (a
/// forgotten block merely costs one more direct read).
const REMEMBERED: usize = 4096;

/// The blocks of a dataset that were read directly once.
#[derive(Default)]
pub(super) struct DirectSeen(HashSet<u32>);

impl Dataset {
    /// Serve a cold isolated read with one right-sized request (retried
    /// as the engine retries a piece: `retries` times, with the same
    /// backoff and `Retry-After`): `Some` with the read's outcome, `None`
    /// to take the piece path. `misses` are the read's
    /// slices the cache did not have, `hits` how many it did.
    pub(super) fn try_direct(
        &self,
        buf: &mut [u8],
        range: &Range<u64>,
        misses: &[PieceSlice],
        hits: u64,
        window: &mut Window<'_>,
        started: Instant,
    ) -> Option<Result<usize>> {
        let [miss] = misses else { return None };
        let layout = self.reads.layout();
        let block = layout.piece_range(miss.piece);
        let want = block.start + miss.within.start as u64..block.start + miss.within.end as u64;
        let aligned = want.start / DIRECT_ALIGN * DIRECT_ALIGN
            ..want.end.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        if (aligned.end - aligned.start) * 2 > block.end - block.start {
            return None;
        }
        let sequential = match window {
            Window::Positional => self
                .readahead
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_sequential(range),
            Window::Own(ra, _) => ra.is_sequential(range),
        };
        if sequential {
            return None;
        }
        // A block the store has is loaded from it (the engine's path), not
        // asked of the origin: a store hit never costs a request.
        if self.runtime.engine().store_has(&self.reads, miss.piece) {
            return None;
        }
        {
            let mut seen = self.direct_seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.0.remove(&miss.piece) {
                return None; // read before: worth the whole block, cached
            }
            if seen.0.len() >= REMEMBERED {
                seen.0.clear();
            }
            seen.0.insert(miss.piece);
        }
        let dest = &mut buf[miss.dest..miss.dest + miss.within.len()];
        let retries = self.runtime.config().retries;
        let mut attempt = 0;
        // `None` (no right-sized reads from this provider) before anything
        // is counted: the piece path counts the read then.
        let mut outcome = self.reads.read_direct(want.clone(), dest)?;
        self.stats.lookups(hits, 1);
        loop {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let fault = match outcome {
                Ok(()) => break,
                Err(f) => f,
            };
            if !fault.transient || attempt >= retries || self.runtime.engine().is_shut_down() {
                self.stats.downloads_failed.fetch_add(1, Ordering::Relaxed);
                return Some(Err(fault.error));
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(backoff(attempt, fault.retry_after));
            attempt += 1;
            outcome = self.reads.read_direct(want.clone(), dest)?;
        }
        let fetched = aligned.end.min(layout.size()) - aligned.start;
        self.stats.fetched(self.stats.kind(), fetched);
        let len = (range.end - range.start) as usize;
        self.stats.delivered(len as u64, Some(started.elapsed()));
        self.advance(window, range);
        Some(Ok(len))
    }
}
