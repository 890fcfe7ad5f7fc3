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
//! The `*.utf-8` keys (`name.utf-8`, `path.utf-8`) written by some clients for
//! torrents whose plain keys are in a legacy code page are preferred when
//! present; either way the name must be valid UTF-8.

use std::ops::Range;

use sha1::{Digest, Sha1};

use super::bencode::{self, Dict, Value};
use crate::error::{Error, Result};

/// Largest metainfo [`parse`] accepts. Real torrents are far smaller (the
/// piece hashes of a 1 TiB dataset in 16 MiB pieces take 1.25 MiB).
pub const MAX_METAINFO_BYTES: usize = 64 << 20;

/// A validated metainfo. See the module documentation for the invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// `info.name`: the file name (single-file) or top directory
    /// (multi-file).
    pub name: String,
    pub piece_length: u64,
    pub piece_hashes: Vec<[u8; 20]>,
    /// Every file in metainfo (= stream) order, including pad files.
    pub files: Vec<MetaFile>,
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

/// One file of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaFile {
    /// Path segments below the torrent's name; `[name]` for a single-file
    /// torrent.
    pub path: Vec<String>,
    pub length: u64,
    /// Where the file starts in the stream.
    pub offset: u64,
    /// A BEP 47 pad file: zeros that exist only to align the next file.
    pub pad: bool,
}

impl MetaFile {
    /// The path, `/`-joined.
    pub fn display_name(&self) -> String {
        self.path.join("/")
    }
}

impl Metainfo {
    /// The files a listing shows: all but pad files.
    pub fn visible_files(&self) -> impl Iterator<Item = &MetaFile> + '_ {
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

/// Parse and validate a metainfo file.
pub fn parse(buf: &[u8]) -> Result<Metainfo> {
    if buf.len() > MAX_METAINFO_BYTES {
        return Err(Error::invalid(format!(
            "metainfo is {} bytes, over the {} MiB limit",
            buf.len(),
            MAX_METAINFO_BYTES >> 20
        )));
    }
    let root = bencode::decode(buf).map_err(|e| e.context("malformed metainfo"))?;
    let root = root
        .as_dict()
        .ok_or_else(|| invalid(format!("metainfo is {}, not a dictionary", root.kind())))?;

    let info = match root.get(b"info") {
        None => return Err(invalid("missing 'info' dictionary")),
        Some(Value::Dict(d)) => d,
        Some(v) => return Err(invalid(format!("'info' is {}, not a dictionary", v.kind()))),
    };
    let raw = info
        .raw()
        .ok_or_else(|| invalid("'info' has no raw bytes"))?;
    let info_hash: [u8; 20] = Sha1::digest(raw).into();

    let name = utf8_key(info, "name")?.ok_or_else(|| invalid("missing 'name' in info"))?;
    check_segment(&name).map_err(|why| invalid(format!("invalid name {name:?}: {why}")))?;

    let piece_length = match info.get(b"piece length") {
        None => return Err(invalid("missing 'piece length' in info")),
        Some(Value::Int(n)) if *n > 0 => *n as u64,
        Some(Value::Int(n)) => return Err(invalid(format!("piece length {n} is not positive"))),
        Some(v) => {
            return Err(invalid(format!(
                "'piece length' is {}, not an integer",
                v.kind()
            )))
        }
    };

    let pieces = match info.get(b"pieces") {
        None => return Err(invalid("missing 'pieces' in info")),
        Some(Value::Bytes(b)) => *b,
        Some(v) => return Err(invalid(format!("'pieces' is {}, not a string", v.kind()))),
    };
    if pieces.len() % 20 != 0 {
        return Err(invalid(format!(
            "'pieces' is {} bytes, not a multiple of 20",
            pieces.len()
        )));
    }

    let (files, multi_file) = match (info.get(b"length"), info.get(b"files")) {
        (Some(_), Some(_)) => return Err(invalid("info has both 'length' and 'files'")),
        (None, None) => return Err(invalid("info has neither 'length' nor 'files'")),
        (Some(len), None) => {
            let length = length(len, "length")?;
            let file = MetaFile {
                path: vec![name.clone()],
                length,
                offset: 0,
                pad: false,
            };
            (vec![file], false)
        }
        (None, Some(list)) => (file_list(list)?, true),
    };
    let total_length = match files.last() {
        // file_list computed every end with checked_add.
        Some(f) => f.offset.saturating_add(f.length),
        None => 0,
    };

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
        name,
        piece_length,
        piece_hashes,
        files,
        total_length,
        url_list: url_list(root)?,
        info_hash,
        multi_file,
        creation_date: match root.get(b"creation date") {
            Some(Value::Int(n)) if *n > 0 => Some(*n as u64),
            _ => None,
        },
    })
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(format!("invalid metainfo: {}", message.into()))
}

/// `key.utf-8` if present, else `key`; a string that must be UTF-8.
fn utf8_key(dict: &Dict<'_>, key: &str) -> Result<Option<String>> {
    let utf8_key = format!("{key}.utf-8");
    let (key, value) = match dict.get(utf8_key.as_bytes()) {
        Some(v) => (utf8_key.as_str(), v),
        None => match dict.get(key.as_bytes()) {
            Some(v) => (key, v),
            None => return Ok(None),
        },
    };
    let bytes = value
        .as_bytes()
        .ok_or_else(|| invalid(format!("'{key}' is {}, not a string", value.kind())))?;
    utf8(bytes, key).map(Some)
}

