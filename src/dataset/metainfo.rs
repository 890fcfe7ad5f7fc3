//! BitTorrent metainfo (`.torrent`, a "GTO" in the C API): parsing and
//! validation.
//!
//! [`parse`] turns untrusted bytes into a [`Metainfo`] whose invariants the
//! rest of gtio relies on without re-checking:
//!
//! - files are laid end to end in metainfo order: each file's `offset` is the
//!   sum of the lengths before it, and no sum overflows `u64`;
//! - there is exactly one SHA-1 per piece: `ceil(total_length / piece_length)`
//!   hashes, so the piece count fits in `u32`;
//! - every path segment (and the torrent name) is a non-empty, UTF-8, single
//!   component: never `.`/`..`, never containing `/`, `\` or NUL, so joining
//!   segments can neither escape the dataset's directory nor smuggle a
//!   separator into a name;
//! - no two real files share a path, and no file is also a directory of
//!   another, so a directory listing is a tree.
//!
//! Validation is strict: the first problem found is returned as `EINVAL` with a
//! message naming it. A torrent that does not meet these rules is not
//! "probably fine" — offsets and piece boundaries computed from it would be
//! wrong, and wrong bytes would be verified against the wrong hashes.
//!
//! BEP 47 pad files are kept in [`Metainfo::files`] because they occupy bytes
//! of the stream (zeros that no web seed serves); [`Metainfo::visible_files`]
//! is the listing without them. A file is a pad file when its `attr` contains
//! `p`, or, for torrents written before BEP 47, when its path is under `.pad/`
//! or its last segment starts with `_____padding_file_` (BitComet's
//! convention).
//!
//! BEP 47 symlinks (`attr` containing `l`, with a `symlink path`) are kept
//! too, with no bytes in the stream whatever `length` says (a symlink needs
//! none), and their `/`-joined target checked like any path; an `l` entry
//! without a target is an empty file, as libtorrent reads it. They are listed
//! with size 0 and their target and never read through.
//!
//! Totals above `INT64_MAX` are refused with `EFBIG`: every size and offset
//! must fit the C API's `int64_t`. BitTorrent v2-only metainfo (BEP 52: a
//! `file tree` and no v1 `pieces`) is refused until v2 is supported; hybrid
//! torrents are read through their v1 part.
//!
//! The document is read in place (see [`raw`]) and files are stored in a
//! compact [`FileTable`], so parsing a metainfo costs a small multiple of its
//! size (a 59 MB metainfo of 1.6 million files: see `tests/memory_metainfo.rs`).
//!
//! The `*.utf-8` keys (`name.utf-8`, `path.utf-8`) written by some clients for
//! torrents whose plain keys are in a legacy code page are preferred when
//! present; either way the name must be valid UTF-8.

mod files;

use std::ops::Range;

use sha1::{Digest, Sha1};

use crate::bencode::raw::{self, Raw, RawDict};
use crate::bencode::Limits;
use crate::error::{Error, Result};
pub use files::{FileTable, MetaFile, PushError};

/// Largest metainfo [`parse`] accepts. Real torrents are far smaller (the
/// piece hashes of a 1 TiB dataset in 16 MiB pieces take 1.25 MiB).
pub const MAX_METAINFO_BYTES: usize = 64 << 20;

/// Largest stream accepted: `INT64_MAX` bytes, so that every size and offset
/// fits the C API's `int64_t` (`gtio_size`, `gtio_lseek`) and bencode's
/// integers.
pub const MAX_TOTAL_LENGTH: u64 = i64::MAX as u64;

/// A validated metainfo. See the module documentation for the invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// `info.name`: the file name (single-file) or top directory
    /// (multi-file).
    pub name: String,
    pub piece_length: u64,
    pub piece_hashes: Vec<[u8; 20]>,
    /// Every file in metainfo (= stream) order, including pad files and
    /// symlinks.
    pub files: FileTable,
    /// Length of the stream: all files, pad files included.
    pub total_length: u64,
    /// BEP 19 web seeds (top-level `url-list`), empty strings dropped.
    pub url_list: Vec<String>,
    /// SHA-1 of the raw bencoded `info` dictionary.
    pub info_hash: [u8; 20],
    pub multi_file: bool,
    /// `creation date` (seconds since the epoch), when present and sane: a
    /// mount shows it as every file's mtime. Wrong types are ignored, as
    /// libtorrent does: it is informational.
    pub creation_date: Option<u64>,
}

impl Metainfo {
    /// The files a listing shows: all but pad files.
    pub fn visible_files(&self) -> impl Iterator<Item = MetaFile<'_>> + '_ {
        self.files.iter().filter(|f| !f.pad)
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        // `parse` guarantees it fits; saturate for hand-built values.
        u32::try_from(self.piece_hashes.len()).unwrap_or(u32::MAX)
    }

