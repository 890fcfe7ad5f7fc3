//! The small, strict HTTP/1.1 of `gtio serve`: request parsing, response
//! heads, byte ranges, validators and dates.
//!
//! Everything here is a pure function of its input (plus a reader for
//! requests), so the server in `mod.rs` and the fault-injecting test origin in
//! `tests/support/faulty_origin.rs` share one parser and one range logic.
//!
//! Strictness is deliberate: this parser only has to talk to gtio itself,
//! curl and test code, so it refuses anything ambiguous instead of guessing.
//! Lines must end in CRLF, header names may not be followed by whitespace,
//! obsolete line folding is refused, a request without a body must not carry
//! `Transfer-Encoding`, and HTTP/1.1 requests need exactly one `Host`. Every
//! refusal is an error value carrying its status code; nothing in this file
//! panics on network input.
//!
//! Sizes are bounded before anything is buffered: the whole request head
//! (request line plus headers) must fit in [`Limits::max_head_bytes`] and hold
//! at most [`Limits::max_headers`] fields, so a client cannot make the server
//! allocate more than a few KiB per connection.

use std::io::{self, BufRead, Write};

/// Bounds on one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header section, CRLFs included.
    pub max_head_bytes: usize,
    /// Number of header fields.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 100,
        }
    }
}

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method token, case preserved (methods are case-sensitive).
    pub method: String,
    /// The request-target exactly as sent (origin-form normally).
    pub target: String,
    /// `x` of `HTTP/1.x`: 0 or 1.
    pub minor_version: u8,
    /// Header fields in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    /// `Content-Length` of the request body (0 when absent); the caller must
    /// consume it to keep the connection in sync.
    pub body_len: u64,
}

impl Request {
    /// The first value of a header field (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header field, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after the response (RFC 9112 9.3):
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let has = |tok: &str| {
            self.headers_named("connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(tok))
        };
        if self.minor_version >= 1 {
            !has("close")
        } else {
            has("keep-alive") && !has("close")
        }
    }
}

/// Why no request could be read. [`RequestError::status`] says what to answer.
#[derive(Debug)]
pub enum RequestError {
    /// The peer closed the connection cleanly before sending anything: the
    /// normal end of a keep-alive connection.
    Closed,
    /// Reading failed (including the idle timeout); answer nothing.
    Io(io::Error),
    /// Malformed request: 400.
    Bad(&'static str),
    /// Request line longer than the head budget: 414.
    UriTooLong,
    /// Header section too large or too many fields: 431.
    HeadersTooLarge,
    /// A framing feature this server does not implement: 501.
    NotImplemented(&'static str),
    /// `HTTP/2.0` and friends on this text protocol: 505.
    Version,
}

impl RequestError {
    /// The status to answer with before closing, or `None` to just close.
    pub fn status(&self) -> Option<u16> {
        match self {
            RequestError::Closed | RequestError::Io(_) => None,
            RequestError::Bad(_) => Some(400),
            RequestError::UriTooLong => Some(414),
            RequestError::HeadersTooLarge => Some(431),
            RequestError::NotImplemented(_) => Some(501),
            RequestError::Version => Some(505),
        }
    }
}

impl From<io::Error> for RequestError {
    fn from(e: io::Error) -> Self {
        RequestError::Io(e)
    }
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Append one line (through its `\n`) to `line`, reading at most `budget`
/// bytes; never buffers more than the budget.
fn read_line<R: BufRead>(r: &mut R, budget: usize, line: &mut Vec<u8>) -> io::Result<LineRead> {
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(LineRead::Eof);
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if line.len() + take > budget {
            return Ok(LineRead::TooLong);
        }
        line.extend_from_slice(&avail[..take]);
        r.consume(take);
        if done {
            return Ok(LineRead::Line);
        }
    }
}

/// The line without its CRLF; a bare LF or a stray CR is an error, because
/// lenient line endings are how request smuggling starts.
fn strip_crlf(line: &[u8]) -> Result<&[u8], RequestError> {
    let body = line
        .strip_suffix(b"\r\n")
        .ok_or(RequestError::Bad("line not terminated by CRLF"))?;
    if body.contains(&b'\r') {
        return Err(RequestError::Bad("stray CR"));
    }
    Ok(body)
}

/// RFC 9110 5.6.2 `tchar`.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, u8), RequestError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Bad(
            "request line is not METHOD SP TARGET SP VERSION",
        ));
    };
    if !is_token(method) {
        return Err(RequestError::Bad("bad method"));
    }
    if target.is_empty() || !target.iter().all(|&c| (0x21..0x7f).contains(&c)) {
        return Err(RequestError::Bad("bad request-target"));
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        v if v.len() == 8
            && v.starts_with(b"HTTP/")
            && v[5].is_ascii_digit()
            && v[6] == b'.'
            && v[7].is_ascii_digit() =>
        {
            return Err(RequestError::Version)
        }
        _ => return Err(RequestError::Bad("bad HTTP version")),
    };
    // Both are ASCII after the checks above, so these conversions cannot fail;
    // map the impossible case to 400 rather than unwrap.
    let method = String::from_utf8(method.to_vec()).map_err(|_| RequestError::Bad("method"))?;
    let target = String::from_utf8(target.to_vec()).map_err(|_| RequestError::Bad("target"))?;
    Ok((method, target, minor))
}

