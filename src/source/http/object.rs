//! A plain HTTP object: size and validator pinned at open (by a ranged GET
//! of its first block, whose bytes the cache keeps), bytes read by range
//! with `If-Range`, and every answer checked to be the range asked for of
//! the version pinned (`ESTALE` otherwise, never mixed bytes).

use std::io::Read;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::{host_key, ExactBody, HttpClient, HttpRequest, HttpResponse, Secret};
use crate::buffers::PieceBuf;
use crate::error::redact_url;
use crate::source::{Fault, RangeSource, Validator};
use crate::{Error, Result};

/// A plain HTTP object: size and validator pinned at open.
pub struct HttpObject {
    client: Arc<HttpClient>,
    url: String,
    host: String,
    cred: Option<Secret>,
    size: u64,
    validator: Validator,
    content_type: Option<String>,
}

/// The largest first block an open asks for (the readahead's first window).
const OPEN_BLOCK_MAX: u64 = 1 << 20;

impl HttpObject {
    /// One ranged GET of the first `first_len` bytes (the first block, if
    /// at most 1 MiB), every wait ending by `deadline` (the open's total
    /// bound). Its `Content-Range` gives the size, its `ETag` and
    /// `Last-Modified` the validator, and its body is returned, when it is
    /// all of `0..min(first_len, size)`, for the cache: the first block
    /// costs no request of its own, and an open costs one request, not a
    /// HEAD and then a GET (docs/http.md, "Opening an object").
    pub fn open(
        client: &Arc<HttpClient>,
        url: &str,
        cred: Option<&Secret>,
        deadline: Option<Instant>,
        first_len: u64,
    ) -> Result<(HttpObject, Option<PieceBuf>)> {
        let parsed = url::Url::parse(url)
            .map_err(|_| Error::invalid(format!("bad URL {}", redact_url(url))))?;
        let host = host_key(&parsed);
        // Larger blocks are not fetched at open: its deadline bounds the
        // whole open, and a block of up to 64 MiB may never be read. One
        // byte then tells the size and validator, as a HEAD would.
        let keep = first_len <= OPEN_BLOCK_MAX;
        let first_len = if keep { first_len.max(1) } else { 1 };
        let resp = client
            .send(&HttpRequest {
                method: "GET",
                url,
                range: Some((0, first_len - 1)),
                if_range: None,
                cred,
                deadline,
            })
            .map_err(|f| f.error)?;
        let what = format!("GET {}", redact_url(url));
        let content_type = resp.header("Content-Type").map(str::to_string);
        let validator = validator_of(&resp);
        let (size, first) = match resp.status {
            206 => first_bytes(resp, &what, first_len)?,
            416 => {
                // An empty object has no byte 0.
                let total = resp
                    .header("Content-Range")
                    .and_then(parse_unsatisfied_range);
                if total != Some(0) {
                    return Err(resp.into_fault(&what).error);
                }
                resp.finish();
                (0, None)
            }
            // A 200 with an empty body to a request for byte 0 is the whole
            // object, and it is empty (Apache always answers so): there is
            // no byte 0 to range over.
            200 if resp.content_length() == Some(0) => (0, None),
            // Dropped unread: the connection closes rather than carry the
            // whole object.
            200 => {
                return Err(Error::new(
                    libc::EOPNOTSUPP,
                    format!(
                        "{what}: the server ignores Range requests (answered 200 to a range); \
                         gtio reads by range and will not download the whole object"
                    ),
                )
                .with_http_status(200))
            }
            _ => return Err(resp.into_fault(&what).error),
        };
        Ok((
            HttpObject {
                client: Arc::clone(client),
                url: url.to_string(),
                host,
                cred: cred.cloned(),
                size,
                validator,
                content_type,
            },
            first.filter(|_| keep),
        ))
    }

