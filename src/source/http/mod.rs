//! `http://` and `https://` objects through one shared ureq agent.
//!
//! The agent keeps a keep-alive pool and a rustls client (system roots plus
//! the configured CA bundle). Redirects are followed here, not by ureq, so
//! that each hop is checked: only `http`/`https` targets, at most
//! [`MAX_REDIRECTS`] hops, and the credential goes only to the host it was
//! given for. Every request holds a per-host permit ([`HostLimiter`]) until
//! its body is consumed, which is how `max_conns_per_host` is enforced.
//!
//! Messages never contain the credential or a URL's query string (presigned
//! URLs carry their signature there): they use [`redact_url`].

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::Fault;
use crate::error::redact_url;
use crate::{Config, Error, Result};

mod object;

pub use object::{get_range, parse_content_range, parse_unsatisfied_range, HttpObject};

/// Browsers stop at 20; a dataset URL that needs more than 10 is misconfigured.
pub const MAX_REDIRECTS: usize = 10;

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
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Counts open connections per host and makes requests wait for a slot.
pub struct HostLimiter {
    cap: usize,
    open: Mutex<HashMap<String, usize>>,
    freed: Condvar,
}

/// Holds one connection slot of a host until dropped.
pub struct HostPermit {
    limiter: Arc<HostLimiter>,
    host: String,
}

impl HostLimiter {
    pub fn new(cap: usize) -> Arc<HostLimiter> {
        Arc::new(HostLimiter {
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
            freed: Condvar::new(),
        })
    }

    pub fn acquire(self: &Arc<Self>, host: &str) -> HostPermit {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let n = open.entry(host.to_string()).or_insert(0);
            if *n < self.cap {
                *n += 1;
                break;
            }
            open = self.freed.wait(open).unwrap_or_else(|e| e.into_inner());
        }
        HostPermit {
            limiter: Arc::clone(self),
            host: host.to_string(),
        }
    }

    #[cfg(test)]
    fn open_count(&self, host: &str) -> usize {
        self.open.lock().unwrap().get(host).copied().unwrap_or(0)
    }
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.host);
            }
        }
        drop(open);
        self.limiter.freed.notify_all();
    }
}

/// The process's HTTP client: one agent, one limiter.
pub struct HttpClient {
    agent: ureq::Agent,
    limiter: Arc<HostLimiter>,
}

impl HttpClient {
    pub fn new(cfg: &Config) -> Result<HttpClient> {
        let tls = tls_config(cfg)?;
        let timeout = cfg.timeout();
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(tls))
            .timeout_connect(timeout)
            .timeout_read(timeout)
            .timeout_write(timeout)
            .redirects(0)
            .max_idle_connections(256)
            .max_idle_connections_per_host(cfg.max_conns_per_host as usize)
            .user_agent(concat!("gtio/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(HttpClient {
            agent,
            limiter: HostLimiter::new(cfg.max_conns_per_host as usize),
        })
    }

    /// Send one request, following redirects, holding a permit for the final
    /// host. Returns the response of the final hop whatever its status.
    pub fn send(&self, req: &HttpRequest<'_>) -> std::result::Result<HttpResponse, Fault> {
        let origin = url::Url::parse(req.url).map_err(|_| {
            Fault::permanent(Error::invalid(format!("bad URL {}", redact_url(req.url))))
        })?;
        check_scheme(&origin, req.url)?;
        let origin_host = host_key(&origin);
        let mut url = origin;
        let mut cred = req.cred;
        for _hop in 0..=MAX_REDIRECTS {
            let host = host_key(&url);
            let permit = self.limiter.acquire(&host);
            let mut r = self.agent.request(req.method, url.as_str());
            // Ask for the bytes as stored: a compressed body would break ranges.
            r = r.set("Accept-Encoding", "identity");
            if let Some((start, end)) = req.range {
                r = r.set("Range", &format!("bytes={start}-{end}"));
            }
            if let Some(v) = req.if_range {
                r = r.set("If-Range", v);
            }
            if let Some(c) = cred {
                r = r.set("Authorization", &c.authorization());
            }
            let response = match r.call() {
                Ok(resp) => resp,
                Err(ureq::Error::Status(_, resp)) => resp,
                Err(ureq::Error::Transport(t)) => {
                    return Err(transport_fault(&t, req.method, url.as_str()))
                }
            };
            let status = response.status();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let location = response.header("Location").unwrap_or("").to_string();
                let next = url.join(&location).map_err(|_| {
                    Fault::permanent(
                        Error::io(format!(
                            "{} redirected to an invalid Location",
                            redact_url(url.as_str())
                        ))
                        .with_http_status(status),
                    )
                })?;
                check_scheme(&next, url.as_str())?;
                // The credential was given for one host; a redirect elsewhere
                // (or a downgrade to plain http) must not carry it along.
                if host_key(&next) != origin_host || next.scheme() != url.scheme() {
                    cred = None;
                }
                drop(response);
                drop(permit);
                url = next;
                continue;
            }
            return Ok(HttpResponse {
                status,
                url: url.to_string(),
                inner: response,
                permit,
            });
        }
        Err(Fault::permanent(Error::io(format!(
            "{}: more than {MAX_REDIRECTS} redirects",
            redact_url(req.url)
        ))))
    }
}

