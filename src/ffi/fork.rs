//! Fork detection for the C API: a `pthread_atfork` child handler tells the
//! runtime that the pid changed, so the hot path can compare a cached pid
//! instead of making a `getpid` system call on every read.

use std::sync::Once;

use crate::runtime;

extern "C" fn in_child_after_fork() {
    runtime::after_fork_in_child();
}

/// Install the handler once per process (the child inherits it).
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only does an atomic store.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child_after_fork)) };
        if rc == 0 {
            runtime::track_forks();
        }
    });
}
