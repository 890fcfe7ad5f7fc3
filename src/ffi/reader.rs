//! Readers: a byte range of a dataset (one file, say) with its own offset
//! and readahead window, for consumers that read sequentially — a mount's
//! open file, an htslib stream, a Python file object.

use std::ffi::c_void;

use super::io::{buf_arg, count_arg, whence_arg};
use super::types::{GTIO_Error, GTIO_Reader, GTIO};
use super::{ffi_guard, registry};
use crate::Reader;

/// Open a reader over `length` bytes of `gtio`'s stream from `offset` (for
/// one file: the `offset` and `size` of its `GTIO_FileInfo`). The reader
/// has its own offset, starting at 0 (the range's first byte), and its own
/// readahead window, so readers of one dataset never reset each other's
/// readahead however their reads interleave; its readahead never goes past
/// the range's end. The range must lie inside the stream (`EINVAL`).
///
/// Ownership: the caller owns the returned reader and frees it with
/// `gtio_reader_close`, before or after closing `gtio`; once `gtio` is
/// closed (or the library stopped), the reader's calls fail with `EBADF`
/// but it must still be closed. Threads: a reader may be used from any
/// thread, but `gtio_reader_read` and `gtio_reader_lseek` share its offset
/// and are not meant to be raced (they are serialised, never unsafe); open
/// one reader per thread for parallel reads. Never blocks. Returns NULL
/// with `*err` on failure (`EBADF`, `EINVAL`).
#[no_mangle]
pub extern "C" fn gtio_reader_open(
    gtio: *mut GTIO,
    offset: u64,
    length: u64,
    err: *mut GTIO_Error,
) -> *mut GTIO_Reader {
    ffi_guard!("gtio_reader_open", err, std::ptr::null_mut(), {
        let ds = registry::dataset(gtio)?;
        let reader = Reader::new(ds, offset, length)?;
        Ok(registry::insert_reader(reader))
    })
}

/// Read up to `count` bytes at the reader's offset into `buf` (valid for
/// `count` writable bytes) and advance the offset. Returns the byte count
/// (short only at the end of the range), 0 at or past the end, or -1 with
/// `*err`. Blocks until the bytes are there (cache hits return at once);
/// sequential reads queue the reader's readahead at normal priority.
#[no_mangle]
pub extern "C" fn gtio_reader_read(
    reader: *mut GTIO_Reader,
    buf: *mut c_void,
    count: usize,
    err: *mut GTIO_Error,
) -> i64 {
    ffi_guard!("gtio_reader_read", err, -1, {
        let r = registry::reader(reader)?;
        let count = count_arg(count)?;
        // SAFETY: the caller gives `count` writable bytes at `buf`.
        let buf = unsafe { buf_arg(buf, count)? };
        Ok(r.read(buf)? as i64)
    })
}

/// Move the reader's offset (`SEEK_SET`, `SEEK_CUR`, or `SEEK_END` from the
/// end of its range) and return the new offset, relative to the range's
/// start. Past the end is allowed (reads there return 0); a negative result
/// or a bad `whence` is `EINVAL`. A seek elsewhere than where the last read
/// ended resets the reader's readahead at its next read. Never blocks.
#[no_mangle]
pub extern "C" fn gtio_reader_lseek(
    reader: *mut GTIO_Reader,
    offset: i64,
    whence: i32,
    err: *mut GTIO_Error,
) -> i64 {
    ffi_guard!("gtio_reader_lseek", err, -1, {
        let r = registry::reader(reader)?;
        Ok(r.seek(offset, whence_arg(whence)?)? as i64)
    })
}

/// Close a reader; it is invalid afterwards (`EBADF`, never undefined
/// behaviour). Readahead it queued may still complete into the cache. A
/// read running on another thread at the same time finishes normally.
/// Returns 0, or -1 with `*err` (`EBADF`).
#[no_mangle]
pub extern "C" fn gtio_reader_close(reader: *mut GTIO_Reader, err: *mut GTIO_Error) -> i32 {
    ffi_guard!("gtio_reader_close", err, -1, {
        registry::remove_reader(reader)?;
        Ok(0)
    })
}
