//! Cache keys.
//!
//! A torrent piece is keyed by its SHA-1, so identical pieces are shared
//! across datasets. A plain object's block is keyed by the object's
//! *identity* (URI, validator, block size) — interned to a number, so that a
//! cache lookup hashes 12 bytes instead of a URL (the URL's SipHash was a
//! quarter of a cache hit's cost, measured with callgrind).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::fork_safe::ForkSafe;

/// What identifies a piece in the process-wide cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PieceKey {
    /// A torrent piece: identical pieces are shared across datasets.
    Sha1([u8; 20]),
    /// A plain object's block: (object identity, block index).
    Object(ObjectId, u32),
}

/// An interned object identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId(u64);

/// Holds an [`ObjectId`] while some dataset uses it. Two objects with the
/// same identity string get the same id while either is alive; once none is,
/// the entry is dropped (a later open gets a new id and cold cache, which is
/// correct, merely slower).
#[derive(Debug)]
pub struct Identity {
    id: ObjectId,
    name: String,
}

struct Table {
    by_name: HashMap<String, Weak<Identity>>,
}

/// Fresh in a fork child (see `fork_safe`): every open and close takes it.
static TABLE: ForkSafe<Mutex<Table>> = ForkSafe::new(|| {
    Mutex::new(Table {
        by_name: HashMap::new(),
    })
});

/// Ids are never reused, in a fork child either (it is not reset with the
/// table), so no id can ever name two identities.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Identity {
    pub fn intern(name: String) -> Arc<Identity> {
        let mut table = TABLE.get().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = table.by_name.get(&name).and_then(Weak::upgrade) {
            return live;
        }
        let id = ObjectId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let identity = Arc::new(Identity {
            id,
            name: name.clone(),
        });
        table.by_name.insert(name, Arc::downgrade(&identity));
        identity
    }

    pub fn id(&self) -> ObjectId {
        self.id
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        let mut table = TABLE.get().lock().unwrap_or_else(|e| e.into_inner());
        // A new Identity may have replaced ours already: remove only a dead
        // entry.
        if table
            .by_name
            .get(&self.name)
            .is_some_and(|w| w.upgrade().is_none())
        {
            table.by_name.remove(&self.name);
        }
    }
}

impl PieceKey {
    /// A well-mixed 64-bit value for picking a cache shard. SHA-1 bytes are
    /// already uniform; ids and indices are small counters and need mixing.
    pub fn shard_hash(&self) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        match self {
            PieceKey::Sha1(h) => {
                let mut first = [0u8; 8];
                first.copy_from_slice(&h[..8]);
                u64::from_le_bytes(first)
            }
            PieceKey::Object(ObjectId(id), index) => {
                (id.wrapping_mul(K) ^ u64::from(*index)).wrapping_mul(K)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_identity_same_id_while_alive() {
        let a = Identity::intern("http://h/x#1".into());
        let b = Identity::intern("http://h/x#1".into());
        let c = Identity::intern("http://h/y#1".into());
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        let old = a.id();
        drop((a, b));
        let d = Identity::intern("http://h/x#1".into());
        assert_ne!(d.id(), old, "a dead identity is not resurrected");
    }
}
