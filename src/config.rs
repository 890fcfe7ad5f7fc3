//! Runtime configuration: the Rust twin of `GTIO_Config`.
//!
//! Defaults come from what the tools in docs/references.md do, scaled to a library
//! that shares a process with its caller:
//!
//! - `block_size` 64 KiB: a cold random read fetches what it needs plus a
//!   little, not a whole MiB. Measured by `make bench` (2,000 cold 4 KiB
//!   reads of a 1 GiB object over loopback): 64 KiB 7.4–8.3k reads/s,
//!   256 KiB 1.4–2.0k, 1 MiB 0.9–1.2k. Sequential reads lose nothing, since
//!   consecutive missing pieces are still fetched by one range request of up
//!   to 16 MiB. 64 KiB is also the largest BGZF block (BAM, tabix), the
//!   random reads bioinformatics makes most.
//! - `cache_bytes` 128 MiB: room for the readahead window of a few handles.
//! - `readahead_max_bytes` 32 MiB per handle, and never more than a quarter of
//!   the cache, so a handle cannot evict what another handle is reading
//!   (mountpoint-s3's prefetch memory failures, #502/#987).
//! - `workers` 24, `max_conns_per_host` 16: downloads are I/O bound; 16
//!   connections per host is aria2's maximum split (`-x16`) and what
//!   `curl --parallel 16` opens, so 16 reads in flight to one origin each
//!   get a connection of their own (with 8, a QD16 reader ran at half of
//!   curl's rate: every other read waited a whole request for a permit).
//!   The 8 workers beyond the cap stay free for demand reads to another
//!   host while one origin has all of its 16, and readahead may take all
//!   workers but those 8 (`engine::scheduler`), so a sequential reader's
//!   window of 16 requests is in flight at once.
//! - `retries` 4 and `timeout_ms` 20 s: libtorrent's web seed timeout; four
//!   retries ride out a restart without hiding a dead origin for minutes.

use std::path::PathBuf;
use std::time::Duration;

/// Library-wide settings, fixed when the runtime starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub cache_bytes: u64,
    pub block_size: u32,
    pub workers: u32,
    pub max_conns_per_host: u32,
    pub readahead_max_bytes: u64,
    pub retries: u32,
    pub timeout_ms: u32,
    pub ring_entries: u32,
    pub poller_thread: bool,
    pub ca_bundle: Option<PathBuf>,
    /// Stall and open bounds of the HTTP client (environment-only settings).
    pub http: HttpBounds,
    /// The persistent piece store's directory (`store`); `None` = memory only.
    pub cache_dir: Option<PathBuf>,
    /// The persistent store's bound in bytes (default 10 GiB).
    pub cache_dir_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_bytes: 128 << 20,
            block_size: 64 << 10,
            workers: 24,
            max_conns_per_host: 16,
            readahead_max_bytes: 32 << 20,
            retries: 4,
            timeout_ms: 20_000,
            ring_entries: 1024,
            poller_thread: false,
            ca_bundle: None,
            http: HttpBounds::default(),
            cache_dir: None,
            cache_dir_bytes: 10 << 30,
        }
    }
}

impl Config {
    /// Replace zeros (the C caller's "don't care") by defaults and clamp
    /// values that would make the engine misbehave.
    pub fn normalized(mut self) -> Config {
        let d = Config::default();
        if self.cache_bytes == 0 {
            self.cache_bytes = d.cache_bytes;
        }
        if self.block_size == 0 {
            self.block_size = d.block_size;
        }
        // A piece below 4 KiB costs more in request overhead than it saves.
        self.block_size = self.block_size.clamp(4096, 64 << 20);
        // The cache must hold at least a few pieces or nothing makes progress.
        self.cache_bytes = self.cache_bytes.max(4 * u64::from(self.block_size));
        if self.workers == 0 {
            self.workers = d.workers;
        }
        self.workers = self.workers.min(256);
        if self.max_conns_per_host == 0 {
            self.max_conns_per_host = d.max_conns_per_host;
        }
        if self.timeout_ms == 0 {
            self.timeout_ms = d.timeout_ms;
        }
        if self.ring_entries == 0 {
            self.ring_entries = d.ring_entries;
        }
        self.ring_entries = self.ring_entries.min(1 << 20);
        self.readahead_max_bytes = self.readahead_max_bytes.min(self.cache_bytes / 4);
        self.retries = self.retries.min(32);
        self.http = self.http.normalized();
        if self.cache_dir_bytes == 0 {
            self.cache_dir_bytes = d.cache_dir_bytes;
        }
        if self
            .cache_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            self.cache_dir = None;
        }
        self
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms))
    }
}

