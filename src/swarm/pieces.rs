//! Pieces being assembled from 16 KiB blocks, possibly from several peers.
//!
//! A [`Job`] is one wanted piece: its buffer (from the engine's pool), one
//! [`Block`] per 16 KiB, and the fetches waiting for it. A block is missing,
//! requested (from one peer, or two in endgame), or in. Jobs are ordered
//! demand first, then readahead, and within each by when they were first
//! wanted, so a piece a reader waits for is asked before any readahead, and
//! reads that asked first are served first. The order is a job's `seq`:
//! demand jobs take numbers below [`READAHEAD_SEQ`], readahead jobs above
//! it, and a readahead job a reader comes to wait for is renumbered as
//! demand ([`Jobs::demand`]). [`Jobs::open`] holds, in that order, the jobs
//! that still have a missing block, so a peer with room in its pipeline
//! finds work without scanning pieces whose blocks are all asked for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use crossbeam_channel::Sender;
use mio::Token;

use super::wire::{BlockRef, BLOCK};
use crate::buffers::PieceBuf;
use crate::engine::Piece;

/// A complete (not yet verified) piece sent to a waiting fetch.
pub struct Delivery {
    pub piece: u32,
    pub data: Piece,
    /// Every peer that sent a block of it (for the ban on a hash failure).
    pub from: Vec<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockState {
    Missing,
    Requested,
    Have,
}

pub struct Block {
    pub state: BlockState,
    /// The peers this block was asked of and who still owe it.
    pub reqs: Vec<Token>,
    pub from: Option<SocketAddr>,
}

/// The first `seq` of readahead jobs; demand jobs number below it.
pub const READAHEAD_SEQ: u64 = 1 << 63;

pub struct Job {
    /// Its place in the order (see the module docs).
    pub seq: u64,
    pub len: u32,
    pub blocks: Vec<Block>,
    pub buf: PieceBuf,
    pub have: usize,
    pub waiters: Vec<(u64, Sender<Delivery>)>,
    /// After a hash failure with blocks from several peers, the piece is
    /// fetched from one peer only, so a second failure names the culprit.
    pub exclusive: bool,
    pub owner: Option<Token>,
    pub first_request: Option<Instant>,
}

impl Job {
    pub fn block_ref(&self, piece: u32, i: usize) -> BlockRef {
        let begin = i as u32 * BLOCK;
        BlockRef {
            piece,
            begin,
            len: BLOCK.min(self.len - begin),
        }
    }

    pub fn missing(&self) -> bool {
        self.blocks.iter().any(|b| b.state == BlockState::Missing)
    }
}

#[derive(Default)]
pub struct Jobs {
    pub by_piece: HashMap<u32, Job>,
    /// seq → piece, every job.
    pub order: BTreeMap<u64, u32>,
    /// (seq, piece) of jobs with a missing block.
    pub open: BTreeSet<(u64, u32)>,
    next_demand: u64,
    next_readahead: u64,
}

impl Jobs {
    fn next_seq(&mut self, demand: bool) -> u64 {
        let n = if demand {
            &mut self.next_demand
        } else {
            &mut self.next_readahead
        };
        *n += 1;
        if demand {
            *n - 1
        } else {
            READAHEAD_SEQ + *n - 1
        }
    }

    /// Add a waiter for `piece` (of `len` bytes), creating its job;
    /// `demand`: a reader waits for it.
    pub fn want(
        &mut self,
        piece: u32,
        len: u32,
        fetch: u64,
        reply: Sender<Delivery>,
        exclusive: bool,
        demand: bool,
    ) {
        if self.by_piece.contains_key(&piece) {
            if demand {
                self.demand(piece);
            }
            if let Some(j) = self.by_piece.get_mut(&piece) {
                j.waiters.push((fetch, reply));
                j.exclusive |= exclusive;
            }
            return;
        }
        let seq = self.next_seq(demand);
        let n = len.div_ceil(BLOCK).max(1) as usize;
        let blocks = (0..n)
            .map(|_| Block {
                state: BlockState::Missing,
                reqs: Vec::new(),
                from: None,
            })
            .collect();
        self.by_piece.insert(
            piece,
            Job {
                seq,
                len,
                blocks,
                buf: PieceBuf::reuse(len as usize),
                have: 0,
                waiters: vec![(fetch, reply)],
                exclusive,
                owner: None,
                first_request: None,
            },
        );
        self.order.insert(seq, piece);
        self.open.insert((seq, piece));
    }

