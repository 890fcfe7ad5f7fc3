//! Connections: connecting, the handshake, reading and writing, timers,
//! and dropping a peer (its blocks go back to the others).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{
    backoff, Loop, CONNECT_TIMEOUT, GLOBAL_MAX_PEERS, HANDSHAKE_TIMEOUT, IDLE_DROP, KEEPALIVE,
    STALL, STALL_DROP, UNCHOKE_WAIT,
};
use crate::swarm::peer::{Peer, State};
use crate::swarm::wire::{self, BlockRef, Handshake, Message};

impl Loop {
    pub(super) fn connect_more(&mut self, id: u64) {
        let total = self.peers.len();
        let Some(t) = self.torrents.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        let mut room = t
            .spec
            .max_peers
            .saturating_sub(t.peers.len())
            .min(GLOBAL_MAX_PEERS.saturating_sub(total));
        if room == 0 {
            return;
        }
        let mut picks: Vec<SocketAddr> = t
            .addrs
            .iter()
            .filter(|(_, a)| !a.connected && !a.banned && a.retry_at <= now)
            .map(|(s, _)| *s)
            .collect();
        picks.sort_by_key(|s| t.addrs.get(s).map(|a| a.failures).unwrap_or(0));
        let decoder = t.spec.decoder;
        for addr in picks {
            if room == 0 {
                break;
            }
            let tok = Token(self.next_token);
            self.next_token += 1;
            let info = t.addrs.get_mut(&addr);
            let mut stream = match TcpStream::connect(addr) {
                Ok(s) => s,
                Err(e) => {
                    if let Some(a) = info {
                        a.failures += 1;
                        a.retry_at = now + backoff(a.failures);
                    }
                    t.spec.shared.note(format!("peer {addr}: connect: {e}"));
                    continue;
                }
            };
            if self
                .poll
                .registry()
                .register(&mut stream, tok, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            if let Some(a) = info {
                a.connected = true;
            }
            t.peers.insert(tok);
            self.peers
                .insert(tok, Peer::new(addr, id, stream, decoder.max_frame()));
            room -= 1;
        }
    }

    pub(super) fn on_event(&mut self, tok: Token, readable: bool, writable: bool) {
        let Some(p) = self.peers.get_mut(&tok) else {
            return;
        };
        if p.state == State::Connecting {
            if !(readable || writable) {
                return;
            }
            match p.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    self.drop_peer(tok, Some(format!("connect: {e}")), false);
                    return;
                }
            }
            if p.stream.peer_addr().is_err() {
                return; // not connected yet (spurious wake-up)
            }
            self.connected(tok);
        }
        if readable {
            self.read(tok);
        }
        self.flush(tok);
    }

    pub(super) fn connected(&mut self, tok: Token) {
        let Some(p) = self.peers.get_mut(&tok) else {
            return;
        };
        let Some(t) = self.torrents.get(&p.torrent) else {
            return;
        };
        let _ = p.stream.set_nodelay(true);
        p.state = State::Handshaking;
        p.started = Instant::now();
        let mut hs = Vec::with_capacity(wire::HANDSHAKE_LEN);
        Handshake::ours(t.spec.info_hash, t.spec.peer_id).encode(&mut hs);
        p.queue_raw(&hs);
    }

    pub(super) fn flush(&mut self, tok: Token) {
        let Some(p) = self.peers.get_mut(&tok) else {
            return;
        };
        if p.state == State::Connecting {
            return;
        }
        if let Err(e) = p.flush() {
            self.drop_peer(tok, Some(format!("send: {e}")), false);
        }
    }

    /// Read until the socket would block, handling each complete message.
    pub(super) fn read(&mut self, tok: Token) {
        let mut received = false;
        loop {
            let Some(p) = self.peers.get_mut(&tok) else {
                return;
            };
            match p.read_some() {
                Ok(0) => {
                    self.drop_peer(tok, Some("closed the connection".into()), false);
                    return;
                }
                Ok(_) => {
                    received = true;
                    if let Err(why) = self.consume(tok) {
                        self.drop_peer(tok, Some(why), false);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if received {
                        p.ack_now();
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.drop_peer(tok, Some(format!("receive: {e}")), false);
                    return;
                }
            }
        }
    }

    /// An incoming peer's handshake: find its torrent, answer with ours.
    /// `Ok(false)` while the handshake is incomplete.
    fn incoming_handshake(&mut self, tok: Token) -> std::result::Result<bool, String> {
        let Some(p) = self.peers.get_mut(&tok) else {
            return Ok(false);
        };
        let (buf, pos, end) = p.take_received();
        let h = Handshake::decode(&buf[pos..end]);
        p.put_back(buf, pos);
        let h = match h {
            Ok(None) => return Ok(false),
            Ok(Some(h)) => h,
            Err(e) => return Err(e.0),
        };
        let Some((&id, t)) = self
            .torrents
            .iter_mut()
            .find(|(_, t)| t.spec.info_hash == h.info_hash)
        else {
            return Err("handshake names a torrent we do not have open".into());
        };
        if h.peer_id == t.spec.peer_id {
            return Err("connected to ourselves".into());
        }
        if t.peers.len() >= t.spec.max_peers {
            return Err("torrent has its peers already".into());
        }
        t.peers.insert(tok);
        p.torrent = id;
        p.set_max_frame(t.spec.decoder.max_frame());
        let mut hs = Vec::with_capacity(wire::HANDSHAKE_LEN);
        Handshake::ours(t.spec.info_hash, t.spec.peer_id).encode(&mut hs);
        p.queue_raw(&hs);
        // Consumed below like an outgoing peer's: it is one now.
        p.state = State::Handshaking;
        Ok(true)
    }

    pub(super) fn consume(&mut self, tok: Token) -> std::result::Result<(), String> {
        if self
            .peers
            .get(&tok)
            .is_some_and(|p| p.state == State::Incoming)
            && !self.incoming_handshake(tok)?
        {
            return Ok(());
        }
        let Some(p) = self.peers.get_mut(&tok) else {
            return Ok(());
        };
        let Some(t) = self.torrents.get(&p.torrent) else {
            return Err("torrent closed".into());
        };
        let decoder = t.spec.decoder;
        let (buf, mut pos, end) = p.take_received();
        let mut result = Ok(());
        if p.state == State::Handshaking {
            match Handshake::decode(&buf[pos..end]) {
                Ok(None) => {
                    p.put_back(buf, pos);
                    return Ok(());
                }
                Ok(Some(h)) => {
                    pos += wire::HANDSHAKE_LEN;
                    if h.info_hash != t.spec.info_hash {
                        result = Err("handshake names another torrent".to_string());
                    } else if h.peer_id == t.spec.peer_id {
                        result = Err("connected to ourselves".to_string());
                    } else {
                        self.handshake_done(tok, &h);
                    }
                }
                Err(e) => result = Err(e.0),
            }
        }
        while result.is_ok() {
            match decoder.decode(&buf[pos..end]) {
                Ok(Some((m, used))) => {
                    pos += used;
                    result = self.message(tok, m);
                }
                Ok(None) => break,
                Err(e) => result = Err(e.0),
            }
        }
        if let Some(p) = self.peers.get_mut(&tok) {
            p.put_back(buf, pos);
        }
        result
    }

    pub(super) fn handshake_done(&mut self, tok: Token, h: &Handshake) {
        let Some(p) = self.peers.get_mut(&tok) else {
            return;
        };
        p.state = State::Active;
        p.fast = h.supports_fast();
        p.extended = h.supports_extended();
        p.started = Instant::now();
        if p.extended {
            let payload = wire::encode_ext_handshake(
                crate::swarm::peer::MAX_PIPELINE,
                concat!("gtio ", env!("CARGO_PKG_VERSION")),
            );
            p.queue(&Message::Extended {
                id: 0,
                payload: &payload,
            });
        }
        if p.fast {
            p.queue(&Message::HaveNone);
        }
        p.queue(&Message::Interested);
        let torrent = p.torrent;
        if let Some(t) = self.torrents.get(&torrent) {
            t.spec
                .shared
                .peers_connected
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drop a peer: its blocks go back to the others, its address waits
    /// for a retry (or never, when banned).
    pub(super) fn drop_peer(&mut self, tok: Token, why: Option<String>, banned: bool) {
        let Some(mut p) = self.peers.remove(&tok) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut p.stream);
        let Some(t) = self.torrents.get_mut(&p.torrent) else {
            return;
        };
        t.peers.remove(&tok);
        if p.state == State::Active {
            t.spec
                .shared
                .peers_connected
                .fetch_sub(1, Ordering::Relaxed);
            if !p.choking_us {
                t.spec.shared.peers_unchoked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        for (b, _) in p.outstanding.drain(..) {
            t.jobs.release(tok, &b);
        }
        // Exclusive jobs owned by a peer with nothing outstanding.
        for j in t.jobs.by_piece.values_mut() {
            if j.owner == Some(tok) {
                j.owner = None;
            }
        }
        if let Some(a) = t.addrs.get_mut(&p.addr) {
            a.connected = false;
            a.banned |= banned;
            // A peer that served us well may come back soon.
            a.failures = if p.unchoked_ever { 1 } else { a.failures + 1 };
            a.retry_at = Instant::now() + backoff(a.failures);
        }
        if let Some(why) = why {
            let who = match &p.client {
                Some(c) => format!("peer {} ({c})", p.addr),
                None => format!("peer {}", p.addr),
            };
            t.spec.shared.note(format!("{who}: {why}"));
        }
        self.dirty.insert(p.torrent);
    }

    pub(super) fn tick(&mut self) {
        let now = Instant::now();
        let mut drops = Vec::new();
        let mut stalled = Vec::new();
        for (tok, p) in self.peers.iter_mut() {
            let age = now.saturating_duration_since(p.started);
            match p.state {
                State::Connecting if age > CONNECT_TIMEOUT => {
                    drops.push((*tok, "connect timed out".to_string()))
                }
                State::Handshaking | State::Incoming if age > HANDSHAKE_TIMEOUT => {
                    drops.push((*tok, "no handshake".to_string()))
                }
                State::Active => {
                    p.end_window(now);
                    if now.saturating_duration_since(p.last_recv) > IDLE_DROP {
                        drops.push((*tok, "silent".to_string()));
                    } else if !p.unchoked_ever && age > UNCHOKE_WAIT {
                        drops.push((*tok, format!("did not unchoke us in {UNCHOKE_WAIT:?}")));
                    } else if let Some(since) = p.waiting_since {
                        let waited = now.saturating_duration_since(since);
                        if waited > STALL_DROP {
                            drops.push((*tok, format!("sent nothing for {STALL_DROP:?}")));
                        } else if waited > STALL && !p.snubbed {
                            p.snubbed = true;
                            stalled.push(*tok);
                        }
                    }
                    if now.saturating_duration_since(p.last_send) > KEEPALIVE {
                        p.queue(&Message::KeepAlive);
                    }
                }
                _ => {}
            }
        }
        for tok in stalled {
            // Hand its blocks to others; it keeps them in its own list so
            // a late answer still counts.
            let Some(p) = self.peers.get(&tok) else {
                continue;
            };
            let torrent = p.torrent;
            let owed: Vec<BlockRef> = p.outstanding.iter().map(|(b, _)| *b).collect();
            if let Some(t) = self.torrents.get_mut(&torrent) {
                for b in &owed {
                    t.jobs.release(tok, b);
                }
                t.spec.shared.note(format!(
                    "peer {}: stalled with {} blocks owed",
                    p.addr,
                    owed.len()
                ));
            }
            self.dirty.insert(torrent);
        }
        for (tok, why) in drops {
            self.drop_peer(tok, Some(why), false);
        }
        let ids: Vec<u64> = self.torrents.keys().copied().collect();
        for id in ids {
            self.connect_more(id);
            // Blocks whose reject backoff ran out can be asked again, and
            // demand pieces may be due for their endgame.
            if self.torrents.get(&id).is_some_and(|t| {
                !t.jobs.open.is_empty()
                    || t.jobs
                        .order
                        .first_key_value()
                        .is_some_and(|(&seq, _)| seq < crate::swarm::pieces::READAHEAD_SEQ)
            }) {
                self.dirty.insert(id);
            }
        }
        let toks: Vec<Token> = self.peers.keys().copied().collect();
        for tok in toks {
            self.flush(tok);
        }
    }
}
