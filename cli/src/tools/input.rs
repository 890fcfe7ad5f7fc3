//! What the tool's `<torrent-or-uri>` arguments name.
//!
//! An argument with `://` is a URI and goes to [`Dataset::open`] as is (a
//! torrent when it ends in `.torrent` or the server says so). Anything else
//! is a local path: a `.torrent` file is read and opened as metainfo, any
//! other regular file is opened as a plain `file://` object.

use std::io::Read;
use std::path::Path;

use super::{Failure, Outcome};
use gtio::dataset::metainfo::MAX_METAINFO_BYTES;
use gtio::error::redact_url;
use gtio::Dataset;

/// How an argument is named in messages: URIs lose credentials and query
/// strings.
pub fn shown(arg: &str) -> String {
    if arg.contains("://") {
        redact_url(arg)
    } else {
        arg.to_string()
    }
}

/// Open the dataset `arg` names.
pub fn open(arg: &str, cred: Option<&str>) -> Outcome<Dataset> {
    let what = shown(arg);
    if arg.contains("://") {
        return Dataset::open(arg, cred).map_err(|e| named(what, e));
    }
    let path = Path::new(arg);
    let meta = std::fs::metadata(path).map_err(|e| Failure::new(&what, io_message(&e)))?;
    if meta.is_dir() {
        return Err(Failure::new(
            what,
            "is a directory (make a torrent of it with `gtio create`, or serve it with `gtio serve`)",
        ));
    }
    if arg.to_ascii_lowercase().ends_with(".torrent") {
        let file = std::fs::File::open(path).map_err(|e| Failure::new(&what, io_message(&e)))?;
        let mut bytes = Vec::new();
        file.take(MAX_METAINFO_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::new(&what, io_message(&e)))?;
        if bytes.len() > MAX_METAINFO_BYTES {
            return Err(Failure::new(what, "larger than the 64 MiB metainfo limit"));
        }
        return Dataset::open_gto(&bytes, cred).map_err(|e| Failure::new(what, e));
    }
    let abs = std::path::absolute(path).map_err(|e| Failure::new(&what, io_message(&e)))?;
    let abs = abs
        .to_str()
        .ok_or_else(|| Failure::new(&what, "path is not UTF-8"))?;
    Dataset::open(&file_uri(abs), cred).map_err(|e| named(what, e))
}

/// The library's error about `what`, which is named once: the library's
/// messages about a URI quote it already (redacted as [`shown`] does), and a
/// prefix would say it twice.
fn named(what: String, e: impl std::fmt::Display) -> Failure {
    let message = e.to_string();
    if message.contains(&what) {
        Failure::new("", message)
    } else {
        Failure::new(what, message)
    }
}

/// A `file://` URI for an absolute path: `%`, `?` and `#` escaped, the rest
/// as is (gtio's `file://` reader decodes `%XX` and nothing else).
pub fn file_uri(abs: &str) -> String {
    let mut uri = String::from("file://");
    for c in abs.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3F"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri
}

/// An I/O error's message without Rust's " (os error N)" suffix.
pub fn io_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(file_uri("/a b/c%?#.bin"), "file:///a b/c%25%3F%23.bin");
        assert_eq!(shown("https://u:p@h/x?sig=1"), "https://h/x?…");
        assert_eq!(shown("./x.torrent"), "./x.torrent");
    }
}
