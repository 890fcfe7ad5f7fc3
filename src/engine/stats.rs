//! Statistics: what each dataset read, hit, fetched and from where, and how
//! long it took (docs/design.md, "Statistics"; `gtio_stats_json`).
//!
//! Every open dataset owns one [`StatSet`] of relaxed atomic counters. The
//! engine counts into the set of the dataset a download runs for; the handle
//! counts hits, misses and delivered bytes into its own. Nothing is shared
//! between datasets on the hot path, and the process-wide figures are summed
//! only when asked for: live sets are found through a registry of weak
//! references, and a set that goes away adds its totals to a retired sum
//! first.
//!
//! The cache-hit path costs one relaxed add per counter it touches, on a
//! cache line that belongs to the calling thread's slot of its dataset
//! ([`HitSlot`]): eight threads hitting one dataset do not bounce a line
//! between them. A hit is not timed unless it copies at least
//! [`TIMED_READ_BYTES`]: two clock reads would cost a tenth of a small hit,
//! and a small hit is always in the first latency bucket anyway.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::fork_safe::ForkSafe;

/// Where fetched bytes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A plain object over `http://` or `https://`.
    Http,
    /// A torrent's BEP 19 web seed.
    Webseed,
    /// A BitTorrent peer.
    Peer,
    /// The persistent piece store.
    Store,
    /// A plain object over `file://`.
    File,
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Http,
        SourceKind::Webseed,
        SourceKind::Peer,
        SourceKind::Store,
        SourceKind::File,
    ];

    /// The key in `bytes_fetched`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Http => "http",
            SourceKind::Webseed => "webseed",
            SourceKind::Peer => "peer",
            SourceKind::Store => "store",
            SourceKind::File => "file",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the latency buckets, in µs (a last bucket, `+Inf`,
/// takes the rest): roughly 1-2.5-5 steps from a cache hit to a stall.
pub const LATENCY_BOUNDS_US: [u64; 18] = [
    10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// Reads served from the cache that copy fewer bytes than this are counted
/// in the first latency bucket without reading the clock (a 64 KiB copy
/// takes a few µs; the 10 µs bucket holds them).
pub const TIMED_READ_BYTES: usize = 64 << 10;

/// A latency histogram: bucket counts by upper bound.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

/// The counters a read touches, one slot per thread group, each on its own
/// cache line.
#[derive(Default)]
#[repr(align(128))]
struct HitSlot {
    hits: AtomicU64,
    misses: AtomicU64,
    delivered: AtomicU64,
    /// Small cache-hit reads, not timed: first latency bucket.
    fast_reads: AtomicU64,
}

const SLOTS: usize = 8;

/// This thread's slot number: threads take numbers in turn, so up to
/// [`SLOTS`] threads each have their own line.
fn slot_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS);
    SLOT.with(|s| *s)
}

/// One dataset's counters.
pub struct StatSet {
    /// Unique in the process (never reused, unlike an address).
    id: u64,
    /// The kind of source this dataset's own pieces come from.
    kind: SourceKind,
    slots: [HitSlot; SLOTS],
    fetched: [AtomicU64; 5],
    pub bytes_redundant: AtomicU64,
    pub bytes_hash_failed: AtomicU64,
    /// Requests made to sources (one per fetch of a run of pieces).
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Reads that returned an error (cancelled ones are not errors).
    pub errors: AtomicU64,
    /// Downloads that failed after their retries.
    pub downloads_failed: AtomicU64,
    pub first_byte_us: Histogram,
    pub read_us: Histogram,
}

impl StatSet {
    /// A new set, registered so that process-wide figures include it.
    pub fn new(kind: SourceKind) -> Arc<StatSet> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let set = Arc::new(StatSet {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            kind,
            slots: Default::default(),
            fetched: Default::default(),
            bytes_redundant: AtomicU64::new(0),
            bytes_hash_failed: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            downloads_failed: AtomicU64::new(0),
            first_byte_us: Histogram::default(),
            read_us: Histogram::default(),
        });
        let mut reg = registry();
        reg.live.retain(|w| w.strong_count() > 0);
        reg.live.push(Arc::downgrade(&set));
        set
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    fn slot(&self) -> &HitSlot {
        &self.slots[slot_index()]
    }

