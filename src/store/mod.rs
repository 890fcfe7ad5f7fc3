//! The persistent piece store: verified pieces on disk, shared by processes.
//!
//! The memory cache (`engine::cache`) is the first tier; this is the second,
//! behind it. A piece that a worker has fetched and verified is written here
//! after its readers have been served, and a piece that misses in memory is
//! looked for here before any source is asked. Pieces therefore outlive the
//! process: a program that reads the same region twice, two programs reading
//! one dataset, and a `gtio get` run again after an interruption all find
//! what an earlier run fetched.
//!
//! # On disk
//!
//! ```text
//! <cache_dir>/gtio-store-v1/
//!     pieces/<first two hex digits>/<kind>-<40 hex digits>   one file per piece
//!     tmp/<pid>-<n>-<name>                                    pieces being written
//!     inflight.lock                                           "I am fetching this"
//! ```
//!
//! A piece file is the data followed by a 40-byte trailer (magic, data
//! length, CRC-32C of the data for a plain object), so a load is one read
//! into the piece's buffer. It is written under `tmp/`, flushed, renamed
//! into place and the directory flushed, so a crash at any moment leaves
//! the whole piece or nothing; rename is atomic, so a reader in another
//! process never sees half a piece. The writer does this for a batch of
//! pieces at a time, with one flush of the file system before the renames
//! and one after (`DiskStore::commit_then`). Leftover temporary files of
//! dead writers are removed when a store opens.
//!
//! # Trust
//!
//! Nothing on disk is trusted. A load checks the length against the
//! trailer, a torrent piece's data against its SHA-1 (the key *is* the
//! SHA-1 the metainfo gives; checked by the engine's `verify`, handed to the
//! store as a [`TorrentCheck`]), and a plain object's data against the
//! CRC-32C its trailer records. A plain object's key is a digest of its URI,
//! pinned validator (ETag or Last-Modified), block size and index, so a
//! changed object has new keys and never meets its old pieces; the CRC only
//! has to catch a damaged file, and at many GB/s it keeps a store hit about
//! as cheap as reading the file. A piece that fails any check is deleted
//! and reported as missing: the engine fetches it again.
//!
//! # Sharing
//!
//! Processes coordinate only through the file system. Before fetching a
//! piece a process takes a byte-range lock on the piece's byte of
//! `inflight.lock` (`disk::claims`); a second process that finds it locked
//! waits (at most [`CLAIM_TIMEOUT`]) for the piece file to appear instead of
//! fetching it too. The kernel releases the locks of a process that dies,
//! so a crashed writer never blocks anyone. A delete racing a write ends
//! with the new piece or none: both are single atomic directory operations.
//!
//! # Bound
//!
//! The store keeps an index of its pieces (sizes and last use), built by
//! listing the directories (no file is read) on the writer thread, before
//! its first save or a second after it starts, so opening a 10 GiB store
//! costs the opener nothing and a process that only reads pays no walk,
//! and refreshed from disk now and then, since other processes add pieces
//! too. After each write it evicts least recently used pieces until it is
//! within `cache_dir_bytes`. A hit refreshes a piece file's mtime (its
//! recency for other processes) when it is a minute old or more. A full disk
//! (ENOSPC, EDQUOT) turns writing off with one warning in the statistics
//! (`store_warning`); the reader never sees an error for it.

mod disk;

pub use disk::{
    Alloc, Claim, ClaimGuard, DiskStore, Staged, StoreKey, StoreStats, TorrentCheck, CLAIM_TIMEOUT,
};
