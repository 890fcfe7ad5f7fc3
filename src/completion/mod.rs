//! Per-thread completion rings, after the task-thread model.
//!
//! Each thread that submits an asynchronous read gets its own bounded
//! [`Ring`] and eventfd, created on its first submission. A request's
//! completion goes to the ring of the thread that submitted it and to no
//! other, so a thread never sees another thread's completions.
//!
//! A slot is reserved when a request is submitted and released when its
//! completion is drained. A full ring therefore refuses submissions
//! (`EAGAIN`, backpressure) instead of ever dropping a completion.
//!
//! The eventfd is a hint, as with io_uring: it becomes readable when
//! completions may be waiting, one wakeup can stand for many completions,
//! and a wakeup can find the ring already drained. Drain until empty.
//!
//! A ring outlives its thread while requests still point at it: a thread
//! that exits with reads in flight leaks nothing and crashes nothing. The
//! ring list holds every ring strongly, so while the poller thread runs, a
//! ring whose thread exited stays until the poller has run its last
//! completion; without a poller, nobody can take those completions, and the
//! ring is dropped with them once no request points at it.

pub mod poller;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::fork_safe::ForkSafe;
use crate::{Error, Result};

/// One finished request, as small and flat as io_uring's CQE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The submitter's tag (the `gtio_usercb_t *` in the C API).
    pub user_data: u64,
    /// Bytes read, or `-errno`.
    pub result: i64,
}

pub struct Ring {
    id: u64,
    pid: u32,
    eventfd: File,
    capacity: usize,
    state: Mutex<RingState>,
}

struct RingState {
    queue: VecDeque<Completion>,
    /// Slots taken: requests in flight plus completions not yet drained.
    reserved: usize,
}

static NEXT_RING_ID: AtomicU64 = AtomicU64::new(1);

/// Every live ring, for the poller thread. Strong references: a ring must
/// not vanish with undrained completions while a poller could run them
/// (see [`prune`]).
/// Fresh in a fork child (see `fork_safe`), which leaks the parent's rings.
static RINGS: ForkSafe<Mutex<Vec<Arc<Ring>>>> = ForkSafe::new(|| Mutex::new(Vec::new()));

impl Ring {
    pub fn new(capacity: usize) -> Result<Arc<Ring>> {
        // SAFETY: eventfd takes no pointers; a negative return is an error.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::from(std::io::Error::last_os_error()).context("eventfd"));
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns; File
        // gives us read/write on it without raw pointers.
        let eventfd = unsafe { File::from_raw_fd(fd) };
        let ring = Arc::new(Ring {
            id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
            pid: crate::fork_safe::process_id(),
            eventfd,
            capacity: capacity.max(1),
            state: Mutex::new(RingState {
                queue: VecDeque::new(),
                reserved: 0,
            }),
        });
        prune();
        RINGS
            .get()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&ring));
        poller::notify_new_ring();
        Ok(ring)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a slot for a request about to be submitted.
    pub fn reserve(&self) -> Result<()> {
        let mut st = self.lock();
        if st.reserved >= self.capacity {
            return Err(Error::new(
                libc::EAGAIN,
                format!(
                    "completion ring full ({} entries): drain it with gtio_poll, \
                     or raise ring_entries",
                    self.capacity
                ),
            ));
        }
        st.reserved += 1;
        Ok(())
    }

    /// Give back a slot whose request was never submitted.
    pub fn unreserve(&self) {
        let mut st = self.lock();
        st.reserved = st.reserved.saturating_sub(1);
    }

    /// Post a completion into a reserved slot and signal the eventfd.
    ///
    /// Only the completion that makes the queue non-empty writes the
    /// eventfd: while completions wait, the fd is readable already, or a
    /// drain that cleared it is about to take them (and signals again if
    /// it leaves any). At 16 reads in flight that saves a syscall on most
    /// completions.
    pub fn post(&self, c: Completion) {
        let was_empty = {
            let mut st = self.lock();
            st.queue.push_back(c);
            st.queue.len() == 1
        };
        if was_empty {
            self.signal();
        }
    }

    fn signal(&self) {
        // EAGAIN (counter saturated) still leaves the fd readable, which is
        // all a hint needs.
        let _ = (&self.eventfd).write(&1u64.to_ne_bytes());
    }

    /// Reset the eventfd's counter (before draining, so that a completion
    /// posted during the drain signals again).
    fn clear_signal(&self) {
        // EAGAIN means it was already clear.
        let _ = (&self.eventfd).read(&mut [0u8; 8]);
    }

    /// Take up to `max` completions, oldest first, releasing their slots.
    pub fn drain(&self, max: usize) -> Vec<Completion> {
        self.clear_signal();
        let mut st = self.lock();
        let n = max.min(st.queue.len());
        let out: Vec<Completion> = st.queue.drain(..n).collect();
        st.reserved -= out.len();
        let more = !st.queue.is_empty();
        drop(st);
        if more {
            // Left some behind: keep the hint up.
            self.signal();
        }
        out
    }

    /// Completions waiting to be drained.
    pub fn ready(&self) -> usize {
        self.lock().queue.len()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Ring>>> = const { RefCell::new(None) };
}

