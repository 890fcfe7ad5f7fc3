//! The C types of the ABI, laid out exactly as docs/design.md's contract gives
//! them (`#[repr(C)]`; cbindgen writes them into `include/gtio.h`).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

use crate::Error;

/// Longest name (with its NUL) that a `GTIO_Dirent` holds.
pub const GTIO_NAME_MAX: usize = 4096;

/// `gtio_pread_async` flag: normal instead of urgent priority.
pub const GTIO_READ_BACKGROUND: u32 = 1;

/// An open dataset. Opaque: a token the library looks up, never a pointer
/// it dereferences, so a closed or foreign handle is `EBADF`.
pub struct GTIO {
    _opaque: [u8; 0],
}

/// A cursor over a dataset's files (`gtio_opendir`). Opaque, like `GTIO`.
pub struct GTIO_Dir {
    _opaque: [u8; 0],
}

/// A reader over a byte range of a dataset, with its own offset and
/// readahead (`gtio_reader_open`). Opaque, like `GTIO`.
pub struct GTIO_Reader {
    _opaque: [u8; 0],
}

/// Why a call failed. Filled only on failure; `err` may always be NULL.
#[repr(C)]
pub struct GTIO_Error {
    /// An errno value (EIO, ENOENT, EINVAL, ...); 0 = none.
    pub code: i32,
    /// The HTTP status behind the error, 0 if none.
    pub http_status: i32,
    /// NUL-terminated; never contains credentials.
    pub message: [c_char; 512],
}

/// One file of a dataset (`gtio_get_file_list`).
#[repr(C)]
pub struct GTIO_FileInfo {
    /// Path inside the dataset, '/'-separated, NUL-terminated; owned by the
    /// list (freed by `gtio_free_file_list`).
    pub name: *mut c_char,
    /// Where the file starts in the stream.
    pub offset: u64,
    pub size: u64,
}

/// One entry of `gtio_readdir`.
#[repr(C)]
pub struct GTIO_Dirent {
    pub name: [c_char; GTIO_NAME_MAX],
    pub offset: u64,
    pub size: u64,
}

/// Library settings for `gtio_lib_init`. Start from `gtio_config_default`;
/// a zero field means "the default".
#[repr(C)]
pub struct GTIO_Config {
    /// Memory piece cache bound, bytes.
    pub cache_bytes: u64,
    /// Piece size for plain URIs, bytes.
    pub block_size: u32,
    /// Download threads.
    pub workers: u32,
    pub max_conns_per_host: u32,
    /// Readahead window cap per handle; 0 disables readahead.
    pub readahead_max_bytes: u64,
    /// Retries per piece, with exponential backoff.
    pub retries: u32,
    /// Connect and stall timeout, milliseconds.
    pub timeout_ms: u32,
    /// Per-thread completion ring size.
    pub ring_entries: u32,
    /// Nonzero: callbacks run on a library thread.
    pub poller_thread: i32,
    /// PEM file of extra trusted CAs; NULL: system roots only. Copied by
    /// `gtio_lib_init`.
    pub ca_bundle: *const c_char,
}

/// An asynchronous read's callback. Must stay valid until its completion.
#[repr(C)]
pub struct gtio_usercb {
    pub cb_func: Option<unsafe extern "C" fn(ucb: *mut gtio_usercb)>,
    pub cb_data: *mut c_void,
    /// Set before `cb_func` runs: bytes read, or -errno.
    pub ret: i64,
}

/// The callback struct's name in the API.
pub type gtio_usercb_t = gtio_usercb;

/// One completion from `gtio_poll`: call `ucp_fun(ucp_res, ucp_arg)`.
#[repr(C)]
pub struct gtio_usercomp {
    pub ucp_fun: Option<unsafe extern "C" fn(res: i64, arg: *mut c_void)>,
    pub ucp_res: i64,
    pub ucp_arg: *mut c_void,
}

/// The completion struct's name in the API.
pub type gtio_usercomp_t = gtio_usercomp;

/// Copy `text` into a fixed C buffer, truncated on a UTF-8 boundary, always
/// NUL-terminated.
pub(crate) fn copy_c_string(dst: &mut [c_char], text: &str) {
    if dst.is_empty() {
        return;
    }
    let mut n = text.len().min(dst.len() - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    for (d, s) in dst.iter_mut().zip(text.as_bytes()[..n].iter()) {
        *d = *s as c_char;
    }
    dst[n] = 0;
}

/// Fill `*err` from `e`.
///
/// # Safety
/// `err` is NULL or valid for writes of one `GTIO_Error`.
pub(crate) unsafe fn fill_error(err: *mut GTIO_Error, e: &Error) {
    // SAFETY: per the contract above.
    let Some(out) = (unsafe { err.as_mut() }) else {
        return;
    };
    // A failure always has a non-zero code: callers test `code`, and an
    // errno of 0 (an OS error that carried none) would read as success.
    out.code = match e.errno() {
        0 => libc::EIO,
        n => n,
    };
    out.http_status = i32::from(e.http_status());
    copy_c_string(&mut out.message, e.message());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_error_never_has_code_zero() {
        let mut out = GTIO_Error {
            code: 0,
            http_status: 0,
            message: [0; 512],
        };
        // An OS error that carried no errno (raw_os_error 0).
        let e = Error::from(std::io::Error::from_raw_os_error(0));
        assert_eq!(e.errno(), 0);
        // SAFETY: `out` is a valid GTIO_Error.
        unsafe { fill_error(&mut out, &e) };
        assert_eq!(out.code, libc::EIO);
    }

    #[test]
    fn c_strings_truncate_on_char_boundaries() {
        let mut buf = [1 as c_char; 4];
        copy_c_string(&mut buf, "aé€");
        assert_eq!(buf, [b'a' as c_char, 0xc3u8 as c_char, 0xa9u8 as c_char, 0]);
        let mut buf = [1 as c_char; 3];
        copy_c_string(&mut buf, "a€");
        assert_eq!(buf[..2], [b'a' as c_char, 0]);
    }
}
