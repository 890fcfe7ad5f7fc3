//! Messages from peers, and the requests we send them: blocks assembled
//! into pieces, pipelines filled demand pieces first, then readahead, the
//! endgame of demand pieces and the classic one (session docs).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use super::{Loop, ENDGAME_MIN_AGE, ENDGAME_PIECES, ENDGAME_UNMEASURED, ENDGAME_WORTH, QUEUE_TIME};
use crate::swarm::peer::{Peer, State, REJECT_BACKOFF};
use crate::swarm::pieces::{BlockState, Delivery, READAHEAD_SEQ};
use crate::swarm::wire::{self, BlockRef, Message, BLOCK};

impl Loop {
    pub(super) fn message(
        &mut self,
        tok: Token,
        m: Message<'_>,
    ) -> std::result::Result<(), String> {
        let Some(p) = self.peers.get_mut(&tok) else {
            return Ok(());
        };
        let torrent = p.torrent;
        let Some(t) = self.torrents.get_mut(&torrent) else {
            return Ok(());
        };
        let pieces = t.spec.decoder.pieces();
        match m {
            Message::KeepAlive | Message::Interested | Message::NotInterested => {}
            Message::Cancel(_) | Message::Port(_) | Message::Suggest(_) | Message::Unknown(_) => {}
            Message::Choke => {
                if !p.choking_us {
                    p.choking_us = true;
                    t.spec.shared.peers_unchoked.fetch_sub(1, Ordering::Relaxed);
                }
                if !p.fast {
                    // BEP 3: a choke drops every pending request.
                    let owed: Vec<BlockRef> = p.outstanding.drain(..).map(|(b, _)| b).collect();
                    p.waiting_since = None;
                    for b in owed {
                        t.jobs.release(tok, &b);
                    }
                    self.dirty.insert(torrent);
                }
            }
            Message::Unchoke => {
                if p.choking_us {
                    p.choking_us = false;
                    p.unchoked_ever = true;
                    p.rejected.clear();
                    t.spec.shared.peers_unchoked.fetch_add(1, Ordering::Relaxed);
                }
                self.dirty.insert(torrent);
            }
            Message::Have(i) => {
                p.set_have(i, pieces);
                self.dirty.insert(torrent);
            }
            Message::Bitfield(b) => {
                p.set_bitfield(b);
                self.dirty.insert(torrent);
            }
            Message::HaveAll | Message::HaveNone => {
                if !p.fast {
                    return Err("fast-extension message without the fast extension".into());
                }
                p.set_have_all(m == Message::HaveAll);
                self.dirty.insert(torrent);
            }
            Message::AllowedFast(i) => {
                if !p.allowed_fast.contains(&i) && p.allowed_fast.len() < 64 {
                    p.allowed_fast.push(i);
                }
                self.dirty.insert(torrent);
            }
            Message::Request(b) => {
                // We never unchoke anyone: refuse when we can say so.
                if p.fast {
                    p.queue(&Message::Reject(b));
                }
            }
            Message::Reject(b) => {
                if p.take_outstanding(&b) {
                    let now = Instant::now();
                    p.rejected
                        .retain(|(_, at)| now.saturating_duration_since(*at) < REJECT_BACKOFF);
                    if p.rejected.len() < 4096 {
                        p.rejected.push((b, now));
                    }
                    t.jobs.release(tok, &b);
                    self.dirty.insert(torrent);
                }
            }
            Message::Extended { id: 0, payload } => {
                // A peer whose handshake we cannot read keeps its defaults.
                if let Ok(h) = wire::decode_ext_handshake(payload) {
                    if let Some(q) = h.reqq {
                        p.reqq = q.max(1);
                    }
                    p.client = h.client;
                }
                self.dirty.insert(torrent);
            }
            Message::Extended { .. } => {}
            Message::Piece { piece, begin, data } => {
                self.block(tok, piece, begin, data);
            }
        }
        Ok(())
    }

