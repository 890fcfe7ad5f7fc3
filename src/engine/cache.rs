//! The process-wide piece cache: an LRU of verified pieces bounded in bytes.
//!
//! Pieces are `Arc`s, so a piece that is being copied out stays alive even if
//! the LRU evicts it meanwhile: eviction drops the cache's reference, never
//! bytes in use. The bound therefore holds for what the cache owns; pieces
//! pinned by in-progress copies add at most one piece per reading thread.
//!
//! The LRU is split into shards by key hash so that threads reading different
//! pieces rarely meet on a lock; each shard gets an equal share of the bound.

use std::sync::Mutex;

use lru::LruCache;

use super::{Piece, PieceKey};

/// 16 shards: enough that 8 threads hitting the cache rarely collide, few
/// enough that a shard still holds several pieces at small cache sizes.
const SHARDS: usize = 16;

pub struct PieceCache {
    shards: Vec<Mutex<Shard>>,
}

struct Shard {
    lru: LruCache<PieceKey, Piece>,
    bytes: u64,
    cap: u64,
}

impl PieceCache {
    pub fn new(cap_bytes: u64) -> PieceCache {
        let per_shard = (cap_bytes / SHARDS as u64).max(1);
        PieceCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        lru: LruCache::unbounded(),
                        bytes: 0,
                        cap: per_shard,
                    })
                })
                .collect(),
        }
    }

    fn shard(&self, key: &PieceKey) -> &Mutex<Shard> {
        // The top bits of a well-mixed hash: no SipHash on the hit path.
        let i = (key.shard_hash() >> 60) as usize % SHARDS;
        &self.shards[i]
    }

    pub fn get(&self, key: &PieceKey) -> Option<Piece> {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        shard.lru.get(key).cloned()
    }

    pub fn contains(&self, key: &PieceKey) -> bool {
        let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        shard.lru.contains(key)
    }

    pub fn insert(&self, key: PieceKey, piece: Piece) {
        let len = piece.len() as u64;
        let mut shard = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if len > shard.cap {
            // Larger than the shard's whole share: keeping it would evict
            // everything else for one piece. Readers still get it directly.
            return;
        }
        if let Some(old) = shard.lru.put(key, piece) {
            shard.bytes -= old.len() as u64;
        }
        shard.bytes += len;
        while shard.bytes > shard.cap {
            match shard.lru.pop_lru() {
                Some((_, evicted)) => shard.bytes -= evicted.len() as u64,
                None => break,
            }
        }
    }

    /// Bytes the cache holds now.
    pub fn bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).bytes)
            .sum()
    }

    pub fn clear(&self) {
        for s in &self.shards {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.lru.clear();
            s.bytes = 0;
        }
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

    #[test]
    fn stays_within_its_bound() {
        let cache = PieceCache::new(16 * 1024);
        for i in 0..1000 {
            cache.insert(key(i), Arc::new(vec![0u8; 512].into()));
            assert!(cache.bytes() <= 16 * 1024);
        }
        assert!(cache.bytes() > 8 * 1024, "cache should be mostly full");
    }

    #[test]
    fn pinned_pieces_survive_eviction() {
        let cache = PieceCache::new(SHARDS as u64 * 1024);
        cache.insert(key(0), Arc::new(vec![7u8; 1024].into()));
        let pinned = cache.get(&key(0)).unwrap();
        for i in 1..500 {
            cache.insert(key(i), Arc::new(vec![0u8; 1024].into()));
        }
        assert!(!cache.contains(&key(0)));
        assert!(pinned.iter().all(|&b| b == 7));
    }

    #[test]
    fn keys_distinguish_objects() {
        let cache = PieceCache::new(1 << 20);
        let a = crate::engine::Identity::intern("cache-test-a".into());
        let b = crate::engine::Identity::intern("cache-test-b".into());
        cache.insert(PieceKey::Object(a.id(), 0), Arc::new(vec![1].into()));
        assert!(cache.get(&PieceKey::Object(b.id(), 0)).is_none());
        assert!(cache.get(&PieceKey::Object(a.id(), 0)).is_some());
        cache.insert(PieceKey::Sha1([9; 20]), Arc::new(vec![2].into()));
        assert_eq!(cache.get(&PieceKey::Sha1([9; 20])).unwrap()[0], 2);
    }
}
