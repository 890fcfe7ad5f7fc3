//! Runs of tiny pieces read, cached and waited for as one download unit.
//!
//! The engine's bookkeeping is per piece: a flight, a waiter, a cache entry,
//! a buffer header. That is nothing for a 64 KiB piece and everything for a
//! 4-byte one (a metainfo may choose any length): a 4 MB read of 4-byte
//! pieces cost 356 MiB. [`coalesce`] puts a provider whose pieces are
//! smaller than [`GROUP_BELOW`] behind one whose pieces are aligned groups
//! of them (about [`UNIT_BYTES`]), so what the engine keeps for a read is
//! proportional to its bytes.
//! Each small piece is still verified by the inner provider; a unit is
//! delivered only when all of its pieces are, or fails with the first
//! piece's error.
//!
//! A unit's cache key must name exactly its bytes. For a plain object it is
//! the object's key of the unit's first block: the group size follows from
//! the block size, which is part of the object's identity, and from the
//! runtime's cache size, which every dataset of one cache shares. For a
//! torrent it is the SHA-1 of the group's piece hashes (computed once per
//! unit, on first use), so identical runs are still shared across datasets.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use sha1::{Digest, Sha1};

use super::layout::Layout;
use super::{Piece, PieceKey, PieceProvider};
use crate::buffers::PieceBuf;
use crate::source::Fault;
use crate::Error;

/// Pieces smaller than this are grouped into units of about this size:
/// large enough that bookkeeping is well under 1 % of the bytes, small
/// enough that a random read fetches little more than it needs.
pub const UNIT_BYTES: u64 = 64 << 10;

/// Only pieces shorter than this are grouped. BitTorrent clients use 16 KiB
/// and up; their pieces keep failing alone (a bad piece in a unit fails the
/// whole unit, its error naming the piece), and bookkeeping at 16 KiB is
/// about 2 % of the bytes.
pub const GROUP_BELOW: u64 = 16 << 10;

/// `inner` itself if its pieces are large enough, else grouped into units
/// of at most [`UNIT_BYTES`] (and half the cache, which must hold one).
pub fn coalesce(inner: Arc<dyn PieceProvider>, cache_bytes: u64) -> Arc<dyn PieceProvider> {
    let l = inner.layout();
    if l.piece_len() >= GROUP_BELOW {
        return inner;
    }
    let group = UNIT_BYTES.min(cache_bytes / 2) / l.piece_len().max(1);
    if group < 2 || l.piece_count() < 2 {
        return inner;
    }
    let group = group.min(u64::from(u32::MAX)) as u32;
    let unit_len = l.piece_len() * u64::from(group);
    let Ok(layout) = Layout::new(l.size(), unit_len, Vec::new()) else {
        return inner;
    };
    let sha1_keys = matches!(inner.key(0), PieceKey::Sha1(_));
    let keys = if sha1_keys {
        (0..layout.piece_count()).map(|_| OnceLock::new()).collect()
    } else {
        Vec::new()
    };
    Arc::new(Units {
        inner,
        layout,
        group,
        keys,
    })
}

struct Units {
    inner: Arc<dyn PieceProvider>,
    /// The stream cut into units (no files: listings use the inner layout).
    layout: Layout,
    /// Inner pieces per unit.
    group: u32,
    /// Memoized unit keys, for torrents.
    keys: Vec<OnceLock<[u8; 20]>>,
}

impl Units {
    fn inner_pieces(&self, units: Range<u32>) -> Range<u32> {
        let count = self.inner.layout().piece_count();
        let start = units.start.saturating_mul(self.group).min(count);
        let end = units.end.saturating_mul(self.group).min(count);
        start..end
    }
}

/// A unit being put together from its pieces, which may come in any order.
struct Assembly {
    buf: PieceBuf,
    /// Which inner pieces are in (by index inside the unit).
    got: Vec<bool>,
    /// Inner pieces still to come.
    left: u32,
    error: Option<Error>,
}

impl PieceProvider for Units {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn key(&self, unit: u32) -> PieceKey {
        let pieces = self.inner_pieces(unit..unit + 1);
        let Some(memo) = self.keys.get(unit as usize) else {
            return self.inner.key(pieces.start);
        };
        let hash = memo.get_or_init(|| {
            let mut h = Sha1::new();
            h.update(b"gtio unit");
            h.update(self.group.to_le_bytes());
            for p in pieces {
                if let PieceKey::Sha1(k) = self.inner.key(p) {
                    h.update(k);
                }
            }
            h.finalize().into()
        });
        PieceKey::Sha1(*hash)
    }

    fn max_run(&self) -> u32 {
        (self.inner.max_run() / self.group).max(1)
    }

    // A right-sized read names stream bytes, which units leave as they are.
    fn reads_direct(&self) -> bool {
        self.inner.reads_direct()
    }

    fn read_direct(&self, range: Range<u64>, dest: &mut [u8]) -> Option<Result<(), Fault>> {
        self.inner.read_direct(range, dest)
    }

