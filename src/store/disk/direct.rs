//! A load straight into a reader's buffer (`DiskStore::load_into`), and the
//! bookkeeping every successful load shares.
//!
//! The engine's path loads a piece into a piece buffer of its own, which the
//! memory cache then holds and the reader copies from: two copies of every
//! byte (page cache to piece buffer, piece buffer to the reader) and a hop
//! to a worker thread. A synchronous read that wants whole pieces can have
//! them read by the kernel into its own buffer instead, on its own thread,
//! and checked there (`docs/store.md`, "Speed"): one copy, as a `pread` of a
//! local file costs. Nothing about trust changes: the same length, trailer
//! and CRC-32C or SHA-1 checks run on the bytes the reader gets, and a piece
//! that fails them is left for the engine's path, which deletes the file and
//! fetches the piece again.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::file::{read_verified_into, TRAILER};
use super::{DiskStore, StoreKey, RECENCY_GRAIN};

impl DiskStore {
    /// Read the piece `key` into `dest` (exactly its length) and check it:
    /// true when `dest` now holds the verified piece. False when the piece
    /// is absent, of another length, or fails a check; `dest` then holds
    /// garbage, and nothing is counted or deleted here: the caller takes
    /// the engine's path, which counts the miss, and deletes a bad file
    /// before it fetches the piece again (`DiskStore::claim`).
    pub fn load_into(&self, key: &StoreKey, dest: &mut [u8]) -> bool {
        let name = key.name();
        let Some(mut file) = self.open_piece(&name) else {
            return false;
        };
        // The size is checked before anything is read (a file of another
        // length is another piece's or a damaged one), and the mtime says
        // whether this hit should refresh it.
        let meta = file.metadata();
        let Some(on_disk) = meta.as_ref().ok().map(Metadata::len) else {
            return false;
        };
        if on_disk != dest.len() as u64 + TRAILER as u64 {
            return false;
        }
        if read_verified_into(&mut file, on_disk, key, self.check, dest).is_err() {
            return false;
        }
        self.served(name, &file, meta, on_disk);
        true
    }

    /// Open `pieces/<shard>/<name>` relative to the open `pieces/`
    /// directory: the path walk of each open was a tenth of a hit's CPU
    /// (`__d_lookup_rcu`, docs/store.md "Speed"). If `pieces/` was removed
    /// and made again since the store opened, the old directory has no
    /// pieces and every direct hit falls back to the engine's path, which
    /// opens by full path: slower, never wrong.
    fn open_piece(&self, name: &str) -> Option<File> {
        let dir = self.pieces.as_ref()?;
        // "ab/<name>\0" on the stack (a name is 42 ASCII bytes).
        let mut rel = [0u8; 64];
        let n = name.len();
        if n < 4 || n + 4 > rel.len() || name.as_bytes().contains(&0) {
            return None;
        }
        rel[..2].copy_from_slice(&name.as_bytes()[2..4]);
        rel[2] = b'/';
        rel[3..3 + n].copy_from_slice(name.as_bytes());
        // SAFETY: `dir` is an open directory we own for the call, `rel` is
        // NUL-terminated (zeroed past the name, which has no NUL), and the
        // flags are plain integers.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                rel.as_ptr().cast(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Some(unsafe { File::from_raw_fd(fd) })
    }

    /// A piece of `on_disk` bytes was loaded and verified from `file`:
    /// count it, refresh its recency, and index it.
    pub(super) fn served(
        &self,
        name: String,
        file: &File,
        meta: io::Result<Metadata>,
        on_disk: u64,
    ) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_read
            .fetch_add(on_disk - TRAILER as u64, Ordering::Relaxed);
        // Recency for other processes' eviction and for our own rescans;
        // between them, ours is the index. Only when stale: each update is
        // an inode write, and a minute is fine grain for evicting least
        // recently used pieces.
        let now = SystemTime::now();
        let stale = meta
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_none_or(|age| age >= RECENCY_GRAIN);
        if stale {
            let _ = file.set_modified(now);
        }
        let mut index = self.lock();
        if index.lru.get(&name).is_none() {
            index.lru.put(name, on_disk);
            index.total += on_disk;
        }
    }
}
