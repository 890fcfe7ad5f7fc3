//! Pieces being assembled from 16 KiB blocks, possibly from several peers.
//!
//! A [`Job`] is one wanted piece: its buffer (from the engine's pool), one
//! [`Block`] per 16 KiB, and the fetches waiting for it. A block is missing,
//! requested (from one peer, or two in endgame), or in. Jobs are ordered by
//! when they were first wanted, so reads that asked first are served first;
//! [`Jobs::open`] holds, in that order, the jobs that still have a missing
//! block, so a peer with room in its pipeline finds work without scanning
//! pieces whose blocks are all asked for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use crossbeam_channel::Sender;
use mio::Token;

use super::wire::{BlockRef, BLOCK};
use crate::engine::buffers::PieceBuf;
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

pub struct Job {
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
    next_seq: u64,
}

impl Jobs {
    /// Add a waiter for `piece` (of `len` bytes), creating its job.
    pub fn want(
        &mut self,
        piece: u32,
        len: u32,
        fetch: u64,
        reply: Sender<Delivery>,
        exclusive: bool,
    ) {
        if let Some(j) = self.by_piece.get_mut(&piece) {
            j.waiters.push((fetch, reply));
            j.exclusive |= exclusive;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
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
        j.want(7, 40_000, 1, tx.clone(), false);
        j.want(3, 16_384, 1, tx.clone(), false);
        // A second waiter joins the same job.
        j.want(7, 40_000, 2, tx.clone(), true);
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
}
