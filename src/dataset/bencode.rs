//! A strict bencode decoder and a small encoder.
//!
//! Bencode is the serialisation of BitTorrent metainfo: integers `i42e`, byte
//! strings `4:spam`, lists `l...e` and dictionaries `d...e` whose keys are byte
//! strings in sorted order. This module is hand-written rather than taken from
//! a crate for three reasons:
//!
//! - **Strictness.** Every value has exactly one valid encoding: no leading
//!   zeros, no `-0`, no duplicate dictionary keys, nothing after the
//!   top-level value but one newline. Out-of-order keys are accepted (as
//!   libtorrent does) and sorted in the decoded [`Dict`]. The info-hash that names a
//!   torrent is the SHA-1 of the *bytes* of its `info` dictionary, so a lenient
//!   decoder would let two different byte strings that "mean" the same
//!   metainfo produce different info-hashes, and a re-encoded dictionary would
//!   not hash like the original. Accepting only canonical input means
//!   `encode(decode(x)) == x` for every `x` we accept (a property test holds
//!   us to it).
//! - **Raw spans.** Every decoded [`Dict`] keeps the exact byte span it was
//!   decoded from ([`Dict::raw`]); the info-hash is computed over that span,
//!   never over a re-encoding.
//! - **Bounded work and allocation.** Input is untrusted. Nothing is allocated
//!   from a declared length: a string's length is checked against the bytes
//!   that remain before it is sliced (strings borrow from the input, so they
//!   are never copied), and containers grow one decoded element at a time.
//!   Nesting is limited to [`MAX_DEPTH`] levels, so recursion cannot exhaust
//!   the stack, and the total number of values is capped
//!   ([`Limits::max_values`]), which bounds the decoded tree to a constant
//!   factor of that cap whatever the input size.
//!
//! Keys are strict at every level, not only inside `info`. Outside `info` a
//! misordered key would not change any hash, but real metainfo writers
//! (libtorrent, mktorrent, Transmission, torf) all sort, and one rule
//! everywhere is simpler to reason about than two.
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
/// it.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Value<'_>> {
    let mut d = Decoder {
        input,
        pos: 0,
        limits,
        values: 0,
    };
    let value = d.value(1)?;
    // A trailing newline (a file written by `echo` or an editor) is
    // accepted, as libtorrent does; anything else after the value is not.
    let rest = input.get(d.pos..).unwrap_or_default();
    if !matches!(rest, b"" | b"\n" | b"\r\n") {
        return Err(d.err("trailing data after the top-level value"));
    }
    Ok(value)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    values: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, what: &str) -> Error {
        Error::invalid(format!("bencode: {what} at byte {}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(self.err(&format!("more than {} values", self.limits.max_values)));
        }
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'i') => self.int().map(Value::Int),
            Some(b'0'..=b'9') => self.bytes().map(Value::Bytes),
            Some(b'l') => {
                self.enter(depth)?;
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated list")),
                        Some(b'e') => break,
                        Some(_) => items.push(self.value(depth + 1)?),
                    }
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            Some(b'd') => self.dict(depth).map(Value::Dict),
            Some(c) => Err(self.err(&format!("unexpected byte 0x{c:02x}"))),
        }
    }

    fn enter(&self, depth: usize) -> Result<()> {
        if depth > self.limits.max_depth {
            return Err(self.err(&format!(
                "nesting deeper than {} levels",
                self.limits.max_depth
            )));
        }
        Ok(())
    }

    fn dict(&mut self, depth: usize) -> Result<Dict<'a>> {
        self.enter(depth)?;
        let start = self.pos;
        self.pos += 1;
        let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        let mut unsorted = false;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated dictionary")),
                Some(b'e') => break,
                Some(b'0'..=b'9') => {}
                Some(_) => return Err(self.err("dictionary key is not a string")),
            }
            let key_pos = self.pos;
            let key = self.bytes()?;
            if entries.last().is_some_and(|(prev, _)| key <= *prev) {
                // Out of order: libtorrent accepts it and the info-hash is
                // taken over the raw bytes, so only a duplicate (which would
                // make a lookup ambiguous) is refused.
                if entries.iter().any(|(k, _)| *k == key) {
                    self.pos = key_pos;
                    return Err(self.err(&format!(
                        "duplicate dictionary key ({:?})",
                        String::from_utf8_lossy(key)
                    )));
                }
                unsorted = true;
            }
            if self.peek().is_none() {
                return Err(self.err("dictionary key without a value"));
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        self.pos += 1;
        if unsorted {
            // Keys are unique (checked above); restore the sorted invariant.
            entries.sort_by(|a, b| a.0.cmp(b.0));
        }
        Ok(Dict {
            entries,
            raw: self.input.get(start..self.pos),
        })
    }

    /// Digits up to `end`, as a non-negative number with no leading zero.
    fn digits(&mut self, end: u8, what: &str) -> Result<u64> {
        let start = self.pos;
        let mut n: u64 = 0;
        loop {
            match self.peek() {
                Some(c @ b'0'..=b'9') => {
                    if self.pos > start && n == 0 {
                        self.pos = start;
                        return Err(self.err(&format!("leading zero in {what}")));
                    }
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(c - b'0')))
                        .ok_or_else(|| self.err(&format!("{what} overflows")))?;
                    self.pos += 1;
                }
                Some(c) if c == end && self.pos > start => {
                    self.pos += 1;
                    return Ok(n);
                }
                None => return Err(self.err(&format!("unterminated {what}"))),
                Some(_) => return Err(self.err(&format!("malformed {what}"))),
            }
        }
    }

    fn int(&mut self) -> Result<i64> {
        self.pos += 1; // 'i'
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let at = self.pos;
        let magnitude = self.digits(b'e', "integer")?;
        if negative {
            if magnitude == 0 {
                self.pos = at;
                return Err(self.err("negative zero"));
            }
            // -(2^63) is representable; anything beyond is not.
            0i64.checked_sub_unsigned(magnitude)
                .ok_or_else(|| self.err("integer overflows i64"))
        } else {
            i64::try_from(magnitude).map_err(|_| self.err("integer overflows i64"))
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.digits(b':', "string length")?;
        let remaining = self.input.len().saturating_sub(self.pos);
        // Check the declared length against what is left before using it.
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= remaining)
            .ok_or_else(|| {
                self.err(&format!(
                    "string length {len} exceeds the {remaining} bytes left"
                ))
            })?;
        let s = self
            .input
            .get(self.pos..self.pos + len)
            .ok_or_else(|| self.err("string out of bounds"))?;
        self.pos += len;
        Ok(s)
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

#[cfg(test)]
mod tests;
