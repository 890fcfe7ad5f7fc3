//! Opening, closing and synchronous reads.

use std::ffi::{c_char, c_void, CStr};

use super::types::{GTIO_Error, GTIO};
use super::{ffi_guard, non_null, registry};
use crate::{Dataset, Error, Result, Whence};

/// Read a C string argument as UTF-8.
///
/// # Safety
/// `p` is a NUL-terminated string (checked non-NULL by the caller).
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    // SAFETY: per the function's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// # Safety
/// `cred` is NULL or a NUL-terminated string.
pub(crate) unsafe fn cred_arg<'a>(cred: *const c_char) -> Result<Option<&'a str>> {
    if cred.is_null() {
        return Ok(None);
    }
    // SAFETY: per the function's contract.
    let c = unsafe { str_arg(cred, "cred") }?;
    Ok((!c.is_empty()).then_some(c))
}

/// Open a dataset by URI: `http://`, `https://` or `file://`; a URI whose
/// path ends in `.torrent` (or served as `application/x-bittorrent`) opens
/// the torrent it names. `cred` (NULL: none) is sent as
/// `Authorization: Bearer <cred>` (as given if it starts with a scheme word)
/// to the URI's host only. Both strings are copied. Blocks for the
/// metadata request(s). Returns a handle to close with `gtio_close`, or NULL
/// with `*err`. The handle may be used from any thread.
#[no_mangle]
pub extern "C" fn gtio_open_uri(
    uri: *const c_char,
    cred: *const c_char,
    err: *mut GTIO_Error,
) -> *mut GTIO {
    ffi_guard!("gtio_open_uri", err, std::ptr::null_mut(), {
        non_null!(uri, "uri");
        super::async_io::install_dispatcher();
        // SAFETY: checked non-NULL; the caller passes C strings.
        let (uri, cred) = unsafe { (str_arg(uri, "uri")?, cred_arg(cred)?) };
        let ds = Dataset::open(uri, cred)?;
        Ok(registry::insert_dataset(ds))
    })
}

/// Close a handle: pending async reads complete with `-ECANCELED`, and the
/// call returns only when no library thread can touch their buffers. The
/// handle is invalid afterwards (`EBADF`, never undefined behaviour). A read
/// running on another thread at the same time finishes normally.
/// Returns 0, or -1 with `*err` (`EBADF`).
#[no_mangle]
pub extern "C" fn gtio_close(gtio: *mut GTIO, err: *mut GTIO_Error) -> i32 {
    ffi_guard!("gtio_close", err, -1, {
        registry::remove_dataset(gtio)?.close();
        Ok(0)
    })
}

fn count_arg(count: usize) -> Result<usize> {
    if count as u64 > i64::MAX as u64 {
        return Err(Error::invalid("count is larger than INT64_MAX"));
    }
    Ok(count)
}

/// # Safety
/// `buf` is valid for writes of `count` bytes (checked non-NULL if count>0).
unsafe fn buf_arg<'a>(buf: *mut c_void, count: usize) -> Result<&'a mut [u8]> {
    if count == 0 {
        return Ok(&mut []);
    }
    non_null!(buf, "buf");
    // SAFETY: per the function's contract; count <= i64::MAX = isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), count) })
}

/// Read up to `count` bytes at the handle's offset into `buf` and advance
/// the offset. Returns the byte count (short only at the end of the
/// stream), 0 at or past the end, or -1 with `*err`. Blocks until the bytes
/// are there (cache hits return at once). Shares the offset with
/// `gtio_lseek`: do not race these two on one handle.
#[no_mangle]
pub extern "C" fn gtio_read(
    gtio: *mut GTIO,
    buf: *mut c_void,
    count: usize,
    err: *mut GTIO_Error,
) -> i64 {
    ffi_guard!("gtio_read", err, -1, {
        let ds = registry::dataset(gtio)?;
        let count = count_arg(count)?;
        // SAFETY: the caller gives `count` writable bytes at `buf`.
        let buf = unsafe { buf_arg(buf, count)? };
        Ok(ds.read(buf)? as i64)
    })
}

/// Read up to `count` bytes at `offset` into `buf`; the handle's offset is
/// not used or changed. Returns the byte count (short only at the end of
/// the stream), 0 at or past the end, or -1 with `*err`. Blocks until the
/// bytes are there; cache hits are served on the calling thread. Safe from
/// any number of threads on one handle.
#[no_mangle]
pub extern "C" fn gtio_pread(
    gtio: *mut GTIO,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    err: *mut GTIO_Error,
) -> i64 {
    ffi_guard!("gtio_pread", err, -1, {
        let ds = registry::dataset(gtio)?;
        let count = count_arg(count)?;
        // SAFETY: the caller gives `count` writable bytes at `buf`.
        let buf = unsafe { buf_arg(buf, count)? };
        Ok(ds.pread(buf, offset)? as i64)
    })
}

/// Move the handle's offset (`SEEK_SET`, `SEEK_CUR`, `SEEK_END`) and return
/// the new offset. Past the end is allowed; a negative result or a bad
/// `whence` is `EINVAL`. Never blocks.
#[no_mangle]
pub extern "C" fn gtio_lseek(
    gtio: *mut GTIO,
    offset: i64,
    whence: i32,
    err: *mut GTIO_Error,
) -> i64 {
    ffi_guard!("gtio_lseek", err, -1, {
        let ds = registry::dataset(gtio)?;
        let whence = match whence {
            libc::SEEK_SET => Whence::Set,
            libc::SEEK_CUR => Whence::Current,
            libc::SEEK_END => Whence::End,
            w => {
                return Err(Error::invalid(format!(
                    "bad whence {w}: use SEEK_SET, SEEK_CUR or SEEK_END"
                )))
            }
        };
        Ok(ds.seek(offset, whence)? as i64)
    })
}

/// Size of the dataset's stream in bytes, or -1 with `*err`. Never blocks.
#[no_mangle]
pub extern "C" fn gtio_size(gtio: *mut GTIO, err: *mut GTIO_Error) -> i64 {
    ffi_guard!("gtio_size", err, -1, {
        let ds = registry::dataset(gtio)?;
        // Opens refuse streams past INT64_MAX (Layout::new), so this only
        // guards against a -1 (or negative) size with no error code.
        i64::try_from(ds.size()).map_err(|_| {
            Error::new(
                libc::EFBIG,
                format!("stream size {} is over INT64_MAX", ds.size()),
            )
        })
    })
}

/// Hint: start fetching `length` bytes at `offset` in the background
/// (normal priority; demand reads go first). Returns 0 at once, or -1 with
/// `*err`. At most half the cache is prefetched per call.
#[no_mangle]
pub extern "C" fn gtio_prefetch(
    gtio: *mut GTIO,
    offset: u64,
    length: u64,
    err: *mut GTIO_Error,
) -> i32 {
    ffi_guard!("gtio_prefetch", err, -1, {
        let ds = registry::dataset(gtio)?;
        ds.prefetch(offset, length)?;
        Ok(0)
    })
}
