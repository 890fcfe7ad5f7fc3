//! The optional poller thread: for programs that do not want to poll, a
//! library thread waits on every ring's eventfd (mio, edge-triggered) and runs
//! the completions' callbacks itself.
//!
//! Rings are created by whichever thread first submits; [`notify_new_ring`]
//! wakes the poller so it registers them. A newly registered ring is drained
//! at once, since completions may have been posted before it was watched.
//! The poller holds rings weakly: a ring whose thread exited and whose last
//! request finished goes away, and closing its eventfd removes it from epoll.
//!
//! Callbacks run with no library lock held, so a callback may submit reads
//! (sync or async) or even call `gtio_poll`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::{all_rings, Completion, Ring};
use crate::fork_safe::ForkSafe;
use crate::{Error, Result};

/// Runs one completion's callback (installed by the FFI layer).
pub type Dispatch = fn(Completion);

const WAKE: Token = Token(0);

/// The running poller's waker, for `notify_new_ring`.
/// Fresh (none) in a fork child (see `fork_safe`): the poller is the parent's.
static WAKER: ForkSafe<Mutex<Option<Arc<Waker>>>> = ForkSafe::new(|| Mutex::new(None));

pub struct Poller {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// True while a poller thread runs (it will drain every ring).
pub fn is_running() -> bool {
    WAKER
        .get()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
}

/// Tell the poller (if one runs) that a ring was created.
pub fn notify_new_ring() {
    if let Some(w) = WAKER
        .get()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        let _ = w.wake();
    }
}

impl Poller {
    pub fn start(dispatch: Dispatch) -> Result<Poller> {
        let poll = Poll::new().map_err(|e| Error::from(e).context("starting poller"))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKE)
                .map_err(|e| Error::from(e).context("starting poller"))?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("gtio-poller".into())
                .spawn(move || run(poll, stop, dispatch))
                .map_err(|e| Error::from(e).context("starting poller thread"))?
        };
        *WAKER.get().lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&waker));
        // Rings created before the poller started.
        let _ = waker.wake();
        Ok(Poller {
            waker,
            stop,
            thread: Some(thread),
        })
    }

    /// Stop and join the thread. Completions posted afterwards stay in their
    /// rings.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        let mut w = WAKER.get().lock().unwrap_or_else(|e| e.into_inner());
        if w.as_ref().is_some_and(|w| Arc::ptr_eq(w, &self.waker)) {
            *w = None;
        }
        drop(w);
        if let Some(t) = self.thread.take() {
            // From inside a callback (the poller thread itself) we cannot
            // join ourselves; the stop flag ends the loop after the callback.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(mut poll: Poll, stop: Arc<AtomicBool>, dispatch: Dispatch) {
    let mut events = Events::with_capacity(256);
    let mut watched: HashMap<u64, Weak<Ring>> = HashMap::new();
    while !stop.load(Ordering::Acquire) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let mut rescan = false;
        let mut ready = Vec::new();
        for ev in events.iter() {
            if ev.token() == WAKE {
                rescan = true;
            } else if let Some(ring) = watched.get(&(ev.token().0 as u64)).and_then(Weak::upgrade) {
                ready.push(ring);
            }
        }
        if rescan {
            watched.retain(|_, w| w.strong_count() > 0);
            for ring in all_rings() {
                if watched.contains_key(&ring.id()) {
                    continue;
                }
                let fd = ring.fd();
                if poll
                    .registry()
                    .register(
                        &mut SourceFd(&fd),
                        Token(ring.id() as usize),
                        Interest::READABLE,
                    )
                    .is_ok()
                {
                    watched.insert(ring.id(), Arc::downgrade(&ring));
                    ready.push(ring);
                }
            }
        }
        let drained = !ready.is_empty();
        for ring in ready {
            loop {
                let batch = ring.drain(256);
                if batch.is_empty() {
                    break;
                }
                for c in batch {
                    dispatch(c);
                }
            }
        }
        if drained {
            // Rings of exited threads are kept until drained; let go of
            // the ones done now.
            super::prune();
        }
    }
}
