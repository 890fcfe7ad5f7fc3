//! Cache keys.
//!
//! A torrent piece is keyed by its SHA-1, so identical pieces are shared
//! across datasets. A plain object's block is keyed by the object's
//! *identity* — its URI without credentials, its validator (ETag or
//! Last-Modified, or a file's size and mtime) and the block size — and the
//! block index. The identity is hashed once, when the dataset opens, to a
//! 128-bit digest ([`ObjectId`]): a cache lookup then hashes 20 bytes
//! instead of a URL (the URL's SipHash was a quarter of a cache hit's cost,
//! measured with callgrind), and the key is the same in every process, so a
//! persistent store can keep pieces under it.
//!
//! "Without credentials" means without userinfo, fragment, and the query
//! parameters that carry signatures and tokens (presigned S3, GCS, Azure
//! SAS and CloudFront URLs): re-signing a URL does not make its object a
//! new one, and no secret ends up in a key (or on disk). The other query
//! parameters stay, since they may select the object.
//!
//! An object served with no validator at all cannot be told apart from a
//! changed copy of itself, so its identity is never reused: each open gets
//! a key of its own (cold cache, as before stable keys; correct, merely
//! slower).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sha1::{Digest, Sha1};

/// What identifies a piece in the process-wide cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PieceKey {
    /// A torrent piece: identical pieces are shared across datasets.
    Sha1([u8; 20]),
    /// A plain object's block: (object identity, block index).
    Object(ObjectId, u32),
}

/// A plain object's identity, as a digest: the first 128 bits of the SHA-1
/// of its credential-free identity string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId(u64, u64);

impl ObjectId {
    /// The digest's bytes, for a store that names pieces by key.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.0.to_be_bytes());
        b[8..].copy_from_slice(&self.1.to_be_bytes());
        b
    }
}

/// A plain object's identity, computed once per open.
#[derive(Debug)]
pub struct Identity {
    id: ObjectId,
    /// Whether the id is the same in every process (false: no validator).
    stable: bool,
}

/// Distinguishes the per-open identities of objects without a validator.
static UNSTABLE: AtomicU64 = AtomicU64::new(1);

impl Identity {
    /// The identity of an object described as the sources do it:
    /// `<uri>#<size and validator fields, '#'-separated>#<block size>`.
    pub fn intern(name: String) -> Arc<Identity> {
        let (uri, rest) = name.split_once('#').unwrap_or((&name, ""));
        let stable = has_validator(uri, rest);
        let mut h = Sha1::new();
        h.update(b"gtio-object-v1\0");
        h.update(credential_free(uri).as_bytes());
        h.update(b"#");
        h.update(rest.as_bytes());
        if !stable {
            let n = UNSTABLE.fetch_add(1, Ordering::Relaxed);
            h.update(format!("#unstable-{}-{n}", std::process::id()).as_bytes());
        }
        let d = h.finalize();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&d[i..i + 8]);
            u64::from_be_bytes(w)
        };
        Arc::new(Identity {
            id: ObjectId(word(0), word(8)),
            stable,
        })
    }

    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// Whether the key may be kept across processes.
    pub fn is_stable(&self) -> bool {
        self.stable
    }
}

/// Whether `rest` (the fields after the URI) holds a validator. `file://`
/// identities carry size and mtime in their first field; HTTP ones put the
/// ETag and Last-Modified between the size (first) and the block size
/// (last), empty when the server sent none.
fn has_validator(uri: &str, rest: &str) -> bool {
    if uri.starts_with("file:") {
        return true;
    }
    let fields: Vec<&str> = rest.split('#').collect();
    fields.len() > 2 && fields[1..fields.len() - 1].iter().any(|f| !f.is_empty())
}

