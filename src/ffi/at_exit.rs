//! Process exit for the C API: a program (or Python) that exits without
//! `gtio_lib_fini` still keeps the pieces it fetched in the persistent store.
//! The store's writer commits pieces off the read path (docs/store.md), so at
//! `exit()` some may still be queued; an `atexit` handler gives the writer a
//! short, bounded moment to commit them. It never tears the runtime down
//! (other threads may still be inside gtio calls) and does nothing in a forked
//! child or when the runtime's lock is held.

use std::sync::Once;
use std::time::Duration;

use crate::runtime;

/// How long exit may wait for queued store writes.
const SETTLE_AT_EXIT: Duration = Duration::from_secs(3);

extern "C" fn settle_store() {
    // A panic must not unwind into libc's exit path.
    let _ = std::panic::catch_unwind(|| runtime::settle_store_at_exit(SETTLE_AT_EXIT));
}

/// Register the handler once per process.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a function that takes no arguments and catches
        // every panic; a failed registration only loses this convenience.
        unsafe { libc::atexit(settle_store) };
    });
}
