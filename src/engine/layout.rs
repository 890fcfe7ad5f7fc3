//! The stream's geometry: its size, its piece length and its files, and how
//! a read is cut into piece slices.
//!
//! It lives in the engine, the lowest layer that needs it, so that the
//! dataset kinds above (plain objects, torrents) depend on the engine and
//! never the other way round; `crate::dataset` re-exports it.

use std::ops::Range;

/// One file of the dataset, as listings show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path inside the dataset, `/`-separated.
    pub name: String,
    /// Where the file starts in the stream.
    pub offset: u64,
    pub size: u64,
    /// A BEP 47 symlink's target (`/`-separated, relative to the dataset's
    /// root): the entry has no bytes (`size` 0) and is never read through.
    pub symlink: Option<String>,
}

/// The stream's geometry: its size, its piece length and its files.
#[derive(Clone, Debug)]
pub struct Layout {
    size: u64,
    piece_len: u64,
    /// Shared: sources keep a copy of the layout, and a torrent may list
    /// millions of files (memory_metainfo).
    files: std::sync::Arc<[FileEntry]>,
}

/// The part of one piece that a read needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceSlice {
    pub piece: u32,
    /// Byte range inside the piece.
    pub within: Range<usize>,
    /// Where those bytes go in the reader's buffer.
    pub dest: usize,
}

impl Layout {
    /// A layout; `piece_len` must be positive and the piece count must fit in
    /// a `u32` (checked by the constructors of each dataset kind).
    pub fn new(size: u64, piece_len: u64, files: Vec<FileEntry>) -> crate::Result<Layout> {
        if piece_len == 0 || piece_len > usize::MAX as u64 {
            return Err(crate::Error::invalid("piece length out of range"));
        }
        if size > i64::MAX as u64 {
            // Every size and offset must fit the C API's int64_t
            // (gtio_size, gtio_lseek): refuse at open, not at the first call.
            return Err(crate::Error::new(
                libc::EFBIG,
                format!("stream of {size} bytes is over the INT64_MAX limit"),
            ));
        }
        if size.div_ceil(piece_len) > u64::from(u32::MAX) {
            return Err(crate::Error::invalid(
                "too many pieces (more than 2^32); use a larger block size",
            ));
        }
        Ok(Layout {
            size,
            piece_len,
            files: files.into(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn piece_len(&self) -> u64 {
        self.piece_len
    }

    pub fn piece_count(&self) -> u32 {
        // Cannot truncate: checked in `new`.
        self.size.div_ceil(self.piece_len) as u32
    }

    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// Stream bytes covered by piece `index` (the last piece may be short).
    pub fn piece_range(&self, index: u32) -> Range<u64> {
        let start = u64::from(index) * self.piece_len;
        start..(start + self.piece_len).min(self.size)
    }

    /// The stream bytes a read of `len` at `offset` can return: empty at or
    /// past the end, clipped at the end of the stream.
    pub fn clip(&self, offset: u64, len: u64) -> Range<u64> {
        if offset >= self.size {
            return offset..offset;
        }
        offset..offset + len.min(self.size - offset)
    }

    /// Pieces overlapping `range` (which must lie inside the stream).
    pub fn pieces_of(&self, range: &Range<u64>) -> Range<u32> {
        if range.is_empty() {
            return 0..0;
        }
        let first = range.start / self.piece_len;
        let last = (range.end - 1) / self.piece_len;
        first as u32..last as u32 + 1
    }

    /// Cut a clipped read range into piece slices, in order.
    pub fn slices(&self, range: &Range<u64>) -> impl Iterator<Item = PieceSlice> + '_ {
        let range = range.clone();
        self.pieces_of(&range).map(move |piece| {
            let p = self.piece_range(piece);
            let start = range.start.max(p.start);
            let end = range.end.min(p.end);
            PieceSlice {
                piece,
                within: (start - p.start) as usize..(end - p.start) as usize,
                dest: (start - range.start) as usize,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout(size: u64, piece: u64) -> Layout {
        Layout::new(size, piece, vec![]).unwrap()
    }

    #[test]
    fn clip_and_pieces() {
        let l = layout(10, 4);
        assert_eq!(l.piece_count(), 3);
        assert_eq!(l.piece_range(2), 8..10);
        assert_eq!(l.clip(8, 100), 8..10);
        assert!(l.clip(10, 5).is_empty());
        assert!(l.clip(u64::MAX, 5).is_empty());
        assert_eq!(l.pieces_of(&(3..9)), 0..3);
    }

    #[test]
    fn rejects_degenerate_layouts() {
        assert!(Layout::new(10, 0, vec![]).is_err());
        assert!(Layout::new(u64::MAX, 1, vec![]).is_err());
        let e = Layout::new(i64::MAX as u64 + 1, 1 << 40, vec![]).unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG);
        assert!(Layout::new(i64::MAX as u64, 1 << 40, vec![]).is_ok());
    }

    proptest! {
        #[test]
        fn slices_tile_the_read(size in 0u64..5000, piece in 1u64..700, off in 0u64..6000, len in 0u64..6000) {
            let l = layout(size, piece);
            let r = l.clip(off, len);
            let mut next_dest = 0usize;
            for s in l.slices(&r) {
                prop_assert_eq!(s.dest, next_dest);
                prop_assert!(!s.within.is_empty());
                let p = l.piece_range(s.piece);
                prop_assert!(s.within.end as u64 <= p.end - p.start);
                prop_assert_eq!(p.start + s.within.start as u64, r.start + s.dest as u64);
                next_dest += s.within.len();
            }
            prop_assert_eq!(next_dest as u64, r.end - r.start);
        }
    }
}
