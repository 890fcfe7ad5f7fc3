//! An in-tree misbehaving BitTorrent peer for fault tests: it speaks just
//! enough of BEP 3/6 (handshake with the fast bit, have-all, unchoke,
//! pieces) to be trusted, then misbehaves as told. One thread per
//! connection; everything stops when the `BadPeer` drops.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Serves every block with its first byte flipped.
    Corrupt,
    /// Says it has everything and never unchokes.
    NeverUnchoke,
    /// Serves `n` blocks correctly, then closes the connection.
    DropAfter(usize),
    /// Unchokes, takes requests, never answers them.
    Stall,
    /// After the handshake, sends a message declaring 4 GiB.
    HugeLength,
    /// Unchokes, then chokes after `n` blocks and rejects what it owes.
    ChokeAfter(usize),
    /// Unchoked throughout, rejects its first `n` requests, then serves
    /// (libtorrent rejects allowed-fast requests that cross its unchoke).
    RejectFirst(usize),
    /// Correct data, one block every `ms` milliseconds, in request order;
    /// a cancelled request is dropped (counted in `cancels`).
    Slow(u64),
    /// Has only the first `n` pieces (a bitfield); serves them at once, in
    /// request order, dropping cancelled requests like `Slow`.
    Partial(u32),
}

pub struct BadPeer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Blocks served (for asserting the peer was used).
    pub served: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    /// Requests queued and cancels that named a request still queued
    /// (`Slow`, `Partial`).
    pub queue: Arc<QueueCounts>,
}

/// What a queueing peer (`Slow`, `Partial`) was asked and told to drop.
#[derive(Default)]
pub struct QueueCounts {
    /// Block requests received.
    pub requested: AtomicUsize,
    /// Cancels of a request still in the queue.
    pub cancels: AtomicUsize,
}

impl Drop for BadPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

impl BadPeer {
    pub fn start(mode: Mode, info_hash: [u8; 20], data: Arc<Vec<u8>>, piece_len: u64) -> BadPeer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let queue = Arc::new(QueueCounts::default());
        let (st, sv, cn, cc) = (
            stop.clone(),
            served.clone(),
            connections.clone(),
            queue.clone(),
        );
        thread::spawn(move || {
            for s in l.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(s) = s else { continue };
                cn.fetch_add(1, Ordering::Relaxed);
                let (data, st, sv, cc) = (data.clone(), st.clone(), sv.clone(), cc.clone());
                thread::spawn(move || {
                    let _ = serve(s, mode, info_hash, &data, piece_len, &st, &sv, &cc);
                });
            }
        });
        BadPeer {
            addr,
            stop,
            served,
            connections,
            queue,
        }
    }
}

fn msg(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = ((1 + payload.len()) as u32).to_be_bytes().to_vec();
    v.push(id);
    v.extend_from_slice(payload);
    v
}

