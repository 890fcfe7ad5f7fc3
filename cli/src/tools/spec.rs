//! `gtio get`'s range specifications: `ID:START:LEN` and `ID:NAME:START:LEN`.
//!
//! START and LEN are decimal byte counts. IDs and names may themselves
//! contain `:`, so the numbers are taken from the right, and for a file range
//! the ID is the longest dataset ID that the rest begins with (followed by
//! `:`); what follows it is the file name.

/// A parsed specification, before its ID is resolved against the datasets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The text as given, for messages.
    pub text: String,
    /// `ID` for a stream range; `ID:NAME` for a file range.
    pub target: String,
    pub start: u64,
    pub len: u64,
    pub kind: SpecKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecKind {
    /// `--range ID:START:LEN`: bytes of the dataset's stream.
    Stream,
    /// `--file-range ID:NAME:START:LEN`: bytes of one file.
    File,
}

impl Spec {
    /// The option it came from, for messages.
    pub fn option(&self) -> &'static str {
        match self.kind {
            SpecKind::Stream => "--range",
            SpecKind::File => "--file-range",
        }
    }
}

/// Parse `ID:START:LEN` (`SpecKind::Stream`) or `ID:NAME:START:LEN`
/// (`SpecKind::File`).
pub fn parse(text: &str, kind: SpecKind) -> Result<Spec, String> {
    let form = match kind {
        SpecKind::Stream => "ID:START:LEN",
        SpecKind::File => "ID:NAME:START:LEN",
    };
    let mut parts = text.rsplitn(3, ':');
    let (len, start, target) = match (parts.next(), parts.next(), parts.next()) {
        (Some(l), Some(s), Some(t)) => (l, s, t),
        _ => return Err(format!("expected {form}")),
    };
    let number = |what: &str, s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{what} {s:?} is not a decimal byte count (expected {form})"
            ));
        }
        s.parse::<u64>()
            .map_err(|_| format!("{what} {s} is too large"))
    };
    let start = number("START", start)?;
    let len = number("LEN", len)?;
    if start.checked_add(len).is_none() {
        return Err(format!("START + LEN ({start} + {len}) overflows"));
    }
    if target.is_empty() {
        return Err(format!("empty ID (expected {form})"));
    }
    if kind == SpecKind::File && !target.contains(':') {
        return Err(format!("no file name (expected {form})"));
    }
    Ok(Spec {
        text: text.to_string(),
        target: target.to_string(),
        start,
        len,
        kind,
    })
}

/// Split a file range's `ID:NAME` at the longest of `ids` it begins with.
/// Returns the index into `ids` and NAME.
pub fn split_id_name<'a, S: AsRef<str>>(target: &'a str, ids: &[S]) -> Option<(usize, &'a str)> {
    ids.iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let id = id.as_ref();
            let rest = target.strip_prefix(id)?.strip_prefix(':')?;
            Some((i, id.len(), rest))
        })
        .max_by_key(|&(_, n, _)| n)
        .map(|(i, _, rest)| (i, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_specs() {
        let s = parse("data:10:20", SpecKind::Stream).unwrap();
        assert_eq!((s.target.as_str(), s.start, s.len), ("data", 10, 20));
        let s = parse("a:b:0:1", SpecKind::Stream).unwrap();
        assert_eq!(s.target, "a:b");
        for bad in [
            "", "x", "x:1", ":1:2", "x:-1:2", "x:1:+2", "x:1:2k", "x:1: 2",
        ] {
            assert!(parse(bad, SpecKind::Stream).is_err(), "{bad:?}");
        }
        assert!(parse("x:18446744073709551615:1", SpecKind::Stream).is_err());
        assert!(parse("x:99999999999999999999:1", SpecKind::Stream).is_err());
    }

    #[test]
    fn file_specs() {
        let s = parse("t:dir/f.bin:0:5", SpecKind::File).unwrap();
        assert_eq!(s.target, "t:dir/f.bin");
        assert!(parse("t:0:5", SpecKind::File).is_err());
        let ids = ["t", "t:x"];
        assert_eq!(split_id_name("t:x:y", &ids), Some((1, "y")));
        assert_eq!(split_id_name("t:y", &ids), Some((0, "y")));
        assert_eq!(split_id_name("u:y", &ids), None);
    }
}