    pub(super) fn block(&mut self, tok: Token, piece: u32, begin: u32, data: &[u8]) {
        let Some(p) = self.peers.get_mut(&tok) else {
            return;
        };
        let torrent = p.torrent;
        let Some(t) = self.torrents.get_mut(&torrent) else {
            return;
        };
        let shared = &t.spec.shared;
        let r = BlockRef {
            piece,
            begin,
            len: data.len() as u32,
        };
        if !p.take_outstanding(&r) {
            // Not asked of this peer (or cancelled): drop it.
            shared.redundant(r.len.into());
            return;
        }
        p.snubbed = false;
        p.window_bytes += u64::from(r.len);
        if !p.outstanding.is_empty() {
            p.waiting_since = Some(Instant::now());
        }
        let addr = p.addr;
        self.dirty.insert(torrent);
        let Some(j) = t.jobs.by_piece.get_mut(&piece) else {
            shared.redundant(r.len.into());
            return;
        };
        let i = (begin / BLOCK) as usize;
        if begin % BLOCK != 0 || i >= j.blocks.len() || j.block_ref(piece, i) != r {
            shared.redundant(r.len.into());
            return;
        }
        if j.blocks[i].state == BlockState::Have {
            shared.redundant(r.len.into());
            return;
        }
        j.buf[begin as usize..begin as usize + data.len()].copy_from_slice(data);
        shared.bytes_peer.fetch_add(r.len.into(), Ordering::Relaxed);
        let blk = &mut j.blocks[i];
        blk.state = BlockState::Have;
        blk.from = Some(addr);
        let others: Vec<Token> = blk.reqs.drain(..).filter(|o| *o != tok).collect();
        j.have += 1;
        let done = j.have == j.blocks.len();
        for o in others {
            if let Some(op) = self.peers.get_mut(&o) {
                if op.take_outstanding(&r) {
                    op.queue(&Message::Cancel(r));
                }
            }
        }
        if done {
            let Some(j) = t.jobs.remove(piece) else {
                return;
            };
            let mut from: Vec<SocketAddr> = j.blocks.iter().filter_map(|b| b.from).collect();
            from.sort();
            from.dedup();
            let data = Arc::new(j.buf);
            for (_, w) in j.waiters {
                let _ = w.send(Delivery {
                    piece,
                    data: Arc::clone(&data),
                    from: from.clone(),
                });
            }
        }
    }

    pub(super) fn fill_torrent(&mut self, torrent: u64) {
        let Some(t) = self.torrents.get(&torrent) else {
            return;
        };
        let toks: Vec<Token> = t.peers.iter().copied().collect();
        for tok in toks {
            self.fill(tok);
            self.flush(tok);
        }
    }

    /// Give peer `tok` requests up to its pipeline depth: missing blocks of
    /// demand pieces, then the demand endgame, then missing blocks of
    /// readahead pieces, then the classic endgame (session docs).
    pub(super) fn fill(&mut self, tok: Token) {
        let Some(p) = self.peers.get(&tok) else {
            return;
        };
        if p.state != State::Active || p.snubbed {
            return;
        }
        if p.choking_us && p.allowed_fast.is_empty() {
            return;
        }
        if self.fill_missing(tok, true) {
            return;
        }
        self.demand_endgame(tok);
        if self.fill_missing(tok, false) {
            return;
        }
        self.endgame(tok);
    }

    /// Ask `tok` for missing blocks of open pieces in order (only demand
    /// pieces when `demand_only`). True when its pipeline is full.
    fn fill_missing(&mut self, tok: Token, demand_only: bool) -> bool {
        let Some(p) = self.peers.get_mut(&tok) else {
            return true;
        };
        let Some(t) = self.torrents.get_mut(&p.torrent) else {
            return true;
        };
        let cap = p.pipeline(QUEUE_TIME);
        if p.outstanding.len() >= cap {
            return true;
        }
        let now = Instant::now();
        let mut closed = Vec::new();
        // Bounded scan: a peer that has few of the open pieces must not make
        // every call walk thousands of them.
        for &(seq, piece) in t.jobs.open.iter().take(256) {
            if p.outstanding.len() >= cap || (demand_only && seq >= READAHEAD_SEQ) {
                break;
            }
            let Some(j) = t.jobs.by_piece.get_mut(&piece) else {
                closed.push((seq, piece));
                continue;
            };
            if !p.may_request(piece) || (j.exclusive && j.owner.is_some_and(|o| o != tok)) {
                continue;
            }
            if j.exclusive {
                j.owner = Some(tok);
            }
            for i in 0..j.blocks.len() {
                if p.outstanding.len() >= cap {
                    break;
                }
                let r = j.block_ref(piece, i);
                let b = &mut j.blocks[i];
                if b.state != BlockState::Missing || p.recently_rejected(&r, now) {
                    continue;
                }
                b.state = BlockState::Requested;
                b.reqs.push(tok);
                j.first_request.get_or_insert(now);
                p.outstanding.push((r, now));
                p.waiting_since.get_or_insert(now);
                p.queue(&Message::Request(r));
            }
            if !j.missing() {
                closed.push((seq, piece));
            }
        }
        for c in closed {
            t.jobs.open.remove(&c);
        }
        p.outstanding.len() >= cap
    }

