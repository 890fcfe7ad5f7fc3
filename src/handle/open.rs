//! Opening datasets: what a URI or a buffer turns into.
//!
//! A URI whose path ends in `.torrent`, or an HTTP object served as
//! `application/x-bittorrent`, is a torrent: its metainfo is fetched and the
//! dataset is the torrent's files. Anything else is a plain object.
//! A downloaded metainfo is [`Origin::Remote`]: it may not name `file://`
//! web seeds, and the credential goes only to seeds on the host it was
//! given for.

use std::io::Read;
use std::sync::Arc;

use super::Dataset;
use crate::buffers::PieceBuf;
use crate::dataset::metainfo::{self, MAX_METAINFO_BYTES};
use crate::dataset::object::{uri_basename, ObjectProvider};
use crate::dataset::torrent::{Origin, TorrentProvider};
use crate::engine::stats::SourceKind;
use crate::error::redact_url;
use crate::runtime;
use crate::source::file::{path_of_file_uri, FileObject};
use crate::source::http::{HttpObject, HttpRequest, Secret};
use crate::source::RangeSource;
use crate::{Error, Result};

impl Dataset {
    /// Open a dataset by URI (`http://`, `https://`, `file://`): a torrent
    /// when the path ends in `.torrent` or the server says
    /// `application/x-bittorrent`, else a plain object. `cred` (else the
    /// `cred` setting, `GTIO_CRED`) is sent as
    /// `Authorization` to the URI's host only.
    pub fn open(uri: &str, cred: Option<&str>) -> Result<Dataset> {
        let rt = runtime::get()?;
        let secret = cred.map(Secret::new).or_else(default_cred);
        let scheme = uri
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::invalid(
                    "not a URI: expected http://, https:// or file:// followed by a path",
                )
            })?;
        let path = uri.split(['?', '#']).next().unwrap_or("");
        let named_torrent = path.to_ascii_lowercase().ends_with(".torrent");
        let block = rt.config().block_size;
        match scheme.as_str() {
            "file" => {
                if named_torrent {
                    let bytes = read_local_metainfo(uri)?;
                    return Dataset::from_metainfo(&bytes, Origin::Local, secret, None);
                }
                let obj = FileObject::open(uri)?;
                Dataset::from_object(Box::new(obj), uri, block, SourceKind::File)
            }
            "http" | "https" => {
                // One deadline for the whole open (open_timeout_ms): HEAD,
                // probe and metainfo download together.
                let deadline = rt.http().open_deadline();
                if named_torrent {
                    return Dataset::open_remote_torrent(uri, secret, deadline);
                }
                // With a persistent store, the first block of an object
                // opened before is on disk: one byte then, so that a reopen
                // does not send it again (docs/http.md, "Opening an object").
                let first_len = match rt.config().cache_dir {
                    Some(_) => 1,
                    None => u64::from(block),
                };
                let (obj, first) =
                    HttpObject::open(rt.http(), uri, secret.as_ref(), Some(deadline), first_len)?;
                if obj.is_torrent() {
                    // A metainfo of at most a block came whole with the open.
                    if let Some(bytes) = first.filter(|f| f.len() as u64 == obj.size()) {
                        return Dataset::from_remote_metainfo(uri, &bytes, secret);
                    }
                    return Dataset::open_remote_torrent(uri, secret, deadline);
                }
                let ds = Dataset::from_object(Box::new(obj), uri, block, SourceKind::Http)?;
                if let Some(first) = first {
                    ds.seed_first_block(first);
                }
                Ok(ds)
            }
            other => Err(Error::invalid(format!(
                "unsupported URI scheme {other:?}: use http://, https:// or file://"
            ))),
        }
    }

    /// Open a torrent from its metainfo bytes (copied: the caller may free
    /// the buffer at once). `cred` goes to every web seed it names.
    pub fn open_gto(metainfo: &[u8], cred: Option<&str>) -> Result<Dataset> {
        runtime::get()?;
        let cred = cred.map(Secret::new).or_else(default_cred);
        Dataset::from_metainfo(metainfo, Origin::Local, cred, None)
    }

    fn from_object(
        source: Box<dyn RangeSource>,
        uri: &str,
        block: u32,
        kind: SourceKind,
    ) -> Result<Dataset> {
        let rt = runtime::get()?;
        let name = uri_basename(uri);
        let mtime = source.mtime();
        let provider = ObjectProvider::new(source, name.clone(), block)?;
        let mut ds = Dataset::new(rt, Arc::new(provider), kind);
        ds.name = name;
        ds.mtime = mtime;
        Ok(ds)
    }

    /// The first block, read by the open's request: cached as piece 0 when
    /// that is what reads look up (pieces grouped into larger units,
    /// `engine::units`, are not; the bytes are dropped then).
    fn seed_first_block(&self, first: PieceBuf) {
        let piece0 = self.reads.layout().piece_range(0);
        if piece0.end - piece0.start == first.len() as u64 {
            self.runtime
                .engine()
                .seed(self.reads.as_ref(), &self.stats, 0, Arc::new(first));
        }
    }

    fn from_metainfo(
        bytes: &[u8],
        origin: Origin,
        cred: Option<Secret>,
        cred_host: Option<&str>,
    ) -> Result<Dataset> {
        let rt = runtime::get()?;
        let meta = metainfo::parse(bytes)?;
        let name = meta.name.clone();
        let mtime = meta
            .creation_date
            .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        // Swarm (issue 11): trackers from the raw metainfo, peers per GTIO_PEERS.
        let tiers = crate::swarm::tracker::tiers_from_metainfo(bytes);
        let swarm = crate::settings::swarm();
        let provider = TorrentProvider::with_swarm(
            meta,
            origin,
            Arc::clone(rt.http()),
            cred,
            cred_host,
            &tiers,
            &swarm,
        )?;
        rt.engine()
            .check_fits(crate::engine::PieceProvider::layout(&provider))?;
        let mut ds = Dataset::new(rt, Arc::new(provider), SourceKind::Webseed);
        ds.name = name;
        ds.mtime = mtime;
        Ok(ds)
    }

    fn open_remote_torrent(
        uri: &str,
        cred: Option<Secret>,
        deadline: std::time::Instant,
    ) -> Result<Dataset> {
        let rt = runtime::get()?;
        let what = format!("GET {}", redact_url(uri));
        let resp = rt
            .http()
            .send(&HttpRequest {
                method: "GET",
                url: uri,
                range: None,
                if_range: None,
                cred: cred.as_ref(),
                deadline: Some(deadline),
            })
            .map_err(|f| f.error)?;
        if resp.status != 200 {
            return Err(resp.status_fault(&what).error);
        }
        let bytes = resp
            .body_bounded(MAX_METAINFO_BYTES as u64)
            .map_err(|e| e.context(&what))?;
        Dataset::from_remote_metainfo(uri, &bytes, cred)
    }

    /// A metainfo downloaded from `uri`: the credential goes only to web
    /// seeds on `uri`'s host.
    fn from_remote_metainfo(uri: &str, bytes: &[u8], cred: Option<Secret>) -> Result<Dataset> {
        let host = url::Url::parse(uri)
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or(""),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_default();
        Dataset::from_metainfo(bytes, Origin::Remote, cred, Some(&host))
            .map_err(|e| e.context(format!("torrent {}", redact_url(uri))))
    }
}

/// The `cred` setting (`GTIO_CRED`): used as if passed when an open is
/// given no credential, with the same scope.
fn default_cred() -> Option<Secret> {
    crate::settings::default_cred().map(Secret::new)
}

fn read_local_metainfo(uri: &str) -> Result<Vec<u8>> {
    let path = path_of_file_uri(uri)?;
    let file = std::fs::File::open(&path)
        .map_err(|e| Error::from(e).context(format!("opening {}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_METAINFO_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::from(e).context(format!("reading {}", path.display())))?;
    if bytes.len() > MAX_METAINFO_BYTES {
        return Err(Error::invalid(format!(
            "{} is larger than the 64 MiB metainfo limit",
            path.display()
        )));
    }
    Ok(bytes)
}
