//! Live handles, by token.
//!
//! A `GTIO *` given to C is a number from a counter, never an address, and
//! is never reused: looking it up is the only thing the library does with
//! it. A closed handle, a handle from before `gtio_lib_fini`, a parent's
//! handle in a fork child, or a pointer that never came from gtio all miss
//! the registry and give `EBADF`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::types::{GTIO_Dir, GTIO_Reader, GTIO};
use crate::dataset::FileEntry;
use crate::fork_safe::ForkSafe;
use crate::{Dataset, Error, Reader, Result};

/// Tokens start high and step by 16 so they look like aligned pointers to
/// tools that check, and never collide with small integers or NULL.
const TOKEN_BASE: usize = 0x6710_0000;
const TOKEN_STEP: usize = 16;

static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(0);

fn next_token() -> usize {
    TOKEN_BASE + NEXT_TOKEN.fetch_add(1, Ordering::Relaxed) * TOKEN_STEP
}

/// Tokens are our own numbers, not attacker input: a multiply is hash
/// enough (SipHash was a tenth of a cache hit's cost).
#[derive(Default)]
struct TokenHasher(u64);

impl std::hash::Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Table<T> = RwLock<HashMap<usize, (u32, T), std::hash::BuildHasherDefault<TokenHasher>>>;

// Fresh in a fork child (see `fork_safe`): a parent thread opening or
// closing a handle holds these at any moment. The child's tables start
// empty, which changes no answer: a parent's handle is EBADF in a child.
static DATASETS: ForkSafe<Table<Arc<Dataset>>> = ForkSafe::new(|| RwLock::new(HashMap::default()));
static DIRS: ForkSafe<Table<Arc<Mutex<DirCursor>>>> =
    ForkSafe::new(|| RwLock::new(HashMap::default()));
static READERS: ForkSafe<Table<Arc<Reader>>> = ForkSafe::new(|| RwLock::new(HashMap::default()));

fn bad_reader() -> Error {
    Error::new(
        libc::EBADF,
        "bad reader handle: closed, or not from gtio_reader_open",
    )
}

pub fn insert_reader(r: Reader) -> *mut GTIO_Reader {
    let token = next_token();
    READERS
        .get()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token, (crate::runtime::process_id(), Arc::new(r)));
    std::ptr::without_provenance_mut(token)
}

pub fn reader(r: *mut GTIO_Reader) -> Result<Arc<Reader>> {
    let table = READERS.get().read().unwrap_or_else(|e| e.into_inner());
    match table.get(&r.addr()) {
        Some((pid, r)) if *pid == crate::runtime::process_id() => Ok(Arc::clone(r)),
        _ => Err(bad_reader()),
    }
}

pub fn remove_reader(r: *mut GTIO_Reader) -> Result<()> {
    let mut table = READERS.get().write().unwrap_or_else(|e| e.into_inner());
    match table.remove(&r.addr()) {
        Some((pid, _)) if pid == crate::runtime::process_id() => Ok(()),
        _ => Err(bad_reader()),
    }
}

/// What `gtio_readdir` walks.
pub struct DirCursor {
    pub files: Vec<FileEntry>,
    pub next: usize,
}

fn bad_dir() -> Error {
    Error::new(
        libc::EBADF,
        "bad directory handle: closed, or not from gtio_opendir",
    )
}

pub fn insert_dataset(ds: Dataset) -> *mut GTIO {
    let token = next_token();
    DATASETS
        .get()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token, (crate::runtime::process_id(), Arc::new(ds)));
    std::ptr::without_provenance_mut(token)
}

pub fn dataset(h: *mut GTIO) -> Result<Arc<Dataset>> {
    let table = DATASETS.get().read().unwrap_or_else(|e| e.into_inner());
    match table.get(&h.addr()) {
        Some((pid, ds)) if *pid == crate::runtime::process_id() => Ok(Arc::clone(ds)),
        _ => Err(Error::bad_handle()),
    }
}

pub fn remove_dataset(h: *mut GTIO) -> Result<Arc<Dataset>> {
    let mut table = DATASETS.get().write().unwrap_or_else(|e| e.into_inner());
    match table.remove(&h.addr()) {
        Some((pid, ds)) if pid == crate::runtime::process_id() => Ok(ds),
        // A parent's handle in a fork child: not ours to close.
        Some(_) | None => Err(Error::bad_handle()),
    }
}

pub fn insert_dir(cursor: DirCursor) -> *mut GTIO_Dir {
    let token = next_token();
    DIRS.get()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            token,
            (crate::runtime::process_id(), Arc::new(Mutex::new(cursor))),
        );
    std::ptr::without_provenance_mut(token)
}

pub fn dir(d: *mut GTIO_Dir) -> Result<Arc<Mutex<DirCursor>>> {
    let table = DIRS.get().read().unwrap_or_else(|e| e.into_inner());
    match table.get(&d.addr()) {
        Some((pid, c)) if *pid == crate::runtime::process_id() => Ok(Arc::clone(c)),
        _ => Err(bad_dir()),
    }
}

pub fn remove_dir(d: *mut GTIO_Dir) -> Result<()> {
    let mut table = DIRS.get().write().unwrap_or_else(|e| e.into_inner());
    match table.remove(&d.addr()) {
        Some((pid, _)) if pid == crate::runtime::process_id() => Ok(()),
        _ => Err(bad_dir()),
    }
}

/// Take every handle of this process out of the registry (`gtio_lib_fini`).
pub fn drain_all() -> Vec<Arc<Dataset>> {
    DIRS.get()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    READERS
        .get()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let mut table = DATASETS.get().write().unwrap_or_else(|e| e.into_inner());
    let pid = crate::runtime::process_id();
    let mine: Vec<usize> = table
        .iter()
        .filter(|(_, (p, _))| *p == pid)
        .map(|(k, _)| *k)
        .collect();
    mine.into_iter()
        .filter_map(|k| table.remove(&k).map(|(_, ds)| ds))
        .collect()
}
