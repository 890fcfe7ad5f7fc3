//! What a dataset is: a byte stream cut into pieces, and the files laid end to
//! end in it.
//!
//! A plain object is one file whose pieces are `block_size` blocks; a torrent
//! is its metainfo's files (pad files included, so offsets match the pieces)
//! with the metainfo's piece length. Everything above this module reads the
//! stream by piece index and never needs to know which kind it has.

pub mod create;
pub mod metainfo;
pub mod object;
pub mod torrent;
pub mod webseed;

pub use crate::engine::layout::{FileEntry, Layout, PieceSlice};
