//! A plain HTTP object: size and validator pinned at open, bytes read by
//! range with `If-Range`, and every answer checked to be the range asked for
//! of the version pinned (`ESTALE` otherwise, never mixed bytes).

use std::io::Read;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::{host_key, ExactBody, HttpClient, HttpRequest, HttpResponse, Secret};
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

impl HttpObject {
    /// HEAD (and, when that does not tell, a one-byte probe), every wait
    /// ending by `deadline` (the open's total bound).
    pub fn open(
        client: &Arc<HttpClient>,
        url: &str,
        cred: Option<&Secret>,
        deadline: Option<Instant>,
    ) -> Result<HttpObject> {
        let parsed = url::Url::parse(url)
            .map_err(|_| Error::invalid(format!("bad URL {}", redact_url(url))))?;
        let host = host_key(&parsed);
        let head = client
            .send(&HttpRequest {
                method: "HEAD",
                url,
                range: None,
                if_range: None,
                cred,
                deadline,
            })
            .map_err(|f| f.error)?;
        let what = format!("HEAD {}", redact_url(url));
        let ranges_advertised = head
            .header("Accept-Ranges")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("bytes")));
        let length = head
            .header("Content-Length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let content_type = head.header("Content-Type").map(str::to_string);
        let (size, validator) = match (head.status, length) {
            (200, Some(len)) if ranges_advertised => (len, validator_of(&head)),
            (404 | 410 | 401, _) => return Err(head.status_fault(&what).error),
            // HEAD refused (presigned GET-only URLs answer 403; some servers
            // 405), or no length, or ranges not advertised: ask for one byte.
            _ => {
                drop(head);
                probe(client, url, cred, deadline)?
            }
        };
        Ok(HttpObject {
            client: Arc::clone(client),
            url: url.to_string(),
            host,
            cred: cred.cloned(),
            size,
            validator,
            content_type,
        })
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

/// `GET Range: bytes=0-0`: learns the size from `Content-Range` and whether
/// ranges work at all.
fn probe(
    client: &HttpClient,
    url: &str,
    cred: Option<&Secret>,
    deadline: Option<Instant>,
) -> Result<(u64, Validator)> {
    let what = format!("GET {}", redact_url(url));
    let resp = client
        .send(&HttpRequest {
            method: "GET",
            url,
            range: Some((0, 0)),
            if_range: None,
            cred,
            deadline,
        })
        .map_err(|f| f.error)?;
    match resp.status {
        206 => {
            let (_, total) = resp
                .header("Content-Range")
                .and_then(parse_content_range)
                .ok_or_else(|| Error::io(format!("{what}: 206 without a valid Content-Range")))?;
            let total = total.ok_or_else(|| {
                Error::io(format!("{what}: server does not tell the object size"))
            })?;
            let validator = validator_of(&resp);
            // Drain the one byte so the connection goes back to the pool.
            let _ = resp.body_exact(1).read(&mut [0u8; 1]);
            Ok((total, validator))
        }
        416 => {
            // An empty object has no byte 0.
            match resp
                .header("Content-Range")
                .and_then(parse_unsatisfied_range)
            {
                Some(0) => Ok((0, validator_of(&resp))),
                _ => Err(resp.status_fault(&what).error),
            }
        }
        // A 200 with an empty body to a request for byte 0 is the whole
        // object, and it is empty (Apache always answers so; nginx when HEAD
        // is refused): there is no byte 0 to range over.
        200 if resp.content_length() == Some(0) => Ok((0, validator_of(&resp))),
        200 => Err(Error::new(
            libc::EOPNOTSUPP,
            format!(
                "{what}: the server ignores Range requests (answered 200 to a range); \
                 gtio reads by range and will not download the whole object"
            ),
        )
        .with_http_status(200)),
        _ => Err(resp.status_fault(&what).error),
    }
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
