//! Piece verification, in one place: every source of torrent pieces (web
//! seeds now, peers next) checks what it assembled with [`sha1_matches`]
//! before handing it to the engine, and counts what failed in a
//! [`HashFailures`] that the engine drains into the dataset's statistics
//! (`bytes_hash_failed`). A source keeps the decision of what to do about
//! a bad piece (drop the seed, ban the peer), since only it knows who sent
//! it.

use std::sync::atomic::{AtomicU64, Ordering};

use sha1::{Digest, Sha1};

/// Whether `data` is the piece whose SHA-1 is `expected`.
pub fn sha1_matches(expected: &[u8; 20], data: &[u8]) -> bool {
    Sha1::digest(data).as_slice() == expected.as_slice()
}

/// Bytes that failed verification, until the engine takes them.
#[derive(Debug, Default)]
pub struct HashFailures(AtomicU64);

impl HashFailures {
    pub fn record(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_and_counts() {
        let h: [u8; 20] = Sha1::digest(b"piece").into();
        assert!(sha1_matches(&h, b"piece"));
        assert!(!sha1_matches(&h, b"pieCe"));
        let f = HashFailures::default();
        f.record(5);
        f.record(7);
        assert_eq!((f.take(), f.take()), (12, 0));
    }
}
