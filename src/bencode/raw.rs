//! Bencode read in place: validate a document once, then walk it by
//! borrowing slices of the input, never building a tree.
//!
//! [`super::decode`] builds a [`super::Value`] tree, which is convenient for
//! small documents but costs far more than the input: every list item and
//! dictionary entry is a 48–64 byte node in a growable vector, so a 58 MB
//! metainfo with 1.6 million files decoded to about 800 MB of tree before a
//! single file was looked at. Metainfo parsing reads each value once, in
//! order, so it needs no tree at all: [`parse`] checks the whole document in
//! one pass that allocates nothing sized by the input (the only buffer is the
//! key stack described below), and returns a [`Raw`] — the exact bytes of
//! the top-level value. A `Raw` is read with [`Raw::as_int`],
//! [`Raw::as_bytes`], [`Raw::list`] and [`Raw::dict`], which re-scan its
//! bytes lazily. Because the document was validated first, the re-scan
//! cannot fail; it still never indexes out of bounds (it stops at the end of
//! its slice), so a logic error here is a wrong value, never a panic.
//!
//! The rules are those of the module above: integers canonical (no leading
//! zero, no `-0`) and within `i64`; string lengths checked against the bytes
//! left before they are used; nesting and the number of values bounded by
//! [`Limits`]; dictionary keys are strings, in any order but never
//! duplicated (a duplicate would make lookups ambiguous, and two readers
//! could disagree on which one counts); after the top-level value only one
//! trailing newline.
//!
//! Duplicate detection in sorted dictionaries (what every writer produces)
//! only compares each key with the one before it. Keys of every open
//! dictionary are kept on one stack so that an *unsorted* dictionary can be
//! sorted and checked for neighbours when it closes — `O(n log n)`, where
//! comparing each key with all earlier ones would be quadratic (a hostile
//! dictionary of a million keys would take hours). The stack holds only the
//! keys of the dictionaries that are open at that moment, so for metainfo it
//! stays a handful of entries.

use std::cmp::Ordering;

use super::Limits;
use crate::error::{Error, Result};

/// The exact encoding of one value of a validated document.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a> {
    enc: &'a [u8],
}

impl std::fmt::Debug for Raw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Raw({:?})", String::from_utf8_lossy(self.enc))
    }
}

/// Validate `input` as one complete bencode document and return its
/// top-level value.
pub fn parse(input: &[u8], limits: Limits) -> Result<Raw<'_>> {
    let mut v = Validator {
        input,
        pos: 0,
        limits,
        values: 0,
        keys: Vec::new(),
    };
    v.value(1)?;
    let end = v.pos;
    // A trailing newline (a file written by `echo` or an editor) is
    // accepted, as libtorrent does; anything else after the value is not.
    let rest = input.get(end..).unwrap_or_default();
    if !matches!(rest, b"" | b"\n" | b"\r\n") {
        return Err(v.err("trailing data after the top-level value"));
    }
    Ok(Raw {
        enc: input.get(..end).unwrap_or_default(),
    })
}

impl<'a> Raw<'a> {
    /// The bytes this value was encoded as (for a dictionary, `d` to `e`
    /// inclusive: what an info-hash is computed over).
    pub fn encoded(&self) -> &'a [u8] {
        self.enc
    }

    /// "an integer", "a string", "a list" or "a dictionary", for messages.
    pub fn kind(&self) -> &'static str {
        match self.enc.first() {
            Some(b'i') => "an integer",
            Some(b'l') => "a list",
            Some(b'd') => "a dictionary",
            _ => "a string",
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        let body = self.enc.strip_prefix(b"i")?.strip_suffix(b"e")?;
        // Validated: canonical and within i64, so std's parser agrees.
        std::str::from_utf8(body).ok()?.parse().ok()
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        if !self.enc.first().is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let (start, end) = string_at(self.enc, 0)?;
        self.enc.get(start..end)
    }

    /// The list's items, if this is a list.
    pub fn list(&self) -> Option<List<'a>> {
        match self.enc {
            [b'l', inner @ .., b'e'] => Some(List { rest: inner }),
            _ => None,
        }
    }

    /// The dictionary's entries, if this is a dictionary.
    pub fn dict(&self) -> Option<RawDict<'a>> {
        match self.enc {
            [b'd', inner @ .., b'e'] => Some(RawDict {
                enc: self.enc,
                inner,
            }),
            _ => None,
        }
    }
}

