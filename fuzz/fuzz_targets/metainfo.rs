//! Metainfo parsing: never panics, never allocates beyond its input, and
//! whatever it accepts is self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = gtio::dataset::metainfo::parse(data) {
        let mut offset = 0u64;
        for f in meta.files.iter() {
            assert_eq!(f.offset, offset);
            offset += f.length;
            assert!(!f.path.is_empty());
            // A symlink has no bytes in the stream.
            assert!(f.symlink.is_none() || f.length == 0);
            let target = f.symlink.into_iter().flat_map(|t| t.split('/'));
            for seg in f.segments().chain(target) {
                assert!(!seg.is_empty() && seg != "." && seg != "..");
                assert!(!seg.contains('\\') && !seg.contains('\0'));
            }
        }
        assert_eq!(offset, meta.total_length);
        assert!(meta.total_length <= i64::MAX as u64);
        assert!(meta.piece_length > 0);
        assert_eq!(
            meta.piece_hashes.len() as u64,
            meta.total_length.div_ceil(meta.piece_length)
        );
    }
});
