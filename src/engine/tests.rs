//! Engine tests against an in-memory provider that counts fetches and can be
//! told to fail or stall.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::layout::{Layout, PieceSlice};
use super::*;

struct FakeProvider {
    layout: Layout,
    data: Vec<u8>,
    id: Arc<Identity>,
    fetches: AtomicUsize,
    /// Fail this many fetch calls with a transient fault first.
    transient_failures: AtomicU32,
    /// Fail every fetch with a permanent fault.
    permanent: bool,
    /// Sleep in each fetch (to let requests pile up).
    delay: Duration,
    log: Mutex<Vec<Range<u32>>>,
    order: Order,
    skips_left: AtomicU32,
}

/// How a fake source delivers the pieces of a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    Sequential,
    Reverse,
    /// A fixed shuffle (xorshift with this seed).
    Shuffled(u64),
    /// Leave this piece out the first `n` times it is asked for.
    Skip(u32, u32),
    /// Every piece twice, and a piece that was not asked for.
    Twice,
}

impl FakeProvider {
    fn new(len: usize, piece: u64) -> FakeProvider {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        FakeProvider {
            layout: Layout::new(len as u64, piece, vec![]).unwrap(),
            data,
            id: Identity::intern(format!("fake-{}", NEXT.fetch_add(1, Ordering::Relaxed))),
            fetches: AtomicUsize::new(0),
            transient_failures: AtomicU32::new(0),
            permanent: false,
            delay: Duration::ZERO,
            log: Mutex::new(vec![]),
            order: Order::Sequential,
            skips_left: AtomicU32::new(0),
        }
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl PieceProvider for FakeProvider {
    fn layout(&self) -> &Layout {
        &self.layout
    }
    fn key(&self, piece: u32) -> PieceKey {
        PieceKey::Object(self.id.id(), piece)
    }
    fn max_run(&self) -> u32 {
        4
    }
    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Result<Piece, Error>),
    ) -> Result<(), Fault> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(pieces.clone());
        std::thread::sleep(self.delay);
        if self.permanent {
            return Err(Fault::permanent(Error::new(libc::ENOENT, "gone")));
        }
        if self
            .transient_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Fault::transient(Error::io("flaky")));
        }
        let mut order: Vec<u32> = pieces.clone().collect();
        match self.order {
            Order::Sequential => {}
            Order::Reverse => order.reverse(),
            Order::Shuffled(seed) => {
                let mut x = seed | 1;
                for i in (1..order.len()).rev() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    order.swap(i, (x % (i as u64 + 1)) as usize);
                }
            }
            Order::Skip(piece, _) => {
                let skip = self
                    .skips_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if skip {
                    order.retain(|&p| p != piece);
                }
            }
            Order::Twice => {
                order = order.iter().flat_map(|&p| [p, p]).collect();
                order.push(pieces.end % self.layout.piece_count());
            }
        }
        for p in order {
            let r = self.layout.piece_range(p);
            deliver(
                p,
                Ok(Arc::new(
                    self.data[r.start as usize..r.end as usize].to_vec().into(),
                )),
            );
        }
        Ok(())
    }
}

fn config() -> Config {
    Config {
        workers: 4,
        retries: 3,
        cache_bytes: 1 << 20,
        ..Config::default()
    }
    .normalized()
}

/// Collects a read's bytes, for tests.
struct VecTarget(Arc<Mutex<Vec<u8>>>);

