//! Asynchronous reads after the task-thread model: submit with
//! `gtio_pread_async`, learn of completions through the calling thread's
//! ring (`gtio_poll_fd`, `gtio_poll`) or, in poller mode, through callbacks
//! run on the library's poller thread.

use std::ffi::c_void;

use super::types::{gtio_usercb_t, gtio_usercomp_t, GTIO_Error, GTIO};
use super::{ffi_guard, non_null, registry};
use crate::completion::{self, Completion};
use crate::engine::request::ReadTarget;
use crate::{runtime, Error};

/// A caller's buffer, valid (by the API contract) until the request's
/// completion; the engine writes it only before then, under the request's
/// lock.
struct CallerBuffer {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is the caller's to lend to any thread until completion;
// the engine serialises all writes through the request's lock.
unsafe impl Send for CallerBuffer {}

impl ReadTarget for CallerBuffer {
    fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        let fits = offset
            .checked_add(bytes.len())
            .is_some_and(|end| end <= self.len);
        if !fits {
            // The engine never asks for this; refuse rather than overrun.
            return;
        }
        // SAFETY: in bounds (checked); the buffer is valid until completion.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len());
        }
    }
}

/// What `ucp_fun` points to: store the result, run the user's callback.
unsafe extern "C" fn complete_usercb(res: i64, arg: *mut c_void) {
    let ucb = arg.cast::<gtio_usercb_t>();
    // SAFETY: arg is the gtio_usercb_t the request was submitted with, which
    // the caller keeps valid until this completion.
    if let Some(u) = unsafe { ucb.as_mut() } {
        u.ret = res;
        if let Some(f) = u.cb_func {
            // SAFETY: the caller's callback, called as documented.
            unsafe { f(ucb) };
        }
    }
}

/// The poller thread's way to run a completion.
fn dispatch(c: Completion) {
    let arg = std::ptr::with_exposed_provenance_mut::<c_void>(c.user_data as usize);
    // SAFETY: see complete_usercb; a panic cannot come out of C code, and
    // this runs on the poller thread, never across the ABI.
    unsafe { complete_usercb(c.result, arg) };
}

/// Hooks the C API needs before its first use: the poller's dispatcher, fork
/// tracking and the store's commit at exit.
pub(super) fn install_dispatcher() {
    runtime::set_dispatcher(dispatch);
    super::fork::install();
    super::at_exit::install();
}

/// Submit a read of `count` bytes at `offset` into `buf`. Returns 0 when
/// queued: exactly one completion follows, on the calling thread's ring (or,
/// with `poller_thread`, `ucb->cb_func` runs on the library's thread). -1
/// with `*err` means nothing was queued: `EAGAIN` when the thread's ring is
/// full (drain it with `gtio_poll` and retry), `EINVAL` for a `ucb` already
/// in flight. `buf` and `ucb` must stay valid until the completion.
/// `flags`: 0, or `GTIO_READ_BACKGROUND` for normal instead of urgent
/// priority. Cache hits complete before this returns. Never blocks on I/O;
/// may be called from a callback.
#[no_mangle]
pub extern "C" fn gtio_pread_async(
    gtio: *mut GTIO,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    flags: u32,
    ucb: *mut gtio_usercb_t,
    err: *mut GTIO_Error,
) -> i32 {
    ffi_guard!("gtio_pread_async", err, -1, {
        let ds = registry::dataset(gtio)?;
        non_null!(ucb, "ucb");
        if count > 0 {
            non_null!(buf, "buf");
        }
        if count as u64 > i64::MAX as u64 {
            return Err(Error::invalid("count is larger than INT64_MAX"));
        }
        if flags & !crate::ffi::types::GTIO_READ_BACKGROUND != 0 {
            return Err(Error::invalid(format!("unknown flags {flags:#x}")));
        }
        install_dispatcher();
        let target = Box::new(CallerBuffer {
            ptr: buf.cast(),
            len: count,
        });
        let background = flags & crate::ffi::types::GTIO_READ_BACKGROUND != 0;
        ds.pread_async(
            offset,
            count,
            target,
            background,
            ucb.expose_provenance() as u64,
        )?;
        Ok(0)
    })
}

/// Take up to `max` completions from the calling thread's ring into
/// `ucps[0..n]` and return n (0 when none). Never blocks. For each, the
/// caller runs `ucps[i].ucp_fun(ucps[i].ucp_res, ucps[i].ucp_arg)`, which sets
/// `ucb->ret` and calls `ucb->cb_func(ucb)` on the caller's thread. Only this
/// thread's completions are ever returned. Returns -1 (errno `EINVAL`) when
/// `ucps` is NULL and `max` > 0. Callbacks may call any gtio function,
/// including `gtio_poll`.
#[no_mangle]
pub extern "C" fn gtio_poll(ucps: *mut gtio_usercomp_t, max: i32) -> i32 {
    let result = ffi_guard!("gtio_poll", std::ptr::null_mut(), -libc::EINVAL, {
        if max <= 0 {
            return Ok(0);
        }
        if ucps.is_null() {
            return Ok(-libc::EINVAL);
        }
        let Some(ring) = completion::current_if_any() else {
            return Ok(0);
        };
        let batch = ring.drain(max as usize);
        // SAFETY: the caller gives room for `max` entries at `ucps`, and
        // batch.len() <= max.
        let out = unsafe { std::slice::from_raw_parts_mut(ucps, batch.len()) };
        for (slot, c) in out.iter_mut().zip(&batch) {
            *slot = gtio_usercomp_t {
                ucp_fun: Some(complete_usercb),
                ucp_res: c.result,
                ucp_arg: std::ptr::with_exposed_provenance_mut(c.user_data as usize),
            };
        }
        Ok(batch.len() as i32)
    });
    if result < 0 {
        // SAFETY: errno is thread-local and always writable.
        unsafe { *libc::__errno_location() = -result };
        return -1;
    }
    result
}

/// The eventfd of the calling thread's ring (created if needed): readable
/// when completions may be waiting. A hint, as with io_uring: always drain
/// with `gtio_poll` until it returns 0. Owned by the library: do not close
/// it. Returns -1 (errno set) if no eventfd can be created.
#[no_mangle]
pub extern "C" fn gtio_poll_fd() -> i32 {
    let result = ffi_guard!("gtio_poll_fd", std::ptr::null_mut(), -libc::EIO, {
        let rt = runtime::get()?;
        let ring = completion::current(rt.config().ring_entries as usize)?;
        Ok(ring.fd())
    });
    if result < 0 {
        // SAFETY: errno is thread-local and always writable.
        unsafe { *libc::__errno_location() = -result };
        return -1;
    }
    result
}

/// Cancel the pending read submitted with `ucb`: it completes with
/// `-ECANCELED` (through the ring as usual), and from then on the library
/// never touches its buffer. Returns 0, or -1 with `*err`: `ENOENT` if no
/// such read is pending (it completed already, or its completion is waiting
/// in the ring). Never blocks on I/O.
#[no_mangle]
pub extern "C" fn gtio_cancel(
    gtio: *mut GTIO,
    ucb: *mut gtio_usercb_t,
    err: *mut GTIO_Error,
) -> i32 {
    ffi_guard!("gtio_cancel", err, -1, {
        let ds = registry::dataset(gtio)?;
        non_null!(ucb, "ucb");
        ds.cancel(ucb.expose_provenance() as u64)?;
        Ok(0)
    })
}
