//! The piece store interface and its first implementation, the process-wide
//! memory LRU of verified pieces bounded in bytes.
//!
//! Pieces are `Arc`s, so a piece that is being copied out stays alive even if
//! the LRU evicts it meanwhile: eviction drops the cache's reference, never
//! bytes in use. The bound therefore holds for what the cache owns; pieces
//! pinned by in-progress copies add at most one piece per reading thread.
//!
//! The LRU is split into shards by key hash so that threads reading different
//! pieces rarely meet on a lock, but the byte bound is one for the whole
//! cache: a piece may take up to half of it whatever its shard (a bound per
//! shard kept nothing larger than 1/16 of the cache, so 16 MiB pieces were
//! never hit in a 128 MiB cache). Eviction takes the least recently used
//! entry across shards, compared by a clock that advances once per insert.
//!
//! Pieces loaded from the persistent store are also in the kernel's page
//! cache, so keeping them here once read only doubles their memory: a piece
//! inserted with [`PieceStore::insert_loaded`] is held like any other until
//! its first read, then joins a first-in-first-out list of read store
//! pieces that is held to [`MemoryLru::READ_LOADED`] bytes (and never
//! fewer than its last two pieces, so a piece read in small parts stays
//! while it is read). A pass over stored data thus uses the memory its
//! readahead needs, not the whole bound: on a 2-core VM, faulting in 128
//! MiB of fresh memory for the cache took longer than reading 256 MiB from
//! the store (`docs/store.md`). Pieces read again after leaving the list
//! load again from the store (the page cache).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lru::LruCache;

use super::{Piece, PieceKey};

/// Where verified pieces are kept between reads. The memory LRU below is the
/// first implementation; a persistent store is meant to be another.
pub trait PieceStore: Send + Sync {
    /// The piece, marking it recently used.
    fn get(&self, key: &PieceKey) -> Option<Piece>;
    fn contains(&self, key: &PieceKey) -> bool;
    /// Keep `piece` if it fits (a store may decline, e.g. a piece larger
    /// than it can hold without evicting everything else).
    fn insert(&self, key: PieceKey, piece: Piece);
    /// Keep `piece`, loaded from a persistent store, until it has been
    /// read (see the module docs); by default as `insert`.
    fn insert_loaded(&self, key: PieceKey, piece: Piece) {
        self.insert(key, piece);
    }
    /// Bytes the store holds now, its bookkeeping included.
    fn bytes(&self) -> u64;
    fn clear(&self);
}

/// 16 shards: enough that 8 threads hitting the cache rarely collide.
const SHARDS: usize = 16;

/// What one entry costs beyond its bytes (LRU node, hash slot, `Arc` and
/// buffer headers, allocator rounding), so that many tiny pieces cannot
/// exceed the bound through their bookkeeping.
pub const ENTRY_OVERHEAD: u64 = 192;

pub struct MemoryLru {
    shards: Vec<Mutex<Shard>>,
    cap: u64,
    /// Bytes held by all shards together (entries' charge).
    total: AtomicU64,
    /// Advanced by 2 at each insert; an entry remembers its last use.
    clock: AtomicU64,
    /// Store-loaded pieces read once, oldest first.
    read_loaded: Mutex<ReadLoaded>,
}

#[derive(Default)]
struct ReadLoaded {
    /// (key, the mark its entry carries, its charge): an entry replaced
    /// or evicted meanwhile no longer matches and is skipped when it comes
    /// out. Its charge counts until then, so `bytes` is exactly the sum
    /// over `order` whatever thread evicts what meanwhile.
    order: std::collections::VecDeque<(PieceKey, u64, u64)>,
    bytes: u64,
    /// Keys that left `order` (the last [`LEFT_KEYS`], oldest first): a
    /// piece loaded again after it left is read more than once, so it is
    /// then kept as a fetched piece is (the "A1out" list of 2Q).
    left: std::collections::HashSet<PieceKey>,
    left_order: std::collections::VecDeque<PieceKey>,
}

/// Keys remembered after they left the list of read store pieces (a few
/// bytes each).
const LEFT_KEYS: usize = 4096;

impl ReadLoaded {
    fn remember_left(&mut self, key: PieceKey) {
        if self.left.insert(key) {
            self.left_order.push_back(key);
        }
        while self.left_order.len() > LEFT_KEYS {
            if let Some(k) = self.left_order.pop_front() {
                self.left.remove(&k);
            }
        }
    }
}