impl request::ReadTarget for VecTarget {
    fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        self.0.lock().unwrap()[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
}

/// One waited read per piece, all asked for in one call (so runs are
/// coalesced as for a real read); each piece's bytes or error.
fn read_sync(
    engine: &Engine,
    p: &Arc<dyn PieceProvider>,
    pieces: Range<u32>,
) -> Vec<Result<Vec<u8>, Error>> {
    let mut reads = Vec::new();
    let mut wants = Vec::new();
    for piece in pieces {
        let r = p.layout().piece_range(piece);
        let len = (r.end - r.start) as usize;
        let bytes = Arc::new(Mutex::new(vec![0u8; len]));
        let req = ReadRequest::waited(len, 1, Box::new(VecTarget(Arc::clone(&bytes))));
        let slice = PieceSlice {
            piece,
            within: 0..len,
            dest: 0,
        };
        wants.push((piece, Waiter::new(Arc::clone(&req), slice)));
        reads.push((req, bytes));
    }
    engine.request(p, &st(), wants, true).unwrap();
    reads
        .into_iter()
        .map(|(req, bytes)| {
            req.wait()?;
            let v = bytes.lock().unwrap().clone();
            Ok(v)
        })
        .collect()
}

#[test]
fn pieces_arrive_with_the_right_bytes_and_runs_are_coalesced() {
    let engine = Engine::start(&config());
    let fake = Arc::new(FakeProvider::new(10_000, 1000));
    let p: Arc<dyn PieceProvider> = fake.clone();
    let got = read_sync(&engine, &p, 0..10);
    for (i, r) in got.into_iter().enumerate() {
        let piece = r.unwrap();
        assert_eq!(&piece[..], &fake.data[i * 1000..(i + 1) * 1000]);
    }
    // 10 consecutive pieces, max_run 4: three jobs (4 + 4 + 2).
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 3);
    // Second time: all cached, no fetch.
    read_sync(&engine, &p, 0..10);
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 3);
    engine.shutdown();
}

#[test]
fn concurrent_requests_for_one_piece_start_one_download() {
    let engine = Engine::start(&config());
    let mut fake = FakeProvider::new(4000, 1000);
    fake.delay = Duration::from_millis(100);
    let fake = Arc::new(fake);
    let p: Arc<dyn PieceProvider> = fake.clone();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let got = read_sync(&engine, &p, 2..3);
                assert_eq!(&got[0].as_ref().unwrap()[..], &fake.data[2000..3000]);
            });
        }
    });
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 1, "single flight");
    engine.shutdown();
}

#[test]
fn transient_faults_are_retried_and_permanent_ones_reported() {
    let engine = Engine::start(&config());
    let fake = Arc::new(FakeProvider::new(2000, 1000));
    fake.transient_failures.store(2, Ordering::SeqCst);
    let p: Arc<dyn PieceProvider> = fake.clone();
    let got = read_sync(&engine, &p, 0..2);
    assert!(got.iter().all(|r| r.is_ok()));
    assert_eq!(engine.stats().retries, 2);

    let mut gone = FakeProvider::new(2000, 1000);
    gone.permanent = true;
    let gone = Arc::new(gone);
    let p: Arc<dyn PieceProvider> = gone.clone();
    let got = read_sync(&engine, &p, 0..2);
    for r in got {
        assert_eq!(r.unwrap_err().errno(), libc::ENOENT);
    }
    assert_eq!(
        gone.fetches.load(Ordering::SeqCst),
        1,
        "permanent: no retry"
    );
    engine.shutdown();
}

#[test]
fn retries_stop_after_the_configured_count() {
    let engine = Engine::start(&Config {
        retries: 2,
        ..config()
    });
    let fake = Arc::new(FakeProvider::new(1000, 1000));
    fake.transient_failures.store(100, Ordering::SeqCst);
    let p: Arc<dyn PieceProvider> = fake.clone();
    let got = read_sync(&engine, &p, 0..1);
    assert_eq!(got[0].as_ref().unwrap_err().errno(), libc::EIO);
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 3, "1 try + 2 retries");
    engine.shutdown();
}

/// One worker, so the queue order is the fetch order, and a provider slow
/// enough (`delay_ms` per fetch) for jobs to pile up behind it.
fn one_slow_worker(delay_ms: u64) -> (Arc<Engine>, Arc<FakeProvider>, Arc<dyn PieceProvider>) {
    let engine = Engine::start(&Config {
        workers: 1,
        ..config()
    });
    let mut fake = FakeProvider::new(100_000, 1000);
    fake.delay = Duration::from_millis(delay_ms);
    let fake = Arc::new(fake);
    let p: Arc<dyn PieceProvider> = fake.clone();
    (engine, fake, p)
}

#[test]
fn urgent_jobs_overtake_queued_readahead() {
    let (engine, fake, p) = one_slow_worker(20);
    // Occupy the worker, then queue readahead, then a demand read.
    assert!(engine.prefetch(&p, &st(), 0..1000, false));
    std::thread::sleep(Duration::from_millis(5));
    assert!(engine.prefetch(&p, &st(), 10_000..30_000, false));
    read_sync(&engine, &p, 90..91);
    let log = fake.log.lock().unwrap().clone();
    let demand = log.iter().position(|r| r.contains(&90)).unwrap();
    let first_readahead = log
        .iter()
        .position(|r| r.contains(&10))
        .unwrap_or(usize::MAX);
    assert!(
        demand < first_readahead,
        "demand read served before queued readahead: {log:?}"
    );
    engine.shutdown();
}

