//! "I am fetching this piece": byte-range locks on one lock file.
//!
//! Each piece has one byte of `<store>/inflight.lock` (at an offset taken
//! from its digest); a process fetching the piece holds an open-file-
//! description write lock (`F_OFD_SETLK`) on that byte. Such a lock costs
//! one `fcntl`, where a marker file per piece cost an inode created and
//! deleted (which on ext4 was most of a cold read's added time), and the
//! kernel drops it when its holder dies, so a crashed writer never blocks
//! anyone: no pid to check, no stale marker to break. Locks of one open
//! file description never conflict with each other, so each `DiskStore`
//! opens the file once: the engine's own workers are kept apart by its
//! in-flight table, other stores (processes) by the locks.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// The lock file of one store.
pub struct Claims {
    file: Option<Arc<File>>,
}

/// Held while this process fetches a piece it claimed; dropping it
/// releases the piece for others.
pub struct ClaimGuard {
    lock: Option<(Arc<File>, i64)>,
}

impl ClaimGuard {
    /// A claim that coordinates with no one (the lock file is unusable).
    pub fn unlocked() -> ClaimGuard {
        ClaimGuard { lock: None }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some((file, at)) = &self.lock {
            let _ = lock(file, at, libc::F_UNLCK as i16, libc::F_OFD_SETLK);
        }
    }
}

/// What trying to claim a piece found.
pub enum Try {
    Mine(ClaimGuard),
    Theirs,
}

/// The byte of `digest`: 62 bits of it (a lock offset is a signed
/// `off_t`); two pieces sharing one only make one wait for the other.
pub fn offset(digest: &[u8; 20]) -> i64 {
    (u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) >> 2) as i64
}

impl Claims {
    /// Open (creating) the lock file; a file system without OFD locks
    /// leaves claims uncoordinated (each process fetches what it lacks).
    pub fn open(path: &Path) -> Claims {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ok()
            .filter(|f| lock(f, &0, libc::F_WRLCK as i16, libc::F_OFD_GETLK).is_ok());
        Claims {
            file: file.map(Arc::new),
        }
    }

    pub fn try_claim(&self, at: i64) -> Try {
        let Some(file) = &self.file else {
            return Try::Mine(ClaimGuard::unlocked());
        };
        match lock(file, &at, libc::F_WRLCK as i16, libc::F_OFD_SETLK) {
            Ok(_) => Try::Mine(ClaimGuard {
                lock: Some((Arc::clone(file), at)),
            }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Try::Theirs,
            Err(_) => Try::Mine(ClaimGuard::unlocked()),
        }
    }

    /// Whether another store (process) holds the claim at `at`.
    pub fn held_by_other(&self, at: i64) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        lock(file, &at, libc::F_WRLCK as i16, libc::F_OFD_GETLK)
            .is_ok_and(|l_type| l_type != libc::F_UNLCK as i16)
    }
}

/// One `fcntl` lock command on the byte at `at`; returns the `l_type` the
/// kernel left (for `F_OFD_GETLK`: `F_UNLCK` when nothing conflicts).
fn lock(file: &File, at: &i64, l_type: i16, cmd: libc::c_int) -> io::Result<i16> {
    // SAFETY: a zeroed `flock` is a valid value of the plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = *at;
    fl.l_len = 1;
    // l_pid must be 0 for the OFD commands (it is: zeroed).
    // SAFETY: fcntl with a lock command reads and writes the `flock` we
    // pass, which lives for the call; the descriptor is ours.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fl.l_type)
    }
}
