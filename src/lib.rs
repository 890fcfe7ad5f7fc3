//! gtio: block I/O over remote datasets.
//!
//! Programs read byte ranges of a plain HTTP(S) object or of a BitTorrent
//! metainfo's files (fetched piece by piece from HTTP web seeds and checked
//! by SHA-1) without downloading them whole. The design is in docs/design.md; the
//! C ABI is in [`ffi`] and `include/gtio.h`.
//!
//! Data flows one way: [`ffi`] → [`handle`] → [`engine`] → [`source`];
//! completions flow back through [`completion`] rings. The module graph has
//! no cycles:
//!
//! ```text
//! ffi ─→ handle ─→ runtime ─→ engine ─→ source ─→ error
//!   │       │         │         │ └───→ completion ─→ fork_safe
//!   │       ├→ dataset┼───────→─┘ (dataset: object, torrent, metainfo,
//!   │       │         └→ settings      web seed URLs; implements the
//!   └───────┴─────────────────→ ...    engine's PieceProvider/PieceSource)
//! ```
//!
//! `dataset` depends on `engine` (it implements the engine's traits over
//! the engine's `Layout`) and on `source`; neither depends on it. The
//! command-line tool, `gtio serve` and `gtio mount` live in the workspace
//! member `cli/` (package `gtio-cli`), on top of this crate, so
//! `libgtio.so` links no argument parser, progress bar, HTTP server or FUSE.

pub mod bencode;
pub mod buffers;
pub mod completion;
pub mod config;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod fork_safe;
pub mod handle;
pub mod http_date;
pub mod runtime;
pub mod settings;
pub mod source;
pub mod store;
pub mod swarm;

pub use config::Config;
pub use error::{Error, Result};
pub use handle::{Dataset, Reader, Whence};
