use proptest::prelude::*;

use super::*;

/// 10 pieces of 32 KiB, the last one 10 000 bytes.
fn dec() -> Decoder {
    Decoder::new(9 * 32768 + 10_000, 32768)
}

fn enc(m: &Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    encode(m, &mut v);
    v
}

fn one(buf: &[u8]) -> Result<Message<'_>, WireError> {
    match dec().decode(buf)? {
        Some((m, used)) => {
            assert_eq!(
                used,
                buf.len(),
                "decoder used {used} of {} bytes",
                buf.len()
            );
            Ok(m)
        }
        None => panic!("incomplete"),
    }
}

#[test]
fn every_message_round_trips() {
    let b = BlockRef {
        piece: 3,
        begin: 16384,
        len: 16384,
    };
    let data = vec![7u8; 16384];
    let bits = [0xff, 0xc0];
    let msgs = [
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(9),
        Message::Bitfield(&bits),
        Message::Request(b),
        Message::Piece {
            piece: 9,
            begin: 0,
            data: &data[..10_000],
        },
        Message::Cancel(b),
        Message::Port(6881),
        Message::Suggest(1),
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject(b),
        Message::AllowedFast(0),
        Message::Extended {
            id: 0,
            payload: b"de",
        },
    ];
    for m in &msgs {
        let bytes = enc(m);
        assert_eq!(&one(&bytes).unwrap(), m, "{bytes:?}");
    }
}

