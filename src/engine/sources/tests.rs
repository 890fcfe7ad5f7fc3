//! Sources of different speed, a stalled source, the endgame and a source
//! that sends a bad piece, against in-memory sources.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::*;
use crate::engine::layout::Layout;
use crate::engine::{PieceKey, PieceProvider};

/// The provider under test: a dataset whose pieces (with known SHA-1s) come from a [`SourceSet`].
struct MultiSource {
    layout: Layout,
    hashes: Vec<[u8; 20]>,
    sources: SourceSet,
    max_run: u32,
}

impl MultiSource {
    fn new(layout: Layout, hashes: Vec<[u8; 20]>, sources: SourceSet, max_run: u32) -> Self {
        MultiSource {
            layout,
            hashes,
            sources,
            max_run,
        }
    }
}

impl PieceProvider for MultiSource {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn key(&self, piece: u32) -> PieceKey {
        PieceKey::Sha1(self.hashes.get(piece as usize).copied().unwrap_or([0; 20]))
    }

    fn max_run(&self) -> u32 {
        self.max_run
    }

    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Result<Piece, Error>),
    ) -> std::result::Result<(), Fault> {
        self.sources.fetch(pieces, &self.hashes, deliver)
    }

    fn take_hash_failed_bytes(&self) -> u64 {
        self.sources.take_hash_failed_bytes()
    }

    fn demand(&self, piece: u32) {
        self.sources.demand(piece);
    }

    fn take_redundant_bytes(&self) -> u64 {
        self.sources.take_redundant_bytes()
    }
}

const PIECE: usize = 16 << 10;

struct Fake {
    data: Arc<Vec<u8>>,
    /// Sleep before each piece.
    per_piece: Duration,
    /// Sleep this long before sending anything, once (then fail).
    stall: Option<Duration>,
    /// Send the first piece, then sleep this long before the rest.
    pause_after_first: Option<Duration>,
    /// Flip a byte of this piece.
    corrupt: Option<u32>,
    calls: AtomicU32,
    sent: AtomicU64,
}

impl Fake {
    fn new(data: &Arc<Vec<u8>>) -> Fake {
        Fake {
            data: Arc::clone(data),
            per_piece: Duration::ZERO,
            stall: None,
            pause_after_first: None,
            corrupt: None,
            calls: AtomicU32::new(0),
            sent: AtomicU64::new(0),
        }
    }
}

impl PieceSource for Fake {
    fn kind(&self) -> SourceKind {
        SourceKind::Webseed
    }
    fn label(&self) -> String {
        "fake".into()
    }
    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Piece),
    ) -> std::result::Result<(), Fault> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(d) = self.stall {
            std::thread::sleep(d);
            return Err(Fault::transient(Error::new(libc::ETIMEDOUT, "stalled")));
        }
        for (n, p) in pieces.enumerate() {
            std::thread::sleep(self.per_piece);
            let at = p as usize * PIECE;
            let mut bytes = self.data[at..at + PIECE].to_vec();
            if self.corrupt == Some(p) {
                bytes[7] ^= 1;
            }
            self.sent.fetch_add(PIECE as u64, Ordering::SeqCst);
            deliver(p, Arc::new(bytes.into()));
            if n == 0 {
                if let Some(d) = self.pause_after_first {
                    std::thread::sleep(d);
                }
            }
        }
        Ok(())
    }
}

fn data(pieces: usize, seed: u8) -> (Arc<Vec<u8>>, Vec<[u8; 20]>) {
    let d: Vec<u8> = (0..pieces * PIECE)
        .map(|i| ((i as u64 * 2_654_435_761) >> 13) as u8 ^ seed)
        .collect();
    let hashes = d.chunks(PIECE).map(|c| Sha1::digest(c).into()).collect();
    (Arc::new(d), hashes)
}

type Got = Vec<(u32, Result<Piece, Error>)>;

/// Fetch `pieces` from the set; each piece's bytes by index, once.
fn fetch_all(
    set: &SourceSet,
    hashes: &[[u8; 20]],
    pieces: Range<u32>,
) -> (Got, std::result::Result<(), Fault>) {
    let mut got = Vec::new();
    let r = set.fetch(pieces, hashes, &mut |p, d| got.push((p, d)));
    (got, r)
}

