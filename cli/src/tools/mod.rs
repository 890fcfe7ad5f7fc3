//! The command-line tool's logic; `cli/src/main.rs` only parses arguments
//! and calls in here.
//!
//! Every command reports failure as a [`Failure`]: one line of what was being
//! done and why it failed, and the exit status (1 for a failed operation, 2
//! for a command line that makes no sense). Nothing here panics on bad input.

pub mod cat;
pub mod create;
pub mod get;
pub mod input;
pub mod ls;
pub mod paths;
pub mod progress;
pub mod serve;
pub mod spec;

use std::fmt;

/// Why a command failed, printed as `gtio: WHAT: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What was being done or looked at ("open http://host/x", "--range a:1").
    pub what: String,
    pub message: String,
    /// The process exit status: 1 for a failed operation, 2 for a usage error.
    pub exit_code: i32,
}

impl Failure {
    /// A failed operation (exit status 1).
    pub fn new(what: impl Into<String>, message: impl fmt::Display) -> Failure {
        Failure {
            what: what.into(),
            message: message.to_string(),
            exit_code: 1,
        }
    }

    /// A command line that cannot be carried out as written (exit status 2).
    pub fn usage(what: impl Into<String>, message: impl fmt::Display) -> Failure {
        Failure {
            exit_code: 2,
            ..Failure::new(what, message)
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep it one line whatever the message holds.
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        if self.what.is_empty() {
            write!(f, "{}", one_line(&self.message))
        } else {
            write!(f, "{}: {}", one_line(&self.what), one_line(&self.message))
        }
    }
}

impl std::error::Error for Failure {}

/// The tools' result type.
pub type Outcome<T = ()> = std::result::Result<T, Failure>;

/// Whether an I/O error means the reader of our output went away (`EPIPE`):
/// `gtio cat x | head` must end quietly, not with an error.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(libc::EPIPE)
}

/// Bytes in a human unit ("3.5 MiB"), for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_is_one_line() {
        let f = Failure::new("open x", "bad\nthing");
        assert_eq!(f.to_string(), "open x: bad thing");
        assert_eq!(f.exit_code, 1);
        assert_eq!(Failure::usage("", "no").to_string(), "no");
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(10), "10 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }
}
