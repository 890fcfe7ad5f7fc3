//! A torrent as a dataset: its files laid end to end, fetched piece by piece
//! from BEP 19 web seeds and checked against the metainfo's SHA-1s before
//! anyone sees a byte.
//!
//! Each web seed is a [`PieceSource`] (the kind a peer will be beside it),
//! and the torrent's pieces come from an engine [`SourceSet`] of them: it
//! picks a seed per run by measured speed and load, verifies every piece,
//! drops a seed that serves a bad piece while another remains (libtorrent's
//! rule; the last seed loses only the pieces it got wrong, which fail with
//! `EIO` naming them), cools down a busy or failing one (REFERENCES: a 503
//! is no reason to drop a seed) and asks a second seed for pieces the first
//! is slow to send (the endgame).
//!
//! When the torrent names trackers and `peers` is on (`GTIO_PEERS`), its
//! BitTorrent swarm (`crate::swarm`) is one more source in the set, as in
//! anacrolix/torrent where a web seed is one kind of peer: the set gives a
//! run to whichever is faster, and hedges a slow one with the other.
//!
//! A run of pieces is one stream range; [`webseed::plan`] cuts it into one
//! request per file, so a run inside one file is one range request and a
//! piece spanning files takes several. Bytes are read straight into piece
//! buffers (pad bytes are zeroed), and each piece is handed on as soon as
//! its last byte arrives.

use std::io::Read;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metainfo::Metainfo;
use super::object::body_fault;
use super::webseed::{self, SeedRequest};
use super::{FileEntry, Layout};
use crate::buffers::PieceBuf;
use crate::config::SwarmSettings;
use crate::engine::sources::{PieceSource, SourceSet};
use crate::engine::stats::SourceKind;
use crate::engine::{Piece, PieceKey, PieceProvider};
use crate::error::redact_url;
use crate::source::http::{get_range, HttpClient, Secret};
use crate::source::{file::FileObject, Fault, RangeSource};
use crate::swarm::{tracker, Swarm, TorrentInfo};
use crate::{Error, Result};

/// Ask for at most this much per request (libtorrent's web seed cap): large
/// enough that seeds see few requests (WebTorrent #650), small enough that a
/// failed transfer is retried soon.
const MAX_REQUEST_BYTES: u64 = 16 << 20;

/// Where the metainfo came from decides what its web seeds may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Given by the caller (a buffer, a local file): `file://` seeds allowed.
    Local,
    /// Downloaded: `file://` seeds refused, so a remote torrent can never
    /// read local files.
    Remote,
}

/// One BEP 19 web seed as a source of the torrent's pieces.
struct WebSeed {
    url: String,
    /// Whether the credential may be sent to this seed.
    send_cred: bool,
    meta: Arc<Metainfo>,
    layout: Layout,
    client: Arc<HttpClient>,
    cred: Option<Secret>,
}

pub struct TorrentProvider {
    layout: Layout,
    meta: Arc<Metainfo>,
    sources: SourceSet,
    /// The torrent's swarm, while this dataset is open (the last close of
    /// a torrent sends the trackers `stopped`).
    swarm: Option<Arc<Swarm>>,
}

/// The swarm as a piece source.
struct SwarmSource {
    swarm: Arc<Swarm>,
    /// How long one run may wait on peers: short beside web seeds (the set
    /// gives the rest to a seed), long when peers are all there is (the
    /// first run waits for the announce, connects and an unchoke).
    patience: Duration,
}

/// With web seeds beside the swarm, peers get this long for a run.
const PEER_TRY: Duration = Duration::from_secs(3);
/// With peers the only source, a run waits this long: Transmission unchokes
/// at its rechoke, 2-10 s after we connect (docs/references.md).
const PEER_ONLY_WAIT: Duration = Duration::from_secs(30);

impl PieceSource for SwarmSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Peer
    }

    fn label(&self) -> String {
        "the BitTorrent swarm".into()
    }

    fn demand(&self, piece: u32) {
        self.swarm.demand(piece);
    }

    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Piece),
    ) -> std::result::Result<(), Fault> {
        self.swarm.fetch(
            pieces,
            &mut |p, res| {
                // A piece the swarm gave up on is left out: the set asks
                // another source (or fails it after the retries).
                if let Ok(piece) = res {
                    deliver(p, piece);
                }
            },
            Instant::now() + self.patience,
        )
    }
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

    /// [`TorrentProvider::new`], and when `swarm_settings.peers` is on and
    /// the torrent names trackers (`tiers`, from `announce`/`announce-list`),
    /// its swarm is joined too: peers and web seeds serve it together.
    pub fn with_swarm(
        meta: Metainfo,
        origin: Origin,
        client: Arc<HttpClient>,
        cred: Option<Secret>,
        cred_host: Option<&str>,
        tiers: &[Vec<String>],
        swarm_settings: &SwarmSettings,
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
            seeds.push((url.clone(), send_cred));
        }
        let has_trackers = tracker::usable(tiers);
        if seeds.is_empty() && !(has_trackers && swarm_settings.peers) {
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
        let swarm = if has_trackers && swarm_settings.peers {
            let info = TorrentInfo {
                info_hash: meta.info_hash,
                piece_len: meta.piece_length,
                total_len: meta.total_length,
                hashes: Arc::new(meta.piece_hashes.clone()),
            };
            let s = crate::swarm::Settings {
                max_peers: swarm_settings.max_peers as usize,
            };
            Some(Swarm::shared(info, tiers, &s)?)
        } else {
            None
        };
        let seed_count = seeds.len();
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
        let meta = Arc::new(meta);
        let mut sources: Vec<Arc<dyn PieceSource>> = seeds
            .into_iter()
            .map(|(url, send_cred)| {
                Arc::new(WebSeed {
                    url,
                    send_cred,
                    meta: Arc::clone(&meta),
                    layout: layout.clone(),
                    client: Arc::clone(&client),
                    cred: cred.clone(),
                }) as Arc<dyn PieceSource>
            })
            .collect();
        if let Some(swarm) = &swarm {
            sources.push(Arc::new(SwarmSource {
                swarm: Arc::clone(swarm),
                patience: if seed_count == 0 {
                    PEER_ONLY_WAIT
                } else {
                    PEER_TRY
                },
            }));
        }
        Ok(TorrentProvider {
            layout,
            meta,
            sources: SourceSet::new(sources),
            swarm,
        })
    }

    /// The swarm's counters, when peers are on for this torrent.
    pub fn swarm_stats(&self) -> Option<crate::swarm::SwarmStats> {
        self.swarm.as_ref().map(|s| s.stats())
    }
}

