//! Creating metainfo from local files (`gtio create`, and test fixtures).
//!
//! [`create_torrent`] writes the standard layout every client reads:
//!
//! ```text
//! { announce, announce-list: [[url, ...], ...], created by, creation date,
//!   url-list: [seed, ...],
//!   info: { name, piece length, pieces, length }                  single file
//!   info: { name, piece length, pieces, files: [{length, path}] } directory }
//! ```
//!
//! A directory is walked recursively. Only regular files are included:
//! symbolic links are skipped rather than followed, so the torrent can neither
//! loop nor pull in files from outside the tree, and sockets, devices and
//! FIFOs have no meaningful content. Files are ordered by their `/`-joined path
//! bytes, the order mktorrent uses, so the two tools produce identical pieces
//! for the same tree and piece length (a test holds us to it). No pad files
//! are written.
//!
//! File contents are streamed through one piece-sized buffer — a piece that
//! spans several files is filled from each in turn — so memory use is one
//! piece, whatever the dataset size. A file that shrinks while it is hashed is
//! an error (its pieces would be wrong); growth is ignored, since the length
//! recorded is the one seen when the tree was walked.
//!
//! Nothing is sized by what the tree claims without a bound: the walk stops
//! at [`MAX_TREE_DEPTH`] levels and as soon as the file list alone would
//! make the metainfo larger than [`metainfo::MAX_METAINFO_BYTES`] (which
//! `parse`, and so every reader, refuses), the total must fit `INT64_MAX`,
//! and the piece hashes must fit that bound too — all checked before a byte
//! is hashed or the hash buffer is allocated. A sparse file claiming 2^62
//! bytes is a clear error, not an allocation of petabytes.
//!
//! Names must be valid UTF-8 and acceptable path segments by the same rules
//! [`metainfo::parse`] applies; this is checked while walking, before any
//! hashing, and the finished metainfo is run through `parse` once more, so
//! gtio never writes a torrent it would refuse to open.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

use super::metainfo::{self, check_segment};
use crate::bencode::{encode, Dict, Value};
use crate::error::{Error, Result};

/// Smallest piece length accepted: 16 KiB, the BitTorrent block size.
pub const MIN_PIECE_LENGTH_LOG2: u8 = 14;
/// Largest piece length accepted: 256 MiB, mktorrent's upper bound.
pub const MAX_PIECE_LENGTH_LOG2: u8 = 28;

/// Deepest directory nesting walked (a deeper tree is refused: the walk
/// recurses, and no real dataset nests this deep).
pub const MAX_TREE_DEPTH: usize = 256;

/// Bencode bytes one file costs in the `files` list besides its path
/// segments (`d6:lengthi…e4:pathl…ee` and the segments' length prefixes):
/// a lower bound, so the walk never refuses a tree whose metainfo fits.
const FILE_ENTRY_OVERHEAD: usize = 20;

/// Create the metainfo for `path` (a file, or a directory tree) with the
/// given web seeds. `piece_length_log2` picks a piece length of
/// `2^piece_length_log2` bytes; `None` chooses one from the total size (see
/// [`default_piece_length_log2`]).
pub fn create_torrent(
    path: &Path,
    web_seeds: &[String],
    piece_length_log2: Option<u8>,
) -> Result<Vec<u8>> {
    create_torrent_with_trackers(path, web_seeds, &[], piece_length_log2)
}

