//! The BitTorrent peer wire protocol (BEP 3) with the fast extension (BEP 6)
//! and the extension handshake (BEP 10): a strict, bounded decoder and an
//! encoder.
//!
//! A connection opens with a 68-byte handshake; every message after it is a
//! 4-byte big-endian length followed by that many bytes (a zero length is a
//! keep-alive), the first of which names the message. Peers are untrusted,
//! so the decoder is strict and bounded:
//!
//! - **Nothing is allocated from a declared length.** [`Decoder::decode`]
//!   reads from the caller's buffer and returns borrowed slices; a message
//!   whose declared length exceeds the bound for its kind is refused as soon
//!   as its 5-byte header is in, before its body is buffered. That is what
//!   bounds the per-peer receive buffer ([`Decoder::max_frame`]).
//! - **Every fixed-size message has exactly its size**, a `have`, `request`,
//!   `reject`, `suggest` or `allowed-fast` index is below the piece count, a
//!   `bitfield` is exactly `ceil(pieces / 8)` bytes with its spare bits clear
//!   (BEP 3: "clients should drop the connection" otherwise), and a `piece`
//!   carries at most [`MAX_BLOCK`] bytes that end inside its piece.
//! - **Unknown message ids are skipped**, not fatal, when within the generic
//!   bound: later BEPs (52's hash messages, 9's port) add ids, and a correct
//!   peer ignores what it does not speak.
//!
//! Errors are [`WireError`]s naming what was wrong; a session drops the peer
//! on any of them.

use std::fmt;

use crate::bencode::{self, Limits, Value};

/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of the handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// Block size of requests: every client speaks 16 KiB, and libtorrent
/// refuses larger requests (docs/references.md).
pub const BLOCK: u32 = 16 << 10;
/// Largest block a `piece` message may carry. Larger ones are a protocol
/// error: gtio never asks for more than [`BLOCK`].
pub const MAX_BLOCK: u32 = BLOCK;
/// Largest extension message (BEP 10) accepted: handshakes are a few hundred
/// bytes, `ut_metadata` pieces 16 KiB plus a small dictionary.
pub const MAX_EXTENDED: u32 = 64 << 10;
/// Largest message of an unknown id that is skipped rather than refused.
pub const MAX_UNKNOWN: u32 = 64 << 10;

/// Reserved-bit positions of the handshake.
const RESERVED_EXTENDED: (usize, u8) = (5, 0x10);
const RESERVED_FAST: (usize, u8) = (7, 0x04);

/// Message ids.
mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 0x0D;
    pub const HAVE_ALL: u8 = 0x0E;
    pub const HAVE_NONE: u8 = 0x0F;
    pub const REJECT: u8 = 0x10;
    pub const ALLOWED_FAST: u8 = 0x11;
    pub const EXTENDED: u8 = 20;
}

/// A protocol violation by the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(msg.into()))
}

/// A block address: piece index, offset inside the piece, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRef {
    pub piece: u32,
    pub begin: u32,
    pub len: u32,
}

/// One decoded message. Payloads borrow from the decoder's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// Exactly `ceil(pieces / 8)` bytes, spare bits clear.
    Bitfield(&'a [u8]),
    Request(BlockRef),
    Piece {
        piece: u32,
        begin: u32,
        data: &'a [u8],
    },
    Cancel(BlockRef),
    /// BEP 5 DHT port (we run no DHT: parsed and ignored).
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    /// BEP 10: extended message id (0 = handshake) and its payload.
    Extended {
        id: u8,
        payload: &'a [u8],
    },
    /// An id this decoder does not speak, within [`MAX_UNKNOWN`]: ignored.
    Unknown(u8),
}

