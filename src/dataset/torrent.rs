//! A torrent as a dataset: its files laid end to end, fetched piece by piece
//! from BEP 19 web seeds and BitTorrent peers (the swarm, `crate::swarm`,
//! when the torrent names trackers and `GTIO_PEERS` is not 0) and checked
//! against the metainfo's SHA-1s before anyone sees a byte. How jobs are
//! split between peers and seeds: `TorrentProvider::fetch_mixed`.
//!
//! A job's run of pieces is one stream range; [`webseed::plan`] cuts it into
//! one request per file, so a run inside one file is one range request and a
//! piece spanning files takes several. Bytes are read straight into piece
//! buffers (pad bytes are zeroed), and each piece is hashed and delivered as
//! soon as its last byte arrives.
//!
//! Seeds are used round-robin, so parallel jobs spread over them. A seed that
//! serves a piece whose hash does not match is banned for this dataset while
//! another seed remains, and the piece is retried elsewhere (libtorrent's
//! rule). The last seed is never banned: it loses only the piece it got
//! wrong, which fails with `EIO` naming it, while the rest stay readable. A
//! busy or failing seed is not banned (REFERENCES: a 503 is no reason to
//! drop a seed); it is skipped until its backoff expires.

use std::collections::HashSet;
use std::io::Read;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::metainfo::Metainfo;
use super::object::body_fault;
use super::{FileEntry, Layout};
use crate::engine::buffers::PieceBuf;
use crate::engine::{Piece, PieceKey, PieceProvider};
use crate::error::redact_url;
use crate::source::http::{get_range, HttpClient, Secret};
use crate::source::webseed::{self, SeedRequest};
use crate::source::{file::FileObject, Fault, RangeSource};
use crate::{Error, Result};
// --- swarm (issue 11) ---
use crate::config::SwarmSettings;
use crate::swarm::{tracker, Swarm, TorrentInfo};

/// With web seeds to fall back on, peers get this long for a job before
/// the seeds take over the pieces still missing.
const PEER_TRY: Duration = Duration::from_secs(3);
/// With peers the only source, a job waits this long: the first one may
/// wait for the announce, connects and an unchoke (Transmission unchokes
/// at its rechoke, 2–10 s later: REFERENCES.md).
const PEER_ONLY_WAIT: Duration = Duration::from_secs(30);
// --- end swarm ---

/// Ask for at most this much per request (libtorrent's web seed cap): large
/// enough that seeds see few requests (WebTorrent #650), small enough that a
/// failed transfer is retried soon.
const MAX_REQUEST_BYTES: u64 = 16 << 20;

/// How long a seed that failed (reset, 5xx, timeout) is skipped while other
/// seeds are available.
const SEED_COOLDOWN: Duration = Duration::from_secs(5);

/// Where the metainfo came from decides what its web seeds may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Given by the caller (a buffer, a local file): `file://` seeds allowed.
    Local,
    /// Downloaded: `file://` seeds refused, so a remote torrent can never
    /// read local files.
    Remote,
}

struct Seed {
    url: String,
    /// Whether the credential may be sent to this seed.
    send_cred: bool,
    banned: bool,
    cooldown_until: Option<Instant>,
}

pub struct TorrentProvider {
    // --- swarm (issue 11): peers beside the web seeds ---
    swarm: Option<Arc<Swarm>>,
    /// Alternates jobs between peers and web seeds when both can serve.
    turn: AtomicUsize,
    // --- end swarm ---
    layout: Layout,
    meta: Metainfo,
    client: Arc<HttpClient>,
    cred: Option<Secret>,
    seeds: Mutex<Vec<Seed>>,
    next_seed: AtomicUsize,
    /// (seed, piece) pairs known bad while the seed could not be banned.
    bad: Mutex<HashSet<(usize, u32)>>,
}

impl TorrentProvider {
    /// `cred_host`: the host the credential was given for ("host:port");
    /// `None` sends it to every seed (a metainfo the caller supplied).
    pub fn new(
        meta: Metainfo,
        origin: Origin,
        client: Arc<HttpClient>,
        cred: Option<Secret>,
        cred_host: Option<&str>,
    ) -> Result<TorrentProvider> {
        let off = SwarmSettings {
            peers: false,
            ..SwarmSettings::default()
        };
        TorrentProvider::with_swarm(meta, origin, client, cred, cred_host, &[], &off)
    }

