use super::*;
use proptest::prelude::*;

fn req(raw: &str) -> Result<Request, RequestError> {
    read_request(&mut raw.as_bytes(), &Limits::default())
}

fn status(raw: &str) -> Option<u16> {
    req(raw).err().and_then(|e| e.status())
}

#[test]
fn parses_a_request() {
    let r = req("GET /a?b HTTP/1.1\r\nHost: x\r\nRange:  bytes=0-1 \r\n\r\n").expect("ok");
    assert_eq!(
        (r.method.as_str(), r.target.as_str(), r.minor_version),
        ("GET", "/a?b", 1)
    );
    assert_eq!(r.header("RANGE"), Some("bytes=0-1"));
    assert!(r.keep_alive());
    let r = req("\r\nHEAD / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").expect("ok");
    assert!(r.keep_alive());
    assert!(!req("GET / HTTP/1.0\r\n\r\n").expect("ok").keep_alive());
    assert!(
        !req("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n")
            .expect("ok")
            .keep_alive()
    );
    let r = req("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n").expect("ok");
    assert_eq!(r.body_len, 5);
}

#[test]
fn refuses_malformed_requests() {
    assert!(matches!(req(""), Err(RequestError::Closed)));
    for bad in [
        "GET / HTTP/1.1\nHost: x\n\n",
        "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nA: b\x01\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n",
        "GET / FTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(status(bad), Some(400), "{bad:?}");
    }
    assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), Some(505));
    assert_eq!(
        status("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Some(501)
    );
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(&long), Some(414));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nA: {}\r\n\r\n",
        "a".repeat(8200)
    );
    assert_eq!(status(&big), Some(431));
    let many: String = (0..101).map(|i| format!("H{i}: v\r\n")).collect();
    assert_eq!(
        status(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")),
        Some(431)
    );
}

#[test]
fn response_head_bytes() {
    let h = ResponseHead::new(206)
        .with("A", 1)
        .with("B", "x\r\nInjected: 1");
    assert_eq!(
        h.to_bytes(),
        b"HTTP/1.1 206 Partial Content\r\nA: 1\r\nB: x  Injected: 1\r\n\r\n"
    );
}

fn single(s: u64, e: u64) -> RangeRequest {
    RangeRequest::Single(ByteRange { start: s, end: e })
}

#[test]
fn ranges() {
    use RangeRequest::*;
    assert_eq!(parse_range("bytes=0-9", 100), single(0, 9));
    assert_eq!(parse_range("bytes=90-200", 100), single(90, 99));
    assert_eq!(parse_range("bytes=10-", 100), single(10, 99));
    assert_eq!(parse_range("bytes=-10", 100), single(90, 99));
    assert_eq!(parse_range("bytes=-1000", 100), single(0, 99));
    assert_eq!(parse_range("Bytes= 5-5 ,", 100), single(5, 5));
    assert_eq!(
        parse_range("bytes=0-99999999999999999999999", 100),
        single(0, 99)
    );
    assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
    assert_eq!(
        parse_range("bytes=99999999999999999999999-", 100),
        Unsatisfiable
    );
    assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
    assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
    assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
    assert_eq!(parse_range("bytes=0-1,5-6", 100), Multiple);
    assert_eq!(parse_range("bytes=0-1,500-600", 100), single(0, 1));
    assert_eq!(parse_range("bytes=200-300,500-600", 100), Unsatisfiable);
    for bad in [
        "bytes=5-1",
        "bytes=",
        "bytes=a-b",
        "bytes=1",
        "items=0-1",
        "bytes 0-1",
        "bytes=--1",
        "bytes=+1-2",
        "bytes=0-1-2",
    ] {
        assert_eq!(parse_range(bad, 100), Ignore, "{bad}");
    }
    assert_eq!(
        ByteRange { start: 2, end: 5 }.content_range(10),
        "bytes 2-5/10"
    );
    assert_eq!(unsatisfied_content_range(7), "bytes */7");
}

#[test]
fn validators() {
    let tag = etag(0x5f5e_1000, 0x400);
    assert_eq!(tag, "\"5f5e1000-400\"");
    assert!(if_range_matches(&tag, &tag, 0));
    assert!(!if_range_matches("W/\"5f5e1000-400\"", &tag, 0));
    assert!(!if_range_matches("\"other\"", &tag, 0));
    assert!(if_range_matches(
        "Sun, 06 Nov 1994 08:49:37 GMT",
        &tag,
        784_111_777
    ));
    assert!(!if_range_matches(
        "Sun, 06 Nov 1994 08:49:38 GMT",
        &tag,
        784_111_777
    ));
    assert!(!if_range_matches("garbage", &tag, 784_111_777));
}

#[test]
fn dates() {
    assert_eq!(fmt_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(fmt_http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(fmt_http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    for s in [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ] {
        assert_eq!(parse_http_date(s), Some(784_111_777), "{s}");
    }
    for bad in [
        "Mon, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Wed, 31 Dec 1969 23:59:59 GMT",
        "Thu, 29 Feb 2001 00:00:00 GMT",
        "",
    ] {
        assert_eq!(parse_http_date(bad), None, "{bad}");
    }
}

proptest! {
    #[test]
    fn date_round_trip(secs in 0u64..253_402_300_800) {
        prop_assert_eq!(parse_http_date(&fmt_http_date(secs)), Some(secs));
    }

    #[test]
    fn range_never_panics_and_stays_in_bounds(v in "\\PC{0,40}", size in 0u64..1_000) {
        check_range(&v, size)?;
    }

    #[test]
    fn range_shaped_input_stays_in_bounds(
        a in proptest::option::of(0u64..2_000),
        b in proptest::option::of(0u64..2_000),
        more in proptest::option::of("[0-9]{0,3}-[0-9]{0,3}"),
        size in 0u64..1_000,
    ) {
        let mut v = format!("bytes={}-{}", a.map(|x| x.to_string()).unwrap_or_default(),
            b.map(|x| x.to_string()).unwrap_or_default());
        if let Some(m) = more { v.push(','); v.push_str(&m); }
        check_range(&v, size)?;
    }

    #[test]
    fn request_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = read_request(&mut bytes.as_slice(), &Limits { max_head_bytes: 128, max_headers: 4 });
    }
}

fn check_range(v: &str, size: u64) -> Result<(), TestCaseError> {
    if let RangeRequest::Single(r) = parse_range(v, size) {
        prop_assert!(r.start <= r.end && r.end < size, "{v} {size} -> {r:?}");
    }
    if size == 0 {
        prop_assert!(!matches!(
            parse_range(v, size),
            RangeRequest::Single(_) | RangeRequest::Multiple
        ));
    }
    Ok(())
}