fn check(got: &[(u32, Result<Piece, Error>)], data: &[u8]) {
    let mut seen = std::collections::HashSet::new();
    for (p, d) in got {
        assert!(seen.insert(*p), "piece {p} delivered twice");
        let d = d.as_ref().expect("verified piece");
        let at = *p as usize * PIECE;
        assert!(d[..] == data[at..at + PIECE], "piece {p} bytes");
    }
}

#[test]
fn the_faster_of_two_sources_takes_more_pieces_and_both_are_used() {
    let (d, hashes) = data(64, 1);
    let slow = Arc::new(Fake {
        per_piece: Duration::from_millis(15),
        ..Fake::new(&d)
    });
    let fast = Arc::new(Fake {
        per_piece: Duration::from_millis(1),
        ..Fake::new(&d)
    });
    let set = Arc::new(SourceSet::new(vec![slow.clone(), fast.clone()]));
    // Four workers taking runs of four pieces, as the engine's would.
    let next = Arc::new(Mutex::new(0u32));
    let all = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (set, hashes, next, all) = (&set, &hashes, &next, &all);
            s.spawn(move || loop {
                let first = {
                    let mut n = next.lock().unwrap();
                    let f = *n;
                    *n += 4;
                    f
                };
                if first >= 64 {
                    return;
                }
                let (got, r) = fetch_all(set, hashes, first..first + 4);
                r.unwrap();
                assert_eq!(got.len(), 4);
                all.lock().unwrap().extend(got);
            });
        }
    });
    let all = all.lock().unwrap();
    assert_eq!(all.len(), 64);
    check(&all, &d);
    let wins = set.wins();
    assert!(wins[0] > 0 && wins[1] > 0, "both used: {wins:?}");
    assert!(
        wins[1] > 2 * wins[0],
        "the fast source takes more: {wins:?}"
    );
}

#[test]
fn a_stalled_source_is_hedged_by_another() {
    let (d, hashes) = data(4, 2);
    let stalled = Arc::new(Fake {
        stall: Some(Duration::from_secs(3)),
        ..Fake::new(&d)
    });
    let good = Arc::new(Fake::new(&d));
    // The stalled one is chosen first (neither is measured; first wins).
    let set = SourceSet::new(vec![stalled.clone(), good.clone()]);
    let t = Instant::now();
    let mut first_at = None;
    let mut got = Vec::new();
    let r = set.fetch(0..4, &hashes, &mut |p, piece| {
        first_at.get_or_insert_with(|| t.elapsed());
        got.push((p, piece));
    });
    r.unwrap();
    check(&got, &d);
    assert_eq!(got.len(), 4);
    let first = first_at.unwrap();
    assert!(
        first >= HEDGE_AFTER && first < Duration::from_millis(2800),
        "served by the other source after the hedge delay: {first:?}"
    );
    assert_eq!(stalled.calls.load(Ordering::SeqCst), 1);
    assert_eq!(set.wins(), vec![0, 4]);
    assert_eq!(
        set.take_redundant_bytes(),
        0,
        "the stalled one sent nothing"
    );
    // The stalled source cools down: the next run goes to the good one.
    assert_eq!(set.choose(&[0], None), Some(1));
}

#[test]
fn endgame_keeps_the_first_verified_copy_and_counts_the_other() {
    let (d, hashes) = data(4, 3);
    // Sends piece 0, pauses past the hedge delay, then sends 1..4 anyway.
    let lagging = Arc::new(Fake {
        pause_after_first: Some(HEDGE_AFTER + Duration::from_millis(700)),
        ..Fake::new(&d)
    });
    let other = Arc::new(Fake::new(&d));
    let set = SourceSet::new(vec![lagging.clone(), other.clone()]);
    let (got, r) = fetch_all(&set, &hashes, 0..4);
    r.unwrap();
    check(&got, &d);
    assert_eq!(got.len(), 4, "each piece once");
    // Piece 0 from the first source, 1..4 from the second (asked for the
    // missing pieces); the first's late copies of 1..4 are redundant.
    assert_eq!(set.wins(), vec![1, 3]);
    assert_eq!(other.sent.load(Ordering::SeqCst), 3 * PIECE as u64);
    assert_eq!(set.take_redundant_bytes(), 3 * PIECE as u64);
    assert_eq!(set.take_redundant_bytes(), 0, "taken once");
}

