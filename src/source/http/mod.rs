//! `http://` and `https://`: a small HTTP/1.1 client of our own.
//!
//! Why our own: every wait must be bounded on fresh and reused connections
//! alike, a slow server must count as a stall, 1xx answers must be skipped,
//! and body bytes must go from the socket to the piece buffer in one copy.
//! A general-purpose client gets some of those wrong by design (ureq 2
//! cleared the socket timeout of pooled connections and read bodies through
//! 8 KiB buffers). What gtio needs of HTTP is small: GET and HEAD, one
//! range, keep-alive, redirects, TLS. docs/http.md describes the rules.
//!
//! The parts, by concern:
//! - [`wire`]: the request we write, the response head we parse (bounded).
//! - [`conn`]: name lookup, connect, TLS, the keep-alive pool, and the
//!   [`conn::Pace`] that bounds every wait and detects stalls.
//! - [`response`]: bodies, read straight into the caller's buffer.
//! - [`limiter`]: the per-host connection cap.
//! - [`tls`]: the rustls configuration.
//! - [`object`]: a plain object read by range (size and validator pinned).
//!
//! Redirects are followed here so that each hop is checked: only
//! `http`/`https` targets, at most [`MAX_REDIRECTS`] hops, and the
//! credential goes only to the host it was given for. Every request holds a
//! per-host permit ([`HostLimiter`]) until its body is consumed, which is
//! how `max_conns_per_host` is enforced.
//!
//! Messages never contain the credential, a URL's userinfo or its query
//! string (presigned URLs carry their signature there): they use
//! [`redact_url`], and each reason is said once.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Fault;
use crate::config::HttpBounds;
use crate::error::redact_url;
use crate::{Config, Error, Result};

mod conn;
mod fault;
mod limiter;
mod object;
mod pace;
mod response;
mod tls;
pub mod wire;

use conn::{Conn, Failure, Pace, Pool, Target};
pub(crate) use fault::fmt_duration;
pub use fault::status_fault;
use fault::{failure_reason, transport_fault};
pub use limiter::{HostLimiter, HostPermit};
pub use object::{get_range, parse_content_range, parse_unsatisfied_range, HttpObject};
pub use response::{Body, ExactBody};

/// Browsers stop at 20; a dataset URL that needs more than 10 is misconfigured.
pub const MAX_REDIRECTS: usize = 10;

/// More informational (1xx) answers than this before the final one is
/// refused: each is bounded in size, and so is their number.
const MAX_INFORMATIONAL: usize = 32;

/// Error answers' bodies up to this size are read to their end so that the
/// connection serves the next request (an index htslib probes for and does
/// not find is a 404 with a small HTML page); a larger one closes it.
const SMALL_BODY: u64 = 64 << 10;