/// The items of a list, in order.
#[derive(Clone, Debug)]
pub struct List<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for List<'a> {
    type Item = Raw<'a>;

    fn next(&mut self) -> Option<Raw<'a>> {
        let (item, rest) = split_value(self.rest)?;
        self.rest = rest;
        Some(item)
    }
}

impl List<'_> {
    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// A dictionary, read entry by entry in the order written.
#[derive(Clone, Copy, Debug)]
pub struct RawDict<'a> {
    enc: &'a [u8],
    inner: &'a [u8],
}

impl<'a> RawDict<'a> {
    /// `(key, value)` pairs in the order written (not necessarily sorted).
    pub fn iter(&self) -> DictIter<'a> {
        DictIter { rest: self.inner }
    }

    /// The value under `key`: a linear scan, so for a dictionary with many
    /// keys or a large value read the entries once with [`RawDict::iter`].
    pub fn get(&self, key: &[u8]) -> Option<Raw<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The bytes of the dictionary, `d` to `e` inclusive.
    pub fn encoded(&self) -> &'a [u8] {
        self.enc
    }
}

/// Iterator over a [`RawDict`]'s entries.
#[derive(Clone, Debug)]
pub struct DictIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for DictIter<'a> {
    type Item = (&'a [u8], Raw<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, rest) = split_value(self.rest)?;
        let (value, rest) = split_value(rest)?;
        self.rest = rest;
        Some((key.as_bytes()?, value))
    }
}

/// The string whose length prefix starts at `at` in `buf`: the range of its
/// bytes. `None` (never expected after validation) when malformed.
fn string_at(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let digits = buf.get(at..)?;
    let colon = digits.iter().position(|&c| c == b':')?;
    let len: usize = std::str::from_utf8(digits.get(..colon)?)
        .ok()?
        .parse()
        .ok()?;
    let start = at + colon + 1;
    let end = start.checked_add(len)?;
    (end <= buf.len()).then_some((start, end))
}

/// Split the first (validated) value off `buf`: `(value, rest)`. Iterative,
/// so the depth of the value costs no stack.
fn split_value(buf: &[u8]) -> Option<(Raw<'_>, &[u8])> {
    let mut pos = 0usize;
    let mut depth = 0usize;
    loop {
        match *buf.get(pos)? {
            b'i' => pos += buf.get(pos..)?.iter().position(|&c| c == b'e')? + 1,
            b'0'..=b'9' => pos = string_at(buf, pos)?.1,
            b'l' | b'd' => {
                depth += 1;
                pos += 1;
            }
            b'e' => {
                depth = depth.checked_sub(1)?;
                pos += 1;
            }
            _ => return None,
        }
        if depth == 0 {
            let (value, rest) = buf.split_at(pos);
            return Some((Raw { enc: value }, rest));
        }
    }
}

struct Validator<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    values: usize,
    /// Keys of the dictionaries open right now, outermost first.
    keys: Vec<&'a [u8]>,
}

