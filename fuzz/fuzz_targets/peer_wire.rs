//! Peer wire decoding: never panics, never reads past its input, and every
//! message it accepts re-encodes to the bytes it came from (one encoding per
//! message). The first two bytes choose the torrent's geometry, so bitfield
//! and block bounds are exercised for many piece counts.
#![no_main]

use gtio::swarm::wire::{self, Decoder, Handshake, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let pieces = u64::from(u16::from_le_bytes([data[0], data[1]])) + 1;
    let piece_len = 32768u64;
    let d = Decoder::new(pieces * piece_len - 1000, piece_len);
    let mut rest = &data[2..];
    let _ = Handshake::decode(rest);
    let _ = wire::decode_ext_handshake(rest);
    while let Ok(Some((m, used))) = d.decode(rest) {
        assert!(used > 0 && used <= rest.len() && used <= d.max_frame());
        if !matches!(m, Message::Unknown(_)) {
            let mut out = Vec::new();
            wire::encode(&m, &mut out);
            assert_eq!(out, &rest[..used]);
        }
        rest = &rest[used..];
    }
});
