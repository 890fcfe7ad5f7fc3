//! The store's index of its pieces (sizes and last use) and eviction to
//! the bound (design in the module docs of `store`, "Bound").

use std::fs;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use lru::LruCache;

use super::DiskStore;

pub(super) struct Index {
    /// name -> size on disk, least recently used first.
    pub lru: LruCache<String, u64>,
    pub total: u64,
    pub written_since_scan: u64,
    /// Whether the directories were listed yet (lazily: not at open).
    pub scanned: bool,
}

impl Index {
    pub fn new() -> Index {
        Index {
            lru: LruCache::unbounded(),
            total: 0,
            written_since_scan: 0,
            scanned: false,
        }
    }
}

impl DiskStore {
    pub(super) fn forget(&self, name: &str) {
        let mut index = self.lock();
        if let Some(size) = index.lru.pop(name) {
            index.total -= size;
        }
    }

    /// Evict least recently used pieces until within the bound.
    pub(super) fn evict_to_bound(&self) {
        loop {
            let victim = {
                let mut index = self.lock();
                if index.total <= self.cap {
                    return;
                }
                let Some((name, size)) = index.lru.pop_lru() else {
                    index.total = 0;
                    return;
                };
                index.total -= size;
                name
            };
            // Gone already (another process evicted it) is as good.
            let _ = fs::remove_file(self.piece_path(&victim));
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Rebuild the index from the directories: sizes and mtimes only, least
    /// recently used (oldest mtime) first.
    pub(super) fn rescan(&self) {
        self.rescan_unless(&|| false);
    }

    /// `rescan`, unless `abort` (asked between directories) stops it
    /// first; whether it completed.
    pub(super) fn rescan_unless(&self, abort: &dyn Fn() -> bool) -> bool {
        let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
        let Ok(shards) = fs::read_dir(self.root.join("pieces")) else {
            return true;
        };
        for shard in shards.flatten() {
            if abort() {
                return false;
            }
            let Ok(entries) = fs::read_dir(shard.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(meta) = e.metadata() else { continue };
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((used, name, meta.len()));
            }
        }
        found.sort();
        let mut lru = LruCache::unbounded();
        let mut total = 0;
        for (_, name, size) in found {
            total += size;
            lru.put(name, size);
        }
        // What this store used keeps its order, after what only the disk
        // knows (mtimes tie within the clock's granularity, and the index
        // saw every use of ours).
        let mut index = self.lock();
        for (name, _) in index.lru.iter().rev() {
            lru.promote(name);
        }
        index.lru = lru;
        index.total = total;
        index.written_since_scan = 0;
        index.scanned = true;
        true
    }
}