    /// The stream bytes of piece `index`. Every piece is `piece_length` long
    /// except the last, which ends at `total_length`; an index past the last
    /// piece gives the empty range `total_length..total_length`.
    pub fn piece_range(&self, index: u32) -> Range<u64> {
        let start = u64::from(index)
            .saturating_mul(self.piece_length)
            .min(self.total_length);
        let end = start
            .saturating_add(self.piece_length)
            .min(self.total_length);
        start..end
    }
}

/// The bencode limits for metainfo: the default nesting bound, and at most
/// one value per two input bytes (the shortest value, `0:`, is two bytes),
/// which the size bound already implies.
fn limits() -> Limits {
    Limits {
        max_values: MAX_METAINFO_BYTES / 2,
        ..Limits::default()
    }
}

/// Parse and validate a metainfo file.
///
/// Memory: the document is read in place ([`raw`]), so beyond the input the
/// cost is the result — the piece hashes (as large as `pieces`), one 32-byte
/// record plus the path bytes per file — and, while checking for duplicate
/// paths, 4 bytes per file.
pub fn parse(buf: &[u8]) -> Result<Metainfo> {
    if buf.len() > MAX_METAINFO_BYTES {
        return Err(Error::invalid(format!(
            "metainfo is {} bytes, over the {} MiB limit",
            buf.len(),
            MAX_METAINFO_BYTES >> 20
        )));
    }
    let root = raw::parse(buf, limits()).map_err(|e| e.context("malformed metainfo"))?;
    let root = root
        .dict()
        .ok_or_else(|| invalid(format!("metainfo is {}, not a dictionary", root.kind())))?;

    let mut info = None;
    let mut url_list_value = None;
    let mut creation_date = None;
    for (key, value) in root.iter() {
        match key {
            b"info" => info = Some(value),
            b"url-list" => url_list_value = Some(value),
            // Informational (a mount's mtime): a wrong type is ignored.
            b"creation date" => creation_date = value.as_int().filter(|n| *n > 0),
            _ => {}
        }
    }
    let info = match info {
        None => return Err(invalid("missing 'info' dictionary")),
        Some(v) => v
            .dict()
            .ok_or_else(|| invalid(format!("'info' is {}, not a dictionary", v.kind())))?,
    };
    let info_hash: [u8; 20] = Sha1::digest(info.encoded()).into();
    let fields = InfoFields::read(info);

    let name = utf8_field(fields.name_utf8, fields.name, "name")?
        .ok_or_else(|| invalid("missing 'name' in info"))?;
    check_segment(name).map_err(|why| invalid(format!("invalid name {name:?}: {why}")))?;

    let pieces = match fields.pieces {
        None if fields.v2 => {
            return Err(invalid(
                "BitTorrent v2-only metainfo (no v1 'pieces') is not supported yet",
            ))
        }
        None => return Err(invalid("missing 'pieces' in info")),
        Some(v) => v
            .as_bytes()
            .ok_or_else(|| invalid(format!("'pieces' is {}, not a string", v.kind())))?,
    };
    let piece_length = match fields.piece_length {
        None => return Err(invalid("missing 'piece length' in info")),
        Some(v) => match v.as_int() {
            Some(n) if n > 0 => n as u64,
            Some(n) => return Err(invalid(format!("piece length {n} is not positive"))),
            None => {
                return Err(invalid(format!(
                    "'piece length' is {}, not an integer",
                    v.kind()
                )))
            }
        },
    };
    if pieces.len() % 20 != 0 {
        return Err(invalid(format!(
            "'pieces' is {} bytes, not a multiple of 20",
            pieces.len()
        )));
    }

    let (mut files, multi_file) = match (fields.length, fields.files) {
        (Some(_), Some(_)) => return Err(invalid("info has both 'length' and 'files'")),
        (None, None) => return Err(invalid("info has neither 'length' nor 'files'")),
        (Some(len), None) => {
            let mut files = FileTable::new();
            files
                .push(name, length(len, "length")?, false, None)
                .map_err(|_| invalid("file table overflow"))?;
            (files, false)
        }
        (None, Some(list)) => (file_list(list)?, true),
    };
    files.shrink_to_fit();
    let total_length = files.total_length();
    if total_length > MAX_TOTAL_LENGTH {
        return Err(Error::new(
            libc::EFBIG,
            format!(
                "invalid metainfo: total length {total_length} bytes is over the {MAX_TOTAL_LENGTH}-byte (INT64_MAX) limit"
            ),
        ));
    }

    let expected = total_length.div_ceil(piece_length);
    let have = (pieces.len() / 20) as u64;
    if have != expected {
        return Err(invalid(format!(
            "'pieces' has {have} hashes, expected {expected} for {total_length} bytes in pieces of {piece_length}"
        )));
    }
    if expected == 0 {
        // No piece means nothing to hash or fetch; every BitTorrent peer
        // refuses such a torrent.
        return Err(invalid(
            "the torrent has no data (total length 0, no pieces)",
        ));
    }
    if expected > u64::from(u32::MAX) {
        return Err(invalid(format!("{expected} pieces is too many")));
    }
    let piece_hashes = pieces
        .chunks_exact(20)
        .map(|c| {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            h
        })
        .collect();

    Ok(Metainfo {
        name: name.to_owned(),
        piece_length,
        piece_hashes,
        files,
        total_length,
        url_list: url_list(url_list_value),
        info_hash,
        multi_file,
        creation_date: creation_date.map(|n| n as u64),
    })
}