/// [`create_torrent`] naming trackers too: `tiers` are BEP 12 tiers, each a
/// list of announce URLs tried in order before the next tier. The first URL
/// is `announce` (what clients without BEP 12 use); `announce-list` is
/// written when there is more than one URL, as mktorrent and libtorrent do,
/// so a one-tracker torrent stays the plain BEP 3 form.
pub fn create_torrent_with_trackers(
    path: &Path,
    web_seeds: &[String],
    tiers: &[Vec<String>],
    piece_length_log2: Option<u8>,
) -> Result<Vec<u8>> {
    let shown = path.display();
    if web_seeds.iter().any(String::is_empty) {
        return Err(Error::invalid("empty web seed URL"));
    }
    if tiers
        .iter()
        .any(|t| t.is_empty() || t.iter().any(String::is_empty))
    {
        return Err(Error::invalid("empty tracker URL"));
    }
    // Canonical, so that "." or "dir/" still have a final component to name
    // the torrent after.
    let root = fs::canonicalize(path).map_err(|e| Error::from(e).context(&shown))?;
    let name = match root.file_name().map(OsStr::to_str) {
        Some(Some(name)) => name.to_string(),
        Some(None) => return Err(Error::invalid(format!("{shown}: name is not UTF-8"))),
        None => return Err(Error::invalid(format!("{shown}: has no name to use"))),
    };
    check_segment(&name)
        .map_err(|why| Error::invalid(format!("{shown}: unusable name {name:?}: {why}")))?;

    let meta = fs::metadata(&root).map_err(|e| Error::from(e).context(&shown))?;
    let (files, multi_file) = if meta.is_file() {
        let file = Entry {
            segments: Vec::new(),
            fs_path: root.clone(),
            length: meta.len(),
        };
        (vec![file], false)
    } else if meta.is_dir() {
        let mut files = Vec::new();
        let mut budget = metainfo::MAX_METAINFO_BYTES;
        walk(&root, &mut Vec::new(), &mut files, &mut budget)?;
        if files.is_empty() {
            return Err(Error::invalid(format!(
                "{shown}: no regular files in the tree"
            )));
        }
        // The `/`-joined byte order, as mktorrent sorts (by strcmp).
        files.sort_by_cached_key(|f| f.segments.join("/"));
        (files, true)
    } else {
        return Err(Error::invalid(format!(
            "{shown}: not a regular file or directory"
        )));
    };

    let total = files
        .iter()
        .try_fold(0u64, |sum, f| sum.checked_add(f.length));
    let total = total.ok_or_else(|| Error::invalid(format!("{shown}: total size overflows")))?;
    let log2 = match piece_length_log2 {
        None => default_piece_length_log2(total),
        Some(l) if (MIN_PIECE_LENGTH_LOG2..=MAX_PIECE_LENGTH_LOG2).contains(&l) => l,
        Some(l) => {
            return Err(Error::invalid(format!(
                "piece length 2^{l} outside 2^{MIN_PIECE_LENGTH_LOG2}..=2^{MAX_PIECE_LENGTH_LOG2}"
            )))
        }
    };
    let piece_length = 1u64 << log2;
    if total > metainfo::MAX_TOTAL_LENGTH {
        return Err(Error::new(
            libc::EFBIG,
            format!("{shown}: {total} bytes is over the INT64_MAX limit of a torrent"),
        ));
    }
    let hash_bytes = total.div_ceil(piece_length).saturating_mul(20);
    if hash_bytes > metainfo::MAX_METAINFO_BYTES as u64 {
        return Err(Error::new(
            libc::EFBIG,
            format!(
                "{shown}: {total} bytes in pieces of {piece_length} need {hash_bytes} bytes of piece \
                 hashes, over the {} MiB metainfo limit; choose a larger piece length",
                metainfo::MAX_METAINFO_BYTES >> 20
            ),
        ));
    }
    let pieces = hash_pieces(&files, piece_length, total)?;

    // Build the document. Integers in bencode are i64; lengths past i64::MAX
    // cannot be written.
    let int = |n: u64| {
        i64::try_from(n)
            .map(Value::Int)
            .map_err(|_| Error::invalid(format!("{shown}: size {n} too large for metainfo")))
    };
    let mut info = vec![
        (&b"name"[..], Value::Bytes(name.as_bytes())),
        (&b"piece length"[..], int(piece_length)?),
        (&b"pieces"[..], Value::Bytes(&pieces)),
    ];
    if multi_file {
        let mut list = Vec::with_capacity(files.len());
        for f in &files {
            let path = f
                .segments
                .iter()
                .map(|s| Value::Bytes(s.as_bytes()))
                .collect();
            let entry = vec![
                (&b"length"[..], int(f.length)?),
                (&b"path"[..], Value::List(path)),
            ];
            list.push(Value::Dict(Dict::from_entries(entry)?));
        }
        info.push((b"files", Value::List(list)));
    } else {
        info.push((b"length", int(total)?));
    }
    let created_by = format!("gtio {}", env!("CARGO_PKG_VERSION"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut top = vec![
        (&b"created by"[..], Value::Bytes(created_by.as_bytes())),
        (&b"creation date"[..], int(now)?),
        (&b"info"[..], Value::Dict(Dict::from_entries(info)?)),
    ];
    let mut trackers = tiers.iter().flatten();
    if let Some(first) = trackers.next() {
        top.push((b"announce", Value::Bytes(first.as_bytes())));
        if trackers.next().is_some() {
            let list = tiers
                .iter()
                .map(|t| Value::List(t.iter().map(|u| Value::Bytes(u.as_bytes())).collect()))
                .collect();
            top.push((b"announce-list", Value::List(list)));
        }
    }
    if !web_seeds.is_empty() {
        let seeds = web_seeds
            .iter()
            .map(|s| Value::Bytes(s.as_bytes()))
            .collect();
        top.push((b"url-list", Value::List(seeds)));
    }
    let out = encode(&Value::Dict(Dict::from_entries(top)?));

    metainfo::parse(&out)
        .map_err(|e| e.context(format!("{shown}: created metainfo is invalid")))?;
    Ok(out)
}

/// The default piece length for `total` bytes: the smallest power of two
/// that gives at most 2000 pieces — so between 1000 and 2000 pieces — clamped
/// to 16 KiB ..= 16 MiB. That is the range mktorrent's documentation and
/// libtorrent's automatic choice aim for: enough pieces for fine-grained
/// verification and parallel fetching, few enough that the piece hashes stay
/// small (2000 × 20 bytes). Datasets over about 32 GiB get 16 MiB pieces and
/// more than 2000 of them; reads never fetch less than a piece, so larger
/// pieces would make small random reads costly.
pub fn default_piece_length_log2(total: u64) -> u8 {
    const MAX_DEFAULT_LOG2: u8 = 24;
    let mut log2 = MIN_PIECE_LENGTH_LOG2;
    while log2 < MAX_DEFAULT_LOG2 && total.div_ceil(1u64 << log2) > 2000 {
        log2 += 1;
    }
    log2
}

/// A file to include: its path below the torrent's name and on disk.
struct Entry {
    segments: Vec<String>,
    fs_path: PathBuf,
    length: u64,
}

/// Collect the regular files under `dir` (whose segments below the root are
/// `prefix`) into `out`, charging each file's share of the metainfo to
/// `budget` (bytes left under the metainfo size bound).
fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    out: &mut Vec<Entry>,
    budget: &mut usize,
) -> Result<()> {
    let context = |e: std::io::Error| Error::from(e).context(dir.display());
    if prefix.len() >= MAX_TREE_DEPTH {
        return Err(Error::invalid(format!(
            "{}: directories nested deeper than {MAX_TREE_DEPTH} levels",
            dir.display()
        )));
    }
    for entry in fs::read_dir(dir).map_err(context)? {
        let entry = entry.map_err(context)?;
        let fs_path = entry.path();
        // `DirEntry::file_type` does not follow symbolic links.
        let kind = entry.file_type().map_err(context)?;
        if !kind.is_file() && !kind.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| Error::invalid(format!("{}: name is not UTF-8", fs_path.display())))?;
        check_segment(name).map_err(|why| {
            Error::invalid(format!("{}: unusable name: {why}", fs_path.display()))
        })?;
        prefix.push(name.to_string());
        if kind.is_dir() {
            walk(&fs_path, prefix, out, budget)?;
        } else {
            let cost = FILE_ENTRY_OVERHEAD + prefix.iter().map(|s| s.len() + 2).sum::<usize>();
            *budget = budget.checked_sub(cost).ok_or_else(|| {
                Error::new(
                    libc::EFBIG,
                    format!(
                        "{}: the tree has too many files ({} so far) for a metainfo of at most {} MiB",
                        fs_path.display(),
                        out.len(),
                        metainfo::MAX_METAINFO_BYTES >> 20
                    ),
                )
            })?;
            let length = entry.metadata().map_err(context)?.len();
            out.push(Entry {
                segments: prefix.clone(),
                fs_path,
                length,
            });
        }
        prefix.pop();
    }
    Ok(())
}

