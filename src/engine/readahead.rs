//! Sequential-read detection and the readahead window of one reader (a
//! handle's offset, a `Reader`, the positional reads of a dataset).
//!
//! A reader that reads where its previous read ended (within a small
//! tolerance, so that a few reordered reads do not reset it: mountpoint-s3
//! #488) is sequential. While it stays sequential the engine keeps a window
//! of pieces ahead of it queued at normal priority. The window starts at
//! [`INITIAL_WINDOW`] and doubles each time it is topped up, up to the
//! handle's maximum; a read elsewhere resets it. It is topped up once the
//! reader has consumed [`TOP_UP`] of it (or half of a smaller window), so a
//! reader with small buffers (4 KiB `gtio_read`s) triggers one prefetch per
//! 2 MiB, not one per read, and a full window stays nearly all in flight:
//! topped up only at half, a window of sixteen 2 MiB requests had on
//! average 11 of them in flight over a network (docs/http.md).
//!
//! A window starts on a read that continues the previous one (within
//! [`CONTINUATION`]) or on the second read in a row within the tolerance.
//! One near read is not enough: random reads over a 16 MiB region land
//! within 1 MiB of the previous one an eighth of the time, and each such
//! read started a 1 MiB prefetch (on a warm cache, 15 % of the time of a
//! cache hit went to checking the window's pieces).
//!
//! This module only decides *what* to fetch; the engine bounds how much
//! readahead all handles together may have in flight.

use std::ops::Range;

/// mountpoint-s3 starts at 1 MiB + 128 KiB; one default piece is close.
pub const INITIAL_WINDOW: u64 = 1 << 20;

/// Reads this far before or after the expected offset still count as
/// sequential (a reader that re-reads a header or skips a small gap).
pub const TOLERANCE: u64 = 1 << 20;

/// A read that starts this close to where the previous one ended continues
/// it (two readers' worth of reordering among small reads).
pub const CONTINUATION: u64 = 128 << 10;

/// How much of a full window the reader consumes before it is topped up:
/// one request's worth (the engine asks at most 2 MiB per request).
pub const TOP_UP: u64 = 2 << 20;

#[derive(Debug, Clone)]
pub struct Readahead {
    max: u64,
    next: Option<u64>,
    window: u64,
    issued_to: u64,
    /// Reads in a row within [`TOLERANCE`] of the expected offset.
    near: u32,
}

impl Readahead {
    pub fn new(max: u64) -> Readahead {
        Readahead {
            max,
            next: None,
            window: 0,
            issued_to: 0,
            near: 0,
        }
    }

    /// Record a read of `range`; returns the stream range to prefetch, if any.
    pub fn on_read(&mut self, range: &Range<u64>) -> Option<Range<u64>> {
        if range.is_empty() {
            return None;
        }
        if self.max == 0 {
            // No prefetch, but still tracked: [`is_sequential`] decides
            // whether a read is worth a whole block.
            self.next = Some(range.end);
            return None;
        }
        let sequential = self.is_sequential(range);
        if !sequential {
            self.next = Some(range.end);
            self.window = 0;
            self.issued_to = 0;
            self.near = 0;
            return None;
        }
        let next = self.next.unwrap_or(0);
        let continues = range.start.abs_diff(next) <= CONTINUATION;
        self.near = self.near.saturating_add(1);
        self.next = Some(next.max(range.end));
        if self.window == 0 {
            if !continues && self.near < 2 {
                return None;
            }
            self.window = INITIAL_WINDOW.min(self.max);
        }
        let slack = (self.window / 2).min(TOP_UP);
        if self.issued_to >= range.end.saturating_add(self.window - slack) {
            return None;
        }
        let from = self.issued_to.max(range.end);
        let to = range.end.saturating_add(self.window);
        self.issued_to = to;
        self.window = self.window.saturating_mul(2).min(self.max);
        (from < to).then_some(from..to)
    }

    /// Whether a read of `range` would continue this reader's stream (a
    /// read near where the previous one ended), without recording it.
    pub fn is_sequential(&self, range: &Range<u64>) -> bool {
        self.next.is_some_and(|next| {
            range.start <= next.saturating_add(TOLERANCE) && range.start + TOLERANCE >= next
        })
    }

