//! A plain object as a dataset: one file, cut into `block_size` pieces.
//!
//! A run of consecutive pieces is one range request; the body is read
//! straight into one buffer per piece, and each piece is handed to the engine
//! as soon as it is complete, so a reader waiting for the first piece of a
//! long run does not wait for the whole run.

use std::io::Read;
use std::ops::Range;
use std::sync::Arc;

use super::{FileEntry, Layout};
use crate::buffers::PieceBuf;
use crate::engine::{Identity, Piece, PieceKey, PieceProvider};
use crate::source::{Fault, RangeSource};
use crate::{Error, Result};

/// The largest range request. On a real network one TCP stream is bounded
/// by its bandwidth-delay product (or an origin's per-connection cap), so
/// parallel ranges are what fills the pipe (aria2's split): a full
/// readahead window (32 MiB) must be as many requests as there are
/// connections to use (`max_conns_per_host`, 16). 2 MiB does that and
/// still keeps an origin at one request per 2 MiB, never one per piece
/// (mountpoint-s3 uses 8 MiB parts with a prefetcher of its own). Measured
/// through the network-like origin of `make bench` (20 ms, 25 MB/s per
/// connection), a 256 MiB sequential read ran at 83 MiB/s with 8 MiB
/// requests and 186 MiB/s with 2 MiB ones (`docs/http.md`).
const MAX_REQUEST_BYTES: u64 = 2 << 20;

/// A cold isolated read is widened to this alignment, no further (a page:
/// what a kernel's page cache would have asked for).
pub const DIRECT_ALIGN: u64 = 4 << 10;

pub struct ObjectProvider {
    layout: Layout,
    source: Box<dyn RangeSource>,
    identity: Arc<Identity>,
}

impl ObjectProvider {
    pub fn new(source: Box<dyn RangeSource>, name: String, block_size: u32) -> Result<Self> {
        let size = source.size();
        let files = vec![FileEntry {
            name,
            offset: 0,
            size,
            symlink: None,
        }];
        let layout = Layout::new(size, u64::from(block_size), files)?;
        let identity = Identity::intern(format!("{}#{block_size}", source.identity()));
        Ok(ObjectProvider {
            layout,
            source,
            identity,
        })
    }
}

impl PieceProvider for ObjectProvider {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn key(&self, piece: u32) -> PieceKey {
        PieceKey::Object(self.identity.id(), piece)
    }

    fn max_run(&self) -> u32 {
        (MAX_REQUEST_BYTES / self.layout.piece_len()).max(1) as u32
    }

    fn keys_persist(&self) -> bool {
        // A local file is its own store: copying it to disk gains nothing.
        self.identity.is_stable() && !self.source.host().is_empty()
    }

    fn reads_direct(&self) -> bool {
        !self.source.host().is_empty()
    }

    fn read_direct(
        &self,
        range: Range<u64>,
        dest: &mut [u8],
    ) -> Option<std::result::Result<(), Fault>> {
        // Local files are read whole pieces at a time (their cache is the
        // page cache; a piece costs no round trip).
        if self.source.host().is_empty() || range.is_empty() {
            return None;
        }
        let size = self.layout.size();
        let start = range.start / DIRECT_ALIGN * DIRECT_ALIGN;
        let end = range
            .end
            .div_ceil(DIRECT_ALIGN)
            .saturating_mul(DIRECT_ALIGN)
            .min(size);
        let fetched = start..end;
        Some((|| {
            let mut body = self.source.open_range(fetched.clone())?;
            let head = (range.start - start) as usize;
            let tail = (end - range.end) as usize;
            let mut skip = [0u8; DIRECT_ALIGN as usize];
            // The caller's buffer takes the body straight from the client:
            // only the alignment's head and tail go to scratch.
            body.read_exact(&mut skip[..head])
                .and_then(|()| body.read_exact(dest))
                .and_then(|()| body.read_exact(&mut skip[..tail]))
                .map_err(|e| body_fault(e, &fetched))
        })())
    }

    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, std::result::Result<Piece, Error>),
    ) -> std::result::Result<(), Fault> {
        if pieces.is_empty() {
            return Ok(());
        }
        let bytes = self.layout.piece_range(pieces.start).start
            ..self.layout.piece_range(pieces.end - 1).end;
        let mut body = self.source.open_range(bytes.clone())?;
        for piece in pieces {
            let len = self.layout.piece_range(piece).end - self.layout.piece_range(piece).start;
            let mut buf = PieceBuf::reuse(len as usize);
            body.read_exact(&mut buf)
                .map_err(|e| body_fault(e, &bytes))?;
            deliver(piece, Ok(Arc::new(buf)));
        }
        Ok(())
    }
}

/// An error while reading a body: worth a retry unless the data is invalid
/// in a way a retry cannot fix.
pub fn body_fault(e: std::io::Error, bytes: &Range<u64>) -> Fault {
    use std::io::ErrorKind as K;
    let errno = match e.kind() {
        K::TimedOut | K::WouldBlock => libc::ETIMEDOUT,
        _ => libc::EIO,
    };
    // The client's own reason says what happened (a stall, a close after
    // N bytes); only read_exact's bare EOF needs words.
    let reason = match e.kind() {
        K::UnexpectedEof => "the body ended early".to_string(),
        _ => e.to_string(),
    };
    Fault::transient(Error::new(
        errno,
        format!(
            "reading bytes {}-{}: {reason}",
            bytes.start,
            bytes.end.saturating_sub(1),
        ),
    ))
}

/// The last path segment of a URI, for listings and output names.
pub fn uri_basename(uri: &str) -> String {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once("://").map(|(_, p)| p).unwrap_or(path);
    let last = path.rsplit('/').next().unwrap_or("");
    let host_only = !path.contains('/');
    if last.is_empty() || host_only {
        "index".to_string()
    } else {
        last.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basenames() {
        assert_eq!(uri_basename("http://h/a/b.bam?sig=1"), "b.bam");
        assert_eq!(uri_basename("http://h/a/"), "index");
        assert_eq!(uri_basename("http://h"), "index");
        assert_eq!(uri_basename("file:///tmp/x.bin"), "x.bin");
    }
}
