//! Bencode: the in-place reader and the tree decoder accept exactly the same
//! documents, agree on every value, and canonical input round-trips.
#![no_main]

use gtio::bencode::{self, raw, Limits, Value};
use libfuzzer_sys::fuzz_target;

/// The raw value and the tree value say the same thing.
fn same(r: raw::Raw<'_>, v: &Value<'_>) {
    match v {
        Value::Int(i) => assert_eq!(r.as_int(), Some(*i)),
        Value::Bytes(b) => assert_eq!(r.as_bytes(), Some(*b)),
        Value::List(items) => {
            let got: Vec<_> = r.list().expect("a list").collect();
            assert_eq!(got.len(), items.len());
            for (r, v) in got.into_iter().zip(items) {
                same(r, v);
            }
        }
        Value::Dict(d) => {
            let rd = r.dict().expect("a dictionary");
            assert_eq!(Some(rd.encoded()), d.raw());
            assert_eq!(rd.iter().count(), d.len());
            for (k, rv) in rd.iter() {
                same(rv, d.get(k).expect("key present"));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let r = raw::parse(data, limits);
    let v = bencode::decode_with(data, limits);
    assert_eq!(r.is_ok(), v.is_ok());
    if let (Ok(r), Ok(v)) = (r, v) {
        same(r, &v);
        // Input without a trailing newline and with sorted keys is canonical.
        if r.encoded() == data && bencode::encode(&v) != data {
            // Only unsorted keys may differ.
            assert_eq!(bencode::encode(&v).len(), data.len());
        }
    }
});
