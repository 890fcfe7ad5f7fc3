//! BEP 19 web seeds: which URL serves which bytes of the stream.
//!
//! A web seed is a plain HTTP(S) server holding the torrent's files. BEP 19
//! maps them to URLs like this:
//!
//! - single-file torrent: the seed URL names the file itself, unless it ends
//!   in `/`, in which case the torrent's name is appended;
//! - multi-file torrent: the seed URL is a root; a file lives at
//!   `root/name/seg1/seg2/...`, a `/` being added after the root if missing.
//!
//! Names and segments are percent-encoded byte by byte: everything except
//! RFC 3986 *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`.
//! Encoding more than strictly needed is always safe — a server decodes `%41`
//! and `A` alike — while encoding too little is not (Transmission #1628 sent
//! spaces and `#` raw). Metainfo validation already guarantees segments
//! contain no `/`, so an encoded segment is exactly one URL path segment.
//!
//! A seed URL may carry a query string (a bearer token, say); paths are
//! inserted before the `?` so the query stays a query.
//!
//! [`plan`] splits a stream range into one request per file it touches,
//! because a web seed only knows files: a piece spanning three files is three
//! HTTP range requests. Pad files (BEP 47) are never requested — no seed has
//! them, and their bytes are zeros by definition — and neither are empty
//! files. Callers find the pad bytes as the gaps between consecutive
//! requests' `stream_offset`s. Everything here is pure: no I/O, no state.

use std::ops::Range;

use crate::dataset::metainfo::Metainfo;

/// One HTTP range request against a web seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRequest {
    /// The file's URL on the seed.
    pub url: String,
    /// First byte wanted, relative to the start of the file.
    pub file_offset: u64,
    /// Number of bytes wanted (never 0).
    pub len: u64,
    /// Where those bytes go in the stream.
    pub stream_offset: u64,
}

/// URL of file `file_index` on `seed`; `None` if there is no such file.
pub fn file_url(meta: &Metainfo, seed: &str, file_index: usize) -> Option<String> {
    let file = meta.files.get(file_index)?;
    // Keep any query string or fragment out of the way of the path.
    let split = seed.find(['?', '#']).unwrap_or(seed.len());
    let (base, query) = seed.split_at(split);
    let mut url = String::with_capacity(seed.len() + 3 * meta.name.len());
    url.push_str(base);
    if meta.multi_file {
        if !base.ends_with('/') {
            url.push('/');
        }
        encode_segment(&meta.name, &mut url);
        for seg in file.segments() {
            url.push('/');
            encode_segment(seg, &mut url);
        }
    } else if base.ends_with('/') {
        encode_segment(&meta.name, &mut url);
    }
    url.push_str(query);
    Some(url)
}

/// The requests that fetch the non-pad bytes of `range` (clamped to the
/// stream) from `seed`, in stream order.
pub fn plan(meta: &Metainfo, seed: &str, range: Range<u64>) -> Vec<SeedRequest> {
    let start = range.start;
    let end = range.end.min(meta.total_length);
    let mut out = Vec::new();
    if start >= end {
        return out;
    }
    // Files are in stream order, so their ends are non-decreasing: the first
    // file ending after `start` is the first one the range touches.
    let first = meta
        .files
        .partition_point(|f| f.offset.saturating_add(f.length) <= start);
    for (index, file) in meta.files.iter().enumerate().skip(first) {
        if file.offset >= end {
            break;
        }
        if file.pad || file.length == 0 {
            continue;
        }
        let from = start.max(file.offset);
        let to = end.min(file.offset.saturating_add(file.length));
        if from >= to {
            continue;
        }
        if let Some(url) = file_url(meta, seed, index) {
            out.push(SeedRequest {
                url,
                file_offset: from - file.offset,
                len: to - from,
                stream_offset: from,
            });
        }
    }
    out
}

/// Append `s` to `out`, percent-encoding every byte that is not an RFC 3986
/// unreserved character.
pub fn encode_segment(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests;