fn parse_header_line(line: &[u8]) -> Result<(String, String), RequestError> {
    if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
        return Err(RequestError::Bad("obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&c| c == b':')
        .ok_or(RequestError::Bad("header without colon"))?;
    let name = &line[..colon];
    if !is_token(name) {
        // Includes whitespace before the colon (RFC 9112 5.1 requires 400).
        return Err(RequestError::Bad("bad header name"));
    }
    let value = line[colon + 1..].trim_ascii();
    if !value
        .iter()
        .all(|&c| c == b'\t' || (0x20..0x7f).contains(&c) || c >= 0x80)
    {
        return Err(RequestError::Bad("control character in header value"));
    }
    // obs-text is allowed on the wire but means nothing to us; keep it lossy.
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// Read and validate one request head from `r`.
///
/// Returns [`RequestError::Closed`] on a clean EOF before the first byte,
/// which is how keep-alive connections normally end.
pub fn read_request<R: BufRead>(r: &mut R, limits: &Limits) -> Result<Request, RequestError> {
    let mut used = 0usize;
    let mut line = Vec::with_capacity(256);
    let mut blank_lines = 0;
    let (method, target, minor_version) = loop {
        line.clear();
        match read_line(r, limits.max_head_bytes - used, &mut line)? {
            LineRead::Line => {}
            LineRead::Eof if used == 0 && line.is_empty() => return Err(RequestError::Closed),
            LineRead::Eof => return Err(RequestError::Bad("truncated request line")),
            LineRead::TooLong => return Err(RequestError::UriTooLong),
        }
        used += line.len();
        let content = strip_crlf(&line)?;
        // RFC 9112 2.2: ignore at least one empty line before the request
        // line (some clients send a CRLF after a POST body); a few, not many.
        if content.is_empty() && blank_lines < 4 {
            blank_lines += 1;
            continue;
        }
        break parse_request_line(content)?;
    };
    let mut headers = Vec::new();
    loop {
        line.clear();
        match read_line(r, limits.max_head_bytes - used, &mut line)? {
            LineRead::Line => {}
            LineRead::Eof => return Err(RequestError::Bad("truncated header section")),
            LineRead::TooLong => return Err(RequestError::HeadersTooLarge),
        }
        used += line.len();
        let content = strip_crlf(&line)?;
        if content.is_empty() {
            break;
        }
        if headers.len() >= limits.max_headers {
            return Err(RequestError::HeadersTooLarge);
        }
        headers.push(parse_header_line(content)?);
    }
    let mut req = Request {
        method,
        target,
        minor_version,
        headers,
        body_len: 0,
    };
    if minor_version >= 1 && req.headers_named("host").count() != 1 {
        return Err(RequestError::Bad("HTTP/1.1 request needs exactly one Host"));
    }
    if req.header("transfer-encoding").is_some() {
        return Err(RequestError::NotImplemented(
            "request bodies with Transfer-Encoding",
        ));
    }
    let mut body_len = None;
    for v in req.headers_named("content-length") {
        let n = parse_decimal(v.as_bytes()).ok_or(RequestError::Bad("bad Content-Length"))?;
        if body_len.is_some_and(|b| b != n) {
            return Err(RequestError::Bad("conflicting Content-Length"));
        }
        body_len = Some(n);
    }
    req.body_len = body_len.unwrap_or(0);
    Ok(req)
}

use gtio::http_date::parse_decimal;

/// Like [`parse_decimal`] but saturating: in a Range a position beyond u64 is
/// simply "beyond the end", not a syntax error.
fn parse_decimal_saturating(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

// ---------------------------------------------------------------- responses

/// The reason phrase for the statuses this crate sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A status line plus header fields, written as one HTTP/1.1 head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    pub fn new(status: u16) -> Self {
        ResponseHead {
            status,
            headers: Vec::new(),
        }
    }

    /// Builder-style [`ResponseHead::push`].
    pub fn with(mut self, name: &str, value: impl ToString) -> Self {
        self.push(name, value);
        self
    }

    pub fn push(&mut self, name: &str, value: impl ToString) {
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// The serialized head. CR and LF inside names or values are replaced by
    /// spaces so that a value built from test input can never split the
    /// response (header injection).
    pub fn to_bytes(&self) -> Vec<u8> {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        for (n, v) in &self.headers {
            out.push_str(&clean(n));
            out.push_str(": ");
            out.push_str(&clean(v));
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(&self.to_bytes())
    }
}

// ------------------------------------------------------------------ ranges

/// An inclusive byte range inside a representation of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive; always `>= start` and `< size`.
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes (never 0).
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: a satisfiable range has at least one byte. Present so
    /// `len` without `is_empty` does not trip clippy.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value: `bytes START-END/SIZE`.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, size)
    }
}

/// What a `Range` header asks of a representation of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Unknown unit or invalid syntax: RFC 9110 14.2 lets (for unknown units,
    /// makes) the server ignore the header and send 200 with the full body.
    Ignore,
    /// Exactly one satisfiable range: 206.
    Single(ByteRange),
    /// Two or more satisfiable ranges. The server answers 200 with the full
    /// body (RFC 9110 14.2 allows ignoring Range) instead of multipart.
    Multiple,
    /// No satisfiable range: 416 with `Content-Range: bytes */SIZE`.
    Unsatisfiable,
}

/// The `Content-Range` of a 416: `bytes */SIZE`.
pub fn unsatisfied_content_range(size: u64) -> String {
    format!("bytes */{size}")
}

/// Interpret a `Range` header value against a representation of `size` bytes
/// (RFC 9110 14.1.2). Handles `a-b`, `a-`, `-n` and lists of them; positions
/// past u64 saturate. Never panics.
pub fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some((unit, set)) = value.trim().split_once('=') else {
        return RangeRequest::Ignore;
    };
    if !unit.eq_ignore_ascii_case("bytes") {
        return RangeRequest::Ignore;
    }
    let mut specs = 0usize;
    let mut first: Option<ByteRange> = None;
    let mut satisfiable = 0usize;
    for spec in set.split(',').map(|s| s.trim_matches([' ', '\t'])) {
        if spec.is_empty() {
            continue; // RFC 9110 5.6.1: recipients accept empty list elements
        }
        specs += 1;
        let Some((a, b)) = spec.split_once('-') else {
            return RangeRequest::Ignore;
        };
        let range = if a.is_empty() {
            // suffix-range: the last n bytes
            let Some(n) = parse_decimal_saturating(b) else {
                return RangeRequest::Ignore;
            };
            (n > 0 && size > 0).then(|| ByteRange {
                start: size - n.min(size),
                end: size - 1,
            })
        } else {
            let Some(start) = parse_decimal_saturating(a) else {
                return RangeRequest::Ignore;
            };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match parse_decimal_saturating(b) {
                    Some(e) if e >= start => e,
                    // last-pos < first-pos makes the whole header invalid
                    _ => return RangeRequest::Ignore,
                }
            };
            (start < size).then(|| ByteRange {
                start,
                end: end.min(size - 1),
            })
        };
        if let Some(r) = range {
            satisfiable += 1;
            first.get_or_insert(r);
        }
    }
    match (specs, satisfiable, first) {
        (0, _, _) => RangeRequest::Ignore,
        (_, 0, _) => RangeRequest::Unsatisfiable,
        (_, 1, Some(r)) => RangeRequest::Single(r),
        _ => RangeRequest::Multiple,
    }
}

// -------------------------------------------------------------- validators

/// A strong entity tag in nginx's style: `"<mtime hex>-<size hex>"`.
pub fn etag(mtime_secs: u64, size: u64) -> String {
    format!("\"{mtime_secs:x}-{size:x}\"")
}

/// Whether an `If-Range` value lets a range request proceed (RFC 9110
/// 13.1.5): an entity tag must match `etag` strongly (a weak tag never
/// matches); a date must equal `last_modified` exactly. Anything unparsable
/// is a mismatch, which makes the server send the full 200: the safe side.
pub fn if_range_matches(value: &str, etag: &str, last_modified: u64) -> bool {
    let value = value.trim();
    if value.starts_with("W/") {
        return false;
    }
    if value.starts_with('"') {
        return !etag.starts_with("W/") && value == etag;
    }
    parse_http_date(value) == Some(last_modified)
}

pub use gtio::http_date::{fmt_http_date, http_date_now, parse_http_date, unix_secs};

#[cfg(test)]
mod tests;
