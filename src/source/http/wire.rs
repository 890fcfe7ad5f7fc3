//! HTTP/1.1 on the wire: the request we write and the response head we
//! parse (RFC 9112), with hard size bounds, and how the body is framed.
//!
//! The parser works on a byte buffer and answers "not complete yet", a
//! head, or an error; it never allocates more than [`MAX_HEAD_BYTES`]
//! worth of text, whatever the server sends. It is liberal where RFC 9112
//! allows it (bare LF line ends, obsolete line folding replaced by a
//! space, any reason phrase) and strict where a mistake would hand the
//! caller wrong bytes (conflicting `Content-Length`s, a transfer coding
//! other than `chunked`).

use std::fmt::Write as _;

/// A response head larger than this (status line plus headers) is refused.
pub const MAX_HEAD_BYTES: usize = 64 << 10;
/// More header fields than this is refused.
pub const MAX_HEADERS: usize = 128;
/// A chunk-size line (with extensions) longer than this is refused.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Append a request head to `out`. `target` is the path and query;
/// `host` the `Host` header value. Values were checked by the caller (no
/// CR, LF or NUL can reach here: see `Secret::authorization`).
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) {
    let mut s = String::with_capacity(256);
    let _ = write!(s, "{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        let _ = write!(s, "{name}: {value}\r\n");
    }
    s.push_str("\r\n");
    out.extend_from_slice(s.as_bytes());
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Comma-separated list tokens of a header, lowercased.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.all(name)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// The server lets us send another request on this connection.
    pub fn keep_alive(&self) -> bool {
        let conn = self.tokens("Connection");
        if self.minor == 0 {
            conn.iter().any(|t| t == "keep-alive")
        } else {
            !conn.iter().any(|t| t == "close")
        }
    }
}

/// What was wrong with a response head; the text goes into messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

/// Parse one response head from the start of `buf`. `Ok(None)`: not
/// complete yet (read more). `Ok(Some((head, n)))`: the head used `n` bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, WireError> {
    let Some(end) = head_end(buf) else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(WireError(format!(
                "response head larger than {} KiB",
                MAX_HEAD_BYTES >> 10
            )));
        }
        // A server that is not speaking HTTP at all is told apart early.
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return Err(WireError("not an HTTP response".into()));
        }
        return Ok(None);
    };
    if end > MAX_HEAD_BYTES {
        return Err(WireError(format!(
            "response head larger than {} KiB",
            MAX_HEAD_BYTES >> 10
        )));
    }
    let text = &buf[..end];
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or(b"");
    let (status, minor) = parse_status_line(status_line)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Obsolete line folding (RFC 9112 §5.2): replace by a space.
            let Some(last) = headers.last_mut() else {
                return Err(WireError("header continuation without a header".into()));
            };
            last.1.push(' ');
            last.1.push_str(latin1(trim(line)).as_str());
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| WireError("header line without a colon".into()))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(WireError("invalid header name".into()));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(WireError(format!("more than {MAX_HEADERS} header fields")));
        }
        headers.push((latin1(name), latin1(trim(&line[colon + 1..]))));
    }
    Ok(Some((
        Head {
            status,
            minor,
            headers,
        },
        end,
    )))
}

