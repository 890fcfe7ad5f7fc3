//! A bencode decoder and a small encoder.
//!
//! Bencode is the serialisation of BitTorrent metainfo: integers `i42e`, byte
//! strings `4:spam`, lists `l...e` and dictionaries `d...e` whose keys are byte
//! strings, sorted by every writer. This module is hand-written rather than
//! taken from a crate for three reasons:
//!
//! - **As liberal as libtorrent, as strict as safety needs.** Integers must be
//!   canonical (no leading zeros, no `-0`) and fit `i64`, and a dictionary key
//!   may not repeat (two readers could disagree on which one counts). Keys out
//!   of order and one trailing newline after the top-level value are
//!   accepted, as libtorrent accepts them: refusing them protects nothing,
//!   because the info-hash that names a torrent is the SHA-1 of the *bytes* of
//!   its `info` dictionary, never of a re-encoding. For canonical input
//!   `encode(decode(x)) == x` (a property test holds us to it).
//! - **Raw spans, in place.** [`raw`] validates a document and then reads it
//!   by borrowing slices of the input, with no tree at all: that is how
//!   metainfo is parsed, so a metainfo's parse costs a small multiple of its
//!   size. [`decode`] builds a [`Value`] tree on top of the same validation
//!   for small documents; every decoded [`Dict`] keeps the exact byte span it
//!   was decoded from ([`Dict::raw`]).
//! - **Bounded work and allocation.** Input is untrusted. Nothing is allocated
//!   from a declared length: a string's length is checked against the bytes
//!   that remain before it is sliced (strings borrow from the input, so they
//!   are never copied). Nesting is limited to [`MAX_DEPTH`] levels, so
//!   recursion cannot exhaust the stack, and the total number of values is
//!   capped ([`Limits::max_values`]). Duplicate keys are found in
//!   `O(n log n)`, never by comparing every pair.
//!
//! Every failure is `EINVAL` with a message that says what is wrong and at
//! which byte offset.

use crate::error::{Error, Result};

/// Deepest nesting of lists and dictionaries accepted by the decoder.
pub const MAX_DEPTH: usize = 64;

/// Resource limits for [`decode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries (the top-level value is at
    /// depth 1).
    pub max_depth: usize,
    /// Most values (integers, strings, lists, dictionaries; dictionary keys
    /// are not counted) in one document.
    pub max_values: usize,
}

impl Default for Limits {
    /// [`MAX_DEPTH`] levels and 8 Mi values: room for metainfo with well over
    /// a million files (about five values per file) while keeping the decoded
    /// tree within a few hundred MiB in the worst case.
    fn default() -> Self {
        Limits {
            max_depth: MAX_DEPTH,
            max_values: 8 << 20,
        }
    }
}

/// A decoded bencode value. Strings borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

impl<'a> Value<'a> {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// "an integer", "a string", "a list" or "a dictionary", for error
    /// messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Bytes(_) => "a string",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dictionary",
        }
    }
}

/// A dictionary: entries in strictly increasing key order, plus the bytes it
/// was decoded from.
#[derive(Debug, Clone, Eq)]
pub struct Dict<'a> {
    /// Invariant: keys strictly increasing (bytewise), so the encoder can
    /// write them in order and [`Dict::get`] can binary-search.
    entries: Vec<(&'a [u8], Value<'a>)>,
    raw: Option<&'a [u8]>,
}

/// Equality is by content; where a dictionary came from does not matter.
impl PartialEq for Dict<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<'a> Dict<'a> {
    /// Build a dictionary in memory (for encoding). Entries may come in any
    /// order; a key given twice is an error.
    pub fn from_entries(mut entries: Vec<(&'a [u8], Value<'a>)>) -> Result<Self> {
        entries.sort_by(|a, b| a.0.cmp(b.0));
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::invalid(format!(
                "bencode: duplicate dictionary key {:?}",
                String::from_utf8_lossy(w[0].0)
            )));
        }
        Ok(Dict { entries, raw: None })
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|(_, v)| v)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> + '_ {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The exact bytes this dictionary was decoded from, `d` to `e`
    /// inclusive; `None` for a dictionary built with [`Dict::from_entries`].
    pub fn raw(&self) -> Option<&'a [u8]> {
        self.raw
    }
}

/// Decode one complete bencode document with the default [`Limits`].
pub fn decode(input: &[u8]) -> Result<Value<'_>> {
    decode_with(input, Limits::default())
}

/// Decode one complete bencode document: exactly one value and nothing after
/// it but one newline. Validation is [`raw::parse`]'s; the tree is then built
/// from the validated bytes.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Value<'_>> {
    let top = raw::parse(input, limits)?;
    Ok(build(top))
}

/// The tree of a validated value. Recursion is bounded by the validated
/// nesting depth.
fn build(v: raw::Raw<'_>) -> Value<'_> {
    if let Some(i) = v.as_int() {
        Value::Int(i)
    } else if let Some(b) = v.as_bytes() {
        Value::Bytes(b)
    } else if let Some(items) = v.list() {
        Value::List(items.map(build).collect())
    } else if let Some(d) = v.dict() {
        let mut entries: Vec<(&[u8], Value<'_>)> = d.iter().map(|(k, v)| (k, build(v))).collect();
        // Keys are unique (validated); restore the sorted invariant.
        entries.sort_by(|a, b| a.0.cmp(b.0));
        Value::Dict(Dict {
            entries,
            raw: Some(d.encoded()),
        })
    } else {
        // Unreachable for validated input; an empty string is harmless.
        Value::Bytes(b"")
    }
}

/// Encode a value canonically (sorted keys, minimal integers).
pub fn encode(value: &Value<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Append the canonical encoding of `value` to `out`.
pub fn encode_into(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => encode_bytes(b, out),
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode_into(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(d) => {
            out.push(b'd');
            // Keys are already strictly increasing (the Dict invariant).
            for (k, v) in d.iter() {
                encode_bytes(k, out);
                encode_into(v, out);
            }
            out.push(b'e');
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

pub mod raw;

#[cfg(test)]
mod tests;
