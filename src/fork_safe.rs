//! Process-wide state that a `fork()` child gets fresh instead of inherited.
//!
//! A child process has only the thread that called `fork()`. Any lock that
//! another parent thread held at that moment stays locked in the child for
//! ever, so a child that took the inherited handle registry, identity table,
//! runtime slot, ring list or buffer pool could hang on it (4–15 % of
//! children did, with 8 busy parent threads). Taking every lock in a
//! `pthread_atfork` prepare handler would make `fork()` wait for them, and
//! their order would have to match every nesting in the code.
//!
//! Instead each such global is a [`ForkSafe`]: a lazily created instance
//! behind an atomic pointer. A `pthread_atfork` child handler, installed with
//! the first instance, resets every pointer, so the child's first use creates
//! a new, unlocked instance and never looks at the inherited one. What the
//! inherited instances held is the parent's (handles, rings whose eventfds
//! and threads are the parent's), so the child leaks it rather than drop it,
//! which would close the parent's descriptors or wait on its threads. The
//! handler only does atomic loads and stores: async-signal-safe, as a
//! handler that runs in a fork child must be.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

/// A global created on first use and recreated, empty, in a fork child.
pub struct ForkSafe<T: 'static> {
    ptr: AtomicPtr<T>,
    make: fn() -> T,
    registered: AtomicBool,
}

/// One registered global in the child handler's list (never freed: there is
/// one per `static`).
struct Node {
    reset: &'static (dyn Reset + Sync),
    next: *mut Node,
}

trait Reset {
    fn reset(&self);
}

/// The list of every registered global: a lock-free stack, so that the child
/// handler can walk it without a lock.
static HEAD: AtomicPtr<Node> = AtomicPtr::new(std::ptr::null_mut());
static HOOK_INSTALLED: AtomicBool = AtomicBool::new(false);

impl<T: Send + Sync + 'static> ForkSafe<T> {
    pub const fn new(make: fn() -> T) -> ForkSafe<T> {
        ForkSafe {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
            make,
            registered: AtomicBool::new(false),
        }
    }

    /// This process's instance, created on first use.
    pub fn get(&'static self) -> &'static T {
        let p = self.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: a published pointer comes from Box::into_raw below and
            // is never freed (reset leaks it), so it lives for 'static.
            return unsafe { &*p };
        }
        self.create()
    }

    #[cold]
    fn create(&'static self) -> &'static T {
        if !self.registered.swap(true, Ordering::AcqRel) {
            register(self);
        }
        let fresh = Box::into_raw(Box::new((self.make)()));
        match self.ptr.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: just published; never freed.
            Ok(_) => unsafe { &*fresh },
            Err(current) => {
                // SAFETY: `fresh` was never published; we own it.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: as in `get`.
                unsafe { &*current }
            }
        }
    }
}

impl<T: Send + Sync + 'static> Reset for ForkSafe<T> {
    fn reset(&self) {
        // The old instance is leaked on purpose (see the module comment).
        self.ptr.store(std::ptr::null_mut(), Ordering::Release);
    }
}

fn register<T: Send + Sync + 'static>(global: &'static ForkSafe<T>) {
    install_hook();
    let node = Box::into_raw(Box::new(Node {
        reset: global,
        next: std::ptr::null_mut(),
    }));
    let mut head = HEAD.load(Ordering::Acquire);
    loop {
        // SAFETY: `node` is ours until the exchange publishes it.
        unsafe { (*node).next = head };
        match HEAD.compare_exchange_weak(head, node, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

fn install_hook() {
    if HOOK_INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: registers a handler that only does atomic loads and stores.
    // A failure (ENOMEM) leaves the old behaviour: nothing to report to.
    unsafe { libc::pthread_atfork(None, None, Some(in_child_after_fork)) };
}

extern "C" fn in_child_after_fork() {
    let mut node = HEAD.load(Ordering::Acquire);
    while !node.is_null() {
        // SAFETY: nodes are published complete and never freed.
        let n = unsafe { &*node };
        n.reset.reset();
        node = n.next;
    }
}

/// The pid, cached: `getpid` is a system call (glibc no longer caches it),
/// and fork detection asks on every read. 0 = not known.
static PID: AtomicU32 = AtomicU32::new(0);
/// Set once a fork hook guarantees that [`after_fork_in_child`] runs in
/// every child; until then the pid is asked for each time.
static PID_TRACKED: AtomicBool = AtomicBool::new(false);

/// This process's id, cheaply (see [`track_forks`]).
pub fn process_id() -> u32 {
    if !PID_TRACKED.load(Ordering::Acquire) {
        return std::process::id();
    }
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// Declare that [`after_fork_in_child`] will run in every fork child (the
/// C API installs a `pthread_atfork` handler), enabling the pid cache.
pub fn track_forks() {
    PID_TRACKED.store(true, Ordering::Release);
}

/// Run in a fork child, before anything else: forget the parent's pid.
/// Async-signal-safe (one atomic store).
pub fn after_fork_in_child() {
    PID.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static COUNTER: ForkSafe<Mutex<u32>> = ForkSafe::new(|| Mutex::new(7));

    #[test]
    fn one_instance_per_process_and_fresh_after_reset() {
        *COUNTER.get().lock().unwrap() += 1;
        assert_eq!(*COUNTER.get().lock().unwrap(), 8);
        let held = COUNTER.get().lock().unwrap();
        // What the child handler does to every registered global (calling
        // the handler itself would reset the globals other tests use).
        Reset::reset(&COUNTER);
        assert_eq!(*COUNTER.get().lock().unwrap(), 7);
        drop(held);
    }
}
