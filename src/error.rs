//! The one error type of the core: an errno value, the HTTP status behind it
//! (if any) and a human message.
//!
//! The errno is the contract (docs/design.md lists the mapping); the message is for
//! people. Messages are built from redacted inputs only: a credential or a
//! presigned URL's query string never reaches one (see [`redact_url`]).

use std::fmt;

/// Why an operation failed, as an errno value plus context.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    http_status: u16,
    message: String,
}

/// The core's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with an errno value (`libc::EIO`, ...) and a message.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Error {
            errno,
            http_status: 0,
            message: message.into(),
        }
    }

    /// `EINVAL`: the caller passed something the library cannot accept.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(libc::EINVAL, message)
    }

    /// `EIO`: the data could not be produced.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(libc::EIO, message)
    }

    /// `EBADF`: the handle is closed or was never ours.
    pub fn bad_handle() -> Self {
        Self::new(libc::EBADF, "bad handle: closed, or not a gtio handle")
    }

    /// `ECANCELED`: the request was cancelled before it completed.
    pub fn cancelled() -> Self {
        Self::new(libc::ECANCELED, "request cancelled")
    }

    /// Attach the HTTP status that caused this error.
    pub fn with_http_status(mut self, status: u16) -> Self {
        self.http_status = status;
        self
    }

    /// Prefix the message with context ("reading piece 3: ...").
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn errno(&self) -> i32 {
        self.errno
    }

    pub fn http_status(&self) -> u16 {
        self.http_status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}, ", errno_name(self.errno))?;
        if self.http_status != 0 {
            write!(f, "HTTP {}, ", self.http_status)?;
        }
        write!(f, "{:?})", self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let errno = e.raw_os_error().unwrap_or(match e.kind() {
            K::NotFound => libc::ENOENT,
            K::PermissionDenied => libc::EACCES,
            K::ConnectionRefused => libc::ECONNREFUSED,
            K::ConnectionReset => libc::ECONNRESET,
            K::TimedOut | K::WouldBlock => libc::ETIMEDOUT,
            K::InvalidInput | K::InvalidData => libc::EINVAL,
            K::UnexpectedEof => libc::EIO,
            _ => libc::EIO,
        });
        Error::new(errno, e.to_string())
    }
}

/// A short symbolic name for the errno values gtio produces, for messages and
/// `Debug` output.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        0 => "OK",
        libc::EINVAL => "EINVAL",
        libc::EIO => "EIO",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECANCELED => "ECANCELED",
        libc::ESTALE => "ESTALE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EBUSY => "EBUSY",
        libc::ENOSYS => "ENOSYS",
        libc::EPROTO => "EPROTO",
        _ => "errno",
    }
}

/// A URL fit for a message or a log line: no userinfo, no query string
/// (presigned URLs carry their signature there), no fragment.
///
/// Userinfo goes first, before anything else is cut: a password may hold
/// `?` or `#` (`http://user:s3cret?x@host/obj` does not parse, and cutting
/// the query first would leave `user:s3cret` looking like a host). The
/// authority is taken to run up to the first `/` after `://`, and
/// everything up to its last `@` is dropped; that may over-redact an odd
/// URL, never under-redact it.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(parts) => parts,
        None => return "<url>".to_string(),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let elided = if end < rest.len() { "?…" } else { "" };
    format!("{scheme}://{}{elided}", &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_and_query() {
        assert_eq!(
            redact_url("https://user:pw@example.org/a/b?X-Amz-Signature=abc"),
            "https://example.org/a/b?…"
        );
        assert_eq!(redact_url("http://h:80/x"), "http://h:80/x");
        assert_eq!(redact_url("file:///tmp/x"), "file:///tmp/x");
        assert_eq!(redact_url("nonsense"), "<url>");
        assert_eq!(
            redact_url("http://user:s3cret?x@host/obj"),
            "http://host/obj"
        );
        assert_eq!(
            redact_url("http://user:s3cret#x@host/obj?q"),
            "http://host/obj?…"
        );
        assert_eq!(redact_url("http://u:p@host"), "http://host");
        assert_eq!(redact_url("http://host/a@b?c"), "http://host/a@b?…");
    }

    #[test]
    fn io_errors_keep_their_errno() {
        let e: Error = std::io::Error::from_raw_os_error(libc::ENOENT).into();
        assert_eq!(e.errno(), libc::ENOENT);
        let e: Error = std::io::Error::new(std::io::ErrorKind::TimedOut, "t").into();
        assert_eq!(e.errno(), libc::ETIMEDOUT);
    }
}