    /// True when the server labels the object as a torrent.
    pub fn is_torrent(&self) -> bool {
        self.content_type.as_deref().is_some_and(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-bittorrent")
        })
    }
}

fn validator_of(resp: &HttpResponse) -> Validator {
    Validator {
        etag: resp.header("ETag").map(str::to_string),
        last_modified: resp.header("Last-Modified").map(str::to_string),
    }
}

/// The open's `206`: the object's size, and its first bytes when the
/// server sent all of `0..min(first_len, size)`. A shorter range starting
/// at 0 is read (so the connection is reused) but not kept: the cache's
/// unit is the whole block.
fn first_bytes(resp: HttpResponse, what: &str, first_len: u64) -> Result<(u64, Option<PieceBuf>)> {
    let ((a, b), total) = resp
        .header("Content-Range")
        .and_then(parse_content_range)
        .ok_or_else(|| Error::io(format!("{what}: 206 without a valid Content-Range")))?;
    let total =
        total.ok_or_else(|| Error::io(format!("{what}: server does not tell the object size")))?;
    let want = first_len.min(total);
    if a != 0 || b >= want {
        return Err(Error::io(format!(
            "{what}: server answered bytes {a}-{b} to a request for bytes 0-{}",
            first_len - 1
        )));
    }
    let len = b + 1;
    if let Some(n) = resp.content_length().filter(|n| *n != len) {
        return Err(Error::io(format!(
            "{what}: server framed {n} bytes for a range of {len}"
        )));
    }
    // `len` is at most `first_len`, a block size (u32).
    let mut buf = PieceBuf::reuse(len as usize);
    resp.body_exact(len).read_exact(&mut buf).map_err(|e| {
        let errno = match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => libc::ETIMEDOUT,
            _ => libc::EIO,
        };
        // The body's own message names the request and the reason.
        Error::new(errno, e.to_string())
    })?;
    Ok((total, (len == want).then_some(buf)))
}

/// `bytes a-b/total` → ((a, b), Some(total)); `total` may be `*`.
pub fn parse_content_range(value: &str) -> Option<((u64, u64), Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let a: u64 = parse_digits(a)?;
    let b: u64 = parse_digits(b)?;
    if b < a {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => {
            let t = parse_digits(t)?;
            if b >= t {
                return None;
            }
            Some(t)
        }
    };
    Some(((a, b), total))
}

/// `bytes */total` (a 416's Content-Range) → total.
pub fn parse_unsatisfied_range(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    parse_digits(rest.strip_prefix("*/")?)
}