#[test]
fn demand_read_promotes_a_queued_readahead_job() {
    let (engine, fake, p) = one_slow_worker(20);
    assert!(engine.prefetch(&p, &st(), 0..1000, false));
    std::thread::sleep(Duration::from_millis(5));
    assert!(engine.prefetch(&p, &st(), 10_000..14_000, false)); // one job: pieces 10..14
    assert!(engine.prefetch(&p, &st(), 50_000..54_000, false));
    // Joins the queued 10..14 job, which must jump ahead of 50..54.
    read_sync(&engine, &p, 11..12);
    let log = fake.log.lock().unwrap().clone();
    let joined = log.iter().position(|r| r.contains(&11)).unwrap();
    let other = log
        .iter()
        .position(|r| r.contains(&50))
        .unwrap_or(usize::MAX);
    assert!(joined < other, "{log:?}");
    assert_eq!(fake.fetches.load(Ordering::SeqCst), log.len());
    engine.shutdown();
}

#[test]
fn shutdown_fails_waiters_instead_of_hanging() {
    let (engine, _, p) = one_slow_worker(200);
    assert!(engine.prefetch(&p, &st(), 0..1000, false));
    let bytes = Arc::new(Mutex::new(vec![0u8; 1000]));
    let req = ReadRequest::waited(1000, 1, Box::new(VecTarget(bytes)));
    let slice = PieceSlice {
        piece: 50,
        within: 0..1000,
        dest: 0,
    };
    engine
        .request(
            &p,
            &st(),
            vec![(50, Waiter::new(Arc::clone(&req), slice))],
            true,
        )
        .unwrap();
    engine.shutdown();
    assert_eq!(req.wait().unwrap_err().errno(), libc::ECANCELED);
    assert!(engine.request(&p, &st(), vec![], true).is_err());
}

#[test]
fn backoff_grows_and_honours_retry_after() {
    for attempt in 0..8 {
        let d = backoff(attempt, None);
        let base = (100u64 << attempt.min(6)).min(5000);
        assert!(d >= Duration::from_millis(base / 2) && d <= Duration::from_millis(base));
    }
    assert_eq!(
        backoff(0, Some(Duration::from_secs(2))),
        Duration::from_secs(2)
    );
    assert_eq!(
        backoff(0, Some(Duration::from_secs(99))),
        Duration::from_secs(10)
    );
}

#[test]
fn downloads_report_their_state_while_live() {
    let (engine, _, p) = one_slow_worker(150);
    assert!(engine.prefetch(&p, &st(), 0..1000, false));
    assert!(engine.prefetch(&p, &st(), 50_000..51_000, false));
    std::thread::sleep(Duration::from_millis(50));
    let states: Vec<DownloadState> = engine.downloads().into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        states,
        vec![DownloadState::InProgress, DownloadState::Queued]
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !engine.downloads().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "downloads never finished"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = engine.stats();
    assert_eq!(
        (stats.jobs_started, stats.jobs_completed, stats.jobs_failed),
        (2, 2, 0)
    );
    engine.shutdown();
}

#[test]
fn pieces_up_to_half_the_cache_are_cached_and_hit() {
    // The default 128 MiB cache and the 16 MiB pieces `gtio create` picks
    // for large datasets: a sequential read fetches each piece once.
    let engine = Engine::start(&Config {
        cache_bytes: 128 << 20,
        ..config()
    });
    let fake = Arc::new(FakeProvider::new(32 << 20, 16 << 20));
    let p: Arc<dyn PieceProvider> = fake.clone();
    let (mut hits, mut misses) = (0, 0);
    let step = 256 << 10;
    for off in (0..32u64 << 20).step_by(step) {
        let piece = (off >> 24) as u32;
        match engine.cached(&p.key(piece)) {
            Some(_) => hits += 1,
            None => {
                misses += 1;
                read_sync(&engine, &p, piece..piece + 1);
            }
        }
    }
    assert_eq!(
        fake.fetches.load(Ordering::SeqCst),
        2,
        "one fetch per piece"
    );
    assert_eq!((misses, hits), (2, 126));

    engine.shutdown();
}