#[test]
fn a_bad_piece_bans_its_source_while_another_remains() {
    let (d, hashes) = data(4, 4);
    let liar = Arc::new(Fake {
        corrupt: Some(2),
        ..Fake::new(&d)
    });
    let honest = Arc::new(Fake {
        per_piece: Duration::from_millis(1),
        ..Fake::new(&d)
    });
    let set = SourceSet::new(vec![liar.clone(), honest.clone()]);
    let (got, r) = fetch_all(&set, &hashes, 0..4);
    r.unwrap();
    check(&got, &d);
    // The bad piece is left out (the engine asks again), never delivered.
    let mut pieces: Vec<u32> = got.iter().map(|(p, _)| *p).collect();
    pieces.sort_unstable();
    assert_eq!(pieces, vec![0, 1, 3]);
    assert_eq!(set.take_hash_failed_bytes(), PIECE as u64);
    // Asked again, it comes from the other source.
    let (got, r) = fetch_all(&set, &hashes, 2..3);
    r.unwrap();
    check(&got, &d);
    assert_eq!(honest.calls.load(Ordering::SeqCst), 1);
    assert_eq!(set.choose(&[0], None), Some(1), "the liar is banned");

    // Alone, a source is never banned: only its bad piece fails.
    let alone = SourceSet::new(vec![Arc::new(Fake {
        corrupt: Some(1),
        ..Fake::new(&d)
    })]);
    let (got, r) = fetch_all(&alone, &hashes, 0..4);
    r.unwrap();
    let bad: Vec<&Error> = got.iter().filter_map(|(_, d)| d.as_ref().err()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0].to_string().contains("piece 1"), "{}", bad[0]);
}

#[test]
fn through_the_engine_redundant_bytes_reach_the_statistics() {
    use crate::engine::request::{ReadRequest, ReadTarget};
    use crate::engine::stats::StatSet;
    use crate::engine::{Engine, Waiter};

    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl ReadTarget for Sink {
        fn write_at(&mut self, offset: usize, bytes: &[u8]) {
            self.0.lock().unwrap()[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }

    let (d, hashes) = data(4, 5);
    let lagging = Arc::new(Fake {
        pause_after_first: Some(HEDGE_AFTER + Duration::from_millis(500)),
        ..Fake::new(&d)
    });
    let set = SourceSet::new(vec![lagging, Arc::new(Fake::new(&d))]);
    let layout = Layout::new(d.len() as u64, PIECE as u64, vec![]).unwrap();
    let p: Arc<dyn PieceProvider> = Arc::new(MultiSource::new(layout, hashes, set, 8));
    let engine = Engine::start(
        &crate::Config {
            workers: 2,
            ..crate::Config::default()
        }
        .normalized(),
    );
    let stats = StatSet::new(SourceKind::Webseed);
    let buf = Arc::new(Mutex::new(vec![0u8; d.len()]));
    let req = ReadRequest::waited(d.len(), 4, Box::new(Sink(Arc::clone(&buf))));
    let wants = (0..4u32)
        .map(|piece| {
            let slice = crate::engine::layout::PieceSlice {
                piece,
                within: 0..PIECE,
                dest: piece as usize * PIECE,
            };
            (piece, Waiter::new(Arc::clone(&req), slice))
        })
        .collect();
    engine.request(&p, &stats, wants, true).unwrap();
    assert_eq!(req.wait().unwrap(), d.len());
    assert!(buf.lock().unwrap()[..] == d[..]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !engine.downloads().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = stats.snapshot();
    assert_eq!(s.bytes_redundant, 3 * PIECE as u64);
    assert_eq!(s.fetched_total(), 4 * PIECE as u64);
    engine.shutdown();
}
