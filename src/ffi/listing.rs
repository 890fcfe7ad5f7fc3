//! Opening torrents from memory, and listing a dataset's files.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::sync::Mutex;

use super::io::cred_arg;
use super::types::{
    copy_c_string, GTIO_Dir, GTIO_Dirent, GTIO_Error, GTIO_FileInfo, GTIO, GTIO_NAME_MAX,
};
use super::{ffi_guard, non_null, registry};
use crate::dataset::metainfo::MAX_METAINFO_BYTES;
use crate::{Dataset, Error};

/// Open a torrent from its bencoded metainfo (`gto_buf`, `gto_size` bytes;
/// at most 64 MiB). The library copies what it keeps: the caller may free or
/// reuse the buffer as soon as this returns. `cred` (NULL: none) is sent to
/// the torrent's web seeds. Malformed metainfo is `EINVAL` with the reason;
/// a stream over `INT64_MAX` bytes is `EFBIG`. Returns a handle, or NULL
/// with `*err`. Never blocks on the network.
#[no_mangle]
pub extern "C" fn gtio_open_gto(
    gto_buf: *const c_void,
    gto_size: usize,
    cred: *const c_char,
    err: *mut GTIO_Error,
) -> *mut GTIO {
    ffi_guard!("gtio_open_gto", err, std::ptr::null_mut(), {
        non_null!(gto_buf, "gto_buf");
        if gto_size > MAX_METAINFO_BYTES {
            return Err(Error::invalid(format!(
                "metainfo of {gto_size} bytes is larger than the 64 MiB limit"
            )));
        }
        super::async_io::install_dispatcher();
        // SAFETY: the caller gives gto_size readable bytes at gto_buf.
        let bytes = unsafe { std::slice::from_raw_parts(gto_buf.cast::<u8>(), gto_size) };
        // SAFETY: cred is NULL or a C string.
        let cred = unsafe { cred_arg(cred)? };
        let ds = Dataset::open_gto(bytes, cred)?;
        Ok(registry::insert_dataset(ds))
    })
}

/// Lists handed out, so `gtio_free_file_list` frees only what it gave and
/// with the right length, whatever count it is passed.
/// Fresh in a fork child (see `fork_safe`).
static LISTS: crate::fork_safe::ForkSafe<Lists> =
    crate::fork_safe::ForkSafe::new(|| Mutex::new(None));

type Lists = Mutex<Option<HashMap<usize, Vec<CString>>>>;

/// The dataset's files in stream order (pad files hidden): `*fi` receives an
/// array of the returned count, to free with `gtio_free_file_list`. Names are
/// '/'-separated paths; a BEP 47 symlink is listed with size 0 (it has no
/// bytes in the stream and is never read through). Returns the count (0 with `*fi` NULL for none), or -1
/// with `*err`. Never blocks.
#[no_mangle]
pub extern "C" fn gtio_get_file_list(
    gtio: *mut GTIO,
    fi: *mut *mut GTIO_FileInfo,
    err: *mut GTIO_Error,
) -> i64 {
    ffi_guard!("gtio_get_file_list", err, -1, {
        let ds = registry::dataset(gtio)?;
        non_null!(fi, "fi");
        let files = ds.files();
        if files.is_empty() {
            // SAFETY: fi checked non-NULL.
            unsafe { *fi = std::ptr::null_mut() };
            return Ok(0);
        }
        let names = files
            .iter()
            .map(|f| CString::new(f.name.as_bytes()))
            .collect::<Result<Vec<CString>, _>>()
            .map_err(|_| Error::invalid("file name contains NUL"))?;
        // One contiguous array for C; the names it points to live in LISTS
        // (a CString's heap bytes do not move when the CString does).
        let mut array: Vec<GTIO_FileInfo> = files
            .iter()
            .zip(&names)
            .map(|(f, n)| GTIO_FileInfo {
                name: n.as_ptr().cast_mut(),
                offset: f.offset,
                size: f.size,
            })
            .collect();
        array.shrink_to_fit();
        let count = array.len();
        let ptr = Box::into_raw(array.into_boxed_slice()).cast::<GTIO_FileInfo>();
        LISTS
            .get()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(ptr.addr(), names);
        // SAFETY: fi checked non-NULL.
        unsafe { *fi = ptr };
        Ok(count as i64)
    })
}

/// Free a list from `gtio_get_file_list`. NULL, a list already freed, or a
/// pointer not from gtio is ignored; `count` is not trusted (the library
/// remembers each list's length). Never blocks.
#[no_mangle]
pub extern "C" fn gtio_free_file_list(fi: *mut GTIO_FileInfo, count: i64) {
    ffi_guard!("gtio_free_file_list", std::ptr::null_mut(), (), {
        let _ = count;
        if fi.is_null() {
            return Ok(());
        }
        let entries = LISTS
            .get()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(|m| m.remove(&fi.addr()));
        if let Some(entries) = entries {
            let len = entries.len();
            // SAFETY: `fi` is exactly the pointer of a boxed slice of `len`
            // infos that we created in gtio_get_file_list and never freed.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(fi, len)) });
        }
        Ok(())
    })
}

/// A cursor over the dataset's files (a snapshot), for `gtio_readdir`.
/// Close it with `gtio_closedir`; it stays valid after `gtio_close` of the
/// dataset. Returns NULL with `*err` on failure.
#[no_mangle]
pub extern "C" fn gtio_opendir(gtio: *mut GTIO, err: *mut GTIO_Error) -> *mut GTIO_Dir {
    ffi_guard!("gtio_opendir", err, std::ptr::null_mut(), {
        let ds = registry::dataset(gtio)?;
        Ok(registry::insert_dir(registry::DirCursor {
            files: ds.files().to_vec(),
            next: 0,
        }))
    })
}

/// Fill `*ent` with the next file: returns 0 for an entry, 1 at the end, -1
/// with `*err` (`EBADF` for a closed cursor, `ENAMETOOLONG` for a name of
/// GTIO_NAME_MAX bytes or more, which is skipped). Not for concurrent use
/// of one cursor from several threads without locking.
#[no_mangle]
pub extern "C" fn gtio_readdir(
    dirp: *mut GTIO_Dir,
    ent: *mut GTIO_Dirent,
    err: *mut GTIO_Error,
) -> i32 {
    ffi_guard!("gtio_readdir", err, -1, {
        let cursor = registry::dir(dirp)?;
        non_null!(ent, "ent");
        let mut c = cursor.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = c.files.get(c.next).cloned() else {
            return Ok(1);
        };
        c.next += 1;
        if f.name.len() >= GTIO_NAME_MAX {
            return Err(Error::new(
                libc::ENAMETOOLONG,
                format!(
                    "file name of {} bytes does not fit in GTIO_Dirent",
                    f.name.len()
                ),
            ));
        }
        // SAFETY: ent checked non-NULL; the caller owns the GTIO_Dirent.
        let out = unsafe { &mut *ent };
        copy_c_string(&mut out.name, &f.name);
        out.offset = f.offset;
        out.size = f.size;
        Ok(0)
    })
}

/// Close a cursor from `gtio_opendir`. Returns 0, or -1 with `*err`
/// (`EBADF` for a cursor already closed or not from gtio).
#[no_mangle]
pub extern "C" fn gtio_closedir(dirp: *mut GTIO_Dir, err: *mut GTIO_Error) -> i32 {
    ffi_guard!("gtio_closedir", err, -1, {
        registry::remove_dir(dirp)?;
        Ok(0)
    })
}
