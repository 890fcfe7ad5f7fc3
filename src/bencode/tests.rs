use super::*;
use proptest::prelude::*;

fn reject(input: &[u8], needle: &str) {
    match decode(input) {
        Ok(v) => panic!("{:?} decoded to {v:?}", String::from_utf8_lossy(input)),
        Err(e) => {
            assert_eq!(e.errno(), libc::EINVAL);
            assert!(
                e.message().contains(needle),
                "{:?}: message {:?} lacks {needle:?}",
                String::from_utf8_lossy(input),
                e.message()
            );
        }
    }
}

#[test]
fn decodes_each_kind() {
    assert_eq!(decode(b"i42e").unwrap(), Value::Int(42));
    assert_eq!(decode(b"i-7e").unwrap(), Value::Int(-7));
    assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
    assert_eq!(
        decode(b"i-9223372036854775808e").unwrap(),
        Value::Int(i64::MIN)
    );
    assert_eq!(
        decode(b"i9223372036854775807e").unwrap(),
        Value::Int(i64::MAX)
    );
    assert_eq!(decode(b"4:spam").unwrap(), Value::Bytes(b"spam"));
    assert_eq!(decode(b"0:").unwrap(), Value::Bytes(b""));
    assert_eq!(
        decode(b"l4:spami1ee").unwrap(),
        Value::List(vec![Value::Bytes(b"spam"), Value::Int(1)])
    );
    let v = decode(b"d3:bar4:spam3:fooi42ee").unwrap();
    let d = v.as_dict().unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d.get(b"foo"), Some(&Value::Int(42)));
    assert_eq!(d.get(b"bar").and_then(Value::as_bytes), Some(&b"spam"[..]));
    assert_eq!(d.get(b"baz"), None);
}

#[test]
fn dicts_keep_their_raw_span() {
    let input = b"d4:infod1:ai1eee";
    let v = decode(input).unwrap();
    let outer = v.as_dict().unwrap();
    assert_eq!(outer.raw(), Some(&input[..]));
    let info = outer.get(b"info").and_then(Value::as_dict).unwrap();
    assert_eq!(info.raw(), Some(&b"d1:ai1ee"[..]));
    assert_eq!(Dict::from_entries(vec![]).unwrap().raw(), None);
}

#[test]
fn rejects_malformed_integers() {
    reject(b"i03e", "leading zero in integer");
    reject(b"i00e", "leading zero in integer");
    reject(b"i-0e", "negative zero");
    reject(b"i-03e", "leading zero");
    reject(b"ie", "malformed integer");
    reject(b"i-e", "malformed integer");
    reject(b"i1", "unterminated integer");
    reject(b"i+1e", "malformed integer");
    reject(b"i1.5e", "malformed integer");
    reject(b"i9223372036854775808e", "overflows i64");
    reject(b"i-9223372036854775809e", "overflows i64");
    reject(b"i99999999999999999999999e", "integer overflows");
}

#[test]
fn rejects_malformed_strings() {
    reject(b"05:hello", "leading zero in string length");
    reject(b"5:hell", "exceeds the 4 bytes left");
    reject(b"5", "unterminated string length");
    reject(b"5x", "malformed string length");
    // A huge declared length must fail before anything is allocated.
    reject(b"18446744073709551615:x", "exceeds the 1 bytes left");
    reject(b"99999999999999999999999:x", "string length overflows");
}

#[test]
fn rejects_structural_errors() {
    reject(b"", "unexpected end of input");
    reject(b"i1ei2e", "trailing data");
    reject(b"4:spamx", "trailing data");
    reject(b"l", "unterminated list");
    reject(b"li1e", "unterminated list");
    reject(b"d", "unterminated dictionary");
    reject(b"d1:a", "dictionary key without a value");
    reject(b"di1ei2ee", "dictionary key is not a string");
    reject(b"d1:ai1e1:ai2ee", "duplicate dictionary key");
    reject(b"d1:ai1e1:bi1e1:ai2ee", "duplicate dictionary key");
    reject(b"i1e\n\n", "trailing data");
    reject(b"x", "unexpected byte 0x78");
    reject(b"e", "unexpected byte 0x65");
}