    /// The engine could not take the last prefetch (budget exhausted): forget
    /// it so the next read asks again.
    pub fn retract(&mut self, to: u64) {
        self.issued_to = self.issued_to.min(to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_reads_never_prefetch() {
        let mut ra = Readahead::new(32 << 20);
        for off in [0u64, 50 << 20, 3 << 20, 90 << 20, 10 << 20] {
            assert_eq!(ra.on_read(&(off..off + 4096)), None);
        }
    }

    #[test]
    fn random_reads_in_a_small_region_seldom_prefetch() {
        let mut ra = Readahead::new(32 << 20);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut started = 0;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = (x % 4096) * 4096; // 16 MiB
            if ra.on_read(&(off..off + 4096)).is_some() {
                started += 1;
            }
        }
        // One near read in eight would start a window; two in a row, or a
        // continuation, one in thirty or so.
        assert!(
            started < 500,
            "{started} prefetches for 10,000 random reads"
        );
    }

    #[test]
    fn a_strided_reader_starts_a_window_on_its_second_near_read() {
        let mut ra = Readahead::new(8 << 20);
        let kib = 1u64 << 10;
        assert_eq!(ra.on_read(&(0..4 * kib)), None);
        // Skipping 508 KiB each time: near, but not a continuation.
        assert_eq!(ra.on_read(&(512 * kib..516 * kib)), None, "one near read");
        assert!(
            ra.on_read(&(1024 * kib..1028 * kib)).is_some(),
            "two in a row"
        );
    }

    #[test]
    fn a_continuation_starts_a_window_at_once() {
        let mut ra = Readahead::new(8 << 20);
        assert_eq!(ra.on_read(&(0..65536)), None);
        // The next read, or one a little ahead of it (reordered).
        assert!(ra.on_read(&(131072..196608)).is_some());
    }

    #[test]
    fn window_grows_and_is_capped() {
        let mut ra = Readahead::new(8 << 20);
        let mut off = 0;
        let mut issued = vec![];
        for _ in 0..4096 {
            if let Some(r) = ra.on_read(&(off..off + 4096)) {
                assert!(r.start >= off + 4096, "prefetch starts past the read");
                issued.push(r);
            }
            off += 4096;
        }
        assert!(issued.len() >= 3);
        // Contiguous, non-overlapping.
        for w in issued.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        // Never more than the cap ahead of the reader.
        assert!(issued.iter().all(|r| r.end - r.start <= 8 << 20));
        assert!(issued.last().unwrap().end <= off + (8 << 20));
    }

    #[test]
    fn small_reorders_do_not_reset() {
        let mut ra = Readahead::new(8 << 20);
        ra.on_read(&(0..65536));
        assert!(ra.on_read(&(65536..131072)).is_some());
        // Two reads swapped by a thread pool.
        ra.on_read(&(196608..262144));
        ra.on_read(&(131072..196608));
        assert!(ra.window > INITIAL_WINDOW, "window kept growing");
    }

    #[test]
    fn seek_resets() {
        let mut ra = Readahead::new(8 << 20);
        ra.on_read(&(0..4096));
        ra.on_read(&(4096..8192));
        assert!(ra.window > 0);
        ra.on_read(&(500 << 20..(500 << 20) + 4096));
        assert_eq!(ra.window, 0);
    }

    #[test]
    fn sequential_is_known_before_the_read() {
        for max in [0, 8 << 20] {
            let mut ra = Readahead::new(max);
            assert!(!ra.is_sequential(&(0..4096)), "a first read is not");
            ra.on_read(&(0..4096));
            assert!(ra.is_sequential(&(4096..8192)));
            assert!(!ra.is_sequential(&(900 << 20..(900 << 20) + 4096)));
        }
    }

    #[test]
    fn disabled_when_max_is_zero() {
        let mut ra = Readahead::new(0);
        for i in 0..10u64 {
            assert_eq!(ra.on_read(&(i * 4096..(i + 1) * 4096)), None);
        }
    }

    #[test]
    fn a_full_window_stays_nearly_all_issued() {
        // Topped up only at half, a 32 MiB window fell to 16 MiB ahead of
        // the reader before the next prefetch: half the connections idle.
        let max = 32 << 20;
        let mut ra = Readahead::new(max);
        let mut prefetches = 0;
        for i in 0..256u64 {
            let read = i << 20..(i + 1) << 20;
            prefetches += usize::from(ra.on_read(&read).is_some());
            if i >= 64 {
                let ahead = ra.issued_to - read.end;
                assert!(ahead >= max - TOP_UP, "{ahead} ahead after read {i}");
            }
        }
        // One prefetch per TOP_UP of reading, not one per read.
        assert!(
            prefetches <= 256 / (TOP_UP >> 20) as usize + 8,
            "{prefetches}"
        );
    }
}