impl WebSeed {
    fn open_request(
        &self,
        req: &SeedRequest,
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
        let cred = if self.send_cred {
            self.cred.as_ref()
        } else {
            None
        };
        // A seed may hold a newer, longer file (archive.org): do not pin the
        // total; the SHA-1 check is what guarantees the bytes.
        let body = get_range(&self.client, &req.url, cred, range, None, None)?;
        Ok(Box::new(body))
    }
}

impl PieceSource for WebSeed {
    fn kind(&self) -> SourceKind {
        SourceKind::Webseed
    }

    fn label(&self) -> String {
        format!("web seed {}", redact_url(&self.url))
    }

    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Piece),
    ) -> std::result::Result<(), Fault> {
        if pieces.is_empty() {
            return Ok(());
        }
        let bytes = self.layout.piece_range(pieces.start).start
            ..self.layout.piece_range(pieces.end - 1).end;
        let mut asm = PieceAssembler::new(&self.layout, pieces.start);
        for req in webseed::plan(&self.meta, &self.url, bytes.clone()) {
            asm.skip_to(req.stream_offset, deliver);
            let mut body = self.open_request(&req)?;
            let range = req.file_offset..req.file_offset + req.len;
            asm.fill(&mut body, req.len, deliver)
                .map_err(|e| body_fault(e, &range))?;
        }
        asm.skip_to(bytes.end, deliver);
        Ok(())
    }
}

/// Fills piece buffers from a stream of bytes, handing each piece on when
/// its last byte is in (the source set verifies it).
struct PieceAssembler<'a> {
    layout: &'a Layout,
    pos: u64,
    piece: u32,
    buf: PieceBuf,
}

impl PieceAssembler<'_> {
    fn new(layout: &Layout, first: u32) -> PieceAssembler<'_> {
        let r = layout.piece_range(first);
        PieceAssembler {
            layout,
            pos: r.start,
            piece: first,
            buf: PieceBuf::reuse((r.end - r.start) as usize),
        }
    }

    fn piece_end(&self) -> u64 {
        self.layout.piece_range(self.piece).end
    }

    /// Skip to `to` (pad bytes: zeros), finishing pieces on the way.
    fn skip_to(&mut self, to: u64, deliver: &mut dyn FnMut(u32, Piece)) {
        while self.pos < to {
            let step = (to.min(self.piece_end())) - self.pos;
            // Recycled buffers hold old bytes; pad bytes are zeros.
            let at = (self.pos - self.layout.piece_range(self.piece).start) as usize;
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
        deliver: &mut dyn FnMut(u32, Piece),
    ) -> std::io::Result<()> {
        let mut left = len;
        while left > 0 {
            let start = self.layout.piece_range(self.piece).start;
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

    fn finish_piece(&mut self, deliver: &mut dyn FnMut(u32, Piece)) {
        let data = std::mem::replace(&mut self.buf, PieceBuf::from(Vec::new()));
        deliver(self.piece, Arc::new(data));
        self.piece += 1;
        if self.piece < self.layout.piece_count() {
            let r = self.layout.piece_range(self.piece);
            self.buf = PieceBuf::reuse((r.end - r.start) as usize);
        }
    }
}

impl PieceProvider for TorrentProvider {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn peers_connected(&self) -> u64 {
        self.swarm
            .as_ref()
            .map_or(0, |s| s.stats().peers_connected as u64)
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

    fn take_hash_failed_bytes(&self) -> u64 {
        // The swarm verifies and re-fetches its own pieces: its failures
        // never reach the source set.
        let swarm = self.swarm.as_ref().map_or(0, |s| s.take_hash_failed());
        self.sources.take_hash_failed_bytes() + swarm
    }

    fn take_redundant_bytes(&self) -> u64 {
        // Blocks the swarm got twice (its endgame) besides the set's second
        // copies of whole pieces.
        let swarm = self.swarm.as_ref().map_or(0, |s| s.take_redundant());
        self.sources.take_redundant_bytes() + swarm
    }

    fn demand(&self, piece: u32) {
        self.sources.demand(piece);
    }

    fn fetch(
        &self,
        pieces: Range<u32>,
        deliver: &mut dyn FnMut(u32, Result<Piece>),
    ) -> std::result::Result<(), Fault> {
        if pieces.is_empty() {
            return Ok(());
        }
        self.sources.fetch(pieces, &self.meta.piece_hashes, deliver)
    }
}