/// The 68-byte handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Ours: extension protocol and fast extension advertised.
    pub fn ours(info_hash: [u8; 20], peer_id: [u8; 20]) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[RESERVED_EXTENDED.0] |= RESERVED_EXTENDED.1;
        reserved[RESERVED_FAST.0] |= RESERVED_FAST.1;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub fn supports_extended(&self) -> bool {
        self.reserved[RESERVED_EXTENDED.0] & RESERVED_EXTENDED.1 != 0
    }

    pub fn supports_fast(&self) -> bool {
        self.reserved[RESERVED_FAST.0] & RESERVED_FAST.1 != 0
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(PROTOCOL.len() as u8);
        out.extend_from_slice(PROTOCOL);
        out.extend_from_slice(&self.reserved);
        out.extend_from_slice(&self.info_hash);
        out.extend_from_slice(&self.peer_id);
    }

    /// Parse a handshake from the start of `buf`: `Ok(None)` until 68 bytes
    /// are in. Anything but the BitTorrent protocol string is refused at the
    /// first wrong byte, so a non-BitTorrent server is dropped at once.
    pub fn decode(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        let mut want = [0u8; 20];
        want[0] = PROTOCOL.len() as u8;
        want[1..].copy_from_slice(PROTOCOL);
        let n = buf.len().min(20);
        if buf[..n] != want[..n] {
            return err("not a BitTorrent handshake (wrong protocol string)");
        }
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let mut h = Handshake {
            reserved: [0; 8],
            info_hash: [0; 20],
            peer_id: [0; 20],
        };
        h.reserved.copy_from_slice(&buf[20..28]);
        h.info_hash.copy_from_slice(&buf[28..48]);
        h.peer_id.copy_from_slice(&buf[48..68]);
        Ok(Some(h))
    }
}

/// A message decoder for one torrent's geometry.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    pieces: u32,
    piece_len: u64,
    total_len: u64,
}

impl Decoder {
    /// A decoder for a torrent of `total_len` bytes in pieces of
    /// `piece_len` (the last one shorter); `piece_len` > 0.
    pub fn new(total_len: u64, piece_len: u64) -> Decoder {
        let piece_len = piece_len.max(1);
        let pieces = u32::try_from(total_len.div_ceil(piece_len)).unwrap_or(u32::MAX);
        Decoder {
            pieces,
            piece_len,
            total_len,
        }
    }

    pub fn pieces(&self) -> u32 {
        self.pieces
    }

    /// Bytes of piece `index` (0 past the end).
    pub fn piece_size(&self, index: u32) -> u64 {
        let start = u64::from(index).saturating_mul(self.piece_len);
        self.total_len.saturating_sub(start).min(self.piece_len)
    }

    fn bitfield_len(&self) -> u32 {
        self.pieces.div_ceil(8)
    }

    /// The largest frame (length prefix included) a valid peer can send:
    /// the bound of a peer's receive buffer.
    pub fn max_frame(&self) -> usize {
        let body = (9 + MAX_BLOCK)
            .max(1 + self.bitfield_len())
            .max(2 + MAX_EXTENDED)
            .max(1 + MAX_UNKNOWN);
        4 + body as usize
    }

    /// Most body bytes a message of id `id` may declare.
    fn max_body(&self, id: u8) -> u32 {
        match id {
            id::PIECE => 9 + MAX_BLOCK,
            id::BITFIELD => 1 + self.bitfield_len(),
            id::EXTENDED => 2 + MAX_EXTENDED,
            id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => 1,
            id::HAVE_ALL | id::HAVE_NONE => 1,
            id::HAVE | id::SUGGEST | id::ALLOWED_FAST => 5,
            id::REQUEST | id::CANCEL | id::REJECT => 13,
            id::PORT => 3,
            _ => 1 + MAX_UNKNOWN,
        }
    }