/// SHA-1 of every piece of the files laid end to end, concatenated.
fn hash_pieces(files: &[Entry], piece_length: u64, total: u64) -> Result<Vec<u8>> {
    // A buffer no larger than the data: a small file with a large piece
    // length need not allocate a whole piece.
    let buf_len = usize::try_from(piece_length.min(total))
        .map_err(|_| Error::invalid("piece length does not fit in memory"))?;
    if buf_len == 0 {
        // Only empty files: no piece to hash, and a torrent without pieces
        // is refused by every peer (and by gtio's own parser).
        return Err(Error::invalid(
            "the dataset has no data (only empty files): a torrent needs at least one piece",
        ));
    }
    let mut buf = vec![0u8; buf_len];
    // Invariant at the top of each read: 0 <= filled < buf.len(), so the
    // space read into is never empty (an empty read would look like EOF).
    let mut filled = 0usize;
    let count = usize::try_from(total.div_ceil(piece_length)).unwrap_or(0);
    let mut pieces = Vec::with_capacity(count.saturating_mul(20));

    for f in files {
        let shown = f.fs_path.display();
        let file = File::open(&f.fs_path).map_err(|e| Error::from(e).context(&shown))?;
        // Read no more than the length recorded in the metainfo.
        let mut reader = file.take(f.length);
        let mut read_total = 0u64;
        while let Some(space) = buf.get_mut(filled..) {
            match reader.read(space) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    read_total += n as u64;
                    if filled >= buf.len() {
                        pieces.extend_from_slice(&Sha1::digest(&buf));
                        filled = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from(e).context(&shown)),
            }
        }
        if read_total != f.length {
            return Err(Error::io(format!(
                "{shown}: file shrank while hashing ({read_total} of {} bytes)",
                f.length
            )));
        }
    }
    // The last, short piece.
    if let Some(rest) = buf.get(..filled).filter(|r| !r.is_empty()) {
        pieces.extend_from_slice(&Sha1::digest(rest));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests;