/// A credential: never printed, not even by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The `Authorization` header value: the credential as given when it
    /// already starts with a scheme word ("Basic ...", "Bearer ..."),
    /// otherwise `Bearer <cred>`.
    fn authorization(&self) -> String {
        let has_scheme = self.0.split_once(' ').is_some_and(|(word, rest)| {
            !word.is_empty()
                && !rest.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if has_scheme {
            self.0.clone()
        } else {
            format!("Bearer {}", self.0)
        }
    }

    /// A header value may hold visible ASCII, spaces and tabs only: a CR or
    /// LF would end the header (and let the credential inject others),
    /// other bytes are not portable. Refused before anything is sent; the
    /// message names the credential, never its value.
    fn check(&self) -> Result<()> {
        let bad = self
            .0
            .bytes()
            .find(|&b| !(b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b)));
        match bad {
            None => Ok(()),
            Some(b) => {
                let what = match b {
                    b'\r' | b'\n' => "a line break (CR or LF)",
                    0x80.. => "a non-ASCII character",
                    _ => "a control character",
                };
                Err(Error::invalid(format!(
                    "the credential contains {what}, which cannot be sent in an \
                     Authorization header; nothing was sent"
                )))
            }
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The process's HTTP client: one pool, one limiter, one TLS config.
pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
    pool: Arc<Pool>,
    limiter: Arc<HostLimiter>,
    timeout: Duration,
    bounds: HttpBounds,
}

/// One request to send.
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// Inclusive byte range.
    pub range: Option<(u64, u64)>,
    pub if_range: Option<&'a str>,
    pub cred: Option<&'a Secret>,
    /// Every wait of this request ends here (an open's total deadline).
    pub deadline: Option<Instant>,
}

/// The final response, holding its host permit until its body is dropped.
pub struct HttpResponse {
    pub status: u16,
    head: wire::Head,
    body: Body,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The body, limited to exactly `len` bytes: fewer is an error, and more
    /// means the server lied about the length (also an error).
    pub fn body_exact(self, len: u64) -> ExactBody {
        ExactBody::new(self.body, len)
    }

    /// The declared body length (`Content-Length`), if any.
    pub fn content_length(&self) -> Option<u64> {
        self.body.declared_len()
    }

    /// The body, up to `limit` bytes, for small documents (metainfo).
    pub fn body_bounded(mut self, limit: u64) -> Result<Vec<u8>> {
        self.body.read_bounded(limit).map_err(|f| {
            let (errno, _, reason) = failure_reason(&f);
            Error::new(errno, format!("reading the response body: {reason}"))
        })
    }

    /// Map a non-success status to an error (and retry advice).
    pub fn status_fault(&self, what: &str) -> Fault {
        status_fault(self.status, what, self.header("Retry-After"))
    }

    /// [`status_fault`](Self::status_fault), then [`finish`](Self::finish).
    pub fn into_fault(self, what: &str) -> Fault {
        let fault = self.status_fault(what);
        self.finish();
        fault
    }

    /// Drop the response, reading a small body (up to 64 KiB, within the
    /// request's bounds) to its end first so that its connection goes back
    /// to the pool.
    pub fn finish(mut self) {
        self.body.discard(SMALL_BODY);
    }
}

impl HttpClient {
    pub fn new(cfg: &Config) -> Result<HttpClient> {
        let cap = cfg.max_conns_per_host as usize;
        Ok(HttpClient {
            tls: tls::client_config(cfg)?,
            pool: Pool::new(cap),
            limiter: HostLimiter::new(cap),
            timeout: cfg.timeout(),
            bounds: cfg.http,
        })
    }

    /// The deadline of an open that starts now.
    pub fn open_deadline(&self) -> Instant {
        Instant::now() + self.bounds.open_timeout()
    }

    /// Send one request, following redirects, holding a permit for the final
    /// host. Returns the response of the final hop whatever its status.
    pub fn send(&self, req: &HttpRequest<'_>) -> std::result::Result<HttpResponse, Fault> {
        let origin = url::Url::parse(req.url).map_err(|_| {
            Fault::permanent(Error::invalid(format!("bad URL {}", redact_url(req.url))))
        })?;
        check_scheme(&origin, req.url)?;
        if let Some(c) = req.cred {
            c.check().map_err(|e| {
                Fault::permanent(e.context(format!("{} {}", req.method, redact_url(req.url))))
            })?;
        }
        let origin_host = host_key(&origin);
        let mut url = origin;
        let mut cred = req.cred;
        for _hop in 0..=MAX_REDIRECTS {
            let mut resp = self.send_once(req, &url, cred)?;
            let status = resp.status;
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                check_body_is_the_bytes(req, &resp)?;
                return Ok(resp);
            }
            let what = format!("{} {}", req.method, redact_url(url.as_str()));
            let Some(location) = resp.header("Location").map(str::to_string) else {
                return Err(Fault::permanent(
                    Error::io(format!(
                        "{what}: HTTP {status} redirect without a Location header"
                    ))
                    .with_http_status(status),
                ));
            };
            let next = url.join(&location).map_err(|_| {
                Fault::permanent(
                    Error::io(format!("{what}: redirected to an invalid Location"))
                        .with_http_status(status),
                )
            })?;
            check_scheme(&next, url.as_str())?;
            // The credential was given for one host; a redirect elsewhere
            // (or a downgrade to plain http) must not carry it along.
            if host_key(&next) != origin_host || next.scheme() != url.scheme() {
                cred = None;
            }
            resp.body.discard(64 << 10);
            drop(resp);
            url = next;
        }
        Err(Fault::permanent(Error::io(format!(
            "{}: more than {MAX_REDIRECTS} redirects",
            redact_url(req.url)
        ))))
    }

    /// One hop: a connection (pooled or new), the request, the final head.
    fn send_once(
        &self,
        req: &HttpRequest<'_>,
        url: &url::Url,
        cred: Option<&Secret>,
    ) -> std::result::Result<HttpResponse, Fault> {
        let what = format!("{} {}", req.method, redact_url(url.as_str()));
        let fault = |f: Failure| transport_fault(f, &what);
        let target = Target {
            tls: url.scheme() == "https",
            host: url
                .host()
                .map(|h| h.to_owned())
                .ok_or_else(|| Fault::permanent(Error::invalid(format!("{what}: no host"))))?,
            port: url.port_or_known_default().unwrap_or(80),
        };
        let key = target.key();
        let request = self.request_bytes(req, url, cred);
        let permit = self.limiter.acquire(&host_key(url));
        let deadline = req.deadline.map(|d| (d, self.bounds.open_timeout()));
        let mut fresh_only = false;
        loop {
            let mut pace = Pace::new(self.timeout, self.bounds.stall_min_bytes_per_sec, deadline);
            let pooled = if fresh_only {
                None
            } else {
                self.pool.take(&key)
            };
            let mut conn = match pooled {
                Some(c) => c,
                None => Conn::open(&target, &self.tls, &pace).map_err(fault)?,
            };
            match exchange(&mut conn, &request, &mut pace) {
                Ok(head) => {
                    let (framing, reusable) =
                        wire::framing(req.method, &head).map_err(|e| fault(Failure::Wire(e)))?;
                    let reusable = reusable && head.keep_alive();
                    let status = head.status;
                    let body = response::Body::new(
                        conn,
                        framing,
                        reusable,
                        pace,
                        Arc::clone(&self.pool),
                        key,
                        what,
                        permit,
                    );
                    return Ok(HttpResponse { status, head, body });
                }
                // A pooled connection the server closed while it was idle
                // fails before any answer, or (a NAT or a crashed server
                // dropped it without a FIN) never answers: try once more on
                // a new one, within the same deadline.
                Err(f) if conn.reused && is_stale(&f) => fresh_only = true,
                Err(f) => return Err(fault(f)),
            }
        }
    }

    fn request_bytes(
        &self,
        req: &HttpRequest<'_>,
        url: &url::Url,
        cred: Option<&Secret>,
    ) -> Vec<u8> {
        let mut target = url.path().to_string();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_string(),
        };
        let range = req.range.map(|(a, b)| format!("bytes={a}-{b}"));
        let auth = match cred {
            Some(c) => Some(c.authorization()),
            // Userinfo in the URL is Basic authentication, as ureq and curl
            // do (already percent-encoded ASCII, so safe in a header).
            None if !url.username().is_empty() || url.password().is_some() => Some(format!(
                "Basic {}",
                base64(format!("{}:{}", url.username(), url.password().unwrap_or("")).as_bytes())
            )),
            None => None,
        };
        let mut headers: Vec<(&str, &str)> = vec![
            ("User-Agent", concat!("gtio/", env!("CARGO_PKG_VERSION"))),
            // Ask for the bytes as stored: a compressed body would break ranges.
            ("Accept-Encoding", "identity"),
        ];
        if let Some(r) = &range {
            headers.push(("Range", r));
        }
        if let Some(v) = req.if_range {
            headers.push(("If-Range", v));
        }
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let mut out = Vec::with_capacity(512);
        wire::write_request(&mut out, req.method, &target, &host, &headers);
        out
    }
}