#[test]
fn pieces_larger_than_half_the_cache_are_refused_not_allocated() {
    let engine = Engine::start(&config());
    // A metainfo may claim any piece length: 2^40 bytes aborted the
    // process when the worker allocated the piece.
    let mut huge = FakeProvider::new(0, 1);
    huge.layout = Layout::new(1 << 41, 1 << 40, vec![]).unwrap();
    let huge = Arc::new(huge);
    let p: Arc<dyn PieceProvider> = huge.clone();
    let req = ReadRequest::waited(1, 1, Box::new(VecTarget(Arc::new(Mutex::new(vec![0])))));
    let slice = PieceSlice {
        piece: 0,
        within: 0..1,
        dest: 0,
    };
    let e = engine
        .request(
            &p,
            &st(),
            vec![(0, Waiter::new(Arc::clone(&req), slice))],
            true,
        )
        .unwrap_err();
    assert_eq!(e.errno(), libc::EFBIG, "{e}");
    assert!(e.to_string().contains("cache_bytes"), "{e}");
    // Refused: the read was not finished behind the caller's back (an
    // async read would have posted a completion for a submission that
    // failed); the caller takes it back.
    assert!(req.cancel(), "the refused read was left to its caller");
    assert_eq!(req.wait().unwrap_err().errno(), libc::ECANCELED);
    assert!(!engine.prefetch(&p, &st(), 0..4096, false));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(huge.fetches.load(Ordering::SeqCst), 0, "nothing fetched");
    // Exactly half the cache is fine.
    let half = Arc::new(FakeProvider::new(1 << 20, 512 << 10));
    let p: Arc<dyn PieceProvider> = half.clone();
    assert!(read_sync(&engine, &p, 0..1)[0].is_ok());
    engine.shutdown();
}

#[test]
fn a_failure_on_one_datasets_sources_never_fails_another_datasets_read() {
    // Two datasets with the same pieces (one torrent opened twice with
    // different web seeds: the url-list is outside the info dict, so the
    // pieces' SHA-1 keys are equal). A read of the second joins the first's
    // flight; when the first's sources fail, the second's read must be
    // fetched from its own sources, not failed.
    let engine = Engine::start(&config());
    let mut dead = FakeProvider::new(64 << 10, 16 << 10);
    dead.permanent = true;
    dead.delay = Duration::from_millis(200);
    let live = FakeProvider {
        id: Arc::clone(&dead.id),
        ..FakeProvider::new(64 << 10, 16 << 10)
    };
    let dead: Arc<dyn PieceProvider> = Arc::new(dead);
    let live = Arc::new(live);
    let live_dyn: Arc<dyn PieceProvider> = live.clone();
    let engine = Arc::new(engine);
    let first = {
        let (engine, dead) = (Arc::clone(&engine), Arc::clone(&dead));
        std::thread::spawn(move || read_sync(&engine, &dead, 1..2))
    };
    std::thread::sleep(Duration::from_millis(50));
    let second = read_sync(&engine, &live_dyn, 1..2);
    let first = first.join().unwrap();
    assert_eq!(first[0].as_ref().unwrap_err().errno(), libc::ENOENT);
    let r = live.layout.piece_range(1);
    assert_eq!(
        second[0].as_ref().expect("read through its own sources"),
        &live.data[r.start as usize..r.end as usize]
    );
    assert_eq!(live.fetches.load(Ordering::SeqCst), 1);
    engine.shutdown();
}

/// Counters for a test's requests.
fn st() -> Arc<stats::StatSet> {
    stats::StatSet::new(stats::SourceKind::Http)
}