    fn fetch(
        &self,
        units: Range<u32>,
        deliver: &mut dyn FnMut(u32, Result<Piece, Error>),
    ) -> Result<(), Fault> {
        let inner_layout = self.inner.layout();
        let mut building: HashMap<u32, Assembly> = HashMap::new();
        let result = self
            .inner
            .fetch(self.inner_pieces(units), &mut |piece, result| {
                let unit = piece / self.group;
                let first = self.inner_pieces(unit..unit + 1);
                let a = building.entry(unit).or_insert_with(|| {
                    let r = self.layout.piece_range(unit);
                    Assembly {
                        buf: PieceBuf::reuse((r.end - r.start) as usize),
                        got: vec![false; (first.end - first.start) as usize],
                        left: first.end - first.start,
                        error: None,
                    }
                });
                let i = (piece - first.start) as usize;
                if a.got.get(i).copied().unwrap_or(true) {
                    return; // a second copy (or not a piece of the unit)
                }
                a.got[i] = true;
                match result {
                    Ok(data) => {
                        let at = (inner_layout.piece_range(piece).start
                            - self.layout.piece_range(unit).start)
                            as usize;
                        if let Some(dest) = a.buf.get_mut(at..at + data.len()) {
                            dest.copy_from_slice(&data);
                        }
                    }
                    Err(e) => {
                        a.error.get_or_insert(e);
                    }
                }
                a.left -= 1;
                if a.left == 0 {
                    if let Some(done) = building.remove(&unit) {
                        match done.error {
                            Some(e) => deliver(unit, Err(e)),
                            None => deliver(unit, Ok(Arc::new(done.buf))),
                        }
                    }
                }
            });
        // Units left incomplete are asked for again by the engine.
        result
    }

    fn take_hash_failed_bytes(&self) -> u64 {
        self.inner.take_hash_failed_bytes()
    }

    fn take_redundant_bytes(&self) -> u64 {
        self.inner.take_redundant_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Identity;

    struct Tiny {
        layout: Layout,
        data: Vec<u8>,
        sha1: bool,
        id: Arc<Identity>,
        /// Piece that fails its check.
        bad: Option<u32>,
    }

    impl PieceProvider for Tiny {
        fn layout(&self) -> &Layout {
            &self.layout
        }
        fn key(&self, piece: u32) -> PieceKey {
            if self.sha1 {
                let r = self.layout.piece_range(piece);
                PieceKey::Sha1(Sha1::digest(&self.data[r.start as usize..r.end as usize]).into())
            } else {
                PieceKey::Object(self.id.id(), piece)
            }
        }
        fn max_run(&self) -> u32 {
            1 << 20
        }
        fn fetch(
            &self,
            pieces: Range<u32>,
            deliver: &mut dyn FnMut(u32, Result<Piece, Error>),
        ) -> Result<(), Fault> {
            for p in pieces {
                if Some(p) == self.bad {
                    deliver(p, Err(Error::io("bad piece")));
                    continue;
                }
                let r = self.layout.piece_range(p);
                let v = self.data[r.start as usize..r.end as usize].to_vec();
                deliver(p, Ok(Arc::new(v.into())));
            }
            Ok(())
        }
    }

    /// Not periodic, so no two units hold the same bytes.
    fn byte(i: usize) -> u8 {
        ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8
    }

    fn tiny(len: usize, sha1: bool, bad: Option<u32>) -> Arc<dyn PieceProvider> {
        Arc::new(Tiny {
            layout: Layout::new(len as u64, 4, vec![]).unwrap(),
            data: (0..len).map(byte).collect(),
            sha1,
            id: Identity::intern(format!("units-test-{len}-{sha1}")),
            bad,
        })
    }

    #[test]
    fn units_carry_the_bytes_of_their_pieces() {
        let inner = tiny(200_003, true, None);
        let u = coalesce(inner, 1 << 30);
        assert_eq!(u.layout().piece_len(), UNIT_BYTES);
        assert_eq!(u.layout().size(), 200_003);
        let mut got = Vec::new();
        u.fetch(0..u.layout().piece_count(), &mut |i, r| {
            got.push((i, r.unwrap()))
        })
        .unwrap();
        assert_eq!(got.len(), 4);
        let all: Vec<u8> = got.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        assert_eq!(all, (0..200_003).map(byte).collect::<Vec<_>>());
        // A run starting mid-stream starts at its unit's first piece.
        let mut again = Vec::new();
        u.fetch(2..4, &mut |i, r| again.push((i, r.unwrap())))
            .unwrap();
        assert_eq!(again[0].0, 2);
        assert_eq!(&again[0].1[..], &got[2].1[..]);
    }

    #[test]
    fn unit_keys_are_distinct_and_stable() {
        let u = coalesce(tiny(300_000, true, None), 1 << 30);
        let keys: Vec<PieceKey> = (0..u.layout().piece_count()).map(|i| u.key(i)).collect();
        assert_eq!(
            keys,
            (0..keys.len() as u32).map(|i| u.key(i)).collect::<Vec<_>>()
        );
        for (i, a) in keys.iter().enumerate() {
            assert!(keys[i + 1..].iter().all(|b| b != a));
        }
        let o = coalesce(tiny(300_000, false, None), 1 << 30);
        assert_ne!(o.key(0), o.key(1));
    }

    #[test]
    fn a_bad_piece_fails_its_unit_only() {
        let bad_piece = (UNIT_BYTES / 4 + 5) as u32;
        let u = coalesce(tiny(200_000, true, Some(bad_piece)), 1 << 30);
        let mut results = Vec::new();
        u.fetch(0..u.layout().piece_count(), &mut |i, r| {
            results.push((i, r.is_ok()))
        })
        .unwrap();
        assert_eq!(results, vec![(0, true), (1, false), (2, true), (3, true)]);
    }

    #[test]
    fn large_pieces_are_left_alone() {
        let inner: Arc<dyn PieceProvider> = Arc::new(Tiny {
            layout: Layout::new(1 << 20, 64 << 10, vec![]).unwrap(),
            data: vec![0; 1 << 20],
            sha1: false,
            id: Identity::intern("units-test-large".into()),
            bad: None,
        });
        let u = coalesce(Arc::clone(&inner), 1 << 30);
        assert!(Arc::ptr_eq(&u, &inner));
    }
}