/// Send the request and read heads until the final one (RFC 9110 §15.2:
/// 1xx answers are interim and skipped).
fn exchange(
    conn: &mut Conn,
    request: &[u8],
    pace: &mut Pace,
) -> std::result::Result<wire::Head, Failure> {
    conn.send(request, pace)?;
    for _ in 0..MAX_INFORMATIONAL {
        let head = conn.read_head(pace)?;
        match head.status {
            101 => {
                return Err(Failure::Wire(wire::WireError(
                    "unexpected 101 Switching Protocols".into(),
                )))
            }
            100..=199 => continue,
            _ => return Ok(head),
        }
    }
    Err(Failure::Wire(wire::WireError(format!(
        "more than {MAX_INFORMATIONAL} informational (1xx) responses"
    ))))
}

fn is_stale(f: &Failure) -> bool {
    use io::ErrorKind as K;
    match f {
        Failure::Closed | Failure::NoAnswer(_) => true,
        Failure::Io(e) => matches!(
            e.kind(),
            K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted | K::UnexpectedEof
        ),
        _ => false,
    }
}

/// gtio asked for `identity` and one range: a body in another encoding, or
/// several parts, is not the bytes asked for, whatever its length says.
fn check_body_is_the_bytes(
    req: &HttpRequest<'_>,
    resp: &HttpResponse,
) -> std::result::Result<(), Fault> {
    if !(200..300).contains(&resp.status) {
        return Ok(());
    }
    let what = format!("{} {}", req.method, redact_url(req.url));
    let refuse = |why: String| {
        Fault::permanent(
            Error::new(libc::EOPNOTSUPP, format!("{what}: {why}")).with_http_status(resp.status),
        )
    };
    let codings = resp.head.tokens("Content-Encoding");
    if let Some(c) = codings.iter().find(|c| *c != "identity") {
        return Err(refuse(format!(
            "the server sent Content-Encoding: {c} although gtio asked for identity; \
             compressed bytes are not the object's bytes"
        )));
    }
    if req.range.is_some() && resp.status == 206 {
        let ct = resp.header("Content-Type").unwrap_or("");
        let media = ct.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("multipart/byteranges") {
            return Err(refuse(
                "the server answered one range with multipart/byteranges; gtio asks for one \
                 range and reads its bytes as they are"
                    .into(),
            ));
        }
    }
    Ok(())
}

