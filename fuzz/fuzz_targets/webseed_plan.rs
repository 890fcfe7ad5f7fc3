//! BEP 19 mapping: for any metainfo the parser accepts and any range, the
//! plan covers exactly the non-pad bytes, in order, inside file bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, u64, &[u8])| {
    let (a, b, data) = input;
    let Ok(meta) = gtio::dataset::metainfo::parse(data) else {
        return;
    };
    let total = meta.total_length;
    if total == 0 {
        return;
    }
    let (start, end) = (a % total, b % total);
    let range = start.min(end)..start.max(end) + 1;
    let plan = gtio::source::webseed::plan(&meta, "http://seed.example/root/", range.clone());
    // Bytes the plan skips (between requests, and after the last one) must
    // all belong to pad files.
    let assert_only_pads = |gap: std::ops::Range<u64>| {
        for f in &meta.files {
            let (fs, fe) = (f.offset, f.offset + f.length);
            if fs.max(gap.start) < fe.min(gap.end) {
                assert!(f.pad, "non-pad bytes {gap:?} skipped");
            }
        }
    };
    let mut pos = range.start;
    for req in &plan {
        assert!(req.len > 0);
        assert!(req.stream_offset >= pos, "requests in stream order");
        assert_only_pads(pos..req.stream_offset);
        let file = meta
            .files
            .iter()
            .find(|f| !f.pad && f.offset <= req.stream_offset && req.stream_offset < f.offset + f.length)
            .expect("a request lands in a real file");
        assert_eq!(req.file_offset, req.stream_offset - file.offset);
        assert!(req.file_offset + req.len <= file.length);
        assert!(req.url.starts_with("http://seed.example/root/"));
        pos = req.stream_offset + req.len;
    }
    assert!(pos <= range.end);
    assert_only_pads(pos..range.end);
});