    /// Decode the first message of `buf`: `Ok(None)` while it is incomplete,
    /// else the message and the bytes it used. A length prefix over the
    /// bound of its message id is an error as soon as the id is in, so the
    /// caller never buffers more than [`Decoder::max_frame`].
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(Message<'a>, usize)>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len == 0 {
            return Ok(Some((Message::KeepAlive, 4)));
        }
        let Some(&mid) = buf.get(4) else {
            return Ok(None);
        };
        let max = self.max_body(mid);
        if len > max {
            return err(format!(
                "message id {mid} declares {len} bytes, over its bound of {max}"
            ));
        }
        let total = 4 + len as usize;
        if buf.len() < total {
            return Ok(None);
        }
        let body = &buf[5..total];
        Ok(Some((self.parse(mid, body)?, total)))
    }

    fn parse<'a>(&self, mid: u8, body: &'a [u8]) -> Result<Message<'a>, WireError> {
        let exact = |n: usize, name: &str| -> Result<(), WireError> {
            if body.len() != n {
                return err(format!(
                    "{name} message has {} payload bytes, expected {n}",
                    body.len()
                ));
            }
            Ok(())
        };
        Ok(match mid {
            id::CHOKE => exact(0, "choke").map(|_| Message::Choke)?,
            id::UNCHOKE => exact(0, "unchoke").map(|_| Message::Unchoke)?,
            id::INTERESTED => exact(0, "interested").map(|_| Message::Interested)?,
            id::NOT_INTERESTED => exact(0, "not-interested").map(|_| Message::NotInterested)?,
            id::HAVE_ALL => exact(0, "have-all").map(|_| Message::HaveAll)?,
            id::HAVE_NONE => exact(0, "have-none").map(|_| Message::HaveNone)?,
            id::HAVE => {
                exact(4, "have")?;
                Message::Have(self.index(u32_at(body, 0), "have")?)
            }
            id::SUGGEST => {
                exact(4, "suggest")?;
                Message::Suggest(self.index(u32_at(body, 0), "suggest")?)
            }
            id::ALLOWED_FAST => {
                exact(4, "allowed-fast")?;
                Message::AllowedFast(self.index(u32_at(body, 0), "allowed-fast")?)
            }
            id::BITFIELD => {
                exact(self.bitfield_len() as usize, "bitfield")?;
                let spare = self.bitfield_len() * 8 - self.pieces;
                if spare > 0 {
                    let last = body[body.len() - 1];
                    if last & ((1u8 << spare) - 1) != 0 {
                        return err("bitfield has spare bits set past the last piece");
                    }
                }
                Message::Bitfield(body)
            }
            id::REQUEST | id::CANCEL | id::REJECT => {
                let name = match mid {
                    id::REQUEST => "request",
                    id::CANCEL => "cancel",
                    _ => "reject",
                };
                exact(12, name)?;
                let b = BlockRef {
                    piece: self.index(u32_at(body, 0), name)?,
                    begin: u32_at(body, 4),
                    len: u32_at(body, 8),
                };
                self.check_block(&b, name)?;
                match mid {
                    id::REQUEST => Message::Request(b),
                    id::CANCEL => Message::Cancel(b),
                    _ => Message::Reject(b),
                }
            }
            id::PIECE => {
                if body.len() < 8 {
                    return err("piece message shorter than its 8-byte header");
                }
                let b = BlockRef {
                    piece: self.index(u32_at(body, 0), "piece")?,
                    begin: u32_at(body, 4),
                    len: (body.len() - 8) as u32,
                };
                if b.len == 0 {
                    return err("piece message carries no data");
                }
                self.check_block(&b, "piece")?;
                Message::Piece {
                    piece: b.piece,
                    begin: b.begin,
                    data: &body[8..],
                }
            }
            id::PORT => {
                exact(2, "port")?;
                Message::Port(u16::from_be_bytes([body[0], body[1]]))
            }
            id::EXTENDED => {
                let Some((&eid, payload)) = body.split_first() else {
                    return err("extended message without its extended id");
                };
                Message::Extended { id: eid, payload }
            }
            other => Message::Unknown(other),
        })
    }

    fn index(&self, i: u32, what: &str) -> Result<u32, WireError> {
        if i >= self.pieces {
            return err(format!(
                "{what} names piece {i}, but the torrent has {} pieces",
                self.pieces
            ));
        }
        Ok(i)
    }

    /// A block must be non-empty (for requests), at most [`MAX_BLOCK`]
    /// long and end inside its piece.
    fn check_block(&self, b: &BlockRef, what: &str) -> Result<(), WireError> {
        if b.len == 0 || b.len > MAX_BLOCK {
            return err(format!(
                "{what} of {} bytes (allowed 1..={MAX_BLOCK})",
                b.len
            ));
        }
        let end = u64::from(b.begin) + u64::from(b.len);
        if end > self.piece_size(b.piece) {
            return err(format!(
                "{what} of bytes {}..{end} runs past the end of piece {} ({} bytes)",
                b.begin,
                b.piece,
                self.piece_size(b.piece)
            ));
        }
        Ok(())
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Append the encoding of `m` to `out`.
pub fn encode(m: &Message<'_>, out: &mut Vec<u8>) {
    let simple = |out: &mut Vec<u8>, mid: u8| {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.push(mid);
    };
    let with_u32 = |out: &mut Vec<u8>, mid: u8, v: u32| {
        out.extend_from_slice(&5u32.to_be_bytes());
        out.push(mid);
        out.extend_from_slice(&v.to_be_bytes());
    };
    let with_block = |out: &mut Vec<u8>, mid: u8, b: &BlockRef| {
        out.extend_from_slice(&13u32.to_be_bytes());
        out.push(mid);
        out.extend_from_slice(&b.piece.to_be_bytes());
        out.extend_from_slice(&b.begin.to_be_bytes());
        out.extend_from_slice(&b.len.to_be_bytes());
    };
    match m {
        Message::KeepAlive => out.extend_from_slice(&0u32.to_be_bytes()),
        Message::Choke => simple(out, id::CHOKE),
        Message::Unchoke => simple(out, id::UNCHOKE),
        Message::Interested => simple(out, id::INTERESTED),
        Message::NotInterested => simple(out, id::NOT_INTERESTED),
        Message::HaveAll => simple(out, id::HAVE_ALL),
        Message::HaveNone => simple(out, id::HAVE_NONE),
        Message::Have(i) => with_u32(out, id::HAVE, *i),
        Message::Suggest(i) => with_u32(out, id::SUGGEST, *i),
        Message::AllowedFast(i) => with_u32(out, id::ALLOWED_FAST, *i),
        Message::Request(b) => with_block(out, id::REQUEST, b),
        Message::Cancel(b) => with_block(out, id::CANCEL, b),
        Message::Reject(b) => with_block(out, id::REJECT, b),
        Message::Bitfield(bits) => {
            out.extend_from_slice(&(1 + bits.len() as u32).to_be_bytes());
            out.push(id::BITFIELD);
            out.extend_from_slice(bits);
        }
        Message::Piece { piece, begin, data } => {
            out.extend_from_slice(&(9 + data.len() as u32).to_be_bytes());
            out.push(id::PIECE);
            out.extend_from_slice(&piece.to_be_bytes());
            out.extend_from_slice(&begin.to_be_bytes());
            out.extend_from_slice(data);
        }
        Message::Port(p) => {
            out.extend_from_slice(&3u32.to_be_bytes());
            out.push(id::PORT);
            out.extend_from_slice(&p.to_be_bytes());
        }
        Message::Extended { id: eid, payload } => {
            out.extend_from_slice(&(2 + payload.len() as u32).to_be_bytes());
            out.push(id::EXTENDED);
            out.push(*eid);
            out.extend_from_slice(payload);
        }
        // Never sent: an unknown id has no defined payload.
        Message::Unknown(_) => {}
    }
}

/// What a BEP 10 extension handshake tells us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// `reqq`: how many outstanding requests the peer queues.
    pub reqq: Option<u32>,
    /// `v`: client name and version, for logs (lossy UTF-8, at most 64 chars).
    pub client: Option<String>,
    /// `m`: extension name → the id the peer wants it sent with.
    pub extensions: Vec<(String, u8)>,
}

