//! The swarm against real BitTorrent parts on 127.0.0.1: opentracker and
//! libtorrent (python3-libtorrent) seeders, torrents made by mktorrent and
//! by libtorrent. Every byte read is compared with the source files.

mod support;
#[path = "support/swarm_peers.rs"]
mod swarm_peers;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gtio::dataset::metainfo::{self, Metainfo};
use gtio::swarm::{tracker, Settings, Swarm, TorrentInfo};
use support::nginx::{tempdir, test_data};
use swarm_peers::*;

fn info_of(m: &Metainfo) -> TorrentInfo {
    TorrentInfo {
        info_hash: m.info_hash,
        piece_len: m.piece_length,
        total_len: m.total_length,
        hashes: Arc::new(m.piece_hashes.clone()),
    }
}

/// Every piece of the torrent through `fetch`, laid end to end.
fn read_all(s: &Swarm, m: &Metainfo, within: Duration) -> Vec<u8> {
    let mut out = vec![0u8; m.total_length as usize];
    let mut got = 0;
    let n = m.piece_hashes.len() as u32;
    s.fetch(
        0..n,
        &mut |p, r| {
            let data = r.unwrap_or_else(|e| panic!("piece {p}: {e}"));
            let at = (u64::from(p) * m.piece_length) as usize;
            out[at..at + data.len()].copy_from_slice(&data);
            got += 1;
        },
        Instant::now() + within,
    )
    .unwrap_or_else(|f| panic!("fetch: {} (errors: {:?})", f.error, s.recent_errors()));
    assert_eq!(got, n);
    out
}

fn make_single(
    dir: &Path,
    len: usize,
    seed: u64,
    tiers: &[&str],
    log2: u32,
) -> (Vec<u8>, Metainfo, std::path::PathBuf) {
    let data = test_data(len, seed);
    let src = dir.join("seed");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.bin"), &data).unwrap();
    let t = dir.join("data.torrent");
    mktorrent(&src.join("data.bin"), &t, tiers, log2);
    let m = metainfo::parse(&read(&t)).unwrap();
    (data, m, t)
}

#[test]
fn libtorrent_seed_through_opentracker_http() {
    let dir = tempdir();
    // The tracker must know the info-hash before the torrent exists, so
    // make it twice: once to learn the hash (the announce URL is outside
    // `info`, so the hash does not depend on the tracker's port).
    let (_, m0, _) = make_single(
        &dir,
        3 << 20 | 12345,
        1,
        &["http://127.0.0.1:1/announce"],
        16,
    );
    let ot = Opentracker::start(&[m0.info_hash]);
    std::fs::remove_file(dir.join("data.torrent")).unwrap();
    let (data, m, t) = make_single(&dir, 3 << 20 | 12345, 1, &[&ot.http_announce()], 16);
    assert_eq!(m.info_hash, m0.info_hash);
    let _seed = LtSeed::start(&t, &dir.join("seed"));
    ot.wait_for(&m.info_hash, (1, 0), Duration::from_secs(15));

    let tiers = tracker::tiers_from_metainfo(&read(&t));
    let s = Swarm::join(info_of(&m), &tiers, &Settings::default()).unwrap();
    let got = read_all(&s, &m, Duration::from_secs(30));
    assert!(got == data, "bytes differ from the seeded file");
    // Our `started` made us a leecher on the tracker...
    ot.wait_for(&m.info_hash, (1, 1), Duration::from_secs(5));
    let st = s.stats();
    assert!(st.bytes_peer >= data.len() as u64, "{st:?}");
    assert_eq!(st.bytes_hash_failed, 0);
    // ...and dropping the swarm sends `stopped`, within its bound.
    let t0 = Instant::now();
    drop(s);
    assert!(t0.elapsed() < Duration::from_secs(3));
    ot.wait_for(&m.info_hash, (1, 0), Duration::from_secs(5));
}