/// The `info` keys gtio reads, found in one pass (a lookup per key would
/// re-scan the whole file list each time).
#[derive(Default)]
struct InfoFields<'a> {
    name: Option<Raw<'a>>,
    name_utf8: Option<Raw<'a>>,
    piece_length: Option<Raw<'a>>,
    pieces: Option<Raw<'a>>,
    length: Option<Raw<'a>>,
    files: Option<Raw<'a>>,
    /// `meta version` 2 or a `file tree`: BitTorrent v2 (BEP 52).
    v2: bool,
}

impl<'a> InfoFields<'a> {
    fn read(info: RawDict<'a>) -> InfoFields<'a> {
        let mut f = InfoFields::default();
        for (key, value) in info.iter() {
            match key {
                b"name" => f.name = Some(value),
                b"name.utf-8" => f.name_utf8 = Some(value),
                b"piece length" => f.piece_length = Some(value),
                b"pieces" => f.pieces = Some(value),
                b"length" => f.length = Some(value),
                b"files" => f.files = Some(value),
                b"file tree" => f.v2 = true,
                b"meta version" => f.v2 |= value.as_int() == Some(2),
                _ => {}
            }
        }
        f
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(format!("invalid metainfo: {}", message.into()))
}

/// `key.utf-8` if present, else `key`; a string that must be UTF-8.
fn utf8_field<'a>(
    utf8_value: Option<Raw<'a>>,
    plain: Option<Raw<'a>>,
    key: &str,
) -> Result<Option<&'a str>> {
    let (key, value) = match (utf8_value, plain) {
        (Some(v), _) => (format!("{key}.utf-8"), v),
        (None, Some(v)) => (key.to_owned(), v),
        (None, None) => return Ok(None),
    };
    let bytes = value
        .as_bytes()
        .ok_or_else(|| invalid(format!("'{key}' is {}, not a string", value.kind())))?;
    utf8(bytes, &key).map(Some)
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|_| {
        invalid(format!(
            "'{what}' is not UTF-8: {:?}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// A non-negative integer length.
fn length(value: Raw<'_>, what: &str) -> Result<u64> {
    match value.as_int() {
        Some(n) => u64::try_from(n).map_err(|_| invalid(format!("'{what}' {n} is negative"))),
        None => Err(invalid(format!(
            "'{what}' is {}, not an integer",
            value.kind()
        ))),
    }
}

/// Why `seg` cannot be a path component (or torrent name), if it cannot.
pub(crate) fn check_segment(seg: &str) -> std::result::Result<(), &'static str> {
    if seg.is_empty() {
        Err("empty path segment")
    } else if seg == "." || seg == ".." {
        Err("'.' and '..' are not allowed")
    } else if seg.contains('/') || seg.contains('\\') {
        // Also rules out absolute paths ("/etc", "\\server").
        Err("contains a path separator")
    } else if seg.contains('\0') {
        Err("contains NUL")
    } else {
        Ok(())
    }
}

/// The keys of one `files` entry.
#[derive(Default)]
struct FileFields<'a> {
    length: Option<Raw<'a>>,
    path: Option<Raw<'a>>,
    path_utf8: Option<Raw<'a>>,
    attr: Option<Raw<'a>>,
    symlink_path: Option<Raw<'a>>,
}

fn file_list(list: Raw<'_>) -> Result<FileTable> {
    let items = list
        .list()
        .ok_or_else(|| invalid(format!("'files' is {}, not a list", list.kind())))?;
    if items.is_empty() {
        return Err(invalid("'files' is empty"));
    }
    let mut files = FileTable::new();
    // Reused for every file: the `/`-joined path and symlink target.
    let mut path = String::new();
    let mut target = String::new();
    for (i, entry) in items.enumerate() {
        let dict = entry
            .dict()
            .ok_or_else(|| invalid(format!("files[{i}] is {}, not a dictionary", entry.kind())))?;
        let mut f = FileFields::default();
        for (key, value) in dict.iter() {
            match key {
                b"length" => f.length = Some(value),
                b"path" => f.path = Some(value),
                b"path.utf-8" => f.path_utf8 = Some(value),
                b"attr" => f.attr = Some(value),
                b"symlink path" => f.symlink_path = Some(value),
                _ => {}
            }
        }
        let attr = match f.attr {
            None => &b""[..],
            Some(v) => v
                .as_bytes()
                .ok_or_else(|| invalid(format!("files[{i}].attr is {}, not a string", v.kind())))?,
        };
        let (key, value) = match (f.path_utf8, f.path) {
            (Some(v), _) => ("path.utf-8", v),
            (None, Some(v)) => ("path", v),
            (None, None) => return Err(invalid(format!("files[{i}] has no 'path'"))),
        };
        join_segments(value, &mut path, &|| format!("files[{i}].{key}"))?;
        // BEP 47: a symlink ('l') has no bytes in the stream, so it needs no
        // length and any length it gives is ignored. Without a 'symlink
        // path' it is an empty plain file: libtorrent's reading, so that
        // both count the same stream.
        let link = attr.contains(&b'l');
        let symlink = match f.symlink_path {
            Some(v) if link => {
                join_segments(v, &mut target, &|| format!("files[{i}].symlink path"))?;
                Some(target.as_str())
            }
            _ => None,
        };
        let length = match f.length {
            _ if link => 0,
            Some(v) => length(v, &format!("files[{i}].length"))?,
            None => return Err(invalid(format!("files[{i}] has no 'length'"))),
        };
        let pad = !link
            && (attr.contains(&b'p')
                || path == ".pad"
                || path.starts_with(".pad/")
                || path
                    .rsplit('/')
                    .next()
                    .is_some_and(|s| s.starts_with("_____padding_file_")));
        files
            .push(&path, length, pad, symlink)
            .map_err(|e| match e {
                PushError::Overflow => invalid(format!("total length overflows at files[{i}]")),
                PushError::ArenaFull => invalid("file paths too long"),
            })?;
    }
    check_tree(&files)?;
    Ok(files)
}

/// Check the segments of a path list and write them `/`-joined to `out`.
fn join_segments(value: Raw<'_>, out: &mut String, what: &dyn Fn() -> String) -> Result<()> {
    let segments = value
        .list()
        .ok_or_else(|| invalid(format!("{} is {}, not a list", what(), value.kind())))?;
    if segments.is_empty() {
        return Err(invalid(format!("{} is an empty list", what())));
    }
    out.clear();
    for seg in segments {
        let bytes = seg
            .as_bytes()
            .ok_or_else(|| invalid(format!("{} has {} segment", what(), seg.kind())))?;
        let seg = utf8(bytes, &what())?;
        check_segment(seg).map_err(|why| invalid(format!("{} segment {seg:?}: {why}", what())))?;
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(seg);
    }
    Ok(())
}

/// No two real files share a path, and no file is a directory of another.
/// Pad files are exempt: BEP 47 names them `.pad/<size>`, so they repeat.
fn check_tree(files: &FileTable) -> Result<()> {
    let sorted = files.sorted_visible();
    // Paths are compared segment by segment, so if P is a directory of Q
    // every path sorted between them is also under P: comparing neighbours
    // finds every conflict.
    for w in sorted.windows(2) {
        if let [a, b] = w {
            let (a, b) = (files.path_of(*a), files.path_of(*b));
            if a == b {
                return Err(invalid(format!("duplicate file path {a:?}")));
            }
            if b.len() > a.len() && b.starts_with(a) && b.as_bytes().get(a.len()) == Some(&b'/') {
                return Err(invalid(format!(
                    "{a:?} is both a file and a directory (of {b:?})"
                )));
            }
        }
    }
    Ok(())
}

/// BEP 19 `url-list`: one string or a list of strings. Empty strings (some
/// tools write `url-list: ""` for "none") are dropped, and so is an entry of
/// the wrong type (a list, an integer) or that is not UTF-8, as libtorrent
/// does: a web seed is optional, so one unusable entry must not hide the
/// others, nor a `url-list` of the wrong type the torrent.
fn url_list(value: Option<Raw<'_>>) -> Vec<String> {
    let Some(value) = value else {
        return Vec::new();
    };
    let items: Box<dyn Iterator<Item = Raw<'_>>> = if value.as_bytes().is_some() {
        Box::new(std::iter::once(value))
    } else if let Some(list) = value.list() {
        Box::new(list)
    } else {
        Box::new(std::iter::empty())
    };
    items
        .filter_map(|item| item.as_bytes())
        .filter(|b| !b.is_empty())
        .filter_map(|b| std::str::from_utf8(b).ok().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests;