// ---- HTTP bounds: stall_min_bytes_per_sec, open_timeout_ms (issue #9 item 4) ----
//
// Settings added after the first release: `GTIO_Config` keeps its layout, so
// these come from the environment (read when the library starts) or, from
// Rust, from `Config::http`. docs/http.md explains the rules.

/// How slow an HTTP transfer may be before it is given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpBounds {
    /// A transfer that moves fewer bytes than this per second, measured over
    /// windows of `timeout_ms` spent waiting for the server, is a stall: a
    /// transient fault (retried), then `ETIMEDOUT`. `GTIO_STALL_MIN_BYTES_PER_SEC`,
    /// default 1024. 0 keeps only "no byte at all for `timeout_ms`".
    pub stall_min_bytes_per_sec: u64,
    /// The whole of an open (the first ranged GET, metainfo download) must finish
    /// within this many milliseconds. `GTIO_OPEN_TIMEOUT_MS`, default 60000.
    pub open_timeout_ms: u32,
}

impl HttpBounds {
    pub const DEFAULT_STALL_MIN_BYTES_PER_SEC: u64 = 1024;
    pub const DEFAULT_OPEN_TIMEOUT_MS: u32 = 60_000;

    /// Fill unset (zero) open deadline from the environment, then the
    /// default. The stall rate keeps an explicit value (0 is meaningful).
    pub fn normalized(mut self) -> HttpBounds {
        if self.open_timeout_ms == 0 {
            self.open_timeout_ms = env_number("GTIO_OPEN_TIMEOUT_MS")
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(Self::DEFAULT_OPEN_TIMEOUT_MS);
        }
        self
    }

    pub fn open_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.open_timeout_ms))
    }
}

impl Default for HttpBounds {
    /// The environment's values, else the defaults.
    fn default() -> Self {
        HttpBounds {
            stall_min_bytes_per_sec: env_number("GTIO_STALL_MIN_BYTES_PER_SEC")
                .unwrap_or(Self::DEFAULT_STALL_MIN_BYTES_PER_SEC),
            open_timeout_ms: 0,
        }
        .normalized()
    }
}

/// A decimal environment variable; unset or unparsable means "not set".
fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
// ---- end HTTP bounds ----

// --- swarm settings (issue 11) -------------------------------------------
// Added after the first release, so not in `GTIO_Config`: they come from the
// environment (docs/design.md "Settings"), read when a torrent is opened.

/// Whether torrents read from BitTorrent peers, and how many per torrent.
/// What the library runs with comes from `settings::swarm` (`gtio_set_setting`
/// or `GTIO_PEERS`/`GTIO_MAX_PEERS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmSettings {
    /// `GTIO_PEERS`: 0 turns the swarm off (web seeds only). Default on.
    pub peers: bool,
    /// `GTIO_MAX_PEERS`: peer connections per torrent (default 30, 1..=200).
    pub max_peers: u32,
}

impl Default for SwarmSettings {
    fn default() -> Self {
        SwarmSettings {
            peers: true,
            max_peers: 30,
        }
    }
}

// --- end swarm settings ----------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_mean_defaults() {
        let c = Config {
            cache_bytes: 0,
            block_size: 0,
            workers: 0,
            max_conns_per_host: 0,
            readahead_max_bytes: 0,
            retries: 0,
            timeout_ms: 0,
            ring_entries: 0,
            poller_thread: false,
            ca_bundle: None,
            http: HttpBounds {
                stall_min_bytes_per_sec: 0,
                open_timeout_ms: 0,
            },
            cache_dir: None,
            cache_dir_bytes: 0,
        }
        .normalized();
        let d = Config::default();
        assert_eq!(c.cache_bytes, d.cache_bytes);
        assert_eq!(c.block_size, d.block_size);
        assert_eq!(c.readahead_max_bytes, 0, "0 disables readahead");
        assert_eq!(c.retries, 0, "0 retries is a valid choice");
    }

    #[test]
    fn readahead_is_bounded_by_the_cache() {
        let c = Config {
            cache_bytes: 16 << 20,
            readahead_max_bytes: 1 << 30,
            ..Config::default()
        }
        .normalized();
        assert_eq!(c.readahead_max_bytes, 4 << 20);
    }
}
