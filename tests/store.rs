//! The persistent piece store through the real tool: pieces outlive the
//! process, are shared by processes, survive kill -9, and `gtio get`
//! resumes. The origin is the in-tree test server, because these tests
//! count the bytes it sends.

#[path = "support/faulty_origin.rs"]
mod faulty_origin;
#[path = "support/gtio_bin.rs"]
mod gtio_bin;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use faulty_origin::FaultyOrigin;
use gtio::store::{DiskStore, StoreKey};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gtio-store-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Pseudo-random bytes with no repeating piece (identical pieces share one
/// SHA-1, and so one stored copy, which would spoil the byte counts).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn gtio(cache: &Path) -> Command {
    let mut c = Command::new(gtio_bin::gtio_bin());
    c.env("GTIO_CACHE_DIR", cache)
        .env_remove("GTIO_CACHE_DIR_BYTES")
        .env("XDG_CACHE_HOME", cache.join("xdg"))
        .stdin(Stdio::null());
    c
}

/// Bytes the origin sent in answer to range requests, but for each open's
/// one byte (with a store, an open asks for `bytes=0-0`: docs/http.md).
fn origin_bytes(origin: &FaultyOrigin) -> u64 {
    origin
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .filter_map(|r| r.header("Range"))
        .filter(|v| *v != "bytes=0-0")
        .filter_map(|v| {
            let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
            Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1)
        })
        .sum()
}

/// A single-file torrent of `bytes` with the origin as its web seed.
fn torrent(dir: &Path, origin: &FaultyOrigin, bytes: &[u8], piece_log2: u8) -> PathBuf {
    let src = dir.join("data.bin");
    std::fs::write(&src, bytes).unwrap();
    let t = dir.join("data.torrent");
    let st = Command::new(gtio_bin::gtio_bin())
        .args(["-q", "create"])
        .arg(&src)
        .args(["--piece-length", &piece_log2.to_string()])
        .arg("--web-seed")
        .arg(origin.url("/data.bin"))
        .arg("-o")
        .arg(&t)
        .status()
        .unwrap();
    assert!(st.success());
    t
}

