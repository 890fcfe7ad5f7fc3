//! Header parsing on both sides of the wire: the client's response-head,
//! framing, chunk-size and Content-Range parsers, and the server's request
//! and Range parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(((a, b), total)) = gtio::source::http::parse_content_range(text) {
            assert!(a <= b);
            if let Some(t) = total {
                assert!(b < t);
            }
        }
        let _ = gtio::source::http::parse_unsatisfied_range(text);
        let size = data.len() as u64 * 977;
        if let gtio::serve::http::RangeRequest::Single(r) = gtio::serve::http::parse_range(text, size) {
            assert!(r.start <= r.end && r.end < size);
        }
    }
    use gtio::source::http::wire;
    if let Ok(Some((head, n))) = wire::parse_head(data) {
        assert!(n <= data.len() && n <= wire::MAX_HEAD_BYTES);
        assert!(head.headers.len() <= wire::MAX_HEADERS);
        assert!((100..=599).contains(&head.status));
        let _ = wire::framing("GET", &head);
    }
    let _ = wire::parse_chunk_size(data);
    let mut reader = std::io::BufReader::new(data);
    let _ = gtio::serve::http::read_request(&mut reader, &gtio::serve::http::Limits::default());
});
