//! The C ABI. This is the only module with `extern "C"`, `#[no_mangle]` and
//! raw pointers; everything below it speaks Rust types and `Result`.
//!
//! Every export follows one pattern:
//!
//! - its body runs inside [`guard`] (through the `ffi_guard!` macro), which
//!   catches panics and turns `Err` into the function's failure value (`-1`
//!   or NULL) plus a filled `GTIO_Error` when `err` is not NULL — no panic or
//!   unwind ever crosses the ABI;
//! - every pointer is checked before use, in one line, with `non_null!`;
//! - handles are tokens looked up in a registry ([`registry`]), never
//!   dereferenced, so a closed or foreign handle is `EBADF`, not undefined
//!   behaviour.
//!
//! On success `err` is left untouched, like `errno`.
//!
//! The exports take raw pointers without being `unsafe fn`: `unsafe` on an
//! `extern "C"` function means nothing to its C callers, and each export's
//! doc comment states the pointer contract it relies on instead.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod registry;
pub mod types;

mod async_io;
mod at_exit;
mod fork;
mod io;
mod library;
mod listing;
mod reader;
mod stats;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::Error;
pub use types::*;

// The exports, reachable from Rust too (integration tests call the C ABI
// directly; a `pub extern "C" fn` in a private module is not nameable).
pub use async_io::{gtio_cancel, gtio_poll, gtio_poll_fd, gtio_pread_async};
pub use io::{
    gtio_close, gtio_lseek, gtio_open_uri, gtio_pread, gtio_prefetch, gtio_read, gtio_size,
};
pub use library::{
    gtio_config_default, gtio_lib_fini, gtio_lib_init, gtio_set_setting, gtio_version,
};
pub use listing::{
    gtio_closedir, gtio_free_file_list, gtio_get_file_list, gtio_open_gto, gtio_opendir,
    gtio_readdir,
};
pub use reader::{gtio_reader_close, gtio_reader_lseek, gtio_reader_open, gtio_reader_read};
pub use stats::gtio_stats_json;

/// Run an export's body: catch panics, report errors through `err`.
pub(crate) fn guard<T>(
    name: &'static str,
    err: *mut GTIO_Error,
    fallback: T,
    body: impl FnOnce() -> Result<T, Error>,
) -> T {
    let result = catch_unwind(AssertUnwindSafe(|| {
        #[cfg(feature = "test-hooks")]
        test_hooks::maybe_panic(name);
        body()
    }));
    let error = match result {
        Ok(Ok(v)) => return v,
        Ok(Err(e)) => e,
        // The payload is not shown: a message is for users, and a panic's
        // text is not written for them.
        Err(_) => Error::io(format!(
            "internal error in {name} (a bug in gtio: please report it); \
             the library is still usable"
        )),
    };
    // SAFETY: `err` is NULL or points to a GTIO_Error the caller owns.
    unsafe { types::fill_error(err, &error) };
    fallback
}

/// `ffi_guard!("name", err, fallback, { body returning Result })`.
macro_rules! ffi_guard {
    ($name:literal, $err:expr, $fallback:expr, $body:block) => {
        $crate::ffi::guard($name, $err, $fallback, || $body)
    };
}
pub(crate) use ffi_guard;

/// Early-return `EINVAL` when a pointer argument is NULL.
macro_rules! non_null {
    ($ptr:expr, $what:literal) => {
        if $ptr.is_null() {
            return Err($crate::Error::invalid(concat!($what, " is NULL")));
        }
    };
}
pub(crate) use non_null;

/// A test hook, only in builds with the `test-hooks` feature (`make test`
/// enables it; released libraries do not have it):
/// `GTIO_TEST_PANIC_IN=<export name>` makes that export panic inside its
/// guard, so tests can prove that panics never cross the ABI.
#[cfg(feature = "test-hooks")]
mod test_hooks {
    use std::sync::OnceLock;

    static PANIC_IN: OnceLock<Option<String>> = OnceLock::new();

    pub fn maybe_panic(name: &str) {
        let target = PANIC_IN.get_or_init(|| std::env::var("GTIO_TEST_PANIC_IN").ok());
        if target.as_deref() == Some(name) {
            panic!("GTIO_TEST_PANIC_IN={name}");
        }
    }
}