fn cat(cache: &Path, t: &Path) -> Vec<u8> {
    let out = gtio(cache).arg("cat").arg(t).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn a_second_process_reads_from_the_store_not_the_origin() {
    let dir = tempdir("second");
    let bytes = data(3 << 20, 1);
    let origin = FaultyOrigin::start(vec![("/data.bin".into(), bytes.clone())]);
    let t = torrent(&dir, &origin, &bytes, 16);
    let cache = dir.join("cache");
    assert!(cat(&cache, &t) == bytes);
    let first = origin_bytes(&origin);
    assert!(first >= bytes.len() as u64);
    assert!(cat(&cache, &t) == bytes);
    assert_eq!(origin_bytes(&origin), first, "the second run fetched again");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_processes_at_once_fetch_each_piece_once() {
    let dir = tempdir("two");
    let bytes = data(8 << 20, 2);
    let origin = FaultyOrigin::start(vec![("/data.bin".into(), bytes.clone())]);
    let t = torrent(&dir, &origin, &bytes, 16);
    let cache = dir.join("cache");
    let spawn = || {
        gtio(&cache)
            .arg("cat")
            .arg(&t)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    assert!(a.stdout == bytes && b.stdout == bytes);
    let sent = origin_bytes(&origin);
    assert!(
        sent as f64 <= bytes.len() as f64 * 1.01,
        "origin sent {sent} bytes for a {} byte dataset read by two processes",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kill_9_during_piece_writes_never_leaves_a_bad_piece() {
    let dir = tempdir("kill");
    let bytes = data(16 << 20, 3);
    let origin = FaultyOrigin::start(vec![("/data.bin".into(), bytes.clone())]);
    // 16 KiB pieces: 1,024 piece writes per full read.
    let t = torrent(&dir, &origin, &bytes, 14);
    let cache = dir.join("cache");
    for round in 0..6u64 {
        let mut child = gtio(&cache)
            .arg("cat")
            .arg(&t)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(40 + 37 * round));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    // Every piece file that exists verifies; no temporaries are left once a
    // store opens again.
    let store = DiskStore::open(&cache, 10 << 30)
        .unwrap()
        .with_check(gtio::engine::verify::sha1_matches);
    let pieces = store.root().join("pieces");
    let mut checked = 0;
    for shard in std::fs::read_dir(&pieces).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            let hex = name.strip_prefix("t-").expect("torrent piece");
            let mut h = [0u8; 20];
            for (i, b) in h.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
            }
            assert!(
                store.load(&StoreKey::Torrent(h)).is_some(),
                "bad piece {name}"
            );
            checked += 1;
        }
    }
    assert_eq!(store.stats().bad_pieces, 0);
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    eprintln!("{checked} pieces on disk after 6 kills, all verified");
    // And a full read is right, fetching only what is missing.
    let before = origin_bytes(&origin);
    assert!(cat(&cache, &t) == bytes);
    let fetched = origin_bytes(&origin) - before;
    assert!(
        fetched <= bytes.len() as u64 - checked as u64 * (16 << 10),
        "refetched stored pieces: {fetched}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_get_leaves_no_partial_file_and_resumes_with_the_rest() {
    let dir = tempdir("get");
    let bytes = data(24 << 20, 4);
    let origin = FaultyOrigin::start(vec![("/data.bin".into(), bytes.clone())]);
    let t = torrent(&dir, &origin, &bytes, 16);
    let out = dir.join("out");
    let xdg = dir.join("xdg");
    let get = || {
        let mut c = Command::new(gtio_bin::gtio_bin());
        c.env_remove("GTIO_CACHE_DIR")
            .env("XDG_CACHE_HOME", &xdg)
            .args(["-q", "get", "-d"])
            .arg(&t)
            .args(["--range", "data.bin:0:25165824", "-o"])
            .arg(&out)
            .stdin(Stdio::null());
        c
    };
    // The first requests are answered, the rest stall half-way, so the get
    // is interrupted with part of the data stored and the output unfinished.
    let mut script = vec![faulty_origin::Fault::Pass; 1];
    script.extend(vec![
        faulty_origin::Fault::StallMidBody(Duration::from_secs(
            60
        ));
        64
    ]);
    origin.script(script);
    let mut child = get().spawn().unwrap();
    // Interrupt (SIGKILL) once a good part is stored.
    let pieces_dir = xdg.join("gtio/gtio-store-v1/pieces");
    let stored = || walk(&pieces_dir).len();
    let t0 = std::time::Instant::now();
    while stored() < 16 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(2));
    }
    // Let the stored count settle (writes in progress), then kill.
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    origin.clear_script();
    let kept = stored() as u64;
    assert!(kept >= 16, "only {kept} pieces stored before the kill");
    let first = origin_bytes(&origin);
    let leftovers: Vec<_> = walk(&out);
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    assert!(
        xdg.join("gtio").exists(),
        "get keeps pieces under $XDG_CACHE_HOME/gtio"
    );

    let st = get().status().unwrap();
    assert!(st.success());
    let files = walk(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(std::fs::read(&files[0]).unwrap() == bytes);
    // What the first run stored is not asked for again.
    let second = origin_bytes(&origin) - first;
    let missing = bytes.len() as u64 - kept * (64 << 10);
    assert!(
        second <= missing,
        "the resumed get asked for {second} bytes; {missing} were missing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_full_disk_degrades_to_memory_only_and_reads_still_succeed() {
    let dir = tempdir("enospc");
    let mnt = dir.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIP: cannot mount a small tmpfs here (needs root) for the ENOSPC case");
        return;
    }
    let bytes = data(4 << 20, 5);
    let origin = FaultyOrigin::start(vec![("/data.bin".into(), bytes.clone())]);
    let t = torrent(&dir, &origin, &bytes, 16);
    let out = gtio(&mnt)
        .args(["cat", "--stats"])
        .arg(&t)
        .output()
        .unwrap();
    let _ = Command::new("umount").arg(&mnt).status();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout == bytes);
    // One warning, in the summary (from the statistics' `store_warning`).
    assert_eq!(err.matches("store warning: ").count(), 1, "stderr: {err}");
    assert!(err.contains("(ENOSPC)"), "stderr: {err}");
    // And a store with room gives none.
    let roomy = dir.join("roomy");
    let out = gtio(&roomy)
        .args(["cat", "--stats"])
        .arg(&t)
        .output()
        .unwrap();
    assert!(out.stdout == bytes);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("store warning"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The piece files under a cache directory's store.
fn piece_files(cache: &Path) -> Vec<PathBuf> {
    let mut v = walk(&cache.join("gtio-store-v1/pieces"));
    v.sort();
    v
}

#[test]
fn corrupted_truncated_and_empty_piece_files_are_refetched_not_served() {
    let dir = tempdir("spoiled");
    let bytes = data(3 << 20, 6);
    let origin = FaultyOrigin::start(vec![("/data.bin".into(), bytes.clone())]);
    let t = torrent(&dir, &origin, &bytes, 16);
    let cache = dir.join("cache");
    assert!(cat(&cache, &t) == bytes);
    let files = piece_files(&cache);
    assert_eq!(files.len(), 48, "every 64 KiB piece stored");
    // One of each kind of damage, on three different pieces.
    let mut b = std::fs::read(&files[3]).unwrap();
    b[1000] ^= 0x10;
    std::fs::write(&files[3], b).unwrap();
    let b = std::fs::read(&files[17]).unwrap();
    std::fs::write(&files[17], &b[..b.len() / 2]).unwrap();
    std::fs::write(&files[30], b"").unwrap();
    let before = origin_bytes(&origin);
    assert!(cat(&cache, &t) == bytes, "a damaged piece was served");
    assert_eq!(
        origin_bytes(&origin) - before,
        3 << 16,
        "exactly the three damaged pieces are fetched again"
    );
    // They were replaced by good copies: a third run fetches nothing.
    let before = origin_bytes(&origin);
    assert!(cat(&cache, &t) == bytes);
    assert_eq!(origin_bytes(&origin), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_store_stays_within_cache_dir_bytes() {
    let dir = tempdir("bound");
    let bytes = data(4 << 20, 7);
    let origin = FaultyOrigin::start(vec![("/data.bin".into(), bytes.clone())]);
    let t = torrent(&dir, &origin, &bytes, 16);
    let cache = dir.join("cache");
    let bound: u64 = 1 << 20;
    for _ in 0..2 {
        let out = gtio(&cache)
            .env("GTIO_CACHE_DIR_BYTES", bound.to_string())
            .arg("cat")
            .arg(&t)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(out.stdout == bytes);
        let used: u64 = piece_files(&cache)
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        // Never over by more than one piece (64 KiB and its trailer).
        assert!(
            used <= bound + (64 << 10) + 40,
            "{used} bytes stored for a bound of {bound}"
        );
        assert!(used >= bound / 2, "the store kept almost nothing: {used}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_object_replaced_at_the_origin_is_not_served_from_the_store() {
    let dir = tempdir("replaced");
    let old = data(1 << 20, 8);
    let new = data(1 << 20, 9);
    let origin = FaultyOrigin::start(vec![("/obj.bin".into(), old.clone())]);
    let url = origin.url("/obj.bin");
    let cache = dir.join("cache");
    let read = || {
        let out = gtio(&cache).arg("cat").arg(&url).output().unwrap();
        assert!(out.status.success());
        out.stdout
    };
    assert!(read() == old);
    let stored = piece_files(&cache);
    assert!(!stored.is_empty(), "the object's blocks were not stored");
    assert!(stored
        .iter()
        .all(|f| f.file_name().unwrap().to_str().unwrap().starts_with("o-")));
    // Served from the store while the object is unchanged...
    let before = origin_bytes(&origin);
    assert!(read() == old);
    assert_eq!(
        origin_bytes(&origin),
        before,
        "an unchanged object was fetched again"
    );
    // ...and never once it changed (same size, new ETag and Last-Modified).
    origin.set_object("/obj.bin", new.clone());
    let before = origin_bytes(&origin);
    assert!(read() == new, "old pieces served for a replaced object");
    assert!(origin_bytes(&origin) - before >= new.len() as u64);
    let _ = std::fs::remove_dir_all(&dir);
}