impl<'a> Validator<'a> {
    fn err(&self, what: &str) -> Error {
        Error::invalid(format!("bencode: {what} at byte {}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<()> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(self.err(&format!("more than {} values", self.limits.max_values)));
        }
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'i') => self.int().map(drop),
            Some(b'0'..=b'9') => self.bytes().map(drop),
            Some(b'l') => {
                self.enter(depth)?;
                self.pos += 1;
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated list")),
                        Some(b'e') => break,
                        Some(_) => self.value(depth + 1)?,
                    }
                }
                self.pos += 1;
                Ok(())
            }
            Some(b'd') => self.dict(depth),
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

    fn dict(&mut self, depth: usize) -> Result<()> {
        self.enter(depth)?;
        self.pos += 1;
        let base = self.keys.len();
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
            if let Some(prev) = self.keys.get(base..).and_then(<[_]>::last) {
                match key.cmp(prev) {
                    Ordering::Greater => {}
                    Ordering::Equal => {
                        self.pos = key_pos;
                        return Err(self.duplicate(key));
                    }
                    // Out of order: libtorrent accepts it and the info-hash
                    // is taken over the raw bytes; duplicates are looked for
                    // when the dictionary closes.
                    Ordering::Less => unsorted = true,
                }
            }
            self.keys.push(key);
            if self.peek().is_none() {
                return Err(self.err("dictionary key without a value"));
            }
            self.value(depth + 1)?;
        }
        if unsorted {
            if let Some(mine) = self.keys.get_mut(base..) {
                mine.sort_unstable();
                if let Some(w) = mine.windows(2).find(|w| w[0] == w[1]) {
                    let key = w[0];
                    return Err(self.duplicate(key));
                }
            }
        }
        self.keys.truncate(base);
        self.pos += 1;
        Ok(())
    }

    fn duplicate(&self, key: &[u8]) -> Error {
        self.err(&format!(
            "duplicate dictionary key ({:?})",
            String::from_utf8_lossy(key)
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(input: &[u8]) -> Raw<'_> {
        parse(input, Limits::default()).unwrap()
    }

    #[test]
    fn reads_each_kind_in_place() {
        assert_eq!(raw(b"i-42e").as_int(), Some(-42));
        assert_eq!(raw(b"4:spam").as_bytes(), Some(&b"spam"[..]));
        assert_eq!(raw(b"0:").as_bytes(), Some(&b""[..]));
        assert_eq!(raw(b"4:spam").as_int(), None);
        let l: Vec<_> = raw(b"l1:ai1eli2eee").list().unwrap().collect();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].as_bytes(), Some(&b"a"[..]));
        assert_eq!(l[1].as_int(), Some(1));
        assert_eq!(l[2].encoded(), b"li2ee");
        assert!(raw(b"le").list().unwrap().is_empty());
        let input = b"d1:bd1:ci3ee1:a2:xye\n";
        let d = raw(input).dict().unwrap();
        assert_eq!(d.encoded(), &input[..input.len() - 1]);
        let keys: Vec<_> = d.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [&b"b"[..], b"a"]);
        assert_eq!(d.get(b"a").and_then(|v| v.as_bytes()), Some(&b"xy"[..]));
        let inner = d.get(b"b").and_then(|v| v.dict()).unwrap();
        assert_eq!(inner.get(b"c").and_then(|v| v.as_int()), Some(3));
        assert_eq!(d.get(b"z"), None);
    }

    #[test]
    fn duplicate_keys_are_refused_sorted_or_not() {
        for input in [&b"d1:ai1e1:ai2ee"[..], b"d1:bi1e1:ai2e1:bi3ee"] {
            let e = parse(input, Limits::default()).unwrap_err();
            assert!(e.message().contains("duplicate dictionary key"), "{e}");
        }
        // The same key in two different dictionaries is fine.
        raw(b"d1:ad1:ai1ee1:bd1:ai1eee");
    }

    #[test]
    fn unsorted_dictionary_of_many_keys_is_fast() {
        // Keys in descending order: quadratic duplicate detection would do
        // 2·10^10 comparisons here.
        let mut doc = b"d".to_vec();
        for i in (0..200_000u32).rev() {
            doc.extend_from_slice(format!("8:{i:08}i0e").as_bytes());
        }
        doc.push(b'e');
        let t = std::time::Instant::now();
        assert_eq!(raw(&doc).dict().unwrap().iter().count(), 200_000);
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    }
}
