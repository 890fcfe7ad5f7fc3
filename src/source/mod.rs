//! Where bytes come from.
//!
//! A source answers one question: "give me a reader over bytes `a..b` of this
//! object". It does not retry, cache or verify; the engine does those, driven
//! by the [`Fault`] a source returns, which says whether trying again can help.
//!
//! - [`http`]: `http://` and `https://` through gtio's own HTTP/1.1 client (docs/http.md).
//! - [`file`]: `file://`, for local datasets, tests and demos.

pub mod file;
pub mod http;
pub mod tcp;

use std::io::Read;
use std::ops::Range;
use std::time::Duration;

use crate::Error;

/// A failed attempt, with what the engine needs to decide on a retry.
#[derive(Debug, Clone)]
pub struct Fault {
    pub error: Error,
    /// Trying again may succeed (reset, timeout, 5xx, 429, short body).
    pub transient: bool,
    /// The server asked us to wait this long (Retry-After).
    pub retry_after: Option<Duration>,
}

impl Fault {
    pub fn permanent(error: Error) -> Fault {
        Fault {
            error,
            transient: false,
            retry_after: None,
        }
    }

    pub fn transient(error: Error) -> Fault {
        Fault {
            error,
            transient: true,
            retry_after: None,
        }
    }
}

impl From<Error> for Fault {
    fn from(error: Error) -> Fault {
        Fault::permanent(error)
    }
}

/// What a plain object is pinned to at open: reads of a later version fail
/// with `ESTALE` instead of mixing bytes of two versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Validator {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validator {
    /// The value for `If-Range`: a strong ETag, else the date (RFC 9110
    /// forbids weak ETags there).
    pub fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(tag) if !tag.starts_with("W/") => Some(tag),
            _ => self.last_modified.as_deref(),
        }
    }
}

/// A plain object that can be read by byte range.
pub trait RangeSource: Send + Sync {
    /// Size of the object, fixed at open.
    fn size(&self) -> u64;
    /// The host that connection caps count against ("" for local sources).
    fn host(&self) -> &str;
    /// A cache identity: the same object at the same version gives the same
    /// string, so two handles share pieces.
    fn identity(&self) -> String;
    /// A reader that yields exactly the bytes of `range` (or fails).
    fn open_range(&self, range: Range<u64>) -> Result<Box<dyn Read + Send + '_>, Fault>;
    /// When the object last changed, if the source says (`Last-Modified`,
    /// a file's mtime): what a mount shows as the file's mtime.
    fn mtime(&self) -> Option<std::time::SystemTime> {
        None
    }
}