/// One request to send.
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// Inclusive byte range.
    pub range: Option<(u64, u64)>,
    pub if_range: Option<&'a str>,
    pub cred: Option<&'a Secret>,
}

/// The final response, holding its host permit until dropped.
pub struct HttpResponse {
    pub status: u16,
    /// The URL that answered (after redirects).
    pub url: String,
    inner: ureq::Response,
    permit: HostPermit,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.header(name)
    }

    /// The body, limited to exactly `len` bytes: fewer is an error, and more
    /// means the server lied about the length (also an error).
    pub fn body_exact(self, len: u64) -> ExactBody {
        ExactBody {
            inner: self.inner.into_reader(),
            remaining: len,
            _permit: self.permit,
        }
    }

    /// The body, up to `limit` bytes, for small documents (metainfo).
    pub fn body_bounded(self, limit: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.inner
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::from(e).context("reading response body"))?;
        if out.len() as u64 > limit {
            return Err(Error::invalid(format!(
                "response body larger than {limit} bytes"
            )));
        }
        Ok(out)
    }

    /// Map a non-success status to an error (and retry advice).
    pub fn status_fault(&self, what: &str) -> Fault {
        status_fault(self.status, what, self.header("Retry-After"))
    }
}

/// A body reader that yields exactly the promised bytes.
pub struct ExactBody {
    inner: Box<dyn Read + Send + Sync + 'static>,
    remaining: u64,
    _permit: HostPermit,
}

impl Read for ExactBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("body ended {} bytes early", self.remaining),
            ));
        }
        self.remaining -= n as u64;
        if self.remaining == 0 {
            // One more read lets ureq see the end of the body and return the
            // connection to the pool; extra bytes mean a lying server.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe).unwrap_or(0) != 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "server sent more bytes than the range it promised",
                ));
            }
        }
        Ok(n)
    }
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

fn transport_fault(t: &ureq::Transport, method: &str, url: &str) -> Fault {
    use ureq::ErrorKind as K;
    let what = format!("{method} {}", redact_url(url));
    let io_kind = std::error::Error::source(t)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .map(|e| e.kind());
    let (errno, transient, reason) = match (t.kind(), io_kind) {
        (_, Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)) => {
            (libc::ETIMEDOUT, true, "timed out")
        }
        (K::ConnectionFailed, Some(std::io::ErrorKind::ConnectionRefused)) => {
            (libc::ECONNREFUSED, true, "connection refused")
        }
        (K::ConnectionFailed, _) => (libc::ECONNREFUSED, true, "connection failed"),
        (K::Dns, _) => (libc::EIO, true, "host name lookup failed"),
        (K::InvalidUrl | K::UnknownScheme, _) => (libc::EINVAL, false, "invalid URL"),
        (K::Io, Some(std::io::ErrorKind::InvalidData)) => {
            // rustls reports certificate problems as InvalidData.
            (
                libc::EIO,
                false,
                "TLS handshake failed (untrusted certificate? set ca_bundle)",
            )
        }
        (K::Io, _) => (libc::EIO, true, "connection error"),
        (K::BadStatus | K::BadHeader, _) => (libc::EIO, true, "malformed HTTP response"),
        _ => (libc::EIO, true, "transport error"),
    };
    // The cause in parentheses, unless it only restates the reason
    // ("connection refused (Connection refused (os error 111))").
    let detail = std::error::Error::source(t)
        .map(|s| {
            let s = sanitize(&s.to_string(), url);
            match s.find(" (os error ") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        })
        .filter(|s| !s.eq_ignore_ascii_case(reason))
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    Fault {
        error: Error::new(errno, format!("{what}: {reason}{detail}")),
        transient,
        retry_after: None,
    }
}

/// Lower-level error strings may quote the URL; cut it out.
fn sanitize(text: &str, url: &str) -> String {
    text.replace(url, &redact_url(url))
}

fn tls_config(cfg: &Config) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = &cfg.ca_bundle {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::invalid(format!("ca_bundle {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in certs {
            let cert =
                cert.map_err(|e| Error::invalid(format!("ca_bundle {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| Error::invalid(format!("ca_bundle {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(Error::invalid(format!(
                "ca_bundle {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::io(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
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

    #[test]
    fn limiter_caps_and_releases() {
        let l = HostLimiter::new(2);
        let a = l.acquire("h:80");
        let _b = l.acquire("h:80");
        assert_eq!(l.open_count("h:80"), 2);
        let l2 = Arc::clone(&l);
        let t = std::thread::spawn(move || {
            let _c = l2.acquire("h:80");
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "third permit must wait");
        drop(a);
        t.join().unwrap();
    }
}