    /// The endgame of demand pieces: blocks another peer owes that `tok`
    /// would clearly deliver sooner are asked of it too (session docs).
    fn demand_endgame(&mut self, tok: Token) {
        // Out of the map while the others are looked at.
        let Some(mut p) = self.peers.remove(&tok) else {
            return;
        };
        let cap = p.pipeline(QUEUE_TIME);
        if let Some(t) = self.torrents.get_mut(&p.torrent) {
            let now = Instant::now();
            let pieces: Vec<u32> = t
                .jobs
                .order
                .range(..READAHEAD_SEQ)
                .take(ENDGAME_PIECES)
                .map(|(_, &piece)| piece)
                .collect();
            'pieces: for piece in pieces {
                let Some(j) = t.jobs.by_piece.get_mut(&piece) else {
                    continue;
                };
                if j.exclusive || !p.may_request(piece) {
                    continue;
                }
                for i in 0..j.blocks.len() {
                    if p.outstanding.len() >= cap {
                        break 'pieces;
                    }
                    let r = j.block_ref(piece, i);
                    let b = &mut j.blocks[i];
                    if b.state != BlockState::Requested || b.reqs.len() != 1 {
                        continue;
                    }
                    let Some(q) = self.peers.get(&b.reqs[0]) else {
                        continue;
                    };
                    if !sooner(&p, q, &r, now) {
                        continue;
                    }
                    b.reqs.push(tok);
                    p.outstanding.push((r, now));
                    p.waiting_since.get_or_insert(now);
                    p.queue(&Message::Request(r));
                }
            }
        }
        self.peers.insert(tok, p);
    }

    /// The classic endgame: nothing is missing; ask this peer too for the
    /// blocks of the oldest pieces that another peer alone owes, by the
    /// same rule as the demand endgame (asking for every owed block at once
    /// cost sequential reads 4-5 % of redundant bytes).
    fn endgame(&mut self, tok: Token) {
        let Some(mut p) = self.peers.remove(&tok) else {
            return;
        };
        let cap = p.pipeline(QUEUE_TIME);
        if let Some(t) = self.torrents.get_mut(&p.torrent) {
            if t.jobs.open.is_empty() && p.outstanding.len() < cap {
                let now = Instant::now();
                let oldest: Vec<u32> = t
                    .jobs
                    .order
                    .values()
                    .take(ENDGAME_PIECES)
                    .copied()
                    .collect();
                'pieces: for piece in oldest {
                    let Some(j) = t.jobs.by_piece.get_mut(&piece) else {
                        continue;
                    };
                    if j.exclusive || !p.may_request(piece) {
                        continue;
                    }
                    for i in 0..j.blocks.len() {
                        if p.outstanding.len() >= cap {
                            break 'pieces;
                        }
                        let r = j.block_ref(piece, i);
                        let b = &mut j.blocks[i];
                        if b.state != BlockState::Requested || b.reqs.len() != 1 {
                            continue;
                        }
                        let Some(q) = self.peers.get(&b.reqs[0]) else {
                            continue;
                        };
                        if !sooner(&p, q, &r, now) {
                            continue;
                        }
                        b.reqs.push(tok);
                        p.outstanding.push((r, now));
                        p.waiting_since.get_or_insert(now);
                        p.queue(&Message::Request(r));
                    }
                }
            }
        }
        self.peers.insert(tok, p);
    }
}

/// Whether `p` would deliver block `r`, which `q` owes, clearly sooner
/// than `q` will (the demand endgame's rule, session docs).
fn sooner(p: &Peer, q: &Peer, r: &BlockRef, now: Instant) -> bool {
    let Some(&(_, at)) = q.outstanding.iter().find(|(o, _)| o == r) else {
        return false;
    };
    let age = now.saturating_duration_since(at);
    if age < ENDGAME_MIN_AGE {
        return false;
    }
    // Blocks q was asked for no later than this one: its queue ahead.
    let ahead = q.outstanding.iter().filter(|(_, t)| *t <= at).count();
    match q.eta(ahead) {
        // p unmeasured counts as fast: it has room and nothing to show yet.
        // A second copy is worth asking for only when it saves a wait
        // worth having: on loopback a deep queue drains in tens of ms, and
        // doubling it would only add redundant bytes.
        // Or when it is overdue: it has waited three times what the owing
        // peer's rate promised (a peer that stops sending for a while).
        Some(q_eta) => {
            let p_eta = p.eta(p.outstanding.len() + 1).unwrap_or(0.0);
            let overdue = age.as_secs_f64() > 3.0 * q_eta + ENDGAME_MIN_AGE.as_secs_f64();
            q_eta > 2.0 * p_eta && (q_eta >= ENDGAME_WORTH.as_secs_f64() || overdue)
        }
        None => age >= ENDGAME_UNMEASURED,
    }
}
