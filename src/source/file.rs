//! `file://` objects: local files read with `pread`, for demos, tests and
//! datasets that happen to be local.
//!
//! The file's size and modification time are pinned at open, like an HTTP
//! object's validator: a file that changes under a handle gives `ESTALE`.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{Fault, RangeSource};
use crate::{Error, Result};

pub struct FileObject {
    path: PathBuf,
    file: File,
    size: u64,
    modified: Option<SystemTime>,
}

impl FileObject {
    pub fn open(uri: &str) -> Result<FileObject> {
        let path = path_of_file_uri(uri)?;
        let file = File::open(&path)
            .map_err(|e| Error::from(e).context(format!("opening {}", path.display())))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(Error::invalid(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        Ok(FileObject {
            path,
            size: meta.len(),
            modified: meta.modified().ok(),
            file,
        })
    }

    fn check_unchanged(&self) -> std::result::Result<(), Fault> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| Fault::permanent(e.into()))?;
        if meta.len() != self.size || meta.modified().ok() != self.modified {
            return Err(Fault::permanent(Error::new(
                libc::ESTALE,
                format!("{} changed since it was opened", self.path.display()),
            )));
        }
        Ok(())
    }
}

/// `file:///abs/path` (or `file://localhost/abs/path`) to a path, with
/// percent-decoding. Relative paths and other hosts are refused.
pub fn path_of_file_uri(uri: &str) -> Result<PathBuf> {
    let rest = uri
        .strip_prefix("file://")
        .ok_or_else(|| Error::invalid("not a file:// URI"))?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return Err(Error::invalid(
            "file:// URI must name an absolute path (file:///path/to/file)",
        ));
    }
    let bytes = percent_decode(rest.as_bytes())
        .ok_or_else(|| Error::invalid("file:// URI has a bad %-escape"))?;
    if bytes.contains(&0) {
        return Err(Error::invalid("file:// URI contains NUL"));
    }
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

impl RangeSource for FileObject {
    fn size(&self) -> u64 {
        self.size
    }

    fn host(&self) -> &str {
        ""
    }

    fn mtime(&self) -> Option<SystemTime> {
        self.modified
    }

    fn identity(&self) -> String {
        let mtime = self
            .modified
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("file://{}#{}-{}", self.path.display(), self.size, mtime)
    }

    fn open_range(
        &self,
        range: Range<u64>,
    ) -> std::result::Result<Box<dyn Read + Send + '_>, Fault> {
        self.check_unchanged()?;
        if range.end > self.size {
            return Err(Fault::permanent(Error::io("read past the end of the file")));
        }
        Ok(Box::new(PositionalReader {
            file: &self.file,
            pos: range.start,
            end: range.end,
        }))
    }
}

/// A `Read` over a byte range of a shared `File`, using `pread` so that
/// concurrent readers need no seek position.
struct PositionalReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while reading",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris() {
        assert_eq!(
            path_of_file_uri("file:///a/b%20c").unwrap(),
            PathBuf::from("/a/b c")
        );
        assert_eq!(
            path_of_file_uri("file://localhost/x").unwrap(),
            PathBuf::from("/x")
        );
        assert!(path_of_file_uri("file://other/x").is_err());
        assert!(path_of_file_uri("file:///a%00b").is_err());
        assert!(path_of_file_uri("file:///a%zz").is_err());
        assert!(path_of_file_uri("file:///a%2").is_err());
    }
}