    /// [`TorrentProvider::new`], and when `settings.peers` is on and the
    /// torrent names trackers (`tiers`, from `announce`/`announce-list`),
    /// its swarm is joined too: peers and web seeds serve it together.
    pub fn with_swarm(
        meta: Metainfo,
        origin: Origin,
        client: Arc<HttpClient>,
        cred: Option<Secret>,
        cred_host: Option<&str>,
        tiers: &[Vec<String>],
        settings: &SwarmSettings,
    ) -> Result<TorrentProvider> {
        let mut seeds = Vec::new();
        for url in &meta.url_list {
            let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            match scheme.as_deref() {
                Some("http") | Some("https") => {}
                Some("file") if origin == Origin::Local => {}
                // Unknown schemes and, from a remote metainfo, file:// are
                // skipped: other seeds may still serve the torrent.
                _ => continue,
            }
            let send_cred = match cred_host {
                None => true,
                Some(h) => url::Url::parse(url).is_ok_and(|u| {
                    format!(
                        "{}:{}",
                        u.host_str().unwrap_or(""),
                        u.port_or_known_default().unwrap_or(0)
                    ) == h
                }),
            };
            seeds.push(Seed {
                url: url.clone(),
                send_cred,
                banned: false,
                cooldown_until: None,
            });
        }
        // --- swarm (issue 11) ---
        let has_trackers = tracker::usable(tiers);
        if seeds.is_empty() && !(has_trackers && settings.peers) {
            let why = match (meta.url_list.is_empty(), has_trackers) {
                (true, false) => {
                    "the torrent has neither web seeds (url-list) nor usable trackers \
                     (announce, announce-list: http:// or udp://): nothing to read it from"
                }
                (true, true) => {
                    "the torrent has no web seeds (url-list) and peers are off (GTIO_PEERS=0)"
                }
                (false, _) => {
                    "none of the torrent's web seeds is usable (a downloaded torrent may not \
                     name file:// seeds), and it has no trackers to find peers with"
                }
            };
            return Err(Error::new(libc::EINVAL, why));
        }
        let swarm = if has_trackers && settings.peers {
            let info = TorrentInfo {
                info_hash: meta.info_hash,
                piece_len: meta.piece_length,
                total_len: meta.total_length,
                hashes: Arc::new(meta.piece_hashes.clone()),
            };
            let s = crate::swarm::Settings {
                max_peers: settings.max_peers as usize,
            };
            Some(Swarm::shared(info, tiers, &s)?)
        } else {
            None
        };
        // --- end swarm ---
        let files = meta
            .visible_files()
            .map(|f| FileEntry {
                name: f.path.to_owned(),
                offset: f.offset,
                size: f.length,
                symlink: f.symlink.map(str::to_owned),
            })
            .collect();
        let layout = Layout::new(meta.total_length, meta.piece_length, files)?;
        Ok(TorrentProvider {
            swarm,
            turn: AtomicUsize::new(0),
            layout,
            meta,
            client,
            cred,
            seeds: Mutex::new(seeds),
            next_seed: AtomicUsize::new(0),
            bad: Mutex::new(HashSet::new()),
        })
    }

    /// Pick a seed for `pieces`: round-robin over seeds that are not banned,
    /// preferring ones not cooling down and not known bad for these pieces.
    fn pick_seed(&self, pieces: &Range<u32>) -> Option<(usize, String, bool)> {
        let seeds = self.seeds.lock().unwrap_or_else(|e| e.into_inner());
        let bad = self.bad.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let n = seeds.len();
        let start = self.next_seed.fetch_add(1, Ordering::Relaxed);
        let mut fallback = None;
        // A seed known bad for some of these pieces is still the right one
        // for the others (it is the last seed: it was not banned). Fetching
        // from it delivers the good pieces and fails only the bad ones, each
        // with its own "piece N failed its SHA-1 check" error, instead of
        // failing the whole run.
        let mut bad_fallback = None;
        for k in 0..n {
            let i = (start + k) % n;
            let s = &seeds[i];
            if s.banned {
                continue;
            }
            if pieces.clone().any(|p| bad.contains(&(i, p))) {
                bad_fallback.get_or_insert(i);
                continue;
            }
            if s.cooldown_until.is_some_and(|t| t > now) {
                fallback.get_or_insert(i);
                continue;
            }
            return Some((i, s.url.clone(), s.send_cred));
        }
        let i = fallback.or(bad_fallback)?;
        Some((i, seeds[i].url.clone(), seeds[i].send_cred))
    }

    fn live_seeds(&self) -> usize {
        let seeds = self.seeds.lock().unwrap_or_else(|e| e.into_inner());
        seeds.iter().filter(|s| !s.banned).count()
    }

    fn cool_down(&self, seed: usize) {
        let mut seeds = self.seeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = seeds.get_mut(seed) {
            s.cooldown_until = Some(Instant::now() + SEED_COOLDOWN);
        }
    }

