//! One read, synchronous or asynchronous: the slices it still waits for,
//! where its bytes go, and how its end is reported.
//!
//! The destination is a [`ReadTarget`], written only while the request's
//! lock is held and only until the request is finished. Finishing (all slices
//! filled, an error, or a cancel) drops the target under that same lock and
//! reports exactly once — a completion on the submitter's ring, or the
//! waiting reader woken — so once the end is visible no thread touches the
//! caller's buffer again: the guarantee `gtio_cancel` and `gtio_close` give,
//! and what lets a synchronous `pread` hand its buffer to the workers.
//!
//! Workers copy each piece into the target as it arrives, for synchronous
//! reads too: a reader that is slow to run never makes pieces pile up
//! between the workers and itself, so a read holds the caller's buffer, the
//! cache and the pieces being downloaded, and nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::layout::PieceSlice;
use super::stats::StatSet;
use crate::completion::{Completion, Ring};
use crate::Error;

/// Where a read's bytes go. Implemented by the FFI layer over the caller's
/// buffer, and by anything else that can take bytes at an offset.
pub trait ReadTarget: Send {
    /// Copy `bytes` to `offset` in the destination; `offset + bytes.len()`
    /// never exceeds the length the request was submitted with.
    fn write_at(&mut self, offset: usize, bytes: &[u8]);
}

/// The pending async reads of one handle, by the caller's `user_data`.
pub type PendingTable = Arc<Mutex<HashMap<u64, Arc<ReadRequest>>>>;

pub struct ReadRequest {
    len: usize,
    end: End,
    /// Counts the read's outcome and latency when it finishes (async reads;
    /// a synchronous reader counts its own).
    meter: Option<Meter>,
    state: Mutex<State>,
    finished: Condvar,
}

/// Where an asynchronous read's outcome is counted.
pub struct Meter {
    pub stats: Arc<StatSet>,
    pub started: Instant,
}

/// How a request reports its end.
enum End {
    /// Post a completion tagged `user_data` to `ring`, leaving `table`.
    Ring {
        user_data: u64,
        ring: Arc<Ring>,
        table: PendingTable,
    },
    /// Wake the thread blocked in [`ReadRequest::wait`].
    Wait,
}

struct State {
    target: Option<Box<dyn ReadTarget>>,
    pending_slices: usize,
    /// Set when finished, for [`ReadRequest::wait`].
    outcome: Option<Result<usize, Error>>,
}

impl ReadRequest {
    /// An asynchronous request for `len` bytes in `slices` pieces; the ring
    /// slot must be reserved already.
    pub fn to_ring(
        user_data: u64,
        len: usize,
        slices: usize,
        target: Box<dyn ReadTarget>,
        ring: Arc<Ring>,
        table: PendingTable,
        meter: Option<Meter>,
    ) -> Arc<ReadRequest> {
        Self::new(
            len,
            slices,
            target,
            End::Ring {
                user_data,
                ring,
                table,
            },
            meter,
        )
    }

    /// A request that a thread waits for with [`wait`](Self::wait).
    pub fn waited(len: usize, slices: usize, target: Box<dyn ReadTarget>) -> Arc<ReadRequest> {
        Self::new(len, slices, target, End::Wait, None)
    }

    fn new(
        len: usize,
        slices: usize,
        target: Box<dyn ReadTarget>,
        end: End,
        meter: Option<Meter>,
    ) -> Arc<ReadRequest> {
        let req = Arc::new(ReadRequest {
            len,
            end,
            meter,
            state: Mutex::new(State {
                target: Some(target),
                pending_slices: slices,
                outcome: None,
            }),
            finished: Condvar::new(),
        });
        if slices == 0 {
            let mut st = req.lock();
            req.finish(&mut st, Ok(len));
        }
        req
    }

    /// Copy one slice in; finishes the request when it was the last.
    pub fn fill(&self, slice: &PieceSlice, piece: &[u8]) {
        let mut st = self.lock();
        let Some(target) = st.target.as_mut() else {
            return;
        };
        let bytes = &piece[slice.within.clone()];
        target.write_at(slice.dest, bytes);
        st.pending_slices -= 1;
        if st.pending_slices == 0 {
            self.finish(&mut st, Ok(self.len));
        }
    }

    /// A slice failed: the whole read fails now with that error.
    pub fn fail(&self, error: &Error) {
        let mut st = self.lock();
        if st.target.is_some() {
            self.finish(&mut st, Err(error.clone()));
        }
    }

    /// Complete with `ECANCELED` unless already finished; true if it was.
    /// Waits for a copy in progress, so no worker writes the target after.
    pub fn cancel(&self) -> bool {
        let mut st = self.lock();
        if st.target.is_none() {
            return false;
        }
        self.finish(&mut st, Err(Error::new(libc::ECANCELED, "read cancelled")));
        true
    }

    /// Block until the request is finished; its result (bytes or error).
    pub fn wait(&self) -> Result<usize, Error> {
        let mut st = self.lock();
        loop {
            if let Some(outcome) = st.outcome.take() {
                return outcome;
            }
            st = self.finished.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn finish(&self, st: &mut State, result: Result<usize, Error>) {
        st.target = None;
        if let Some(m) = &self.meter {
            match &result {
                Ok(n) => m.stats.delivered(*n as u64, Some(m.started.elapsed())),
                Err(e) => m.stats.read_failed(e.errno()),
            }
        }
        match &self.end {
            End::Ring {
                user_data,
                ring,
                table,
            } => {
                {
                    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
                    if table
                        .get(user_data)
                        .is_some_and(|r| std::ptr::eq(Arc::as_ptr(r), self))
                    {
                        table.remove(user_data);
                    }
                }
                ring.post(Completion {
                    user_data: *user_data,
                    result: match result {
                        Ok(n) => n as i64,
                        Err(e) => -i64::from(e.errno()),
                    },
                });
            }
            End::Wait => {
                st.outcome = Some(result);
                self.finished.notify_all();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A caller's `&mut [u8]` as a target, for a synchronous read that waits
/// for its request to finish before the borrow ends.
pub struct BorrowedBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the pointer is only written through `write_at`, under the
// request's lock, and only until the request finishes; the reader that
// lent the buffer waits for that (see `Dataset::pread`).
unsafe impl Send for BorrowedBuf {}

impl BorrowedBuf {
    /// # Safety
    /// `buf` must stay valid, and not be read or written by anyone else,
    /// until the request this target is given to has finished.
    pub unsafe fn new(buf: &mut [u8]) -> BorrowedBuf {
        BorrowedBuf {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }
}

impl ReadTarget for BorrowedBuf {
    fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len, "slice outside the read");
        // SAFETY: in bounds (checked above); exclusive access per `new`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len());
        }
    }
}