/// libtorrent loads both; the info-hash is over raw bytes, so nothing is lost.
#[test]
fn accepts_unsorted_keys_and_a_trailing_newline() {
    let v = decode(b"d1:bi1e1:ai2ee").unwrap();
    assert_eq!(encode(&v), b"d1:ai2e1:bi1ee");
    let d = v.as_dict().unwrap();
    assert_eq!(d.raw(), Some(&b"d1:bi1e1:ai2ee"[..]));
    assert_eq!(d.get(b"a"), Some(&Value::Int(2)));
    assert_eq!(decode(b"i1e\n").unwrap(), Value::Int(1));
    assert_eq!(decode(b"i1e\r\n").unwrap(), Value::Int(1));
}

#[test]
fn limits_depth() {
    let ok = [&b"l".repeat(MAX_DEPTH)[..], &b"e".repeat(MAX_DEPTH)[..]].concat();
    assert!(decode(&ok).is_ok());
    let deep = [
        &b"l".repeat(MAX_DEPTH + 1)[..],
        &b"e".repeat(MAX_DEPTH + 1)[..],
    ]
    .concat();
    reject(&deep, "nesting deeper than 64 levels");
    // Far too deep must fail the same way, without exhausting the stack.
    reject(&b"d1:a".repeat(100_000), "nesting deeper");
}

#[test]
fn limits_value_count() {
    let limits = Limits {
        max_values: 3,
        ..Limits::default()
    };
    assert!(decode_with(b"li1ei2ee", limits).is_ok());
    let e = decode_with(b"li1ei2ei3ee", limits).unwrap_err();
    assert!(e.message().contains("more than 3 values"), "{e:?}");
}

#[test]
fn from_entries_sorts_and_rejects_duplicates() {
    let d = Dict::from_entries(vec![(b"b", Value::Int(2)), (b"a", Value::Int(1))]).unwrap();
    assert_eq!(encode(&Value::Dict(d)), b"d1:ai1e1:bi2ee");
    let e = Dict::from_entries(vec![(b"a", Value::Int(2)), (b"a", Value::Int(1))]).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
}

/// An owned mirror of [`Value`], so proptest can generate trees that a
/// borrowing `Value` then points into.
#[derive(Debug, Clone)]
enum Owned {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Owned>),
    Dict(std::collections::BTreeMap<Vec<u8>, Owned>),
}

fn borrow(o: &Owned) -> Value<'_> {
    match o {
        Owned::Int(i) => Value::Int(*i),
        Owned::Bytes(b) => Value::Bytes(b),
        Owned::List(l) => Value::List(l.iter().map(borrow).collect()),
        Owned::Dict(m) => Value::Dict(
            Dict::from_entries(m.iter().map(|(k, v)| (&k[..], borrow(v))).collect()).unwrap(),
        ),
    }
}

fn owned() -> impl Strategy<Value = Owned> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Owned::Int),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Owned::Bytes),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Owned::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..6),
                inner,
                0..6
            )
            .prop_map(Owned::Dict),
        ]
    })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(o in owned()) {
        let v = borrow(&o);
        let bytes = encode(&v);
        let back = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &v);
        // Every decoded dict's raw span re-encodes to itself.
        if let Value::Dict(d) = &back {
            prop_assert_eq!(d.raw(), Some(&bytes[..]));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&input);
    }

    /// Bytes drawn from bencode's own alphabet reach far deeper into the
    /// decoder than uniform bytes; whatever is accepted must re-encode to the same value.
    #[test]
    fn accepted_input_is_canonical(
        input in proptest::collection::vec(
            prop_oneof![Just(b'i'), Just(b'l'), Just(b'd'), Just(b'e'), Just(b':'),
                        Just(b'-'), Just(b'0'), Just(b'1'), Just(b'2'), Just(b'a')],
            0..64)
    ) {
        if let Ok(v) = decode(&input) {
            let again = encode(&v);
            prop_assert_eq!(decode(&again).unwrap(), v);
        }
    }

    #[test]
    fn never_panics_on_mutated_documents(
        o in owned(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&borrow(&o));
        for (at, byte) in edits {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
        }
        if let Ok(v) = decode(&bytes) {
            let again = encode(&v);
            prop_assert_eq!(decode(&again).unwrap(), v);
        }
    }
}