/// Index just past the blank line ending the head (CRLF CRLF or LF LF).
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        let rest = &buf[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

fn parse_status_line(line: &[u8]) -> Result<(u16, u8), WireError> {
    let bad = || WireError("malformed status line".into());
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    let minor = match rest.first() {
        Some(b'0') => 0,
        Some(b'1') => 1,
        _ => return Err(bad()),
    };
    let rest = rest[1..].strip_prefix(b" ").ok_or_else(bad)?;
    if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    if rest.len() > 3 && rest[3] != b' ' {
        return Err(bad());
    }
    let status = rest[..3]
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(bad());
    }
    Ok((status, minor))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Header bytes as text: ISO-8859-1, as RFC 9110 §5.5 allows.
fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// The framing of a final response to `method`; `reusable` is false when
/// the framing leaves the connection unfit for another request.
pub fn framing(method: &str, head: &Head) -> Result<(Framing, bool), WireError> {
    if method == "HEAD" || head.status == 204 || head.status == 304 {
        return Ok((Framing::Empty, true));
    }
    let codings = head.tokens("Transfer-Encoding");
    if !codings.is_empty() {
        if let Some(other) = codings.iter().find(|c| *c != "chunked") {
            return Err(WireError(format!(
                "Transfer-Encoding {other} (gtio asked for the bytes as stored)"
            )));
        }
        // With a Content-Length as well the message may be smuggled: use
        // the chunks and do not reuse the connection (RFC 9112 §6.3).
        let reusable = head.header("Content-Length").is_none();
        return Ok((Framing::Chunked, reusable));
    }
    let mut length = None;
    for v in head.all("Content-Length") {
        for part in v.split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WireError(format!("invalid Content-Length {part:?}")));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| WireError(format!("invalid Content-Length {part:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError("conflicting Content-Length values".into()));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

/// Parse a chunk-size line (without its line end): the size in hex, then
/// optional `;extensions`.
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
    let hex = trim(hex);
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(WireError("invalid chunk size".into()));
    }
    let s = std::str::from_utf8(hex).map_err(|_| WireError("invalid chunk size".into()))?;
    u64::from_str_radix(s, 16).map_err(|_| WireError("invalid chunk size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head() {
        let mut out = Vec::new();
        write_request(&mut out, "GET", "/a?b", "h:8080", &[("Range", "bytes=0-0")]);
        assert_eq!(
            out,
            b"GET /a?b HTTP/1.1\r\nHost: h:8080\r\nRange: bytes=0-0\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn heads() {
        let raw =
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nX:  a \r\n\tb\r\n\r\nhello";
        let (h, n) = parse_head(raw).unwrap().unwrap();
        assert_eq!((h.status, h.minor, n), (206, 1, raw.len() - 5));
        assert_eq!(h.header("content-length"), Some("5"));
        assert_eq!(h.header("x"), Some("a b"));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n")
            .unwrap()
            .is_none());
        let (h, _) = parse_head(b"HTTP/1.0 200\nA: b\n\n").unwrap().unwrap();
        assert_eq!((h.status, h.minor), (200, 0));
        assert!(!h.keep_alive());
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 2000 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n").is_err());
        let big = [
            b"HTTP/1.1 200 OK\r\n".as_slice(),
            &vec![b'a'; MAX_HEAD_BYTES + 1],
        ]
        .concat();
        assert!(parse_head(&big).is_err());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
        assert!(parse_head(format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()).is_err());
    }

    #[test]
    fn framings() {
        let head = |s: &str| parse_head(s.as_bytes()).unwrap().unwrap().0;
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(framing("GET", &h).unwrap(), (Framing::Length(10), true));
        assert_eq!(framing("HEAD", &h).unwrap(), (Framing::Empty, true));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 10, 10\r\n\r\n");
        assert_eq!(framing("GET", &h).unwrap().0, Framing::Length(10));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n");
        assert!(framing("GET", &h).is_err());
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(framing("GET", &h).unwrap(), (Framing::Chunked, true));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(framing("GET", &h).unwrap_err().0.contains("gzip"));
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(framing("GET", &h).unwrap(), (Framing::UntilClose, false));
        assert_eq!(parse_chunk_size(b"1f;x=y\r").unwrap(), 31);
        assert!(parse_chunk_size(b"zz").is_err());
        assert!(parse_chunk_size(b"ffffffffffffffffff").is_err());
    }

    proptest::proptest! {
        #[test]
        fn head_parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_head(&bytes);
            let _ = parse_chunk_size(&bytes);
        }
    }
}