    /// A read that found `hits` slices in the cache and needs `misses` more.
    #[inline]
    pub fn lookups(&self, hits: u64, misses: u64) {
        let s = self.slot();
        if hits > 0 {
            s.hits.fetch_add(hits, Ordering::Relaxed);
        }
        if misses > 0 {
            s.misses.fetch_add(misses, Ordering::Relaxed);
        }
    }

    /// A read returned `bytes` to its caller; `took` is its latency, or
    /// `None` for a small cache hit (not timed: first bucket).
    #[inline]
    pub fn delivered(&self, bytes: u64, took: Option<Duration>) {
        let s = self.slot();
        s.delivered.fetch_add(bytes, Ordering::Relaxed);
        match took {
            Some(d) => self.read_us.record(d),
            None => {
                s.fast_reads.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A read failed with `errno`.
    pub fn read_failed(&self, errno: i32) {
        if errno != libc::ECANCELED {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn fetched(&self, kind: SourceKind, bytes: u64) {
        self.fetched[kind.index()].fetch_add(bytes, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = Snapshot {
            bytes_fetched: std::array::from_fn(|i| l(&self.fetched[i])),
            bytes_redundant: l(&self.bytes_redundant),
            bytes_hash_failed: l(&self.bytes_hash_failed),
            requests: l(&self.requests),
            retries: l(&self.retries),
            errors: l(&self.errors),
            downloads_failed: l(&self.downloads_failed),
            first_byte_us: self.first_byte_us.snapshot(),
            read_us: self.read_us.snapshot(),
            ..Snapshot::default()
        };
        for slot in &self.slots {
            s.cache_hits += l(&slot.hits);
            s.cache_misses += l(&slot.misses);
            s.bytes_delivered += l(&slot.delivered);
            s.read_us[0] += l(&slot.fast_reads);
        }
        s
    }
}

impl Drop for StatSet {
    /// Keep what this dataset counted in the process-wide figures.
    fn drop(&mut self) {
        let snap = self.snapshot();
        let mut reg = registry();
        reg.retired.add(&snap);
        reg.live.retain(|w| w.strong_count() > 0);
    }
}

/// Counter values at one moment (summed over datasets for the process).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub bytes_delivered: u64,
    /// By [`SourceKind`] index.
    pub bytes_fetched: [u64; 5],
    pub bytes_redundant: u64,
    pub bytes_hash_failed: u64,
    pub requests: u64,
    pub retries: u64,
    pub errors: u64,
    pub downloads_failed: u64,
    pub first_byte_us: [u64; BUCKETS],
    pub read_us: [u64; BUCKETS],
}

impl Snapshot {
    pub fn add(&mut self, o: &Snapshot) {
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.bytes_delivered += o.bytes_delivered;
        for i in 0..self.bytes_fetched.len() {
            self.bytes_fetched[i] += o.bytes_fetched[i];
        }
        self.bytes_redundant += o.bytes_redundant;
        self.bytes_hash_failed += o.bytes_hash_failed;
        self.requests += o.requests;
        self.retries += o.retries;
        self.errors += o.errors;
        self.downloads_failed += o.downloads_failed;
        for i in 0..BUCKETS {
            self.first_byte_us[i] += o.first_byte_us[i];
            self.read_us[i] += o.read_us[i];
        }
    }

    pub fn fetched(&self, kind: SourceKind) -> u64 {
        self.bytes_fetched[kind.index()]
    }

    pub fn fetched_total(&self) -> u64 {
        self.bytes_fetched.iter().sum()
    }
}

struct Registry {
    live: Vec<Weak<StatSet>>,
    retired: Snapshot,
}

/// Fresh in a fork child (see `fork_safe`): every open takes it.
static REGISTRY: ForkSafe<Mutex<Registry>> = ForkSafe::new(|| {
    Mutex::new(Registry {
        live: Vec::new(),
        retired: Snapshot::default(),
    })
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.get().lock().unwrap_or_else(|e| e.into_inner())
}

/// Every dataset of the process, open or closed, summed.
pub fn process_wide() -> Snapshot {
    // Upgrade under the lock, sum and drop outside it: dropping the last
    // reference runs `StatSet::drop`, which takes the lock.
    let (mut total, live): (Snapshot, Vec<Arc<StatSet>>) = {
        let reg = registry();
        (
            reg.retired.clone(),
            reg.live.iter().filter_map(Weak::upgrade).collect(),
        )
    };
    for set in &live {
        total.add(&set.snapshot());
    }
    drop(live);
    total
}

/// One download as the statistics list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadInfo {
    pub id: u64,
    pub state: super::DownloadState,
    pub pieces: std::ops::Range<u32>,
}

/// What the statistics show beyond the counters.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    pub downloads: Vec<DownloadInfo>,
    pub peers_connected: u64,
    pub cache_bytes_used: u64,
    pub store_bytes_used: u64,
    /// The persistent store's one warning (a full disk turned it to memory
    /// only), as `store_warning` (null without one); beyond DESIGN's list.
    pub store_warning: Option<String>,
}

/// The JSON object of `gtio_stats_json` (docs/design.md, "Statistics").
pub fn to_json(s: &Snapshot, g: &Gauges) -> String {
    use std::fmt::Write;
    let mut o = String::with_capacity(1024);
    let active = g
        .downloads
        .iter()
        .filter(|d| {
            matches!(
                d.state,
                super::DownloadState::Queued | super::DownloadState::InProgress
            )
        })
        .count();
    let _ = write!(
        o,
        "{{\"cache_hits\":{},\"cache_misses\":{},\"bytes_delivered\":{},\"bytes_fetched\":{{",
        s.cache_hits, s.cache_misses, s.bytes_delivered
    );
    for (i, k) in SourceKind::ALL.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(o, "{sep}\"{}\":{}", k.name(), s.fetched(*k));
    }
    let _ = write!(
        o,
        "}},\"bytes_redundant\":{},\"bytes_hash_failed\":{},\"requests\":{},\"retries\":{},\
         \"errors\":{},\"downloads_failed\":{},\"downloads_active\":{active},\"downloads\":[",
        s.bytes_redundant, s.bytes_hash_failed, s.requests, s.retries, s.errors, s.downloads_failed
    );
    for (i, d) in g.downloads.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            o,
            "{sep}{{\"id\":{},\"state\":\"{}\",\"first_piece\":{},\"pieces\":{}}}",
            d.id,
            d.state.name(),
            d.pieces.start,
            d.pieces.end - d.pieces.start
        );
    }
    let _ = write!(
        o,
        "],\"peers_connected\":{},\"cache_bytes_used\":{},\"store_bytes_used\":{}",
        g.peers_connected, g.cache_bytes_used, g.store_bytes_used
    );
    match &g.store_warning {
        None => o.push_str(",\"store_warning\":null"),
        Some(w) => {
            o.push_str(",\"store_warning\":\"");
            for c in w.chars() {
                match c {
                    '"' | '\\' => {
                        o.push('\\');
                        o.push(c);
                    }
                    c if (c as u32) < 0x20 => {
                        let _ = write!(o, "\\u{:04x}", c as u32);
                    }
                    c => o.push(c),
                }
            }
            o.push('"');
        }
    }
    for (name, h) in [("first_byte_us", &s.first_byte_us), ("read_us", &s.read_us)] {
        let _ = write!(o, ",\"{name}\":{{");
        for (i, n) in h.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            match LATENCY_BOUNDS_US.get(i) {
                Some(b) => {
                    let _ = write!(o, "{sep}\"{b}\":{n}");
                }
                None => {
                    let _ = write!(o, "{sep}\"+Inf\":{n}");
                }
            }
        }
        o.push('}');
    }
    o.push('}');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_their_upper_bound() {
        let h = Histogram::default();
        h.record(Duration::from_micros(10));
        h.record(Duration::from_micros(11));
        h.record(Duration::from_secs(3600));
        let s = h.snapshot();
        assert_eq!((s[0], s[1], s[BUCKETS - 1]), (1, 1, 1));
    }

    #[test]
    fn closed_sets_stay_in_the_process_totals() {
        let before = process_wide();
        let a = StatSet::new(SourceKind::Http);
        a.lookups(3, 2);
        a.fetched(SourceKind::Http, 100);
        drop(a);
        let after = process_wide();
        // Other tests run in parallel: at least ours.
        assert!(after.cache_hits >= before.cache_hits + 3);
        assert!(after.fetched(SourceKind::Http) >= before.fetched(SourceKind::Http) + 100);
    }
}
