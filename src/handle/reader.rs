//! A reader: one sequential consumer of a byte range of a dataset (one
//! file, say) with its own offset and its own readahead window.
//!
//! Readahead belongs to whoever reads sequentially, not to the dataset: two
//! readers of one dataset — two Python file objects, two open files of a
//! mount, two htslib streams — each keep their window however their reads
//! interleave. With one window per dataset, every alternate read looked like
//! a seek and reset it, so each piece was fetched on its own (257 requests
//! for two 8 MiB files, against 15 with a window per reader; see
//! `tests/readers.rs`). A reader's readahead also stops at the end of its
//! range: reading a file does not fetch the next one.
//!
//! Offsets are relative to the start of the range; a reader never returns
//! bytes outside it. `read` and `seek` share the offset and take the
//! reader's lock for the whole call, so they are safe but serialised on one
//! reader (like `gtio_read` on a handle); use one reader per thread for
//! parallel sequential reads. A reader keeps its dataset alive; once the
//! dataset is closed its reads fail with `EBADF`.
//!
//! `pread` is for a consumer that brings its own offsets but is still one
//! stream — an open file of the mount, whose reads the kernel issues several
//! at a time and slightly out of order. It neither uses nor moves the
//! offset, feeds the reader's window like `read` (the window tolerates small
//! reorders, so concurrent sequential preads keep it growing), and holds the
//! lock only while the window is updated, never while pieces are fetched:
//! concurrent preads of one reader run at once, and a pread far away merely
//! resets the window, as a seek would.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::{seek_target, Cursor, Dataset, Whence, Window};
use crate::engine::readahead::Readahead;
use crate::{Error, Result};

pub struct Reader {
    ds: Arc<Dataset>,
    range: Range<u64>,
    cursor: Mutex<Cursor>,
}

impl Reader {
    /// A reader of `len` bytes of `ds`'s stream from `offset`; the range
    /// must lie inside the stream (`EINVAL` otherwise).
    pub fn new(ds: Arc<Dataset>, offset: u64, len: u64) -> Result<Reader> {
        ds.check_open()?;
        let size = ds.size();
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "reader range {offset}+{len} is outside the stream ({size} bytes)"
                ))
            })?;
        let readahead = Readahead::new(ds.runtime.config().readahead_max_bytes);
        Ok(Reader {
            ds,
            range: offset..end,
            cursor: Mutex::new(Cursor { pos: 0, readahead }),
        })
    }

    /// Length of the reader's range.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Read up to `buf.len()` bytes at the reader's offset and advance it:
    /// 0 at or past the end of the range, a short count only there.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let mut guard = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *guard;
        let left = self.len().saturating_sub(c.pos);
        let want = (buf.len() as u64).min(left) as usize;
        if want == 0 {
            self.ds.check_open()?;
            return Ok(0);
        }
        let at = self.range.start + c.pos;
        let mut window = Window::Own(&mut c.readahead, self.range.end);
        let n = self.ds.read_in(&mut buf[..want], at, &mut window)?;
        c.pos += n as u64;
        Ok(n)
    }

    /// Read up to `buf.len()` bytes at `offset` (relative to the range)
    /// without using or moving the reader's offset: 0 at or past the end of
    /// the range, a short count only there. Safe from many threads at once.
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.ds.check_open()?;
        let want = (buf.len() as u64).min(self.len().saturating_sub(offset)) as usize;
        if want == 0 {
            return Ok(0);
        }
        let at = self.range.start + offset;
        {
            let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
            self.ds
                .read_ahead_in(&mut c.readahead, &(at..at + want as u64), self.range.end);
        }
        // The window is already fed: the read itself must not touch it
        // again (nor the dataset's positional window), so it gets a
        // disabled one of its own.
        let mut none = Readahead::new(0);
        let mut window = Window::Own(&mut none, self.range.end);
        self.ds.read_in(&mut buf[..want], at, &mut window)
    }

    /// Move the offset (relative to the range; `End` is the range's end);
    /// returns the new offset. Past the end is allowed, negative is not.
    pub fn seek(&self, offset: i64, whence: Whence) -> Result<u64> {
        self.ds.check_open()?;
        let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        c.pos = seek_target(c.pos, self.len(), offset, whence)?;
        Ok(c.pos)
    }

    pub fn tell(&self) -> u64 {
        self.cursor.lock().unwrap_or_else(|e| e.into_inner()).pos
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.ds
    }
}