#[allow(clippy::too_many_arguments)]
fn serve(
    mut s: TcpStream,
    mode: Mode,
    info_hash: [u8; 20],
    data: &[u8],
    piece_len: u64,
    stop: &AtomicBool,
    served: &AtomicUsize,
    queue: &Arc<QueueCounts>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut hs = [0u8; 68];
    read_full(&mut s, &mut hs, stop)?;
    if hs[28..48] != info_hash {
        return Ok(());
    }
    let mut ours = vec![19];
    ours.extend_from_slice(b"BitTorrent protocol");
    ours.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x04]);
    ours.extend_from_slice(&info_hash);
    ours.extend_from_slice(b"-XX0001-badpeer00000");
    s.write_all(&ours)?;
    if mode == Mode::HugeLength {
        s.write_all(&[0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0, 0])?;
        thread::sleep(Duration::from_millis(500));
        return Ok(());
    }
    if let Mode::Partial(n) = mode {
        let pieces = (data.len() as u64).div_ceil(piece_len) as usize;
        let mut bits = vec![0u8; pieces.div_ceil(8)];
        for i in 0..(n as usize).min(pieces) {
            bits[i / 8] |= 0x80 >> (i % 8);
        }
        s.write_all(&msg(5, &bits))?; // bitfield
        s.write_all(&msg(1, &[]))?;
        return serve_slow(s, 0, data, piece_len, stop, served, queue);
    }
    s.write_all(&msg(0x0e, &[]))?; // have-all
    if mode != Mode::NeverUnchoke {
        s.write_all(&msg(1, &[]))?; // unchoke
    }
    if let Mode::Slow(ms) = mode {
        return serve_slow(s, ms, data, piece_len, stop, served, queue);
    }
    let mut blocks = 0usize;
    let mut requests = 0usize;
    let mut choked = false;
    loop {
        let mut len = [0u8; 4];
        read_full(&mut s, &mut len, stop)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            continue;
        }
        if len > 1 << 20 {
            return Ok(());
        }
        let mut body = vec![0u8; len];
        read_full(&mut s, &mut body, stop)?;
        if body[0] != 6 || len != 13 {
            continue;
        }
        let u = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap());
        let (piece, begin, n) = (u(1), u(5), u(9));
        requests += 1;
        if choked {
            s.write_all(&msg(0x10, &body[1..13]))?; // reject
            continue;
        }
        match mode {
            Mode::NeverUnchoke => {
                s.write_all(&msg(0x10, &body[1..13]))?;
                continue;
            }
            Mode::Stall => continue,
            Mode::RejectFirst(k) if requests <= k => {
                s.write_all(&msg(0x10, &body[1..13]))?;
                continue;
            }
            Mode::DropAfter(k) if blocks >= k => return Ok(()),
            Mode::ChokeAfter(k) if blocks >= k => {
                choked = true;
                s.write_all(&msg(0, &[]))?;
                s.write_all(&msg(0x10, &body[1..13]))?;
                continue;
            }
            _ => {}
        }
        let at = (u64::from(piece) * piece_len + u64::from(begin)) as usize;
        let mut payload = body[1..9].to_vec();
        let mut block = data[at..at + n as usize].to_vec();
        if mode == Mode::Corrupt {
            block[0] ^= 0xff;
        }
        payload.extend_from_slice(&block);
        // Counted before it is sent: a test that reads the count as soon as
        // its piece is in must not miss the block that completed it.
        served.fetch_add(1, Ordering::Relaxed);
        s.write_all(&msg(7, &payload))?;
        blocks += 1;
    }
}

/// `Mode::Slow`: a reader thread queues requests and drops cancelled
/// ones; this thread sends the oldest queued block every `ms` (`0`: as
/// soon as it is queued).
fn serve_slow(
    mut s: TcpStream,
    ms: u64,
    data: &[u8],
    piece_len: u64,
    stop: &AtomicBool,
    served: &AtomicUsize,
    counts: &Arc<QueueCounts>,
) -> std::io::Result<()> {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    let queue: Arc<Mutex<VecDeque<[u8; 12]>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let mut r = s.try_clone()?;
    let (q, d) = (queue.clone(), done.clone());
    let c = counts.clone();
    thread::spawn(move || {
        let never = AtomicBool::new(false);
        loop {
            let mut len = [0u8; 4];
            if read_full(&mut r, &mut len, &never).is_err() {
                break;
            }
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 {
                continue;
            }
            if len > 1 << 20 {
                break;
            }
            let mut body = vec![0u8; len];
            if read_full(&mut r, &mut body, &never).is_err() {
                break;
            }
            let key: Option<[u8; 12]> = (len == 13).then(|| body[1..13].try_into().unwrap());
            let mut q = q.lock().unwrap();
            match (body[0], key) {
                (6, Some(k)) => {
                    c.requested.fetch_add(1, Ordering::Relaxed);
                    q.push_back(k);
                }
                (8, Some(k)) => {
                    if let Some(i) = q.iter().position(|x| *x == k) {
                        q.remove(i);
                        c.cancels.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
        }
        d.store(true, Ordering::Relaxed);
    });
    while !stop.load(Ordering::Relaxed) && !done.load(Ordering::Relaxed) {
        if ms > 0 {
            thread::sleep(Duration::from_millis(ms));
        }
        let Some(k) = queue.lock().unwrap().pop_front() else {
            if ms == 0 {
                thread::sleep(Duration::from_micros(200));
            }
            continue;
        };
        let u = |i: usize| u64::from(u32::from_be_bytes(k[i..i + 4].try_into().unwrap()));
        let at = (u(0) * piece_len + u(4)) as usize;
        let mut payload = k[..8].to_vec();
        payload.extend_from_slice(&data[at..at + u(8) as usize]);
        served.fetch_add(1, Ordering::Relaxed); // before: see `serve`
        s.write_all(&msg(7, &payload))?;
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    Ok(())
}

fn read_full(s: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        if stop.load(Ordering::Relaxed) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