    /// A hash mismatch from `seed` on `piece`: ban the seed if another one
    /// is left (true), else remember the bad pair (false).
    fn on_bad_piece(&self, seed: usize, piece: u32) -> bool {
        let mut seeds = self.seeds.lock().unwrap_or_else(|e| e.into_inner());
        let others = seeds
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != seed && !s.banned)
            .count();
        if others > 0 {
            if let Some(s) = seeds.get_mut(seed) {
                s.banned = true;
            }
            return true;
        }
        drop(seeds);
        self.bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((seed, piece));
        false
    }

    fn open_request(
        &self,
        req: &SeedRequest,
        send_cred: bool,
    ) -> std::result::Result<Box<dyn Read + Send + '_>, Fault> {
        let range = req.file_offset..req.file_offset + req.len;
        if req.url.starts_with("file:") {
            let obj = FileObject::open(&req.url).map_err(Fault::permanent)?;
            let mut buf = Vec::new();
            obj.open_range(range)?
                .read_to_end(&mut buf)
                .map_err(|e| Fault::permanent(e.into()))?;
            return Ok(Box::new(std::io::Cursor::new(buf)));
        }
        let cred = if send_cred { self.cred.as_ref() } else { None };
        // A seed may hold a newer, longer file (archive.org): do not pin the
        // total; the SHA-1 check is what guarantees the bytes.
        let body = get_range(&self.client, &req.url, cred, range, None, None)?;
        Ok(Box::new(body))
    }
}

/// Fills piece buffers from a stream of bytes, hashing and delivering each
/// piece when its last byte is in.
struct PieceAssembler<'a> {
    provider: &'a TorrentProvider,
    seed: usize,
    pos: u64,
    piece: u32,
    buf: PieceBuf,
    /// The seed served a bad piece and was banned: stop using it.
    abandon: Option<Fault>,
}

impl PieceAssembler<'_> {
    fn new(provider: &TorrentProvider, seed: usize, first: u32) -> PieceAssembler<'_> {
        let r = provider.layout.piece_range(first);
        PieceAssembler {
            provider,
            seed,
            pos: r.start,
            piece: first,
            buf: PieceBuf::reuse((r.end - r.start) as usize),
            abandon: None,
        }
    }

    fn piece_end(&self) -> u64 {
        self.provider.layout.piece_range(self.piece).end
    }

    /// Skip to `to` (pad bytes: zeros), finishing pieces on the way.
    fn skip_to(&mut self, to: u64, deliver: &mut dyn FnMut(u32, Result<Piece>)) {
        while self.pos < to && self.abandon.is_none() {
            let step = (to.min(self.piece_end())) - self.pos;
            // Recycled buffers hold old bytes; pad bytes are zeros.
            let at = (self.pos - self.provider.layout.piece_range(self.piece).start) as usize;
            self.buf[at..at + step as usize].fill(0);
            self.pos += step;
            if self.pos == self.piece_end() {
                self.finish_piece(deliver);
            }
        }
    }

    /// Read `len` bytes from `body` into the pieces.
    fn fill(
        &mut self,
        body: &mut dyn Read,
        len: u64,
        deliver: &mut dyn FnMut(u32, Result<Piece>),
    ) -> std::io::Result<()> {
        let mut left = len;
        while left > 0 && self.abandon.is_none() {
            let start = self.provider.layout.piece_range(self.piece).start;
            let n = left.min(self.piece_end() - self.pos);
            let at = (self.pos - start) as usize;
            body.read_exact(&mut self.buf[at..at + n as usize])?;
            self.pos += n;
            left -= n;
            if self.pos == self.piece_end() {
                self.finish_piece(deliver);
            }
        }
        Ok(())
    }

    fn finish_piece(&mut self, deliver: &mut dyn FnMut(u32, Result<Piece>)) {
        let piece = self.piece;
        let want = self.provider.meta.piece_hashes.get(piece as usize);
        let data = std::mem::replace(&mut self.buf, PieceBuf::from(Vec::new()));
        let ok = want.is_some_and(|w| Sha1::digest(&data[..]).as_slice() == w.as_slice());
        if ok {
            deliver(piece, Ok(Arc::new(data)));
        } else if self.provider.on_bad_piece(self.seed, piece) {
            self.abandon = Some(Fault::transient(Error::io(format!(
                "piece {piece} failed its SHA-1 check; web seed dropped, retrying another"
            ))));
            return;
        } else {
            deliver(
                piece,
                Err(Error::io(format!(
                    "piece {piece} failed its SHA-1 check on every web seed \
                     (the seeds serve different data than the torrent describes)"
                ))),
            );
        }
        self.piece += 1;
        if self.piece < self.provider.layout.piece_count() {
            let r = self.provider.layout.piece_range(self.piece);
            self.buf = PieceBuf::reuse((r.end - r.start) as usize);
        }
    }
}

