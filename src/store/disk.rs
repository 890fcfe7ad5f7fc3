//! The disk store itself (design in the module docs of `store`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use sha1::{Digest, Sha1};

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"GTIOPC01";
const HEADER: usize = 40;
/// The store's directory under `cache_dir`: a future format gets a new one.
const LAYOUT_DIR: &str = "gtio-store-v1";
/// How long a marker of a live writer holds others off; also how long a
/// waiter waits for the piece before fetching it itself.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);
/// Re-list the directories after this many bytes written by us (other
/// processes write too, and only a listing sees their pieces).
const RESCAN_FRACTION: u64 = 8;
/// The largest piece the store accepts (the engine's own bound is lower).
const MAX_PIECE: u64 = 1 << 31;

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
    fn name(&self) -> String {
        let (kind, digest) = match self {
            StoreKey::Torrent(d) => ('t', d),
            StoreKey::Object(d) => ('o', d),
        };
        let mut s = String::with_capacity(42);
        s.push(kind);
        s.push('-');
        for b in digest {
            s.push_str(&format!("{b:02x}"));
        }
        s
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
    pub write_errors: u64,
    /// Saves skipped because the write queue was full (filled in by the
    /// engine, which owns the queue).
    pub saves_skipped: u64,
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

struct Index {
    /// name -> size on disk, least recently used first.
    lru: LruCache<String, u64>,
    total: u64,
    written_since_scan: u64,
}

pub struct DiskStore {
    root: PathBuf,
    cap: u64,
    index: Mutex<Index>,
    disk_full: AtomicBool,
    next_tmp: AtomicU64,
    counters: Counters,
}

/// The outcome of asking to fetch a piece.
pub enum Claim {
    /// We fetch it; the marker goes when this is dropped (after the save).
    Mine(ClaimGuard),
    /// Another live process is fetching it.
    Theirs,
    /// It is on disk already.
    Stored(Vec<u8>),
}

/// Held while this process fetches a piece it claimed.
pub struct ClaimGuard {
    path: PathBuf,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl DiskStore {
    /// Open (creating) the store under `cache_dir`, bounded by `cap` bytes.
    /// Costs a directory listing, never a read of a piece.
    pub fn open(cache_dir: &Path, cap: u64) -> Result<DiskStore> {
        let root = cache_dir.join(LAYOUT_DIR);
        for sub in ["pieces", "tmp", "inflight"] {
            fs::create_dir_all(root.join(sub)).map_err(|e| {
                Error::from(e).context(format!(
                    "cache_dir {}: cannot create {sub}/ (set GTIO_CACHE_DIR to a writable directory)",
                    cache_dir.display()
                ))
            })?;
        }
        let store = DiskStore {
            root,
            cap,
            index: Mutex::new(Index {
                lru: LruCache::unbounded(),
                total: 0,
                written_since_scan: 0,
            }),
            disk_full: AtomicBool::new(false),
            next_tmp: AtomicU64::new(0),
            counters: Counters::default(),
        };
        store.remove_dead_temporaries();
        store.rescan();
        store.evict_to_bound();
        Ok(store)
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
        match read_verified(&mut file, key) {
            Ok(data) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_read
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                // Recency for other processes' eviction; ours is the index.
                let _ = file.set_modified(SystemTime::now());
                let mut index = self.lock();
                if index.lru.get(&name).is_none() {
                    let size = (data.len() + HEADER) as u64;
                    index.lru.put(name, size);
                    index.total += size;
                }
                Some(data)
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
        if self.disk_full.load(Ordering::Relaxed) || data.len() as u64 > MAX_PIECE {
            return;
        }
        let size = (data.len() + HEADER) as u64;
        if size > self.cap {
            return;
        }
        let name = key.name();
        match self.write_piece(&name, data) {
            Ok(()) => {
                self.counters.pieces_written.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_written
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                let rescan = {
                    let mut index = self.lock();
                    if let Some(old) = index.lru.put(name, size) {
                        index.total -= old;
                    }
                    index.total += size;
                    index.written_since_scan += size;
                    index.written_since_scan > self.cap / RESCAN_FRACTION
                };
                if rescan {
                    self.rescan();
                }
                self.evict_to_bound();
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => {
                self.disk_full.store(true, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn write_piece(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}-{n}-{name}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            let digest: [u8; 20] = Sha1::digest(data).into();
            let mut header = [0u8; HEADER];
            header[..8].copy_from_slice(MAGIC);
            header[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
            header[16..36].copy_from_slice(&digest);
            f.write_all(&header)?;
            f.write_all(data)?;
            f.sync_data()?;
            let dest = self.piece_path(name);
            let dir = dest.parent().expect("piece paths have a parent");
            fs::create_dir_all(dir)?;
            fs::rename(&tmp, &dest)?;
            File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn forget(&self, name: &str) {
        let mut index = self.lock();
        if let Some(size) = index.lru.pop(name) {
            index.total -= size;
        }
    }

    /// Evict least recently used pieces until within the bound.
    fn evict_to_bound(&self) {
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
    fn rescan(&self) {
        let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
        let Ok(shards) = fs::read_dir(self.root.join("pieces")) else {
            return;
        };
        for shard in shards.flatten() {
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
        // Our own hits set mtimes too, so recency survives the rebuild.
        let mut index = self.lock();
        index.lru = lru;
        index.total = total;
        index.written_since_scan = 0;
    }

    /// Temporary files and in-flight markers whose writer is gone: a crash
    /// mid-write or mid-fetch. (A marker of a stored piece is never looked
    /// at again, so it would stay for ever.)
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
            for e in entries.flatten() {
                if !marker_is_live(&e.path()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Ask to fetch `key`: stored already, being fetched by another live
    /// process, or ours to fetch (the marker goes with the guard).
    pub fn claim(&self, key: &StoreKey) -> Claim {
        let name = key.name();
        let marker = self.root.join("inflight").join(&name);
        for _ in 0..2 {
            if let Some(data) = self.load_quiet(key) {
                return Claim::Stored(data);
            }
            match self.create_marker(&marker) {
                Ok(()) => return Claim::Mine(ClaimGuard { path: marker }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if marker_is_live(&marker) {
                        return Claim::Theirs;
                    }
                    // A dead writer's marker: break it and try once more.
                    let _ = fs::remove_file(&marker);
                }
                // Cannot coordinate (read-only dir?): fetch without a marker.
                Err(_) => {
                    return Claim::Mine(ClaimGuard {
                        path: PathBuf::new(),
                    })
                }
            }
        }
        Claim::Mine(ClaimGuard {
            path: PathBuf::new(),
        })
    }

    /// Create `marker` holding our pid, atomically: the pid is written to a
    /// temporary file that is then hard-linked to the marker's name (a link
    /// fails if the name exists, like `O_EXCL`). A writer killed at any
    /// point leaves no marker without a pid, which would look live.
    fn create_marker(&self, marker: &Path) -> io::Result<()> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}-{n}-claim", std::process::id()));
        fs::write(&tmp, std::process::id().to_string())?;
        let linked = fs::hard_link(&tmp, marker);
        let _ = fs::remove_file(&tmp);
        linked
    }

    /// Wait until another process's fetch of `key` lands (the piece) or its
    /// marker goes or goes stale (`None`: fetch it yourself).
    pub fn wait_for(&self, key: &StoreKey, deadline: Instant) -> Option<Vec<u8>> {
        let marker = self.root.join("inflight").join(key.name());
        let mut pause = Duration::from_millis(2);
        loop {
            if let Some(data) = self.load_quiet(key) {
                return Some(data);
            }
            if !marker.exists() || !marker_is_live(&marker) || Instant::now() >= deadline {
                // One last look: the writer renames before removing its marker.
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
            write_errors: c.write_errors.load(Ordering::Relaxed),
            saves_skipped: 0,
        }
    }
}

/// The data of a piece file, if every check passes.
fn read_verified(file: &mut File, key: &StoreKey) -> io::Result<Vec<u8>> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let on_disk = file.metadata()?.len();
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header)?;
    if &header[..8] != MAGIC {
        return Err(bad("not a piece file"));
    }
    let len = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if len > MAX_PIECE || on_disk != HEADER as u64 + len {
        return Err(bad("length does not match the file"));
    }
    let mut data = vec![0u8; len as usize];
    file.read_exact(&mut data)?;
    let digest: [u8; 20] = Sha1::digest(&data).into();
    if digest[..] != header[16..36] {
        return Err(bad("checksum mismatch"));
    }
    if let StoreKey::Torrent(want) = key {
        if &digest != want {
            return Err(bad("not the torrent's piece"));
        }
    }
    Ok(data)
}

fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A marker holds while its writer lives and it is younger than the timeout.
fn marker_is_live(marker: &Path) -> bool {
    let Ok(meta) = fs::metadata(marker) else {
        return false;
    };
    let young = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_none_or(|age| age < CLAIM_TIMEOUT);
    // Markers are created with their pid in place (`create_marker`).
    let pid = fs::read_to_string(marker)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    young && pid.is_some_and(process_alive)
}

#[cfg(test)]
mod tests;
