//! A minimal bencode writer for tests, independent of gtio's own encoder
//! (so a bug there cannot hide a bug in the parser). Keys are written in the
//! order given, so tests can also write malformed metainfo (unsorted or
//! duplicate keys) that a real encoder would refuse to produce.

#![allow(dead_code)]

#[derive(Clone)]
pub enum B {
    I(i64),
    S(Vec<u8>),
    L(Vec<B>),
    D(Vec<(Vec<u8>, B)>),
}

/// A byte string.
pub fn s(x: impl AsRef<[u8]>) -> B {
    B::S(x.as_ref().to_vec())
}

/// A dictionary, keys in the order given.
pub fn d(entries: Vec<(&str, B)>) -> B {
    B::D(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

pub fn enc(v: &B) -> Vec<u8> {
    fn go(v: &B, out: &mut Vec<u8>) {
        match v {
            B::I(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            B::S(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            B::L(l) => {
                out.push(b'l');
                l.iter().for_each(|x| go(x, out));
                out.push(b'e');
            }
            B::D(d) => {
                out.push(b'd');
                for (k, x) in d {
                    go(&B::S(k.clone()), out);
                    go(x, out);
                }
                out.push(b'e');
            }
        }
    }
    let mut out = Vec::new();
    go(v, &mut out);
    out
}
