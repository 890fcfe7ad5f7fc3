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
//!     inflight/<name>                                         "I am fetching this"
//! ```
//!
//! A piece file is a 40-byte header (magic, data length, SHA-1 of the data)
//! followed by the data. It is written under `tmp/`, flushed, renamed into
//! place and the directory flushed, so a crash at any moment leaves the
//! whole piece or nothing; rename is atomic, so a reader in another process
//! never sees half a piece. Leftover temporary files of dead writers are
//! removed when a store opens.
//!
//! # Trust
//!
//! Nothing on disk is trusted. A load checks the length and the SHA-1 of the
//! data against the header, and for a torrent piece the header against the
//! piece's own hash (the key *is* the SHA-1 the metainfo gives). A plain
//! object's key is a digest of its URI, pinned validator (ETag or
//! Last-Modified), block size and index, so a changed object has new keys and
//! never meets its old pieces. A piece that fails any check is deleted and
//! reported as missing: the engine fetches it again.
//!
//! # Sharing
//!
//! Processes coordinate only through the file system. Before fetching a
//! piece a process creates `inflight/<name>` with `O_EXCL`; a second process
//! that finds the marker waits (bounded) for the piece file to appear instead
//! of fetching it too. A marker whose writer died (its pid is gone) or that
//! is older than [`CLAIM_TIMEOUT`] is broken, so a crashed writer never blocks
//! anyone for long. A delete racing a write ends with the new piece or none:
//! both are single atomic directory operations.
//!
//! # Bound
//!
//! The store keeps an index of its pieces (sizes and last use), built at open
//! by listing the directories (no file is read, so opening a 10 GiB store
//! costs a directory walk, not a rehash) and refreshed from disk now and then,
//! since other processes add pieces too. After each write it evicts least
//! recently used pieces until it is within `cache_dir_bytes`. A full disk
//! (ENOSPC, EDQUOT) turns writing off with one warning in the statistics; the
//! reader never sees an error for it.

mod disk;

pub use disk::{Claim, ClaimGuard, DiskStore, StoreKey, StoreStats, CLAIM_TIMEOUT};
