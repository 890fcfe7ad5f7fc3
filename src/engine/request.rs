//! One asynchronous read: the slices it still waits for, where its bytes go,
//! and the ring its completion goes to.
//!
//! The destination is a [`ReadTarget`], written only while the request's
//! lock is held and only until the request is finished. Finishing (all slices
//! filled, an error, or a cancel) drops the target under that same lock and
//! posts exactly one completion, so once a completion is visible no thread
//! touches the caller's buffer again — the guarantee `gtio_cancel` and
//! `gtio_close` give.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::completion::{Completion, Ring};
use crate::dataset::PieceSlice;
use crate::Error;

/// Where an asynchronous read's bytes go. Implemented by the FFI layer over
/// the caller's buffer, and by anything else that can take bytes at an
/// offset.
pub trait ReadTarget: Send {
    /// Copy `bytes` to `offset` in the destination; `offset + bytes.len()`
    /// never exceeds the length the request was submitted with.
    fn write_at(&mut self, offset: usize, bytes: &[u8]);
}

/// The pending async reads of one handle, by the caller's `user_data`.
pub type PendingTable = Arc<Mutex<HashMap<u64, Arc<AsyncRead>>>>;

pub struct AsyncRead {
    user_data: u64,
    len: usize,
    ring: Arc<Ring>,
    table: PendingTable,
    state: Mutex<State>,
}

struct State {
    target: Option<Box<dyn ReadTarget>>,
    pending_slices: usize,
}

impl AsyncRead {
    /// A request for `len` bytes in `slices` pieces; the ring slot must be
    /// reserved already.
    pub fn new(
        user_data: u64,
        len: usize,
        slices: usize,
        target: Box<dyn ReadTarget>,
        ring: Arc<Ring>,
        table: PendingTable,
    ) -> Arc<AsyncRead> {
        Arc::new(AsyncRead {
            user_data,
            len,
            ring,
            table,
            state: Mutex::new(State {
                target: Some(target),
                pending_slices: slices,
            }),
        })
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
            self.finish(&mut st, self.len as i64);
        }
    }

    /// A slice failed: the whole read fails now with that error.
    pub fn fail(&self, error: &Error) {
        let mut st = self.lock();
        if st.target.is_some() {
            self.finish(&mut st, -i64::from(error.errno()));
        }
    }

    /// Complete with `-ECANCELED` unless already finished; true if it was.
    pub fn cancel(&self) -> bool {
        let mut st = self.lock();
        if st.target.is_none() {
            return false;
        }
        self.finish(&mut st, -i64::from(libc::ECANCELED));
        true
    }

    fn finish(&self, st: &mut State, result: i64) {
        st.target = None;
        {
            let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            if table
                .get(&self.user_data)
                .is_some_and(|r| std::ptr::eq(Arc::as_ptr(r), self))
            {
                table.remove(&self.user_data);
            }
        }
        self.ring.post(Completion {
            user_data: self.user_data,
            result,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
