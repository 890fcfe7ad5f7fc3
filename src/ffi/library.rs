//! Library lifetime: configuration, init, fini, version.

use std::ffi::{c_char, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::io::str_arg;
use super::types::{GTIO_Config, GTIO_Error};
use super::{ffi_guard, non_null, registry};
use crate::{runtime, settings, Config, Error};

/// Fill `*cfg` with the defaults, as the environment (`GTIO_CACHE_BYTES`,
/// ...) and `gtio_set_setting` adjust them; `ca_bundle` is left NULL (the
/// environment's `GTIO_CA_BUNDLE` still applies unless the caller sets it).
/// NULL `cfg` does nothing. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn gtio_config_default(cfg: *mut GTIO_Config) {
    ffi_guard!("gtio_config_default", std::ptr::null_mut(), (), {
        // SAFETY: cfg is NULL or points to a GTIO_Config the caller owns.
        if let Some(out) = unsafe { cfg.as_mut() } {
            // The defaults as the environment and gtio_set_setting adjust
            // them; a bad environment leaves the plain defaults here (and
            // gtio_lib_init reports it).
            let d = settings::resolved().map(|(c, _)| c).unwrap_or_default();
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

/// Start the library with `cfg` (NULL: defaults). A zero field (NULL
/// `ca_bundle`) takes the setting's value from `gtio_set_setting`, else its
/// environment variable, else the default; a nonzero field wins. For
/// `readahead_max_bytes` and `retries` 0 is a value (none), so they are
/// taken as given: start from `gtio_config_default`, which fills every
/// field from the environment. Optional:
/// the first call of any other function starts the library the same way
/// with no fields given. Call it before any other
/// gtio function; once running, it fails with `EBUSY` (call `gtio_lib_fini`
/// first). `cfg` and its strings are copied. Returns 0, or -1 with `*err`.
#[no_mangle]
pub extern "C" fn gtio_lib_init(cfg: *const GTIO_Config, err: *mut GTIO_Error) -> i32 {
    ffi_guard!("gtio_lib_init", err, -1, {
        super::async_io::install_dispatcher();
        // SAFETY: cfg is NULL or points to a GTIO_Config the caller owns.
        let config = match unsafe { cfg.as_ref() } {
            None => settings::resolved()?.0,
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
    let base = settings::resolved()?.0;
    let ca_bundle = if c.ca_bundle.is_null() {
        base.ca_bundle.clone()
    } else {
        // SAFETY: per the function's contract.
        let bytes = unsafe { CStr::from_ptr(c.ca_bundle) }.to_bytes();
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    };
    // A zero field is "not given": the environment's value (or default).
    let or64 = |v: u64, d: u64| if v == 0 { d } else { v };
    let or32 = |v: u32, d: u32| if v == 0 { d } else { v };
    Ok(Config {
        cache_bytes: or64(c.cache_bytes, base.cache_bytes),
        block_size: or32(c.block_size, base.block_size),
        workers: or32(c.workers, base.workers),
        max_conns_per_host: or32(c.max_conns_per_host, base.max_conns_per_host),
        // 0 is a choice for these two (no readahead, no retries), so they
        // are taken as given: the environment reaches them through
        // gtio_config_default.
        readahead_max_bytes: c.readahead_max_bytes,
        retries: c.retries,
        timeout_ms: or32(c.timeout_ms, base.timeout_ms),
        ring_entries: c.ring_entries,
        poller_thread: c.poller_thread != 0,
        ca_bundle,
        // Settings GTIO_Config has no field for (its layout is fixed) come
        // from the environment when the runtime starts.
        ..Config::default()
    })
}

/// Set a setting by name — for every setting of docs/design.md's table, also
/// those with no `GTIO_Config` field: `cache_bytes`, `block_size`,
/// `workers`, `max_conns_per_host`, `retries`, `timeout_ms`,
/// `readahead_max_bytes`, `ca_bundle`, `cred`, `cache_dir`,
/// `cache_dir_bytes`, `peers`, `max_peers`. `value` is the text the
/// setting's environment variable would hold (decimal integers, a path, a
/// token); NULL returns the setting to its default, ignoring the
/// environment. A value set here beats the environment; a nonzero
/// `GTIO_Config` field beats both.
///
/// Settings that size the library take effect when it starts: set them
/// before any other gtio call (or after `gtio_lib_fini`); while it runs
/// they are `EBUSY`. `cred`, the credential an open uses when it is given
/// none, applies to later opens at once. `cache_dir` (other than empty) and
/// `peers=1` are `ENOTSUP` in this version. Unknown names and bad values
/// are `EINVAL`. Both strings are copied. Returns 0, or -1 with `*err`.
/// Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn gtio_set_setting(
    name: *const c_char,
    value: *const c_char,
    err: *mut GTIO_Error,
) -> i32 {
    ffi_guard!("gtio_set_setting", err, -1, {
        non_null!(name, "name");
        // SAFETY: checked non-NULL; the caller passes C strings.
        let name = unsafe { str_arg(name, "name")? };
        let value = if value.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { str_arg(value, "value")? })
        };
        settings::set(name, value, runtime::is_running())?;
        Ok(0)
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