/// Query parameters that carry credentials rather than name the object.
fn is_credential_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const PREFIXES: [&str; 3] = ["x-amz-", "x-goog-", "x-ms-"];
    const NAMES: [&str; 17] = [
        "signature",
        "sig",
        "token",
        "access_token",
        "expires",
        "key-pair-id",
        "policy",
        "awsaccesskeyid",
        "googleaccessid",
        "se",
        "sp",
        "sv",
        "sr",
        "st",
        "spr",
        "skoid",
        "sktid",
    ];
    PREFIXES.iter().any(|p| n.starts_with(p)) || NAMES.contains(&n.as_str())
}

/// `uri` without userinfo, fragment or credential query parameters.
pub fn credential_free(uri: &str) -> String {
    let uri = uri.split('#').next().unwrap_or("");
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (uri, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_string(),
    };
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|kv| {
                let name = kv.split('=').next().unwrap_or("");
                !name.is_empty() && !is_credential_param(name)
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

impl PieceKey {
    /// A well-mixed 64-bit value for picking a cache shard. SHA-1 bytes and
    /// object digests are already uniform; the index needs mixing.
    pub fn shard_hash(&self) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        match self {
            PieceKey::Sha1(h) => {
                let mut first = [0u8; 8];
                first.copy_from_slice(&h[..8]);
                u64::from_le_bytes(first)
            }
            PieceKey::Object(ObjectId(a, _), index) => (a ^ u64::from(*index)).wrapping_mul(K),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_identity_same_id_always() {
        let a = Identity::intern("http://h/x#10#\"e1\"##65536".into());
        let b = Identity::intern("http://h/x#10#\"e1\"##65536".into());
        assert_eq!(a.id(), b.id());
        assert!(a.is_stable());
        drop((a, b));
        // Reopened (or in another process): the same key.
        let c = Identity::intern("http://h/x#10#\"e1\"##65536".into());
        assert_eq!(
            c.id().to_bytes(),
            Identity::intern("http://h/x#10#\"e1\"##65536".into())
                .id()
                .to_bytes()
        );
    }

    #[test]
    fn a_fixed_digest_not_a_counter() {
        // Pinned: a persistent store keeps pieces under these bytes, so the
        // derivation must not change silently between versions.
        let id = Identity::intern("http://h/x#10#\"e1\"##65536".into()).id();
        let mut h = Sha1::new();
        h.update(b"gtio-object-v1\0http://h/x#10#\"e1\"##65536");
        assert_eq!(&id.to_bytes()[..], &h.finalize()[..16]);
    }

    #[test]
    fn every_part_of_the_identity_counts() {
        let id = |s: &str| Identity::intern(s.into()).id();
        let base = id("http://h/x#10#\"e1\"##65536");
        assert_ne!(base, id("http://h/y#10#\"e1\"##65536"), "URI");
        assert_ne!(base, id("http://h/x#10#\"e2\"##65536"), "validator");
        assert_ne!(base, id("http://h/x#10#\"e1\"##131072"), "block size");
        assert_ne!(base, id("http://h/x?v=2#10#\"e1\"##65536"), "query");
    }

    #[test]
    fn credentials_are_not_part_of_the_key() {
        let id = |s: &str| Identity::intern(s.into()).id();
        let plain = id("https://h/x?v=1#10##Tue#65536");
        assert_eq!(plain, id("https://user:pw@h/x?v=1#10##Tue#65536"));
        assert_eq!(
            plain,
            id("https://h/x?X-Amz-Signature=abc&v=1&X-Amz-Credential=k#10##Tue#65536")
        );
        assert_eq!(
            plain,
            id("https://h/x?v=1&sig=s3cr3t&se=2030#10##Tue#65536")
        );
        assert_eq!(
            credential_free("https://u:p@h:8/a/b?token=t&part=2&Signature=s"),
            "https://h:8/a/b?part=2"
        );
    }

    #[test]
    fn no_validator_no_reuse() {
        let a = Identity::intern("http://h/x#10###65536".into());
        let b = Identity::intern("http://h/x#10###65536".into());
        assert!(!a.is_stable());
        assert_ne!(a.id(), b.id());
        // A file's size and mtime are its validator.
        let f = Identity::intern("file:///d/x#10-123#65536".into());
        assert!(f.is_stable());
    }
}