struct Shard {
    lru: LruCache<PieceKey, Entry>,
}

struct Entry {
    piece: Piece,
    used: u64,
    loaded: Loaded,
}

/// Whether an entry came from the persistent store, and if so whether it
/// has been read (with its mark in `ReadLoaded::order`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Loaded {
    No,
    Unread,
    Read(u64),
}

fn charge(piece: &Piece) -> u64 {
    piece.len() as u64 + ENTRY_OVERHEAD
}

impl MemoryLru {
    pub fn new(cap_bytes: u64) -> MemoryLru {
        MemoryLru {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        lru: LruCache::unbounded(),
                    })
                })
                .collect(),
            cap: cap_bytes,
            total: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            read_loaded: Mutex::new(ReadLoaded::default()),
        }
    }

    /// Bytes of read store-loaded pieces kept: what a sequential reader
    /// goes back over (a short reorder, a small read of a piece's rest),
    /// not a working set (`insert_loaded`).
    pub const READ_LOADED: u64 = 16 << 20;

    fn read_loaded(&self) -> std::sync::MutexGuard<'_, ReadLoaded> {
        self.read_loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bound of the read store-loaded pieces: `READ_LOADED`, at most an
    /// eighth of the cache.
    fn read_loaded_cap(&self) -> u64 {
        Self::READ_LOADED.min(self.cap / 8)
    }

    /// A store-loaded piece was read for the first time: list it, and drop
    /// the oldest listed ones past the bound. Called with no shard locked
    /// (this takes the list's lock, then shard locks).
    fn list_read(&self, key: PieceKey, mark: u64, bytes: u64) {
        let mut r = self.read_loaded();
        r.order.push_back((key, mark, bytes));
        r.bytes += bytes;
        while r.bytes > self.read_loaded_cap() && r.order.len() > 2 {
            let Some((old, mark, listed)) = r.order.pop_front() else {
                break;
            };
            r.bytes -= listed;
            let mut shard = Self::lock(self.shard(&old));
            if shard
                .lru
                .peek(&old)
                .is_some_and(|e| e.loaded == Loaded::Read(mark))
            {
                if let Some(e) = shard.lru.pop(&old) {
                    self.total.fetch_sub(charge(&e.piece), Ordering::AcqRel);
                    r.remember_left(old);
                }
            }
        }
    }

    /// The largest piece kept: half the cache, so a full cache still holds
    /// two pieces and a sequential reader hits the one it is in.
    pub fn max_piece(&self) -> u64 {
        self.cap / 2
    }

    fn shard(&self, key: &PieceKey) -> &Mutex<Shard> {
        // The top bits of a well-mixed hash: no SipHash on the hit path.
        let i = (key.shard_hash() >> 60) as usize % SHARDS;
        &self.shards[i]
    }

    fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evict least recently used entries until the total is within the cap.
    /// One shard lock at a time, so it cannot deadlock with readers.
    fn evict_to_cap(&self) {
        while self.total.load(Ordering::Acquire) > self.cap {
            let oldest = self
                .shards
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Self::lock(s).lru.peek_lru().map(|(_, e)| (e.used, i)))
                .min();
            let Some((_, i)) = oldest else {
                return;
            };
            // Another thread may have evicted it meanwhile: popping that
            // shard's current tail is as good.
            let popped = Self::lock(&self.shards[i]).lru.pop_lru();
            if let Some((_, e)) = popped {
                self.total.fetch_sub(charge(&e.piece), Ordering::AcqRel);
            }
        }
    }
}

impl PieceStore for MemoryLru {
    fn get(&self, key: &PieceKey) -> Option<Piece> {
        // A load, not an increment: hits from many threads do not contend
        // on the clock. Inserts step it by 2, so a hit ranks after the last
        // insert and before the next; hits between two inserts tie.
        let now = self.clock.load(Ordering::Relaxed) + 1;
        let mut shard = Self::lock(self.shard(key));
        let e = shard.lru.get_mut(key)?;
        e.used = now;
        let piece = e.piece.clone();
        if e.loaded != Loaded::Unread {
            return Some(piece);
        }
        // A store-loaded piece's first read: the mark tells this listing
        // from a later one of a replaced entry.
        let mark = self.clock.fetch_add(2, Ordering::Relaxed) + 2;
        e.loaded = Loaded::Read(mark);
        let bytes = charge(&piece);
        drop(shard);
        self.list_read(*key, mark, bytes);
        Some(piece)
    }

