//! The files of a metainfo, stored compactly.
//!
//! A torrent can list millions of files, so a `Vec<String>` of segments per
//! file (three heap blocks and ~100 bytes of bookkeeping for a short name)
//! would make the file list cost several times the metainfo it came from.
//! Instead every path lives in one string arena, `/`-joined (segments never
//! contain `/`, the parser guarantees it), followed by its symlink target if
//! it has one, and each file is one fixed-size record: 32 bytes plus its
//! path's bytes. Readers get [`MetaFile`] views that borrow from the table.

use std::cmp::Ordering;

/// One file of the stream, borrowed from a [`FileTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaFile<'a> {
    /// Path below the torrent's name, `/`-joined; the name itself for a
    /// single-file torrent.
    pub path: &'a str,
    /// Bytes in the stream (0 for a symlink, whatever the metainfo says).
    pub length: u64,
    /// Where the file starts in the stream.
    pub offset: u64,
    /// A BEP 47 pad file: zeros that exist only to align the next file.
    pub pad: bool,
    /// A BEP 47 symlink: its target, `/`-joined and relative to the
    /// torrent's root. It has no bytes and is never read through.
    pub symlink: Option<&'a str>,
}

impl MetaFile<'_> {
    /// The path's segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.path.split('/')
    }
}

const PAD: u8 = 1;
const SYMLINK: u8 = 2;

/// Fixed-size record of one file; its strings are in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec {
    length: u64,
    offset: u64,
    /// Arena range of the path; the target (if any) follows it directly.
    name_start: u32,
    name_len: u32,
    target_len: u32,
    flags: u8,
}

/// Every file of a metainfo, in stream order. Built by [`FileTable::push`],
/// which keeps offsets consecutive: each file starts where the one before it
/// ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileTable {
    arena: String,
    recs: Vec<Rec>,
    end: u64,
}

/// Why [`FileTable::push`] refused a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The stream length would pass `u64::MAX`.
    Overflow,
    /// The paths would pass 4 GiB (impossible from a bounded metainfo).
    ArenaFull,
}

impl FileTable {
    pub fn new() -> FileTable {
        FileTable::default()
    }

    /// Append a file: `path` is `/`-joined. A symlink takes no bytes of the
    /// stream, so its `length` is ignored.
    pub fn push(
        &mut self,
        path: &str,
        length: u64,
        pad: bool,
        symlink: Option<&str>,
    ) -> Result<(), PushError> {
        let length = if symlink.is_some() { 0 } else { length };
        let offset = self.end;
        let end = offset.checked_add(length).ok_or(PushError::Overflow)?;
        let target = symlink.unwrap_or("");
        let small = |n: usize| u32::try_from(n).map_err(|_| PushError::ArenaFull);
        let name_start = small(self.arena.len())?;
        let name_len = small(path.len())?;
        let target_len = small(target.len())?;
        small(self.arena.len() + path.len() + target.len())?;
        self.arena.push_str(path);
        self.arena.push_str(target);
        let flags = if pad { PAD } else { 0 } | if symlink.is_some() { SYMLINK } else { 0 };
        self.recs.push(Rec {
            length,
            offset,
            name_start,
            name_len,
            target_len,
            flags,
        });
        self.end = end;
        Ok(())
    }

    /// Build from `(path, length, pad)` triples (tests and tools).
    pub fn from_files<'s>(files: impl IntoIterator<Item = (&'s str, u64, bool)>) -> FileTable {
        let mut t = FileTable::new();
        for (path, length, pad) in files {
            // Overflow saturates the table silently: hand-built tables are
            // small.
            let _ = t.push(path, length, pad, None);
        }
        t
    }

    /// Release spare capacity once the table is complete.
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.recs.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// The stream length: where the last file ends.
    pub fn total_length(&self) -> u64 {
        self.end
    }

    pub fn get(&self, index: usize) -> Option<MetaFile<'_>> {
        self.recs.get(index).map(|r| self.view(r))
    }

    pub fn last(&self) -> Option<MetaFile<'_>> {
        self.recs.last().map(|r| self.view(r))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = MetaFile<'_>> + ExactSizeIterator + '_ {
        self.recs.iter().map(|r| self.view(r))
    }

    /// The index of the first file for which `pred` is false, given that it
    /// is true for a prefix of the files (binary search, as
    /// `slice::partition_point`).
    pub fn partition_point(&self, mut pred: impl FnMut(&MetaFile<'_>) -> bool) -> usize {
        self.recs.partition_point(|r| pred(&self.view(r)))
    }

    /// Arena bytes plus records, for memory accounting in tests.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.recs.capacity() * std::mem::size_of::<Rec>()
    }

    fn view(&self, r: &Rec) -> MetaFile<'_> {
        let start = r.name_start as usize;
        let mid = start + r.name_len as usize;
        let end = mid + r.target_len as usize;
        MetaFile {
            path: self.arena.get(start..mid).unwrap_or(""),
            length: r.length,
            offset: r.offset,
            pad: r.flags & PAD != 0,
            symlink: (r.flags & SYMLINK != 0).then(|| self.arena.get(mid..end).unwrap_or("")),
        }
    }

    /// Indices of the non-pad files, sorted by path segment by segment.
    pub(super) fn sorted_visible(&self) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..self.recs.len() as u32)
            .filter(|&i| self.recs[i as usize].flags & PAD == 0)
            .collect();
        idx.sort_unstable_by(|&a, &b| {
            segment_cmp(self.path_of(a).as_bytes(), self.path_of(b).as_bytes())
        });
        idx
    }

    pub(super) fn path_of(&self, index: u32) -> &str {
        self.get(index as usize).map(|f| f.path).unwrap_or("")
    }
}

impl<'a> IntoIterator for &'a FileTable {
    type Item = MetaFile<'a>;
    type IntoIter = Box<dyn Iterator<Item = MetaFile<'a>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Compare two `/`-joined paths as lists of segments: the separator sorts
/// before every byte a segment can hold, so "a/b" < "a-" like ["a","b"] <
/// ["a-"], and every path under directory "a" sorts right after "a".
pub(super) fn segment_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let key = |c: u8| if c == b'/' { 0 } else { u16::from(c) + 1 };
    match (a.get(common), b.get(common)) {
        (Some(&x), Some(&y)) => key(x).cmp(&key(y)),
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_compact_and_offsets_consecutive() {
        assert!(std::mem::size_of::<Rec>() <= 32);
        let mut t = FileTable::new();
        t.push("a/b", 5, false, None).unwrap();
        t.push(".pad/3", 3, true, None).unwrap();
        t.push("link", 425, false, Some("a/b")).unwrap();
        t.push("c", 2, false, None).unwrap();
        let files: Vec<_> = t.iter().collect();
        assert_eq!(files[0].path, "a/b");
        assert_eq!(files[1].offset, 5);
        assert!(files[1].pad);
        assert_eq!(
            (files[2].offset, files[2].length, files[2].symlink),
            (8, 0, Some("a/b"))
        );
        assert_eq!(files[3].offset, 8);
        assert_eq!(t.total_length(), 10);
        assert_eq!(
            t.push("big", u64::MAX, false, None),
            Err(PushError::Overflow)
        );
        assert_eq!(t.partition_point(|f| f.offset + f.length <= 8), 3);
    }

    #[test]
    fn segment_order_puts_a_directory_next_to_its_files() {
        let mut v = vec!["a-", "a/b", "a", "a.b", "a/a"];
        v.sort_by(|a, b| segment_cmp(a.as_bytes(), b.as_bytes()));
        assert_eq!(v, ["a", "a/a", "a/b", "a-", "a.b"]);
    }
}