impl PieceProvider for TorrentProvider {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn key(&self, piece: u32) -> PieceKey {
        match self.meta.piece_hashes.get(piece as usize) {
            Some(h) => PieceKey::Sha1(*h),
            // Unreachable for a parsed metainfo (one hash per piece); an
            // all-zero key at least never matches real data's hash by design.
            None => PieceKey::Sha1([0; 20]),
        }
    }

    fn max_run(&self) -> u32 {
        (MAX_REQUEST_BYTES / self.layout.piece_len()).max(1) as u32
    }

    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Result<Piece>),
    ) -> std::result::Result<(), Fault> {
        self.fetch_mixed(pieces, deliver)
    }
}

// --- swarm (issue 11) ---
impl TorrentProvider {
    /// The swarm's counters, when peers are on for this torrent.
    pub fn swarm_stats(&self) -> Option<crate::swarm::SwarmStats> {
        self.swarm.as_ref().map(|s| s.stats())
    }

    /// Peers and web seeds together, the simplest mix that keeps reads from
    /// waiting on a slow swarm: with no usable web seed every job goes to
    /// peers; with both, jobs alternate between them while some peer has
    /// unchoked us, and go to the seeds otherwise. A job given to peers that
    /// they do not finish in [`PEER_TRY`] has its missing pieces fetched
    /// from the seeds.
    fn fetch_mixed(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Result<Piece>),
    ) -> std::result::Result<(), Fault> {
        let Some(swarm) = &self.swarm else {
            return self.fetch_webseeds(pieces, deliver);
        };
        if pieces.is_empty() {
            return Ok(());
        }
        if self.live_seeds() == 0 {
            return swarm.fetch(pieces, deliver, Instant::now() + PEER_ONLY_WAIT);
        }
        let peers_ready = swarm.stats().peers_unchoked > 0;
        if !peers_ready || self.turn.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
            return self.fetch_webseeds(pieces, deliver);
        }
        let mut got = vec![false; pieces.len()];
        let start = pieces.start;
        let r = swarm.fetch(
            pieces.clone(),
            &mut |p, res| {
                if let Some(g) = got.get_mut((p - start) as usize) {
                    *g = true;
                }
                deliver(p, res)
            },
            Instant::now() + PEER_TRY,
        );
        if r.is_ok() {
            return Ok(());
        }
        // The runs peers left for the web seeds.
        let mut i = 0;
        while i < got.len() {
            if got[i] {
                i += 1;
                continue;
            }
            let j = (i..got.len()).find(|&k| got[k]).unwrap_or(got.len());
            self.fetch_webseeds(start + i as u32..start + j as u32, deliver)?;
            i = j;
        }
        Ok(())
    }
}
// --- end swarm ---

impl TorrentProvider {
    fn fetch_webseeds(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Result<Piece>),
    ) -> std::result::Result<(), Fault> {
        if pieces.is_empty() {
            return Ok(());
        }
        let Some((seed, seed_url, send_cred)) = self.pick_seed(&pieces) else {
            return Err(Fault::permanent(Error::io(format!(
                "pieces {}-{}: no usable web seed left (all failed their SHA-1 checks)",
                pieces.start,
                pieces.end - 1
            ))));
        };
        let bytes = self.layout.piece_range(pieces.start).start
            ..self.layout.piece_range(pieces.end - 1).end;
        let mut asm = PieceAssembler::new(self, seed, pieces.start);
        for req in webseed::plan(&self.meta, &seed_url, bytes.clone()) {
            asm.skip_to(req.stream_offset, deliver);
            if let Some(f) = asm.abandon.take() {
                return Err(f);
            }
            let mut body = match self.open_request(&req, send_cred) {
                Ok(b) => b,
                Err(f) => {
                    if f.transient && self.live_seeds() > 1 {
                        self.cool_down(seed);
                    }
                    return Err(with_seed(f, &seed_url));
                }
            };
            let range = req.file_offset..req.file_offset + req.len;
            if let Err(e) = asm.fill(&mut body, req.len, deliver) {
                if self.live_seeds() > 1 {
                    self.cool_down(seed);
                }
                return Err(with_seed(body_fault(e, &range), &seed_url));
            }
            if let Some(f) = asm.abandon.take() {
                return Err(f);
            }
        }
        asm.skip_to(bytes.end, deliver);
        match asm.abandon.take() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

fn with_seed(f: Fault, seed: &str) -> Fault {
    Fault {
        error: f.error.context(format!("web seed {}", redact_url(seed))),
        ..f
    }
}