/// `read_sync`, failing the test instead of hanging if a read never ends.
fn read_bounded(
    engine: &Arc<Engine>,
    p: &Arc<dyn PieceProvider>,
    pieces: Range<u32>,
) -> Vec<Result<Vec<u8>, Error>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (e, p2) = (Arc::clone(engine), Arc::clone(p));
    std::thread::spawn(move || {
        let _ = tx.send(read_sync(&e, &p2, pieces));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("a read never completed: a piece was left in flight")
}

fn expect_bytes(fake: &FakeProvider, first: u32, got: &[Result<Vec<u8>, Error>]) {
    for (i, g) in got.iter().enumerate() {
        let r = fake.layout.piece_range(first + i as u32);
        assert_eq!(
            g.as_ref().expect("piece read"),
            &fake.data[r.start as usize..r.end as usize],
            "piece {}",
            first + i as u32
        );
    }
}

#[test]
fn pieces_may_arrive_in_any_order() {
    let engine = Arc::new(Engine::start(&config()));
    for order in [Order::Reverse, Order::Shuffled(7), Order::Shuffled(99)] {
        let fake = Arc::new(FakeProvider {
            order,
            ..FakeProvider::new(64 << 10, 16 << 10)
        });
        let p: Arc<dyn PieceProvider> = fake.clone();
        let got = read_bounded(&engine, &p, 0..4);
        expect_bytes(&fake, 0, &got);
        assert_eq!(*fake.log.lock().unwrap(), vec![0..4], "one fetch");
    }
    engine.shutdown();
}

#[test]
fn a_skipped_piece_is_asked_for_again_not_waited_for() {
    let engine = Arc::new(Engine::start(&config()));
    let fake = Arc::new(FakeProvider {
        order: Order::Skip(2, 1),
        skips_left: AtomicU32::new(1),
        ..FakeProvider::new(64 << 10, 16 << 10)
    });
    let p: Arc<dyn PieceProvider> = fake.clone();
    let got = read_bounded(&engine, &p, 0..4);
    expect_bytes(&fake, 0, &got);
    // The whole run, then only the piece left out.
    assert_eq!(*fake.log.lock().unwrap(), vec![0..4, 2..3]);
    engine.shutdown();
}

#[test]
fn a_piece_never_delivered_fails_after_the_retries() {
    let engine = Arc::new(Engine::start(&config()));
    let fake = Arc::new(FakeProvider {
        order: Order::Skip(1, u32::MAX),
        skips_left: AtomicU32::new(u32::MAX),
        ..FakeProvider::new(64 << 10, 16 << 10)
    });
    let p: Arc<dyn PieceProvider> = fake.clone();
    let got = read_bounded(&engine, &p, 0..3);
    assert!(got[0].is_ok() && got[2].is_ok());
    let e = got[1].as_ref().unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "{e}");
    assert!(e.to_string().contains("left out"), "{e}");
    // The run, then the missing piece alone for each of the 3 retries.
    let log = fake.log.lock().unwrap().clone();
    assert_eq!(log.len(), 1 + 3, "{log:?}");
    assert!(log[1..].iter().all(|r| *r == (1..2)), "{log:?}");
    engine.shutdown();
}

#[test]
fn second_copies_are_kept_out_and_counted_redundant() {
    let engine = Arc::new(Engine::start(&config()));
    let fake = Arc::new(FakeProvider {
        order: Order::Twice,
        ..FakeProvider::new(64 << 10, 16 << 10)
    });
    let p: Arc<dyn PieceProvider> = fake.clone();
    let stats = st();
    let mut reads = Vec::new();
    let mut wants = Vec::new();
    for piece in 0..2 {
        let bytes = Arc::new(Mutex::new(vec![0u8; 16 << 10]));
        let req = ReadRequest::waited(16 << 10, 1, Box::new(VecTarget(Arc::clone(&bytes))));
        let slice = PieceSlice {
            piece,
            within: 0..16 << 10,
            dest: 0,
        };
        wants.push((piece, Waiter::new(Arc::clone(&req), slice)));
        reads.push((req, bytes));
    }
    engine.request(&p, &stats, wants, true).unwrap();
    for (i, (req, bytes)) in reads.into_iter().enumerate() {
        assert_eq!(req.wait().unwrap(), 16 << 10);
        let r = fake.layout.piece_range(i as u32);
        assert!(bytes.lock().unwrap()[..] == fake.data[r.start as usize..r.end as usize]);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !engine.downloads().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = stats.snapshot();
    // Two second copies and one piece not asked for, 16 KiB each.
    assert_eq!(s.bytes_redundant, 3 * (16 << 10));
    assert_eq!(s.fetched_total(), 2 * (16 << 10));
    engine.shutdown();
}
