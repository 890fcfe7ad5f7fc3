//! One peer connection: its socket, bounded buffers and protocol state.
//!
//! The session loop owns every [`Peer`]; this module keeps what belongs to
//! one connection and nothing about pieces. Buffers are bounded: the
//! receive buffer never holds more than the largest frame the wire decoder
//! allows plus one read, and the send buffer (requests, rejects, keep-alives:
//! a few bytes each) is capped so a peer that stops reading while it floods
//! us with requests is dropped instead of growing it.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::wire::{self, BlockRef, Message};

/// Bytes read from the socket per call.
const READ_CHUNK: usize = 128 << 10;
/// Most bytes waiting to be sent before the peer is dropped.
pub const MAX_SEND_BUFFER: usize = 1 << 20;
/// Outstanding requests assumed when a peer does not say (`reqq` absent):
/// libtorrent's default (docs/references.md).
pub const DEFAULT_REQQ: u32 = 250;
/// Never more in flight to one peer, whatever its `reqq` (libtorrent 2.0.8
/// says 2000 on loopback): 512 blocks are 8 MiB, more than a loopback
/// bandwidth-delay product, and it bounds what a stalled peer holds up.
pub const MAX_PIPELINE: u32 = 512;
/// Requests in flight to a peer whose rate is not measured yet: a full
/// pipe on loopback, few blocks held up if the peer turns out slow.
pub const INITIAL_PIPELINE: usize = 32;
/// Never fewer in flight to an unchoking peer, however slow.
pub const MIN_PIPELINE: usize = 2;
/// How long a rejected block is not asked of the same peer.
pub const REJECT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// TCP connect in progress.
    Connecting,
    /// Connected, our handshake sent, theirs not yet read.
    Handshaking,
    /// Accepted from a peer that dialled us; its handshake (naming the
    /// torrent) not yet read, ours not yet sent.
    Incoming,
    Active,
}

pub struct Peer {
    pub addr: SocketAddr,
    pub torrent: u64,
    pub stream: TcpStream,
    pub state: State,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    rcap: usize,

    pub choking_us: bool,
    pub unchoked_ever: bool,
    pub fast: bool,
    pub extended: bool,
    /// The peer's `reqq`, or [`DEFAULT_REQQ`].
    pub reqq: u32,
    pub client: Option<String>,
    have: Vec<u8>,
    have_all: bool,
    pub allowed_fast: Vec<u32>,
    /// Blocks asked of this peer and not yet answered, with when.
    pub outstanding: Vec<(BlockRef, Instant)>,
    /// Blocks this peer rejected, and when: not asked of it again for
    /// [`REJECT_BACKOFF`] (a peer whose queue is full rejects, and asking
    /// again at once would loop). Not for ever: libtorrent rejects the
    /// allowed-fast requests it got just before its unchoke, and a block
    /// only that peer can serve must be asked again.
    pub rejected: Vec<(BlockRef, Instant)>,
    /// Its blocks were handed to other peers after it stalled; no new
    /// requests until it delivers something.
    pub snubbed: bool,

    pub started: Instant,
    pub last_recv: Instant,
    pub last_send: Instant,
    /// Since when this peer owes us a block (set when its first request
    /// goes out, moved on each block it delivers, cleared when it owes
    /// nothing).
    pub waiting_since: Option<Instant>,
    /// Bytes per second, an EWMA over the timer's windows in which it owed
    /// us blocks; `None` until the first such window ends.
    pub rate: Option<f64>,
    /// Block bytes received since the window started.
    pub window_bytes: u64,
    /// Whether it owed blocks when the window started.
    window_busy: bool,
    window_start: Instant,
}

impl Peer {
    pub fn new(addr: SocketAddr, torrent: u64, stream: TcpStream, max_frame: usize) -> Peer {
        let now = Instant::now();
        Peer {
            addr,
            torrent,
            stream,
            state: State::Connecting,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            wpos: 0,
            rcap: max_frame.max(wire::HANDSHAKE_LEN) + READ_CHUNK,
            choking_us: true,
            unchoked_ever: false,
            fast: false,
            extended: false,
            reqq: DEFAULT_REQQ,
            client: None,
            have: Vec::new(),
            have_all: false,
            allowed_fast: Vec::new(),
            outstanding: Vec::new(),
            rejected: Vec::new(),
            snubbed: false,
            started: now,
            last_recv: now,
            last_send: now,
            waiting_since: None,
            rate: None,
            window_bytes: 0,
            window_busy: false,
            window_start: now,
        }
    }

