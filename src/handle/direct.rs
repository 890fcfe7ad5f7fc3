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
//!
//! Asynchronous reads take the same path: the request runs on a worker as
//! an urgent [`Task`] (ahead of readahead, like a demand fetch) and its
//! bytes go to the read's target; the completion follows on the
//! submitter's ring as for any read. Without it, every cold 4 KiB
//! `pread_async` fetched and cached a 64 KiB block: sixteen times its bytes
//! through the kernel and a piece buffer to fill per read.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{Dataset, Window};
pub use crate::dataset::object::DIRECT_ALIGN;
use crate::dataset::PieceSlice;
use crate::engine::request::ReadRequest;
use crate::engine::stats::StatSet;
use crate::engine::{backoff, Engine, PieceProvider, Task, Waiter};
use crate::Result;

/// Blocks remembered as read directly; the set is emptied when full (a
/// forgotten block merely costs one more direct read).
const REMEMBERED: usize = 4096;

/// The blocks of a dataset that were read directly once.
#[derive(Default)]
pub(super) struct DirectSeen(HashSet<u32>);

/// A cold read that one right-sized request serves.
struct Plan {
    /// The stream bytes the read needs (one slice of one block).
    want: Range<u64>,
    /// What the request fetches: `want` rounded out to [`DIRECT_ALIGN`].
    fetched: u64,
}

impl Dataset {
    /// Whether the read whose cache misses are `misses` is a cold isolated
    /// read worth one right-sized request (see the module docs), and the
    /// request if so. Remembers the block: its next cold read takes the
    /// piece path.
    fn plan_direct(
        &self,
        range: &Range<u64>,
        misses: &[PieceSlice],
        window: &mut Window<'_>,
    ) -> Option<Plan> {
        let [miss] = misses else { return None };
        if !self.reads.reads_direct() {
            return None;
        }
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
        Some(Plan {
            want,
            fetched: aligned.end.min(layout.size()) - aligned.start,
        })
    }

    /// Serve a cold isolated read with one right-sized request: `Some`
    /// with the read's outcome, `None` to take the piece path. `misses`
    /// are the read's slices the cache did not have, `hits` how many it
    /// did.
    pub(super) fn try_direct(
        &self,
        buf: &mut [u8],
        range: &Range<u64>,
        misses: &[PieceSlice],
        hits: u64,
        window: &mut Window<'_>,
        started: Instant,
    ) -> Option<Result<usize>> {
        let plan = self.plan_direct(range, misses, window)?;
        let miss = &misses[0];
        let dest = &mut buf[miss.dest..miss.dest + miss.within.len()];
        self.stats.lookups(hits, 1);
        let engine = self.runtime.engine();
        if let Err(e) = fetch_direct(&*self.reads, &self.stats, engine, &plan, dest) {
            return Some(Err(e));
        }
        let len = (range.end - range.start) as usize;
        self.stats.delivered(len as u64, Some(started.elapsed()));
        self.advance(window, range);
        Some(Ok(len))
    }

    /// [`try_direct`](Self::try_direct) for `pread_async`: queue the
    /// request on a worker, whose bytes then fill `req`'s one missing
    /// slice; false to take the piece path. The read's hits are counted by
    /// the caller.
    pub(super) fn try_direct_async(
        &self,
        range: &Range<u64>,
        misses: &[PieceSlice],
        req: &Arc<ReadRequest>,
    ) -> bool {
        let Some(plan) = self.plan_direct(range, misses, &mut Window::Positional) else {
            return false;
        };
        self.stats.lookups(0, 1);
        let waiter = Waiter::new(Arc::clone(req), misses[0].clone());
        let reads = Arc::clone(&self.reads);
        let stats = Arc::clone(&self.stats);
        let engine = Arc::clone(self.runtime.engine());
        let task: Task = Box::new(move || {
            let mut bytes = vec![0u8; (plan.want.end - plan.want.start) as usize];
            match fetch_direct(&*reads, &stats, &engine, &plan, &mut bytes) {
                Ok(()) => waiter.deliver_bytes(&bytes),
                Err(e) => waiter.fail(&e),
            }
        });
        self.runtime.engine().run_urgent(task);
        true
    }
}

/// Read `plan.want` into `dest` (its length) by one right-sized request,
/// retried as the engine retries a piece (`retries` times, with the same
/// backoff and `Retry-After`), and count it.
fn fetch_direct(
    reads: &dyn PieceProvider,
    stats: &StatSet,
    engine: &Engine,
    plan: &Plan,
    dest: &mut [u8],
) -> Result<()> {
    let retries = engine.config().retries;
    let mut attempt = 0;
    loop {
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let outcome = reads
            .read_direct(plan.want.clone(), dest)
            .unwrap_or_else(|| {
                // Providers that read directly never refuse a non-empty range.
                Err(crate::source::Fault::permanent(crate::Error::io(
                    "a right-sized read was refused",
                )))
            });
        let fault = match outcome {
            Ok(()) => break,
            Err(f) => f,
        };
        if !fault.transient || attempt >= retries || engine.is_shut_down() {
            stats.downloads_failed.fetch_add(1, Ordering::Relaxed);
            return Err(fault.error);
        }
        stats.retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(backoff(attempt, fault.retry_after));
        attempt += 1;
    }
    stats.fetched(stats.kind(), plan.fetched);
    Ok(())
}
