//! Response bodies: read straight from the connection into the caller's
//! buffer, framed by `Content-Length` or chunks, every wait bounded by the
//! request's [`Pace`], the connection returned to the pool once the body
//! has been read to its end.
//!
//! The engine reads a body with `read_exact` into piece buffers, so each
//! `read` here is one `recv` (or one rustls copy) of up to a whole piece:
//! no intermediate buffer, no 8 KiB slices.

use std::io::{self, Read};
use std::sync::Arc;

use super::conn::{Conn, Failure, Pace, Pool};
use super::limiter::HostPermit;
use super::wire::{self, Framing, WireError, MAX_CHUNK_LINE, MAX_HEAD_BYTES};

enum State {
    Length(u64),
    /// `left` bytes of the current chunk remain; `first` until the first
    /// chunk-size line has been read.
    Chunked {
        left: u64,
        first: bool,
    },
    UntilClose,
    Done,
}

/// A response body. Holds the host permit until dropped.
pub struct Body {
    conn: Option<Conn>,
    state: State,
    reusable: bool,
    pace: Pace,
    pool: Arc<Pool>,
    key: String,
    /// "GET http://host/path" (redacted), for messages.
    what: String,
    line: Vec<u8>,
    _permit: HostPermit,
}

impl Body {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        conn: Conn,
        framing: Framing,
        reusable: bool,
        pace: Pace,
        pool: Arc<Pool>,
        key: String,
        what: String,
        permit: HostPermit,
    ) -> Body {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked {
                left: 0,
                first: true,
            },
            Framing::UntilClose => State::UntilClose,
        };
        let mut body = Body {
            conn: Some(conn),
            state,
            reusable,
            pace,
            pool,
            key,
            what,
            line: Vec::new(),
            _permit: permit,
        };
        body.finish_if_done();
        body
    }

    /// The declared length, when the body has one.
    pub fn declared_len(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    fn finish_if_done(&mut self) {
        if matches!(self.state, State::Done) {
            if let Some(conn) = self.conn.take() {
                if self.reusable {
                    self.pool.put(&self.key, conn);
                }
            }
        }
    }

    /// Read body bytes into `buf`; `Ok(0)` at the end of the body.
    pub fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, Failure> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(0);
            };
            match &mut self.state {
                State::Done => return Ok(0),
                State::Length(left) => {
                    let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = conn.read(&mut buf[..want], &mut self.pace)?;
                    if n == 0 {
                        self.conn = None;
                        return Err(Failure::Closed);
                    }
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Done;
                        self.finish_if_done();
                    }
                    return Ok(n);
                }
                State::UntilClose => {
                    let n = conn.read(buf, &mut self.pace)?;
                    if n == 0 {
                        self.state = State::Done;
                        self.conn = None;
                    }
                    return Ok(n);
                }
                State::Chunked { left, first } => {
                    if *left > 0 {
                        let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                        let n = conn.read(&mut buf[..want], &mut self.pace)?;
                        if n == 0 {
                            self.conn = None;
                            return Err(Failure::Closed);
                        }
                        *left -= n as u64;
                        return Ok(n);
                    }
                    if !*first {
                        // The CRLF after the chunk's data.
                        conn.read_line(&mut self.line, 2, &mut self.pace)?;
                        if self
                            .line
                            .strip_suffix(b"\n")
                            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                            != Some(b"")
                        {
                            return Err(Failure::Wire(WireError(
                                "chunk not followed by CRLF".into(),
                            )));
                        }
                    }
                    *first = false;
                    conn.read_line(&mut self.line, MAX_CHUNK_LINE, &mut self.pace)?;
                    let size = wire::parse_chunk_size(
                        self.line.strip_suffix(b"\n").unwrap_or(&self.line),
                    )?;
                    if size > 0 {
                        *left = size;
                        continue;
                    }
                    // Trailer fields up to the blank line, bounded like a head.
                    let mut total = 0;
                    loop {
                        conn.read_line(&mut self.line, MAX_CHUNK_LINE, &mut self.pace)?;
                        total += self.line.len();
                        if total > MAX_HEAD_BYTES {
                            return Err(Failure::Wire(WireError("trailer too large".into())));
                        }
                        if self.line == b"\r\n" || self.line == b"\n" {
                            break;
                        }
                    }
                    self.state = State::Done;
                    self.finish_if_done();
                    return Ok(0);
                }
            }
        }
    }

    /// Read and discard up to `limit` bytes so that the connection can be
    /// reused (a redirect's or an error's small body); give up otherwise.
    pub fn discard(&mut self, limit: u64) {
        if self.declared_len().is_none_or(|n| n > limit) {
            return;
        }
        let mut sink = [0u8; 4096];
        while !self.is_done() {
            match self.read_body(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => {
                    self.conn = None;
                    break;
                }
            }
        }
    }

    /// The whole body, refusing more than `limit` bytes.
    pub fn read_bounded(&mut self, limit: u64) -> Result<Vec<u8>, Failure> {
        if let Some(n) = self.declared_len() {
            if n > limit {
                return Err(Failure::Wire(WireError(format!(
                    "body of {n} bytes is larger than the {limit}-byte limit"
                ))));
            }
        }
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = self.read_body(&mut chunk)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() as u64 + n as u64 > limit {
                return Err(Failure::Wire(WireError(format!(
                    "body larger than the {limit}-byte limit"
                ))));
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_body(buf)
            .map_err(|f| failure_to_io(f, &self.what))
    }
}

/// An `io::Error` for a body failure: `TimedOut` for stalls (the engine
/// maps it to `ETIMEDOUT`), the reason said once.
pub fn failure_to_io(f: Failure, what: &str) -> io::Error {
    let kind = match &f {
        Failure::NoAnswer(_) | Failure::Stall { .. } | Failure::Deadline(_) => {
            io::ErrorKind::TimedOut
        }
        Failure::Timeout { .. } => io::ErrorKind::TimedOut,
        Failure::Closed => io::ErrorKind::UnexpectedEof,
        Failure::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => io::ErrorKind::TimedOut,
        Failure::Io(e) => e.kind(),
        Failure::Wire(_) | Failure::Dns(_) => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, format!("{what}: {}", super::failure_reason(&f).2))
}

/// A body reader that yields exactly the promised bytes.
pub struct ExactBody {
    body: Body,
    remaining: u64,
}

impl ExactBody {
    pub(super) fn new(body: Body, len: u64) -> ExactBody {
        ExactBody {
            body,
            remaining: len,
        }
    }
}

impl Read for ExactBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.body.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: body ended {} bytes early",
                    self.body.what(),
                    self.remaining
                ),
            ));
        }
        self.remaining -= n as u64;
        if self.remaining == 0 && !self.body.is_done() {
            // A chunked body: read its end so the connection can be reused;
            // more bytes than promised means a lying server.
            let mut probe = [0u8; 1];
            if self.body.read(&mut probe).unwrap_or(0) != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: server sent more bytes than the range it promised",
                        self.body.what()
                    ),
                ));
            }
        }
        Ok(n)
    }
}