fn utf8(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        invalid(format!(
            "'{what}' is not UTF-8: {:?}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// A non-negative integer length.
fn length(value: &Value<'_>, what: &str) -> Result<u64> {
    match value {
        Value::Int(n) => {
            u64::try_from(*n).map_err(|_| invalid(format!("'{what}' {n} is negative")))
        }
        v => Err(invalid(format!("'{what}' is {}, not an integer", v.kind()))),
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

fn file_list(list: &Value<'_>) -> Result<Vec<MetaFile>> {
    let list = list
        .as_list()
        .ok_or_else(|| invalid(format!("'files' is {}, not a list", list.kind())))?;
    if list.is_empty() {
        return Err(invalid("'files' is empty"));
    }
    let mut files = Vec::with_capacity(list.len());
    let mut offset: u64 = 0;
    for (i, entry) in list.iter().enumerate() {
        let file = entry
            .as_dict()
            .ok_or_else(|| invalid(format!("files[{i}] is {}, not a dictionary", entry.kind())))?;
        let length = match file.get(b"length") {
            None => return Err(invalid(format!("files[{i}] has no 'length'"))),
            Some(v) => length(v, &format!("files[{i}].length"))?,
        };
        let path = file_path(file, i)?;
        let attr = match file.get(b"attr") {
            None => &b""[..],
            Some(Value::Bytes(b)) => b,
            Some(v) => {
                return Err(invalid(format!(
                    "files[{i}].attr is {}, not a string",
                    v.kind()
                )))
            }
        };
        let pad = attr.contains(&b'p')
            || path.first().is_some_and(|s| s == ".pad")
            || path
                .last()
                .is_some_and(|s| s.starts_with("_____padding_file_"));
        files.push(MetaFile {
            path,
            length,
            offset,
            pad,
        });
        offset = offset
            .checked_add(length)
            .ok_or_else(|| invalid(format!("total length overflows at files[{i}]")))?;
    }
    check_tree(&files)?;
    Ok(files)
}

fn file_path(file: &Dict<'_>, i: usize) -> Result<Vec<String>> {
    let (key, value) = match (file.get(b"path.utf-8"), file.get(b"path")) {
        (Some(v), _) => ("path.utf-8", v),
        (None, Some(v)) => ("path", v),
        (None, None) => return Err(invalid(format!("files[{i}] has no 'path'"))),
    };
    let segments = value
        .as_list()
        .ok_or_else(|| invalid(format!("files[{i}].{key} is {}, not a list", value.kind())))?;
    if segments.is_empty() {
        return Err(invalid(format!("files[{i}].{key} is an empty list")));
    }
    let mut path = Vec::with_capacity(segments.len());
    for seg in segments {
        let bytes = seg
            .as_bytes()
            .ok_or_else(|| invalid(format!("files[{i}].{key} has {} segment", seg.kind())))?;
        let seg = utf8(bytes, &format!("files[{i}].{key}"))?;
        check_segment(&seg)
            .map_err(|why| invalid(format!("files[{i}].{key} segment {seg:?}: {why}")))?;
        path.push(seg);
    }
    Ok(path)
}

/// No two real files share a path, and no file is a directory of another.
/// Pad files are exempt: BEP 47 names them `.pad/<size>`, so they repeat.
fn check_tree(files: &[MetaFile]) -> Result<()> {
    let mut paths: Vec<&[String]> = files
        .iter()
        .filter(|f| !f.pad)
        .map(|f| &f.path[..])
        .collect();
    paths.sort_unstable();
    // If P is a prefix of Q, every path sorted between them also starts with
    // P, so comparing neighbours finds every conflict.
    for w in paths.windows(2) {
        if let [a, b] = w {
            if a == b {
                return Err(invalid(format!("duplicate file path {:?}", a.join("/"))));
            }
            if b.starts_with(a) {
                return Err(invalid(format!(
                    "{:?} is both a file and a directory (of {:?})",
                    a.join("/"),
                    b.join("/")
                )));
            }
        }
    }
    Ok(())
}

/// BEP 19 `url-list`: one string or a list of strings. Empty strings (some
/// tools write `url-list: ""` for "none") are dropped.
fn url_list(root: &Dict<'_>) -> Result<Vec<String>> {
    let items: Vec<&Value<'_>> = match root.get(b"url-list") {
        None => return Ok(Vec::new()),
        Some(v @ Value::Bytes(_)) => vec![v],
        Some(Value::List(l)) => l.iter().collect(),
        Some(v) => {
            return Err(invalid(format!(
                "'url-list' is {}, not a string or list",
                v.kind()
            )))
        }
    };
    // An entry of the wrong type (a list, an integer) or that is not UTF-8
    // is skipped rather than failing the torrent, as libtorrent does: a web
    // seed is optional, so one unusable entry must not hide the others.
    let urls = items
        .into_iter()
        .filter_map(|item| item.as_bytes())
        .filter(|b| !b.is_empty())
        .filter_map(|b| std::str::from_utf8(b).ok().map(str::to_owned))
        .collect();
    Ok(urls)
}

#[cfg(test)]
mod tests;