/// Our extension handshake: no extensions of our own, our queue depth and
/// our client name. Not `upload_only` (BEP 21), although we serve nothing:
/// it means "I am a seed", and a seeding libtorrent drops such a peer at
/// once since neither side would want anything.
pub fn encode_ext_handshake(reqq: u32, client: &str) -> Vec<u8> {
    // Written out rather than built as a Dict: the keys are constant and
    // already in bencode's sorted order.
    let mut out = format!("d1:mde4:reqqi{reqq}e1:v{}:", client.len()).into_bytes();
    out.extend_from_slice(client.as_bytes());
    out.push(b'e');
    out
}

/// Parse a peer's extension handshake. Unknown keys are ignored and a
/// wrongly typed known key is treated as absent (clients disagree in
/// details; none of it is worth dropping a peer that sends good pieces).
/// Only an undecodable payload is an error.
pub fn decode_ext_handshake(payload: &[u8]) -> Result<ExtHandshake, WireError> {
    let limits = Limits {
        max_depth: 8,
        max_values: 4096,
    };
    let v = bencode::decode_with(payload, limits)
        .map_err(|e| WireError(format!("extension handshake: {}", e.message())))?;
    let Some(d) = v.as_dict() else {
        return err("extension handshake is not a dictionary");
    };
    let mut h = ExtHandshake {
        reqq: d
            .get(b"reqq")
            .and_then(Value::as_int)
            .and_then(|i| u32::try_from(i).ok()),
        client: d.get(b"v").and_then(Value::as_bytes).map(|b| {
            let s = String::from_utf8_lossy(b);
            s.chars().take(64).collect()
        }),
        extensions: Vec::new(),
    };
    if let Some(m) = d.get(b"m").and_then(Value::as_dict) {
        for (k, v) in m.iter() {
            if let Some(i) = v.as_int().and_then(|i| u8::try_from(i).ok()) {
                h.extensions
                    .push((String::from_utf8_lossy(k).into_owned(), i));
            }
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests;