fn parse_digits(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// GET a byte range and check that the answer is that range of the pinned
/// version. `expected_total` is the object size we believe in.
pub fn get_range(
    client: &HttpClient,
    url: &str,
    cred: Option<&Secret>,
    range: Range<u64>,
    expected_total: Option<u64>,
    validator: Option<&Validator>,
) -> std::result::Result<ExactBody, Fault> {
    debug_assert!(!range.is_empty());
    let what = format!(
        "GET {} bytes {}-{}",
        redact_url(url),
        range.start,
        range.end - 1
    );
    let resp = client.send(&HttpRequest {
        method: "GET",
        url,
        range: Some((range.start, range.end - 1)),
        if_range: validator.and_then(|v| v.if_range()),
        cred,
        deadline: None,
    })?;
    let stale = |why: &str| {
        Fault::permanent(Error::new(
            libc::ESTALE,
            format!("{what}: the object changed since it was opened ({why}); reopen it"),
        ))
    };
    if let (Some(pinned), Some(now)) = (
        validator.and_then(|v| v.etag.as_deref()),
        resp.header("ETag"),
    ) {
        if (resp.status == 200 || resp.status == 206) && pinned != now {
            return Err(stale("ETag differs"));
        }
    }
    match resp.status {
        206 => {
            let ((a, b), total) = resp
                .header("Content-Range")
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    Fault::transient(Error::io(format!(
                        "{what}: 206 without a valid Content-Range"
                    )))
                })?;
            if let (Some(t), Some(want)) = (total, expected_total) {
                if t != want {
                    return Err(stale("size differs"));
                }
            }
            if (a, b) != (range.start, range.end - 1) {
                return Err(Fault::transient(Error::io(format!(
                    "{what}: server answered bytes {a}-{b} instead"
                ))));
            }
            let len = range.end - range.start;
            if let Some(n) = resp.content_length().filter(|n| *n != len) {
                // A body framed longer or shorter than the range it claims:
                // the connection cannot be trusted for the next request.
                return Err(Fault::transient(Error::io(format!(
                    "{what}: server framed {n} bytes for a range of {len}"
                ))));
            }
            Ok(resp.body_exact(range.end - range.start))
        }
        200 => {
            // Either If-Range did not match (a new version: stale) or the
            // server ignores ranges altogether (same version: unsupported).
            let same_version = match validator {
                None => true,
                Some(v) => match (&v.etag, resp.header("ETag"), &v.last_modified) {
                    (Some(pinned), Some(now), _) => pinned == now,
                    (_, _, Some(lm)) => resp.header("Last-Modified").is_none_or(|now| now == lm),
                    _ => true,
                },
            };
            if same_version {
                Err(Fault::permanent(
                    Error::new(
                        libc::EOPNOTSUPP,
                        format!("{what}: the server ignored the Range header (answered 200)"),
                    )
                    .with_http_status(200),
                ))
            } else {
                Err(stale("a different version was sent"))
            }
        }
        416 => match resp
            .header("Content-Range")
            .and_then(parse_unsatisfied_range)
        {
            Some(t) if expected_total.is_some_and(|want| want != t) => Err(stale("size differs")),
            _ => Err(resp.status_fault(&what)),
        },
        _ => Err(resp.status_fault(&what)),
    }
}

impl RangeSource for HttpObject {
    fn size(&self) -> u64 {
        self.size
    }

    fn host(&self) -> &str {
        &self.host
    }

    fn mtime(&self) -> Option<std::time::SystemTime> {
        let secs = crate::http_date::parse_http_date(self.validator.last_modified.as_deref()?)?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    fn identity(&self) -> String {
        format!(
            "{}#{}#{}#{}",
            self.url,
            self.size,
            self.validator.etag.as_deref().unwrap_or(""),
            self.validator.last_modified.as_deref().unwrap_or("")
        )
    }

    fn open_range(
        &self,
        range: Range<u64>,
    ) -> std::result::Result<Box<dyn Read + Send + '_>, Fault> {
        let body = get_range(
            &self.client,
            &self.url,
            self.cred.as_ref(),
            range,
            Some(self.size),
            Some(&self.validator),
        )?;
        Ok(Box::new(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some(((0, 9), Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some(((5, 5), None)));
        assert_eq!(parse_content_range("bytes 9-0/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("bytes -1-5/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(
            parse_content_range("bytes 0-99999999999999999999999/1"),
            None
        );
        assert_eq!(parse_unsatisfied_range("bytes */0"), Some(0));
        assert_eq!(parse_unsatisfied_range("bytes */x"), None);
    }

    proptest::proptest! {
        #[test]
        fn content_range_parser_never_panics_and_is_consistent(s in "\\PC{0,40}", a in 0u64..1_000_000, len in 1u64..1_000_000, extra in 0u64..10) {
            if let Some(((x, y), total)) = parse_content_range(&s) {
                proptest::prop_assert!(x <= y);
                if let Some(t) = total { proptest::prop_assert!(y < t); }
            }
            let _ = parse_unsatisfied_range(&s);
            let b = a + len - 1;
            let t = b + 1 + extra;
            let text = format!("bytes {a}-{b}/{t}");
            proptest::prop_assert_eq!(parse_content_range(&text), Some(((a, b), Some(t))));
        }
    }
}