    /// A reader now waits for `piece`: a readahead job becomes a demand job
    /// (last in the demand order). False when there is no such job or it
    /// was demand already.
    pub fn demand(&mut self, piece: u32) -> bool {
        let Some(old) = self.by_piece.get(&piece).map(|j| j.seq) else {
            return false;
        };
        if old < READAHEAD_SEQ {
            return false;
        }
        let seq = self.next_seq(true);
        self.order.remove(&old);
        self.order.insert(seq, piece);
        if self.open.remove(&(old, piece)) {
            self.open.insert((seq, piece));
        }
        if let Some(j) = self.by_piece.get_mut(&piece) {
            j.seq = seq;
        }
        true
    }

    /// Remove the job of `piece` (done or no longer wanted).
    pub fn remove(&mut self, piece: u32) -> Option<Job> {
        let j = self.by_piece.remove(&piece)?;
        self.order.remove(&j.seq);
        self.open.remove(&(j.seq, piece));
        Some(j)
    }

    /// `token` no longer owes block `b`: back to missing if nobody else
    /// owes it.
    pub fn release(&mut self, token: Token, b: &BlockRef) {
        let Some(j) = self.by_piece.get_mut(&b.piece) else {
            return;
        };
        if j.owner == Some(token) {
            j.owner = None;
        }
        let Some(blk) = j.blocks.get_mut((b.begin / BLOCK) as usize) else {
            return;
        };
        blk.reqs.retain(|t| *t != token);
        if blk.reqs.is_empty() && blk.state == BlockState::Requested {
            blk.state = BlockState::Missing;
            self.open.insert((j.seq, b.piece));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_track_missing_blocks_in_want_order() {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let mut j = Jobs::default();
        j.want(7, 40_000, 1, tx.clone(), false, false);
        j.want(3, 16_384, 1, tx.clone(), false, false);
        // A second waiter joins the same job.
        j.want(7, 40_000, 2, tx.clone(), true, false);
        assert_eq!(j.by_piece.len(), 2);
        let job = &j.by_piece[&7];
        assert_eq!(
            job.blocks.len(),
            3,
            "40 000 bytes = 16 KiB + 16 KiB + 7 232"
        );
        assert_eq!(job.block_ref(7, 2).len, 40_000 - 2 * BLOCK);
        assert!(job.exclusive && job.waiters.len() == 2);
        let order: Vec<u32> = j.open.iter().map(|&(_, p)| p).collect();
        assert_eq!(order, vec![7, 3], "oldest want first");

        // A block asked of peer 1 and released goes back to missing, and
        // the job back to the open set.
        let r = j.by_piece[&3].block_ref(3, 0);
        let seq = j.by_piece[&3].seq;
        j.open.remove(&(seq, 3));
        let b = &mut j.by_piece.get_mut(&3).unwrap().blocks[0];
        b.state = BlockState::Requested;
        b.reqs.push(Token(1));
        j.release(Token(2), &r);
        assert_eq!(
            j.by_piece[&3].blocks[0].state,
            BlockState::Requested,
            "not owed by 2"
        );
        j.release(Token(1), &r);
        assert_eq!(j.by_piece[&3].blocks[0].state, BlockState::Missing);
        assert!(j.open.contains(&(seq, 3)));

        assert!(j.remove(7).is_some());
        assert!(j.remove(7).is_none());
        assert_eq!(j.order.len(), 1);
        assert!(!j.open.iter().any(|&(_, p)| p == 7));
    }

    #[test]
    fn demand_jobs_come_before_readahead_ones() {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let mut j = Jobs::default();
        let open = |j: &Jobs| j.open.iter().map(|&(_, p)| p).collect::<Vec<u32>>();
        for p in 0..4 {
            j.want(p, BLOCK, 1, tx.clone(), false, false);
        }
        j.want(9, BLOCK, 2, tx.clone(), false, true);
        assert_eq!(open(&j), vec![9, 0, 1, 2, 3], "a demand piece first");
        // A reader comes to wait for queued readahead piece 2: it moves to
        // the end of the demand pieces, before the rest of the readahead.
        assert!(j.demand(2));
        assert!(!j.demand(2), "already demand");
        assert!(!j.demand(42), "no such job");
        assert_eq!(open(&j), vec![9, 2, 0, 1, 3]);
        let order: Vec<u32> = j.order.values().copied().collect();
        assert_eq!(order, vec![9, 2, 0, 1, 3]);
        assert!(j.by_piece[&2].seq < READAHEAD_SEQ && j.by_piece[&0].seq >= READAHEAD_SEQ);
        // Wanting a readahead piece again as demand renumbers it too.
        j.want(3, BLOCK, 3, tx.clone(), false, true);
        assert_eq!(open(&j), vec![9, 2, 3, 0, 1]);
    }
}
