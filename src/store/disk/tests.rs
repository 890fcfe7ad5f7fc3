use super::file::{MAGIC, TRAILER};
use super::*;
use sha1::{Digest, Sha1};

fn sha1_check(want: &[u8; 20], data: &[u8]) -> bool {
    Sha1::digest(data).as_slice() == want
}

fn open(dir: &Path, cap: u64) -> DiskStore {
    DiskStore::open(dir, cap).unwrap().with_check(sha1_check)
}

fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "gtio-store-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn piece(n: usize, seed: u8) -> (StoreKey, Vec<u8>) {
    let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
    (StoreKey::Torrent(Sha1::digest(&data).into()), data)
}

#[test]
fn a_saved_piece_loads_back_in_a_new_store() {
    let dir = tempdir("roundtrip");
    let (k, d) = piece(10_000, 1);
    open(&dir, 1 << 20).save(&k, &d);
    let s = open(&dir, 1 << 20);
    assert_eq!(s.load(&k).unwrap(), d);
    assert_eq!(s.stats().hits, 1);
    assert_eq!(s.stats().bytes_used, 10_040);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_truncated_empty_and_foreign_pieces_are_deleted_not_served() {
    let dir = tempdir("bad");
    let s = open(&dir, 1 << 20);
    type Spoil = fn(&Path);
    let cases: [(&str, Spoil); 4] = [
        ("flipped byte", |p| {
            let mut b = fs::read(p).unwrap();
            b[5] ^= 1;
            fs::write(p, b).unwrap();
        }),
        ("truncated", |p| {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..b.len() - 1]).unwrap();
        }),
        ("zero length", |p| fs::write(p, b"").unwrap()),
        (
            "header and data rewritten consistently for other bytes",
            |p| {
                // A valid piece file, but not of this torrent piece.
                let other = b"other bytes".to_vec();
                let mut t = [0u8; TRAILER];
                t[..8].copy_from_slice(MAGIC);
                t[8..16].copy_from_slice(&(other.len() as u64).to_le_bytes());
                fs::write(p, [&other[..], &t[..]].concat()).unwrap();
            },
        ),
    ];
    for (i, (what, spoil)) in cases.iter().enumerate() {
        let (k, d) = piece(5000, i as u8);
        s.save(&k, &d);
        let path = s.piece_path(&k.name());
        spoil(&path);
        assert!(s.load(&k).is_none(), "{what} was served");
        assert!(!path.exists(), "{what} was not deleted");
        s.save(&k, &d);
        assert_eq!(s.load(&k).unwrap(), d, "{what}: refetched piece");
    }
    assert_eq!(s.stats().bad_pieces, 4);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn an_object_piece_is_checked_by_its_recorded_checksum() {
    let dir = tempdir("object");
    let s = open(&dir, 1 << 20);
    let k = StoreKey::Object([7; 20]);
    s.save(&k, b"block of an object");
    assert_eq!(s.load(&k).unwrap(), b"block of an object");
    let p = s.piece_path(&k.name());
    let mut b = fs::read(&p).unwrap();
    b[0] ^= 0x80;
    fs::write(&p, b).unwrap();
    assert!(s.load(&k).is_none());
    assert!(!p.exists(), "a bad object piece is deleted");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn eviction_keeps_the_bound_and_drops_least_recently_used_first() {
    let dir = tempdir("evict");
    // Room for 4 pieces of 1000 + header.
    let s = open(&dir, 4 * 1040 + 100);
    let pieces: Vec<_> = (0..6).map(|i| piece(1000, i)).collect();
    for (k, d) in &pieces[..4] {
        s.save(k, d);
    }
    // Use piece 0, so piece 1 is the oldest.
    assert!(s.load(&pieces[0].0).is_some());
    s.save(&pieces[4].0, &pieces[4].1);
    s.save(&pieces[5].0, &pieces[5].1);
    assert!(s.stats().bytes_used <= 4 * 1040 + 100);
    assert!(s.contains(&pieces[0].0), "recently used piece evicted");
    assert!(!s.contains(&pieces[1].0));
    assert!(!s.contains(&pieces[2].0));
    assert_eq!(s.stats().evictions, 2);
    // The bound holds for a store reopened over a fuller directory too.
    let small = open(&dir, 2 * 1040);
    small.scan();
    assert!(small.stats().bytes_used <= 2 * 1040);
    let on_disk: usize = fs::read_dir(dir.join(LAYOUT_DIR).join("pieces"))
        .unwrap()
        .map(|d| fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(on_disk, 2);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn leftover_temporaries_of_dead_writers_are_removed_at_open() {
    let dir = tempdir("tmp");
    drop(open(&dir, 1 << 20));
    let tmp = dir.join(LAYOUT_DIR).join("tmp");
    // pid 0 is never a writer; a live pid (ours) is kept.
    fs::write(tmp.join("0-1-t-00"), b"half a piece").unwrap();
    let mine = tmp.join(format!("{}-9-t-00", std::process::id()));
    fs::write(&mine, b"being written").unwrap();
    drop(open(&dir, 1 << 20));
    assert!(!tmp.join("0-1-t-00").exists());
    assert!(mine.exists());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_claim_is_exclusive_across_stores_until_released() {
    let dir = tempdir("claim");
    // Two stores on one directory: two processes, as far as claims go.
    let s = open(&dir, 1 << 20);
    let other = open(&dir, 1 << 20);
    let (k, d) = piece(3000, 9);
    let Claim::Mine(guard) = s.claim(&k) else {
        panic!("first claim")
    };
    assert!(matches!(other.claim(&k), Claim::Theirs));
    // A waiter gets the piece as soon as the claimant saves it.
    std::thread::scope(|sc| {
        let w = sc.spawn(|| other.wait_for(&k, Instant::now() + Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(30));
        s.save(&k, &d);
        drop(guard);
        assert_eq!(w.join().unwrap().unwrap(), d);
    });
    assert!(matches!(other.claim(&k), Claim::Stored(x) if x == d));
    // A claim released without a save (the fetch failed) lets the waiter
    // go at once, to fetch it itself.
    let (k2, _) = piece(3000, 10);
    let Claim::Mine(guard) = s.claim(&k2) else {
        panic!("claim of k2")
    };
    assert!(matches!(other.claim(&k2), Claim::Theirs));
    drop(guard);
    assert!(other
        .wait_for(&k2, Instant::now() + Duration::from_secs(60))
        .is_none());
    assert!(matches!(other.claim(&k2), Claim::Mine(_)));
    // A store that closes (its process died: the kernel drops the locks
    // with the file) leaves no claim behind.
    let (k3, _) = piece(3000, 11);
    let dying = open(&dir, 1 << 20);
    let Claim::Mine(held) = dying.claim(&k3) else {
        panic!("claim of the dying store")
    };
    assert!(matches!(s.claim(&k3), Claim::Theirs));
    drop(held);
    drop(dying);
    assert!(matches!(s.claim(&k3), Claim::Mine(_)));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_batch_is_committed_whole_and_each_piece_loads() {
    let dir = tempdir("batch");
    let s = open(&dir, 1 << 20);
    let pieces: Vec<_> = (0..10).map(|i| piece(2000 + i, i as u8)).collect();
    let staged: Vec<_> = pieces.iter().filter_map(|(k, d)| s.stage(k, d)).collect();
    assert_eq!(staged.len(), 10);
    assert!(
        pieces.iter().all(|(k, _)| !s.contains(k)),
        "in place before the commit"
    );
    let mut placed = 0;
    s.commit_then(staged, &mut || placed += 1);
    assert_eq!(placed, 1);
    for (k, d) in &pieces {
        assert_eq!(&s.load(k).unwrap(), d);
    }
    assert_eq!(s.stats().pieces_written, 10);
    assert_eq!(fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_torrent_piece_is_not_served_without_a_check() {
    let dir = tempdir("nocheck");
    let (k, d) = piece(1000, 3);
    open(&dir, 1 << 20).save(&k, &d);
    let unchecked = DiskStore::open(&dir, 1 << 20).unwrap();
    assert!(unchecked.load(&k).is_none());
    assert!(unchecked.contains(&k), "kept for a store that can check it");
    assert_eq!(open(&dir, 1 << 20).load(&k).unwrap(), d);
    let _ = fs::remove_dir_all(&dir);
}