    /// Size the receive buffer for a torrent whose largest frame is
    /// `max_frame` (an incoming peer learns it from the handshake).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.rcap = max_frame.max(wire::HANDSHAKE_LEN) + READ_CHUNK;
    }

    /// How many requests may be in flight to this peer: about `queue_time`
    /// of its measured rate, within what it allows (session docs).
    pub fn pipeline(&self, queue_time: std::time::Duration) -> usize {
        let max = self.reqq.clamp(1, MAX_PIPELINE) as usize;
        match self.rate {
            None => max.min(INITIAL_PIPELINE),
            Some(r) => {
                let n = r * queue_time.as_secs_f64() / f64::from(wire::BLOCK);
                (n.min(max as f64) as usize).clamp(MIN_PIPELINE.min(max), max)
            }
        }
    }

    /// End a rate window (the session's timer): a window in which the peer
    /// owed blocks, or sent some, is a sample of its rate.
    pub fn end_window(&mut self, now: Instant) {
        let took = now.saturating_duration_since(self.window_start);
        if took.is_zero() {
            return;
        }
        if self.window_busy || self.window_bytes > 0 {
            let sample = self.window_bytes as f64 / took.as_secs_f64();
            self.rate = Some(match self.rate {
                Some(r) => 0.5 * r + 0.5 * sample,
                None => sample,
            });
        }
        self.window_bytes = 0;
        self.window_busy = !self.outstanding.is_empty();
        self.window_start = now;
    }

    /// Seconds this peer would take to deliver `blocks` more blocks at its
    /// measured rate (`None`: not measured).
    pub fn eta(&self, blocks: usize) -> Option<f64> {
        self.rate
            .map(|r| blocks as f64 * f64::from(wire::BLOCK) / r.max(1.0))
    }

    pub fn has(&self, piece: u32) -> bool {
        if self.have_all {
            return true;
        }
        let (byte, bit) = ((piece / 8) as usize, 7 - (piece % 8));
        self.have.get(byte).is_some_and(|b| b & (1 << bit) != 0)
    }

    pub fn set_have(&mut self, piece: u32, pieces: u32) {
        if self.have.is_empty() {
            self.have = vec![0; pieces.div_ceil(8) as usize];
        }
        let (byte, bit) = ((piece / 8) as usize, 7 - (piece % 8));
        if let Some(b) = self.have.get_mut(byte) {
            *b |= 1 << bit;
        }
    }

    pub fn set_bitfield(&mut self, bits: &[u8]) {
        self.have = bits.to_vec();
        self.have_all = false;
    }

    pub fn set_have_all(&mut self, all: bool) {
        self.have_all = all;
        if !all {
            self.have.clear();
        }
    }

    /// Whether we may ask this peer for `piece` now.
    pub fn may_request(&self, piece: u32) -> bool {
        self.state == State::Active
            && self.has(piece)
            && (!self.choking_us || self.allowed_fast.contains(&piece))
    }

    pub fn queue(&mut self, m: &Message<'_>) {
        wire::encode(m, &mut self.wbuf);
    }

    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Write what is queued until the socket would block. An error or a
    /// send buffer over its bound is fatal for the connection.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    self.last_send = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wbuf.len() - self.wpos > MAX_SEND_BUFFER {
            return Err(io::Error::other("peer does not read what we send"));
        }
        Ok(())
    }

    /// Read once into the receive buffer: `Ok(0)` means the peer closed,
    /// `WouldBlock` that nothing is there. Never grows the buffer past its
    /// bound: the caller decodes (and so consumes) between reads. The
    /// buffer is allocated once, at the first read, and never zero-filled
    /// again (a memset per read cost as much as the copy).
    pub fn read_some(&mut self) -> io::Result<usize> {
        if self.rbuf.len() < self.rcap {
            // Keeps what is unconsumed: an incoming peer's buffer grows once
            // its torrent (and so its largest frame) is known.
            self.rbuf.resize(self.rcap, 0);
        }
        if self.rstart > 0 && (self.rstart == self.rend || self.rstart > self.rcap / 2) {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        let room = (self.rcap - self.rend).min(READ_CHUNK);
        if room == 0 {
            // The decoder refuses any frame longer than the bound, so a full
            // buffer of unconsumed bytes cannot happen with a valid frame.
            return Err(io::Error::other("receive buffer full"));
        }
        let n = self
            .stream
            .read(&mut self.rbuf[self.rend..self.rend + room])?;
        self.rend += n;
        if n > 0 {
            self.last_recv = Instant::now();
        }
        Ok(n)
    }

    /// Acknowledge what was received at once (`source::tcp::ack_now`):
    /// set again after each batch of reads.
    pub fn ack_now(&self) {
        crate::source::tcp::ack_now(&self.stream);
    }

    /// The received bytes and the unconsumed range of them, taken out so
    /// the caller can decode them while it changes the peer; give them back
    /// with [`Peer::put_back`].
    pub fn take_received(&mut self) -> (Vec<u8>, usize, usize) {
        (std::mem::take(&mut self.rbuf), self.rstart, self.rend)
    }

    pub fn put_back(&mut self, buf: Vec<u8>, start: usize) {
        self.rbuf = buf;
        self.rstart = start;
    }

    /// Whether `b` was rejected by this peer lately.
    pub fn recently_rejected(&self, b: &BlockRef, now: Instant) -> bool {
        self.rejected
            .iter()
            .any(|(r, at)| r == b && now.saturating_duration_since(*at) < REJECT_BACKOFF)
    }

    /// Forget `b` from the outstanding list; true if it was there.
    pub fn take_outstanding(&mut self, b: &BlockRef) -> bool {
        match self.outstanding.iter().position(|(o, _)| o == b) {
            Some(i) => {
                self.outstanding.swap_remove(i);
                if self.outstanding.is_empty() {
                    self.waiting_since = None;
                }
                true
            }
            None => false,
        }
    }
}