/// The calling thread's ring, created on first use (or anew in a child
/// process after `fork()`: the parent's ring and eventfd are not ours).
pub fn current(capacity: usize) -> Result<Arc<Ring>> {
    CURRENT.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some(ring) = slot.as_ref() {
            if ring.pid == crate::fork_safe::process_id() {
                return Ok(Arc::clone(ring));
            }
            // A fork: the old ring belongs to the parent. Forget it without
            // running its destructor, which would close a shared eventfd.
            if let Some(old) = slot.take() {
                std::mem::forget(old);
            }
        }
        let ring = Ring::new(capacity)?;
        *slot = Some(Arc::clone(&ring));
        Ok(ring)
    })
}

/// The calling thread's ring if it has one (never creates).
pub fn current_if_any() -> Option<Arc<Ring>> {
    CURRENT
        .try_with(|cell| {
            cell.borrow()
                .as_ref()
                .filter(|r| r.pid == crate::fork_safe::process_id())
                .cloned()
        })
        .ok()
        .flatten()
}

/// All live rings (for the poller).
pub fn all_rings() -> Vec<Arc<Ring>> {
    prune();
    RINGS
        .get()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|r| r.pid == crate::fork_safe::process_id())
        .cloned()
        .collect()
}

/// Drop the rings that nobody can use any more: held only by the list (their
/// thread exited and no request points at them) and either drained or, with
/// no poller running, never to be drained. Rings inherited through fork()
/// are forgotten, not dropped (their eventfd is the parent's).
pub fn prune() {
    let keep_undrained = poller::is_running();
    let pid = crate::fork_safe::process_id();
    let mut rings = RINGS.get().lock().unwrap_or_else(|e| e.into_inner());
    for ring in std::mem::take(&mut *rings) {
        if ring.pid != pid {
            std::mem::forget(ring);
        } else if Arc::strong_count(&ring) > 1 || (keep_undrained && ring.ready() > 0) {
            // Under the list's lock a count of 1 cannot grow: only the list
            // hands out new references.
            rings.push(ring);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_refuses_and_never_drops() {
        let ring = Ring::new(2).unwrap();
        ring.reserve().unwrap();
        ring.reserve().unwrap();
        assert_eq!(ring.reserve().unwrap_err().errno(), libc::EAGAIN);
        ring.post(Completion {
            user_data: 1,
            result: 5,
        });
        ring.post(Completion {
            user_data: 2,
            result: -4,
        });
        assert_eq!(
            ring.drain(1),
            vec![Completion {
                user_data: 1,
                result: 5
            }]
        );
        ring.reserve().unwrap();
        assert_eq!(
            ring.drain(10),
            vec![Completion {
                user_data: 2,
                result: -4
            }]
        );
        assert!(ring.drain(10).is_empty());
    }

    #[test]
    fn eventfd_signals_until_drained() {
        let ring = Ring::new(8).unwrap();
        let readable = |r: &Ring| {
            let mut p = libc::pollfd {
                fd: r.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout.
            unsafe { libc::poll(&mut p, 1, 0) == 1 }
        };
        assert!(!readable(&ring));
        ring.reserve().unwrap();
        ring.reserve().unwrap();
        ring.post(Completion {
            user_data: 1,
            result: 0,
        });
        ring.post(Completion {
            user_data: 2,
            result: 0,
        });
        assert!(readable(&ring));
        assert_eq!(ring.drain(1).len(), 1);
        assert!(readable(&ring), "one left: still signalled");
        assert_eq!(ring.drain(1).len(), 1);
        assert!(!readable(&ring));
    }

    #[test]
    fn no_completion_waits_without_a_signal() {
        // Posting signals only on the empty -> non-empty edge; a drain
        // racing posts must never leave completions behind an unreadable fd.
        const N: usize = 20_000;
        let ring = Ring::new(N).unwrap();
        for _ in 0..N {
            ring.reserve().unwrap();
        }
        let poster = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                for i in 0..N {
                    ring.post(Completion {
                        user_data: i as u64,
                        result: 0,
                    });
                }
            })
        };
        let mut got = 0;
        while got < N {
            let mut p = libc::pollfd {
                fd: ring.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, bounded timeout.
            let n = unsafe { libc::poll(&mut p, 1, 5_000) };
            assert_eq!(n, 1, "{} completions queued, fd not readable", ring.ready());
            got += ring.drain(7).len();
        }
        poster.join().unwrap();
        assert!(ring.drain(10).is_empty());
    }

    #[test]
    fn each_thread_has_its_own_ring() {
        let a = current(4).unwrap();
        let b = std::thread::spawn(|| current(4).unwrap().id())
            .join()
            .unwrap();
        assert_ne!(a.id(), b);
        assert_eq!(current(4).unwrap().id(), a.id());
    }
}
