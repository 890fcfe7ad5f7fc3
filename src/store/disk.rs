//! The disk store itself (design in the module docs of `store`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Error, Result};

mod claims;
mod direct;
mod file;
mod index;

pub use claims::ClaimGuard;
use claims::{Claims, Try};
use index::Index;

use file::{read_verified, write_piece, MAX_PIECE, TRAILER};

/// How a torrent piece's data is checked against its SHA-1: the engine's
/// one verification function (`engine::verify`), handed in so the store
/// does not depend on the engine.
pub type TorrentCheck = fn(&[u8; 20], &[u8]) -> bool;

/// Where a loaded piece's buffer comes from: the engine's recycled piece
/// buffers (a plain new vector by default). Its length does not matter.
pub type Alloc = fn(usize) -> Vec<u8>;
/// The store's directory under `cache_dir`: a future format gets a new one.
const LAYOUT_DIR: &str = "gtio-store-v1";
/// How long a waiter waits for a live writer's piece before fetching it
/// itself (a writer that dies releases its claim at once).
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);
/// A hit refreshes a piece file's mtime (its recency on disk) only when it
/// is at least this old.
const RECENCY_GRAIN: Duration = Duration::from_secs(60);
/// Re-list the directories after this many bytes written by us (other
/// processes write too, and only a listing sees their pieces).
const RESCAN_FRACTION: u64 = 8;
/// Batches of at least this many pieces are flushed with `syncfs`
/// (`DiskStore::commit_then`), smaller ones file by file.
const SYNCFS_BATCH: usize = 8;

/// What a piece is, for the store: its name on disk and how to check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKey {
    /// A torrent piece: its SHA-1 from the metainfo. The data must hash to it.
    Torrent([u8; 20]),
    /// A plain object's block: a digest of (URI, validator, block size,
    /// index). The data must hash to the SHA-1 its header records.
    Object([u8; 20]),
}

impl StoreKey {
    fn digest(&self) -> &[u8; 20] {
        match self {
            StoreKey::Torrent(d) | StoreKey::Object(d) => d,
        }
    }

    pub fn name(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let (kind, digest) = match self {
            StoreKey::Torrent(d) => (b't', d),
            StoreKey::Object(d) => (b'o', d),
        };
        let mut s = Vec::with_capacity(42);
        s.extend_from_slice(&[kind, b'-']);
        for b in digest {
            s.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
        String::from_utf8(s).expect("ASCII")
    }
}

/// Counters for `gtio_stats_json` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub pieces_written: u64,
    /// Piece files that failed a check on load and were deleted.
    pub bad_pieces: u64,
    pub evictions: u64,
    pub bytes_used: u64,
    /// Writing stopped because the disk is full (a warning, not an error).
    pub disk_full: bool,
    /// The one warning of the store, for the statistics (`store_warning`).
    pub warning: Option<String>,
    pub write_errors: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    pieces_written: AtomicU64,
    bad_pieces: AtomicU64,
    evictions: AtomicU64,
    write_errors: AtomicU64,
}

pub struct DiskStore {
    root: PathBuf,
    cap: u64,
    index: Mutex<Index>,
    disk_full: AtomicBool,
    next_tmp: AtomicU64,
    counters: Counters,
    check: Option<TorrentCheck>,
    alloc: Alloc,
    claims: Claims,
    /// `pieces/`, open, for a reader's direct hit (`direct`): a lookup
    /// from it walks two path components, not the whole `cache_dir` path.
    pieces: Option<File>,
}

/// A piece written to its temporary file, not yet in place.
pub struct Staged {
    file: File,
    tmp: PathBuf,
    name: String,
    size: u64,
}

/// The outcome of asking to fetch a piece.
pub enum Claim {
    /// We fetch it; the claim goes when this is dropped (after the save).
    Mine(ClaimGuard),
    /// Another live process is fetching it.
    Theirs,
    /// It is on disk already.
    Stored(Vec<u8>),
}

impl DiskStore {
    /// Open (creating) the store under `cache_dir`, bounded by `cap` bytes.
    /// Costs a listing of the small `tmp/` and `inflight/` directories; the
    /// pieces are listed later ([`DiskStore::scan`]), never read until used.
    pub fn open(cache_dir: &Path, cap: u64) -> Result<DiskStore> {
        let root = cache_dir.join(LAYOUT_DIR);
        for sub in ["pieces", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(|e| {
                Error::from(e).context(format!(
                    "cache_dir {}: cannot create {sub}/ (set GTIO_CACHE_DIR to a writable directory)",
                    cache_dir.display()
                ))
            })?;
        }
        let store = DiskStore {
            root: root.clone(),
            cap,
            index: Mutex::new(Index::new()),
            disk_full: AtomicBool::new(false),
            next_tmp: AtomicU64::new(0),
            counters: Counters::default(),
            check: None,
            alloc: Vec::with_capacity,
            claims: Claims::open(&root.join("inflight.lock")),
            pieces: File::open(root.join("pieces")).ok(),
        };
        store.remove_dead_temporaries();
        Ok(store)
    }

