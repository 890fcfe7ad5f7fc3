//! `gtio create`: a torrent of a file or a directory tree, with web seeds
//! and trackers (both optional: a torrent with neither is still readable
//! from a local copy, or from seeds a reader adds).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::input::io_message;
use super::{human_bytes, Failure, Outcome};
use gtio::dataset::create::create_torrent_with_trackers;
use gtio::dataset::metainfo;

/// What was written, for the summary line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub name: String,
    pub files: usize,
    pub size: u64,
    pub piece_length: u64,
    pub pieces: u32,
    /// Hex SHA-1 of the info dictionary.
    pub info_hash: String,
    /// Notes worth telling the user (a seed URL that some clients misread).
    pub warnings: Vec<String>,
}

impl std::fmt::Display for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.files == 1 { "" } else { "s" };
        write!(
            f,
            "{}: {} file{plural}, {}, {} pieces of {}, info hash {}",
            self.name,
            self.files,
            human_bytes(self.size),
            self.pieces,
            human_bytes(self.piece_length),
            self.info_hash
        )
    }
}

/// Hash `path` and write its metainfo, naming `web_seeds` and `trackers`,
/// to `out`. Each entry of `trackers` is one BEP 12 tier: announce URLs
/// separated by commas (the form mktorrent's `-a` takes).
pub fn create(
    path: &Path,
    web_seeds: &[String],
    trackers: &[String],
    piece_length_log2: Option<u8>,
    out: &Path,
) -> Outcome<Created> {
    let shown = path.display().to_string();
    for seed in web_seeds {
        let scheme = seed.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https" | "file")) {
            return Err(Failure::usage(
                format!("--web-seed {seed}"),
                "expected an http://, https:// or file:// URL",
            ));
        }
    }
    let tiers = tracker_tiers(trackers)?;
    refuse_output_inside(path, out)?;
    // The library's messages name the path already.
    let bytes = create_torrent_with_trackers(path, web_seeds, &tiers, piece_length_log2)
        .map_err(|e| Failure::new("create", e))?;
    let meta = metainfo::parse(&bytes).map_err(|e| Failure::new(format!("create {shown}"), e))?;
    std::fs::write(out, &bytes)
        .map_err(|e| Failure::new(format!("writing {}", out.display()), io_message(&e)))?;
    let mut info_hash = String::with_capacity(40);
    for b in meta.info_hash {
        let _ = write!(info_hash, "{b:02x}");
    }
    let mut warnings = Vec::new();
    if meta.multi_file {
        for seed in web_seeds.iter().filter(|s| !s.ends_with('/')) {
            warnings.push(format!(
                "web seed {seed} does not end in '/': for a multi-file torrent it names \
                 the directory holding {}/, and some clients need the trailing '/'",
                meta.name
            ));
        }
    }
    Ok(Created {
        files: meta.visible_files().count(),
        size: meta.total_length,
        piece_length: meta.piece_length,
        pieces: meta.piece_count(),
        name: meta.name,
        info_hash,
        warnings,
    })
}

/// `--tracker` values as tiers: each value is a tier, its commas separate
/// URLs of that tier. Trackers announce over http(s) (BEP 3) or udp (BEP 15).
fn tracker_tiers(trackers: &[String]) -> Outcome<Vec<Vec<String>>> {
    let mut tiers = Vec::with_capacity(trackers.len());
    for arg in trackers {
        let mut tier = Vec::new();
        for url in arg.split(',').map(str::trim) {
            let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            let host = url.split_once("://").map_or("", |(_, rest)| rest);
            if !matches!(scheme.as_deref(), Some("http" | "https" | "udp")) || host.is_empty() {
                return Err(Failure::usage(
                    format!("--tracker {arg}"),
                    format!("{url:?} is not an http://, https:// or udp:// announce URL"),
                ));
            }
            if !tier.iter().any(|u| u == url) {
                tier.push(url.to_string());
            }
        }
        tiers.push(tier);
    }
    Ok(tiers)
}

/// Writing the torrent into the tree being hashed would put it into the
/// next torrent made of that tree: refuse.
fn refuse_output_inside(path: &Path, out: &Path) -> Outcome {
    let Ok(root) = std::fs::canonicalize(path) else {
        return Ok(()); // create_torrent reports the missing path
    };
    if !root.is_dir() {
        return Ok(());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(dir) = std::fs::canonicalize(&parent) {
        if dir.starts_with(&root) {
            return Err(Failure::usage(
                format!("-o {}", out.display()),
                format!(
                    "is inside {}, the tree being hashed; write the torrent elsewhere",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}
