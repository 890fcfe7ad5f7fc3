//! From what went wrong to what the caller sees: errno, whether a retry
//! may help, and a message that says each reason once ("connection
//! refused", not "connection refused (Connection refused (os error 111))").
//! Stalls and timeouts name the setting that bounds them.

use std::io;
use std::time::Duration;

use super::conn::Failure;
use crate::source::Fault;
use crate::Error;

/// The errno for an HTTP status, and whether a retry may help.
pub fn status_fault(status: u16, what: &str, retry_after: Option<&str>) -> Fault {
    let (errno, transient, hint) = match status {
        404 | 410 => (libc::ENOENT, false, "not found"),
        401 | 403 => (
            libc::EACCES,
            false,
            "access denied: check the credential passed to open",
        ),
        416 => (libc::EIO, false, "range not satisfiable"),
        412 => (
            libc::ESTALE,
            false,
            "the object changed since it was opened",
        ),
        429 => (libc::EIO, true, "too many requests"),
        504 => (libc::ETIMEDOUT, true, "gateway timeout"),
        500..=599 => (libc::EIO, true, "server error"),
        _ => (libc::EIO, false, "unexpected status"),
    };
    Fault {
        error: Error::new(errno, format!("{what}: HTTP {status} ({hint})"))
            .with_http_status(status),
        transient,
        retry_after: retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs),
    }
}

/// errno, retry advice and the reason, said once (no "refused (Connection
/// refused (os error 111))").
pub(crate) fn failure_reason(f: &Failure) -> (i32, bool, String) {
    use io::ErrorKind as K;
    match f {
        Failure::Io(e) => {
            if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                let hint = match tls {
                    rustls::Error::InvalidCertificate(_) => {
                        " (set ca_bundle to trust a private CA)"
                    }
                    _ => "",
                };
                return (
                    libc::EIO,
                    false,
                    format!("TLS handshake failed: {tls}{hint}"),
                );
            }
            match e.kind() {
                K::ConnectionRefused => (libc::ECONNREFUSED, true, "connection refused".into()),
                K::ConnectionReset => (libc::EIO, true, "connection reset by the server".into()),
                K::BrokenPipe | K::ConnectionAborted => {
                    (libc::EIO, true, "connection closed by the server".into())
                }
                K::UnexpectedEof => (
                    libc::EIO,
                    true,
                    "connection closed before the response was complete".into(),
                ),
                K::TimedOut | K::WouldBlock => (libc::ETIMEDOUT, true, "timed out".into()),
                _ => {
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    let text = e.to_string();
                    // std appends " (os error N)" to the system's text.
                    let text = match text.find(" (os error ") {
                        Some(i) => text[..i].to_string(),
                        None => text,
                    };
                    (errno, true, text)
                }
            }
        }
        Failure::Dns(why) => (libc::EIO, true, why.clone()),
        Failure::Timeout { during, after } => (
            libc::ETIMEDOUT,
            true,
            format!(
                "{during} took longer than {} (timeout_ms)",
                fmt_duration(*after)
            ),
        ),
        Failure::Closed => (
            libc::EIO,
            true,
            "connection closed before the response was complete".into(),
        ),
        Failure::NoAnswer(after) => (
            libc::ETIMEDOUT,
            true,
            format!("no response within {} (timeout_ms)", fmt_duration(*after)),
        ),
        Failure::Stall { min_rate, window } => (
            libc::ETIMEDOUT,
            true,
            format!(
                "received less than {min_rate} bytes/s over {} (stall_min_bytes_per_sec)",
                fmt_duration(*window)
            ),
        ),
        Failure::Deadline(setting) => (
            libc::ETIMEDOUT,
            false,
            format!(
                "the open did not finish within {} (open_timeout_ms)",
                fmt_duration(*setting)
            ),
        ),
        Failure::Wire(w) => (libc::EIO, true, format!("malformed HTTP response: {}", w.0)),
    }
}

pub(crate) fn transport_fault(f: Failure, what: &str) -> Fault {
    let (errno, transient, reason) = failure_reason(&f);
    Fault {
        error: Error::new(errno, format!("{what}: {reason}")),
        transient,
        retry_after: None,
    }
}

/// "250 ms", "2 s", "1.5 s".
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