    /// Check torrent pieces on load with `check` (without one a torrent
    /// piece is never served).
    pub fn with_check(mut self, check: TorrentCheck) -> DiskStore {
        self.check = Some(check);
        self
    }

    /// Load pieces into buffers from `alloc`.
    pub fn with_buffers(mut self, alloc: Alloc) -> DiskStore {
        self.alloc = alloc;
        self
    }

    /// List the pieces (sizes and mtimes) and evict down to the bound, if
    /// not done yet: the writer thread does it when it starts, so an open
    /// never waits for a walk of a large store; a save does it first too.
    pub fn scan(&self) {
        self.scan_unless(&|| false);
    }

    /// [`DiskStore::scan`], given up (leaving the index to a later scan)
    /// as soon as `abort` says so: a process that is done before the walk
    /// of a large store is should not wait for it at exit.
    pub fn scan_unless(&self, abort: &dyn Fn() -> bool) {
        if !self.lock().scanned && self.rescan_unless(abort) {
            self.evict_to_bound();
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn piece_path(&self, name: &str) -> PathBuf {
        self.root.join("pieces").join(&name[2..4]).join(name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verified piece, or `None` (absent, or bad and now deleted).
    pub fn load(&self, key: &StoreKey) -> Option<Vec<u8>> {
        self.load_counting(key, true)
    }

    /// `load`; an absent piece counts as a miss only with `count_absent`
    /// (claim and wait look more than once).
    fn load_counting(&self, key: &StoreKey, count_absent: bool) -> Option<Vec<u8>> {
        let name = key.name();
        let path = self.piece_path(&name);
        let Ok(mut file) = File::open(&path) else {
            if count_absent {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        };
        let meta = file.metadata();
        let on_disk = meta.as_ref().map_or(0, |m| m.len());
        match read_verified(&mut file, on_disk, key, self.check, self.alloc) {
            Ok(data) => {
                self.served(name, &file, meta, on_disk);
                Some(data)
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                self.counters.bad_pieces.fetch_add(1, Ordering::Relaxed);
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                let _ = fs::remove_file(&path);
                self.forget(&name);
                None
            }
        }
    }

    pub fn contains(&self, key: &StoreKey) -> bool {
        self.piece_path(&key.name()).exists()
    }

    /// Keep a verified piece. Failures are counted, never returned: the
    /// store is an optimisation, and a reader already has its bytes.
    pub fn save(&self, key: &StoreKey, data: &[u8]) {
        if let Some(staged) = self.stage(key, data) {
            self.commit(vec![staged]);
        }
    }

    /// Write a piece to its temporary file (not flushed: [`DiskStore::commit`]
    /// flushes a whole batch at once). `None`: not kept (full disk, too
    /// large, or a write error, counted).
    pub fn stage(&self, key: &StoreKey, data: &[u8]) -> Option<Staged> {
        if self.disk_full.load(Ordering::Relaxed) || data.len() as u64 > MAX_PIECE {
            return None;
        }
        let size = (data.len() + TRAILER) as u64;
        if size > self.cap {
            return None;
        }
        let name = key.name();
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}-{n}-{name}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .and_then(|mut f| {
                write_piece(&mut f, key, data)?;
                start_writeback(&f);
                Ok(f)
            });
        match written {
            Ok(file) => Some(Staged {
                file,
                tmp,
                name,
                size,
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.write_failed(&e);
                None
            }
        }
    }

    fn write_failed(&self, e: &io::Error) {
        if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
            self.disk_full.store(true, Ordering::Relaxed);
        } else {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Put staged pieces in place, crash-safely: the data of the batch's
    /// temporary files is flushed, then each is renamed into place, then the
    /// directories are flushed. A crash before a rename leaves a temporary
    /// (removed at the next open); after it, the whole piece. For a batch
    /// of [`SYNCFS_BATCH`] pieces or more, both flushes are one `syncfs` of
    /// the store's file system:
    /// measured on ext4 with 64 KiB pieces, an `fdatasync` per piece and an
    /// `fsync` per directory made the writer 6× slower (4.4 s against 0.6 s
    /// for 256 MiB), and a slower writer stores fewer pieces (past its queue
    /// bound a save is skipped). `syncfs` also writes what other programs
    /// left dirty on that file system, which the kernel would write within
    /// seconds anyway, but makes a small batch wait for it, so a small batch
    /// flushes its files and directories one by one. `placed` runs once the renames are done (the writer
    /// releases claims there, so a waiting process finds its piece without
    /// waiting for the directory flushes).
    pub fn commit(&self, staged: Vec<Staged>) {
        self.commit_then(staged, &mut || {});
    }

    pub fn commit_then(&self, staged: Vec<Staged>, placed: &mut dyn FnMut()) {
        self.scan();
        let mut kept = Vec::with_capacity(staged.len());
        let mut dirs = std::collections::BTreeSet::new();
        // A large batch: every temporary's data in one flush of the file
        // system. A small one (a few pieces, when the writer keeps up):
        // each file's own, so that how long a piece takes to land does not
        // depend on what other programs left dirty on that file system.
        let whole_fs = staged.len() >= SYNCFS_BATCH;
        let flushed = if whole_fs { self.flush() } else { Ok(()) };
        for s in staged {
            let dest = self.piece_path(&s.name);
            let dir = dest
                .parent()
                .expect("piece paths have a parent")
                .to_path_buf();
            let data_synced = match &flushed {
                Ok(()) if whole_fs => Ok(()),
                Ok(()) => s.file.sync_data(),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            let moved = data_synced.and_then(|()| {
                fs::rename(&s.tmp, &dest).or_else(|e| {
                    // The shard directory is made on first use.
                    if e.kind() != io::ErrorKind::NotFound {
                        return Err(e);
                    }
                    fs::create_dir_all(&dir)?;
                    fs::rename(&s.tmp, &dest)
                })
            });
            match moved {
                Ok(()) => {
                    dirs.insert(dir);
                    kept.push(s);
                }
                Err(e) => {
                    let _ = fs::remove_file(&s.tmp);
                    self.write_failed(&e);
                }
            }
        }
        placed();
        // Every directory renamed into: a second flush of the file system,
        // or each directory's own.
        if whole_fs && !dirs.is_empty() {
            if let Err(e) = self.flush() {
                self.write_failed(&e);
            }
        } else {
            for dir in dirs {
                if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
                    self.write_failed(&e);
                }
            }
        }
        let mut rescan = false;
        for s in kept {
            self.counters.pieces_written.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes_written
                .fetch_add(s.size - TRAILER as u64, Ordering::Relaxed);
            let mut index = self.lock();
            if let Some(old) = index.lru.put(s.name, s.size) {
                index.total -= old;
            }
            index.total += s.size;
            index.written_since_scan += s.size;
            rescan |= index.written_since_scan > self.cap / RESCAN_FRACTION;
        }
        if rescan {
            self.rescan();
        }
        self.evict_to_bound();
    }

    /// Flush the file system holding the store (data and directories).
    fn flush(&self) -> io::Result<()> {
        let dir = File::open(&self.root)?;
        // SAFETY: syncfs takes a file descriptor we own for the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Temporary files whose writer is gone (a crash mid-write), and the
    /// in-flight marker files an older version left in `inflight/`.
    fn remove_dead_temporaries(&self) {
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                let name = e.file_name();
                let pid = name
                    .to_str()
                    .and_then(|n| n.split('-').next())
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_none_or(|p| !process_alive(p)) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        if let Ok(entries) = fs::read_dir(self.root.join("inflight")) {
            // Markers of an older version, where claims were files.
            for e in entries.flatten() {
                if !marker_is_live(&e.path()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Ask to fetch `key`: stored already, being fetched by another live
    /// process, or ours to fetch (the claim goes with the guard).
    pub fn claim(&self, key: &StoreKey) -> Claim {
        if let Some(data) = self.load_quiet(key) {
            return Claim::Stored(data);
        }
        match self.claims.try_claim(claims::offset(key.digest())) {
            Try::Theirs => Claim::Theirs,
            Try::Mine(guard) => {
                // Another process may have saved it between our look and
                // our claim: look once more (a stat) before fetching it too.
                if self.contains(key) {
                    if let Some(data) = self.load_quiet(key) {
                        return Claim::Stored(data);
                    }
                }
                Claim::Mine(guard)
            }
        }
    }

    /// Wait until another process's fetch of `key` lands (the piece) or its
    /// claim goes (`None`: fetch it yourself), at most until `deadline`.
    pub fn wait_for(&self, key: &StoreKey, deadline: Instant) -> Option<Vec<u8>> {
        let at = claims::offset(key.digest());
        let mut pause = Duration::from_millis(2);
        loop {
            if let Some(data) = self.load_quiet(key) {
                return Some(data);
            }
            if !self.claims.held_by_other(at) || Instant::now() >= deadline {
                // One last look: the writer renames before releasing.
                return self.load_quiet(key);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn load_quiet(&self, key: &StoreKey) -> Option<Vec<u8>> {
        self.load_counting(key, false)
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            pieces_written: c.pieces_written.load(Ordering::Relaxed),
            bad_pieces: c.bad_pieces.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            bytes_used: self.lock().total,
            disk_full: self.disk_full.load(Ordering::Relaxed),
            warning: self.disk_full.load(Ordering::Relaxed).then(|| {
                "the disk of cache_dir is full (ENOSPC): pieces are no longer stored \
                 (memory cache only)"
                    .to_string()
            }),
            write_errors: c.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// Start writing `f`'s dirty pages back without waiting, so the batch's
/// flush finds part of the work done (a hint: failure changes nothing).
fn start_writeback(f: &File) {
    // SAFETY: sync_file_range takes a file descriptor we own for the call
    // and plain integers.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// An older version's marker holds while its writer lives and it is younger
/// than the timeout.
fn marker_is_live(marker: &Path) -> bool {
    let Ok(meta) = fs::metadata(marker) else {
        return false;
    };
    let young = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_none_or(|age| age < CLAIM_TIMEOUT);
    let pid = fs::read_to_string(marker)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    young && pid.is_some_and(process_alive)
}

#[cfg(test)]
mod tests;