fn check_scheme(url: &url::Url, from: &str) -> std::result::Result<(), Fault> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(Fault::permanent(Error::new(
            libc::EACCES,
            format!(
                "refused redirect from {} to a {other}:// URL: only http and https are followed",
                redact_url(from)
            ),
        ))),
    }
}

/// "host:port", the unit of connection limits and credential scope.
pub(crate) fn host_key(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Standard base64 with padding (RFC 4648), for Basic credentials.
fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header() {
        assert_eq!(Secret::new("tok").authorization(), "Bearer tok");
        assert_eq!(
            Secret::new("Basic dXNlcg==").authorization(),
            "Basic dXNlcg=="
        );
        assert_eq!(Secret::new("a b c").authorization(), "a b c");
        assert_eq!(Secret::new("to ken").authorization(), "to ken");
        assert_eq!(Secret::new(" tok").authorization(), "Bearer  tok");
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn credential_bytes_are_checked() {
        assert!(Secret::new("Bearer a.b-c_d~").check().is_ok());
        for bad in ["a\r\nb", "a\nb", "t\u{f6}k", "a\u{1}b"] {
            let e = Secret::new(bad).check().unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL);
            assert!(e.message().contains("credential") && !e.message().contains(bad));
        }
    }

    #[test]
    fn base64_and_durations() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pw"), "dXNlcjpwdw==");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2 s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn reasons_are_said_once() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let (errno, transient, reason) = failure_reason(&Failure::Io(e));
        assert_eq!(
            (errno, transient, reason.as_str()),
            (libc::ECONNREFUSED, true, "connection refused")
        );
        let e = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        let (_, _, reason) = failure_reason(&Failure::Io(e));
        assert!(!reason.contains("os error"), "{reason}");
    }

    #[test]
    fn status_mapping() {
        assert_eq!(status_fault(404, "x", None).error.errno(), libc::ENOENT);
        assert_eq!(status_fault(410, "x", None).error.errno(), libc::ENOENT);
        assert_eq!(status_fault(401, "x", None).error.errno(), libc::EACCES);
        assert_eq!(status_fault(403, "x", None).error.errno(), libc::EACCES);
        assert_eq!(status_fault(416, "x", None).error.errno(), libc::EIO);
        let f = status_fault(429, "x", Some("3"));
        assert!(f.transient);
        assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
        assert!(status_fault(503, "x", None).transient);
        assert!(!status_fault(404, "x", None).transient);
        assert_eq!(status_fault(404, "x", None).error.http_status(), 404);
    }
}
