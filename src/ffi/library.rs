//! Library lifetime: configuration, init, fini, version.

use std::ffi::{c_char, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::types::{GTIO_Config, GTIO_Error};
use super::{ffi_guard, registry};
use crate::{runtime, Config, Error};

/// Fill `*cfg` with the defaults. NULL `cfg` does nothing. Thread-safe;
/// never blocks.
#[no_mangle]
pub extern "C" fn gtio_config_default(cfg: *mut GTIO_Config) {
    ffi_guard!("gtio_config_default", std::ptr::null_mut(), (), {
        // SAFETY: cfg is NULL or points to a GTIO_Config the caller owns.
        if let Some(out) = unsafe { cfg.as_mut() } {
            let d = Config::default();
            *out = GTIO_Config {
                cache_bytes: d.cache_bytes,
                block_size: d.block_size,
                workers: d.workers,
                max_conns_per_host: d.max_conns_per_host,
                readahead_max_bytes: d.readahead_max_bytes,
                retries: d.retries,
                timeout_ms: d.timeout_ms,
                ring_entries: d.ring_entries,
                poller_thread: i32::from(d.poller_thread),
                ca_bundle: std::ptr::null(),
            };
        }
        Ok(())
    })
}

/// Start the library with `cfg` (NULL: defaults). Optional: the first call
/// of any other function starts it with defaults. Call it before any other
/// gtio function; once running, it fails with `EBUSY` (call `gtio_lib_fini`
/// first). `cfg` and its strings are copied. Returns 0, or -1 with `*err`.
#[no_mangle]
pub extern "C" fn gtio_lib_init(cfg: *const GTIO_Config, err: *mut GTIO_Error) -> i32 {
    ffi_guard!("gtio_lib_init", err, -1, {
        super::async_io::install_dispatcher();
        // SAFETY: cfg is NULL or points to a GTIO_Config the caller owns.
        let config = match unsafe { cfg.as_ref() } {
            None => Config::default(),
            // SAFETY: as above; ca_bundle is NULL or a C string.
            Some(c) => unsafe { config_from_c(c)? },
        };
        runtime::init(config)?;
        Ok(0)
    })
}

/// # Safety
/// `c.ca_bundle` is NULL or a NUL-terminated string.
unsafe fn config_from_c(c: &GTIO_Config) -> Result<Config, Error> {
    let ca_bundle = if c.ca_bundle.is_null() {
        None
    } else {
        // SAFETY: per the function's contract.
        let bytes = unsafe { CStr::from_ptr(c.ca_bundle) }.to_bytes();
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    };
    Ok(Config {
        cache_bytes: c.cache_bytes,
        block_size: c.block_size,
        workers: c.workers,
        max_conns_per_host: c.max_conns_per_host,
        readahead_max_bytes: c.readahead_max_bytes,
        retries: c.retries,
        timeout_ms: c.timeout_ms,
        ring_entries: c.ring_entries,
        poller_thread: c.poller_thread != 0,
        ca_bundle,
        // Environment-only settings (GTIO_Config keeps its layout).
        http: crate::config::HttpBounds::default(),
    })
}

/// Stop the library: every open handle is closed (its pending reads
/// complete with `-ECANCELED`), queued downloads are cancelled and the
/// library's threads are joined. Handles opened before are `EBADF` after.
/// The next gtio call starts the library again. Blocks until downloads in
/// progress finish their current attempt. Must not be called from a
/// completion callback. Returns 0 (also when the library was not running).
#[no_mangle]
pub extern "C" fn gtio_lib_fini(err: *mut GTIO_Error) -> i32 {
    ffi_guard!("gtio_lib_fini", err, -1, {
        for ds in registry::drain_all() {
            ds.close();
        }
        runtime::fini();
        Ok(0)
    })
}

/// The library's version, e.g. "0.1.0": a static string, never freed.
#[no_mangle]
pub extern "C" fn gtio_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}
