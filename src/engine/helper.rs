//! A second thread for a reader's direct store hits (`handle::stored`,
//! docs/store.md "Speed").
//!
//! Most of a store hit is the kernel's copy out of the page cache, and one
//! thread does it slower than two. A scoped thread per read (tried first)
//! made the reader wait for a thread the scheduler had not run yet: on a
//! loaded 2-core machine that wait, once per read, made a 256 MiB pass 2-3
//! times slower than the engine's workers. So the engine keeps one helper
//! thread, and a read *offers* it a share of its pieces: both threads take
//! pieces from one counter, and the reader, once none is left to take,
//! waits only for the piece the helper is loading, if any. A helper that
//! never got the CPU costs the read nothing: the reader took every piece.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One read's pieces, shared by the reader and the helper.
pub struct Share {
    state: Mutex<State>,
    idle: Condvar,
    /// Load piece `i` of the read: true when served.
    load: Box<dyn Fn(usize) -> bool + Send + Sync>,
}

struct State {
    next: usize,
    len: usize,
    /// Pieces being loaded by the helper now.
    busy: usize,
    served: Vec<bool>,
    /// No more pieces are taken (all taken, one failed, or the read ended).
    closed: bool,
}

impl Share {
    pub fn new(len: usize, load: Box<dyn Fn(usize) -> bool + Send + Sync>) -> Arc<Share> {
        Arc::new(Share {
            state: Mutex::new(State {
                next: 0,
                len,
                busy: 0,
                served: vec![false; len],
                closed: false,
            }),
            idle: Condvar::new(),
            load,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take and load pieces until none is left; `helper` marks the loads
    /// the reader must wait for.
    fn work(&self, helper: bool) {
        loop {
            let i = {
                let mut s = self.lock();
                if s.closed || s.next >= s.len {
                    s.closed = true;
                    return;
                }
                s.next += 1;
                if helper {
                    s.busy += 1;
                }
                s.next - 1
            };
            // Decremented even if the load panics, so the reader never
            // waits for a load that ended.
            let guard = Busy {
                share: self,
                helper,
            };
            let ok = (self.load)(i);
            let mut s = self.lock();
            s.served[i] = ok;
            // A store that lacks one piece most likely lacks the next ones.
            s.closed |= !ok;
            drop(s);
            drop(guard);
        }
    }

    /// The reader's part: load pieces until none is left, then wait for
    /// the helper's piece in progress. Which pieces were served.
    pub fn run(&self) -> Vec<bool> {
        // Waits in its drop, so that even a load that panics on this
        // thread returns (unwinds) only once the helper's load has ended:
        // the reader's buffer outlives every write into it.
        let idle = WaitIdle(self);
        self.work(false);
        drop(idle);
        std::mem::take(&mut self.lock().served)
    }
}

/// Closes a share and waits until no helper load is in progress.
struct WaitIdle<'a>(&'a Share);

impl Drop for WaitIdle<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.closed = true;
        while s.busy > 0 {
            // A piece's load is one local file read; woken when it ends.
            s = self
                .0
                .idle
                .wait_timeout(s, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

struct Busy<'a> {
    share: &'a Share,
    helper: bool,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.helper {
            let mut s = self.share.lock();
            s.busy -= 1;
            drop(s);
            self.share.idle.notify_all();
        }
    }
}

/// The helper thread and its queue of offered reads.
pub struct Helper {
    tx: Mutex<Option<crossbeam_channel::Sender<Arc<Share>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Helper {
    /// Start the thread; `None` when none can be had (reads then load
    /// every piece themselves).
    pub fn start() -> Option<Helper> {
        let (tx, rx) = crossbeam_channel::unbounded::<Arc<Share>>();
        let thread = std::thread::Builder::new()
            .name("gtio-store-read".into())
            .spawn(move || {
                while let Ok(share) = rx.recv() {
                    share.work(true);
                }
            })
            .ok()?;
        Some(Helper {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Offer the helper a share of a read's pieces (it may take none).
    pub fn offer(&self, share: &Arc<Share>) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(Arc::clone(share));
        }
    }

    /// Stop the thread (at shutdown).
    pub fn finish(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_reader_whose_helper_never_runs_loads_every_piece_itself() {
        let loads = Arc::new(AtomicUsize::new(0));
        let l = Arc::clone(&loads);
        let share = Share::new(
            16,
            Box::new(move |_| {
                l.fetch_add(1, Ordering::Relaxed);
                true
            }),
        );
        // Offered to no thread at all.
        assert_eq!(share.run(), vec![true; 16]);
        assert_eq!(loads.load(Ordering::Relaxed), 16);
        // A helper that comes late finds nothing left to take.
        share.work(true);
        assert_eq!(loads.load(Ordering::Relaxed), 16);
    }

    #[test]
    fn a_failed_piece_ends_the_taking() {
        let helper = Helper::start().expect("a thread");
        let share = Share::new(64, Box::new(|i| i != 40));
        helper.offer(&share);
        let served = share.run();
        assert!(served[..40].iter().all(|&ok| ok));
        assert!(!served[40], "the failed piece is not served");
        // What was not taken is left for the engine's path.
        assert!(served[41..].iter().any(|&ok| !ok), "taking went on");
        helper.finish();
    }
}
