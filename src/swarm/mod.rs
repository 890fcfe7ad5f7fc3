//! The swarm: reading a torrent's pieces from BitTorrent peers.
//!
//! [`wire`] is the peer protocol codec.
pub mod tracker;
pub mod wire;