#[test]
fn known_encodings() {
    assert_eq!(enc(&Message::Interested), [0, 0, 0, 1, 2]);
    assert_eq!(enc(&Message::HaveAll), [0, 0, 0, 1, 0x0e]);
    assert_eq!(
        enc(&Message::Request(BlockRef {
            piece: 1,
            begin: 2,
            len: 3
        })),
        [0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
    );
}

#[test]
fn incomplete_input_waits() {
    let bytes = enc(&Message::Have(2));
    for cut in 0..bytes.len() {
        assert_eq!(dec().decode(&bytes[..cut]).unwrap(), None, "cut at {cut}");
    }
}

#[test]
fn two_messages_in_one_buffer() {
    let mut bytes = enc(&Message::Unchoke);
    bytes.extend(enc(&Message::Have(4)));
    let (m, used) = dec().decode(&bytes).unwrap().unwrap();
    assert_eq!((m, used), (Message::Unchoke, 5));
    let (m, _) = dec().decode(&bytes[used..]).unwrap().unwrap();
    assert_eq!(m, Message::Have(4));
}

#[test]
fn huge_length_prefix_is_refused_from_the_header() {
    // Only the header is in: a decoder that waited for 4 GiB would let a
    // peer make us buffer it.
    for mid in [7u8, 5, 20, 0, 99] {
        let hdr = [0xff, 0xff, 0xff, 0xf0, mid];
        let e = dec().decode(&hdr).unwrap_err();
        assert!(e.0.contains("over its bound"), "{e}");
    }
    // A piece message one byte over 16 KiB + header.
    let mut hdr = (9 + MAX_BLOCK + 1).to_be_bytes().to_vec();
    hdr.push(7);
    assert!(dec().decode(&hdr).is_err());
}

#[test]
fn max_frame_bounds_every_valid_message() {
    let d = dec();
    let data = vec![0u8; MAX_BLOCK as usize];
    let m = enc(&Message::Piece {
        piece: 0,
        begin: 0,
        data: &data,
    });
    assert!(m.len() <= d.max_frame());
    // A torrent of a million pieces: its bitfield is the largest frame.
    let big = Decoder::new(1 << 34, 16384);
    assert_eq!(big.max_frame(), 4 + 1 + (1 << 20) / 8);
}

#[test]
fn wrong_sizes_are_refused() {
    let cases: &[&[u8]] = &[
        &[0, 0, 0, 2, 0, 0],          // choke with a payload
        &[0, 0, 0, 4, 4, 0, 0, 0],    // short have
        &[0, 0, 0, 2, 0x0e, 1],       // have-all with a payload
        &[0, 0, 0, 3, 5, 0xff, 0xc0], // bitfield bound is 1 + 2 bytes: ok length, but...
    ];
    for (i, c) in cases.iter().enumerate().take(3) {
        assert!(dec().decode(c).is_err(), "case {i}");
    }
    // ...this one is valid: 10 pieces, 2 bytes, the 6 spare bits clear.
    assert_eq!(one(cases[3]).unwrap(), Message::Bitfield(&[0xff, 0xc0]));
    // A bitfield of the wrong length or with a spare bit set.
    assert!(dec().decode(&[0, 0, 0, 2, 5, 0xff]).is_err());
    let e = dec().decode(&[0, 0, 0, 3, 5, 0xff, 0xe0]).unwrap_err();
    assert!(e.0.contains("spare bits"), "{e}");
}

#[test]
fn indices_and_blocks_are_checked_against_the_torrent() {
    let e = one(&enc(&Message::Have(10))).unwrap_err();
    assert!(e.0.contains("10 pieces"), "{e}");
    let oversize = BlockRef {
        piece: 0,
        begin: 0,
        len: 32768,
    };
    assert!(one(&enc(&Message::Request(oversize))).is_err());
    // Runs past the short last piece.
    let past = BlockRef {
        piece: 9,
        begin: 8192,
        len: 2000,
    };
    let e = one(&enc(&Message::Reject(past))).unwrap_err();
    assert!(e.0.contains("past the end of piece 9"), "{e}");
    let e = one(&enc(&Message::Piece {
        piece: 9,
        begin: 9_999,
        data: &[1, 2],
    }))
    .unwrap_err();
    assert!(e.0.contains("past the end"), "{e}");
    let empty = BlockRef {
        piece: 0,
        begin: 0,
        len: 0,
    };
    assert!(one(&enc(&Message::Request(empty))).is_err());
    assert!(one(&[0, 0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
}

#[test]
fn unknown_ids_are_skipped() {
    let m = one(&[0, 0, 0, 3, 21, 1, 2]).unwrap();
    assert_eq!(m, Message::Unknown(21));
}

#[test]
fn handshake_round_trip_and_flags() {
    let h = Handshake::ours([1; 20], *b"-GT0100-abcdefghijkl");
    let mut b = Vec::new();
    h.encode(&mut b);
    assert_eq!(b.len(), HANDSHAKE_LEN);
    assert_eq!(b[0], 19);
    let back = Handshake::decode(&b).unwrap().unwrap();
    assert_eq!(back, h);
    assert!(back.supports_extended() && back.supports_fast());
    assert_eq!(Handshake::decode(&b[..40]).unwrap(), None);
    assert!(Handshake::decode(b"HTTP/1.1 400 Bad").is_err());
    assert!(Handshake::decode(&[19, b'B', b'X']).is_err());
}

#[test]
fn extension_handshake() {
    let ours = encode_ext_handshake(250, "gtio 0.1.0");
    assert!(
        bencode::decode(&ours).is_ok(),
        "ours must be canonical bencode"
    );
    let h = decode_ext_handshake(&ours).unwrap();
    assert_eq!(h.reqq, Some(250));
    assert_eq!(h.client.as_deref(), Some("gtio 0.1.0"));
    // libtorrent's shape: m with ids, reqq, v; extra keys ignored.
    let lt = b"d1:md11:ut_metadatai2e6:ut_pexi1ee1:pi6881e4:reqqi2000e1:v18:libtorrent/2.0.8.06:yourip4:\x7f\x00\x00\x01e";
    let h = decode_ext_handshake(lt).unwrap();
    assert_eq!(h.reqq, Some(2000));
    assert_eq!(h.client.as_deref(), Some("libtorrent/2.0.8.0"));
    assert!(h.extensions.contains(&("ut_pex".to_string(), 1)));
    // Wrong types are absent, not fatal; garbage is an error.
    let h = decode_ext_handshake(b"d4:reqq3:abce").unwrap();
    assert_eq!(h.reqq, None);
    assert!(decode_ext_handshake(b"d4:reqqi-1e").is_err());
    assert!(decode_ext_handshake(b"le").is_err());
}

proptest! {
    /// Arbitrary bytes never panic, and whatever decodes used no more than
    /// it was given and re-encodes to the same bytes (strictness: one
    /// encoding per message).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let d = dec();
        let mut rest = &bytes[..];
        while let Ok(Some((m, used))) = d.decode(rest) {
            prop_assert!(used <= rest.len() && used > 0);
            if !matches!(m, Message::Unknown(_)) {
                prop_assert_eq!(enc(&m), rest[..used].to_vec());
            }
            rest = &rest[used..];
        }
        let _ = Handshake::decode(&bytes);
        let _ = decode_ext_handshake(&bytes);
    }

    /// Valid frames with a random header stay within max_frame.
    #[test]
    fn declared_lengths_within_max_frame(len in any::<u32>(), mid in any::<u8>()) {
        let d = dec();
        let mut hdr = len.to_be_bytes().to_vec();
        hdr.push(mid);
        if let Ok(None) = d.decode(&hdr) {
            prop_assert!(4 + len as usize <= d.max_frame());
        }
    }
}