    fn contains(&self, key: &PieceKey) -> bool {
        Self::lock(self.shard(key)).lru.contains(key)
    }

    fn insert(&self, key: PieceKey, piece: Piece) {
        self.put(key, piece, Loaded::No);
    }

    fn insert_loaded(&self, key: PieceKey, piece: Piece) {
        self.put(key, piece, Loaded::Unread);
    }

    fn bytes(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    fn clear(&self) {
        for s in &self.shards {
            let mut s = Self::lock(s);
            let freed: u64 = s.lru.iter().map(|(_, e)| charge(&e.piece)).sum();
            s.lru.clear();
            self.total.fetch_sub(freed, Ordering::AcqRel);
        }
        *self.read_loaded() = ReadLoaded::default();
    }
}

impl MemoryLru {
    fn put(&self, key: PieceKey, piece: Piece, mut loaded: Loaded) {
        if piece.len() as u64 > self.max_piece() {
            // Keeping it would evict nearly everything for one piece;
            // readers still get it directly.
            return;
        }
        if loaded == Loaded::Unread && self.read_loaded().left.remove(&key) {
            // Loaded again after it left: read more than once.
            loaded = Loaded::No;
        }
        let add = charge(&piece);
        let used = self.clock.fetch_add(2, Ordering::Relaxed) + 2;
        let old = Self::lock(self.shard(&key)).lru.put(
            key,
            Entry {
                piece,
                used,
                loaded,
            },
        );
        self.total.fetch_add(add, Ordering::AcqRel);
        if let Some(old) = old {
            self.total.fetch_sub(charge(&old.piece), Ordering::AcqRel);
        }
        self.evict_to_cap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(i: u32) -> PieceKey {
        use sha1::Digest;
        PieceKey::Sha1(sha1::Sha1::digest(i.to_le_bytes()).into())
    }

    fn piece(len: usize, byte: u8) -> Piece {
        Arc::new(vec![byte; len].into())
    }

    #[test]
    fn stays_within_its_bound() {
        let cache = MemoryLru::new(16 * 1024);
        for i in 0..1000 {
            cache.insert(key(i), piece(512, 0));
            assert!(cache.bytes() <= 16 * 1024);
        }
        assert!(cache.bytes() > 8 * 1024, "cache should be mostly full");
    }

    #[test]
    fn tiny_pieces_count_their_bookkeeping() {
        let cache = MemoryLru::new(64 * 1024);
        for i in 0..100_000 {
            cache.insert(key(i), piece(4, 0));
        }
        assert!(cache.bytes() <= 64 * 1024);
        let held = (0..100_000).filter(|&i| cache.contains(&key(i))).count() as u64;
        assert!(held * (4 + ENTRY_OVERHEAD) <= 64 * 1024, "{held} entries");
    }

    #[test]
    fn pieces_up_to_half_the_cache_are_kept_and_hit() {
        let cache = MemoryLru::new(8 << 20);
        cache.insert(key(0), piece(4 << 20, 1));
        assert!(cache.get(&key(0)).is_some(), "a half-cache piece is kept");
        cache.insert(key(1), piece(3 << 20, 2));
        assert!(cache.get(&key(0)).is_some() && cache.get(&key(1)).is_some());
        cache.insert(key(2), piece((4 << 20) + 1, 3));
        assert!(!cache.contains(&key(2)), "more than half: not kept");
    }

    #[test]
    fn eviction_is_least_recently_used_across_shards() {
        let cache = MemoryLru::new(10 * 1024 + 10 * ENTRY_OVERHEAD);
        for i in 0..10 {
            cache.insert(key(i), piece(1024, 0));
        }
        assert!((0..10).all(|i| cache.contains(&key(i))));
        // Touch 0..5; the next 5 inserts must evict exactly 5..10.
        for i in 0..5 {
            cache.get(&key(i)).unwrap();
        }
        for i in 10..15 {
            cache.insert(key(i), piece(1024, 0));
        }
        for i in 0..5 {
            assert!(cache.contains(&key(i)), "recently used {i} evicted");
        }
        for i in 5..10 {
            assert!(!cache.contains(&key(i)), "stale {i} kept");
        }
    }

    #[test]
    fn pinned_pieces_survive_eviction() {
        let cache = MemoryLru::new(SHARDS as u64 * 1024);
        cache.insert(key(0), piece(1024, 7));
        let pinned = cache.get(&key(0)).unwrap();
        for i in 1..500 {
            cache.insert(key(i), piece(1024, 0));
        }
        assert!(!cache.contains(&key(0)));
        assert!(pinned.iter().all(|&b| b == 7));
    }

    #[test]
    fn store_loaded_pieces_leave_soon_after_their_first_read() {
        let cache = MemoryLru::new(64 << 20);
        let piece_len = 1 << 20;
        let cap = cache.read_loaded_cap();
        let n = 2 * (cap / piece_len as u64) as u32;
        // Loaded, not read yet (readahead): kept however many.
        for i in 0..n {
            cache.insert_loaded(key(i), piece(piece_len, 1));
        }
        assert!((0..n).all(|i| cache.contains(&key(i))));
        // Read in order: only the last READ_LOADED bytes of them stay.
        for i in 0..n {
            assert!(cache.get(&key(i)).is_some(), "piece {i} read");
            // Read again at once (a piece read in small parts): still there.
            assert!(cache.get(&key(i)).is_some(), "piece {i} read again");
        }
        let kept = (0..n).filter(|&i| cache.contains(&key(i))).count() as u64;
        assert!(
            kept * (piece_len as u64 + ENTRY_OVERHEAD) <= cap && kept >= cap / piece_len as u64 - 1,
            "{kept} read pieces kept"
        );
        assert!(!cache.contains(&key(0)), "the first read piece left");
        assert!(cache.contains(&key(n - 1)), "the last read piece stayed");
        assert!(cache.bytes() <= cap, "{} bytes held", cache.bytes());
        // Fetched pieces are not affected, read or not.
        for i in 1000..1000 + n {
            cache.insert(key(i), piece(piece_len, 2));
            assert!(cache.get(&key(i)).is_some());
        }
        assert!((1000..1000 + n).all(|i| cache.contains(&key(i))));
        // A piece loaded again after it left is read more than once: kept
        // like a fetched one however many store pieces are read after it.
        cache.insert_loaded(key(0), piece(piece_len, 1));
        assert!(cache.get(&key(0)).is_some());
        for i in 2000..2000 + n {
            cache.insert_loaded(key(i), piece(piece_len, 1));
            assert!(cache.get(&key(i)).is_some());
        }
        assert!(cache.contains(&key(0)), "a piece read twice left again");
        assert!(!cache.contains(&key(2000)), "read once: left");
    }

    #[test]
    fn a_store_loaded_piece_larger_than_the_list_stays_while_read() {
        let cache = MemoryLru::new(256 << 20);
        let big = 2 * MemoryLru::READ_LOADED as usize;
        cache.insert_loaded(key(0), piece(big, 3));
        for _ in 0..4 {
            assert!(cache.get(&key(0)).is_some(), "the piece being read left");
        }
        cache.insert_loaded(key(1), piece(big, 4));
        cache.insert_loaded(key(2), piece(big, 5));
        assert!(cache.get(&key(1)).is_some() && cache.get(&key(2)).is_some());
        // The two last read stay; the third from last goes.
        assert!(!cache.contains(&key(0)));
        assert!(cache.contains(&key(1)) && cache.contains(&key(2)));
    }

    #[test]
    fn clear_empties_and_resets_the_count() {
        let cache = MemoryLru::new(1 << 20);
        for i in 0..10 {
            cache.insert(key(i), piece(1000, 0));
        }
        cache.clear();
        assert_eq!(cache.bytes(), 0);
        assert!(!cache.contains(&key(3)));
    }

    #[test]
    fn keys_distinguish_objects() {
        let cache = MemoryLru::new(1 << 20);
        let a = crate::engine::Identity::intern("cache-test-a".into());
        let b = crate::engine::Identity::intern("cache-test-b".into());
        cache.insert(PieceKey::Object(a.id(), 0), piece(1, 1));
        assert!(cache.get(&PieceKey::Object(b.id(), 0)).is_none());
        assert!(cache.get(&PieceKey::Object(a.id(), 0)).is_some());
        cache.insert(PieceKey::Sha1([9; 20]), piece(1, 2));
        assert_eq!(cache.get(&PieceKey::Sha1([9; 20])).unwrap()[0], 2);
    }
}
