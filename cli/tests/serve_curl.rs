//! `gtio_cli::serve::Server` against curl (and a raw socket where curl would
//! normalize the request away).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gtio_cli::serve::{Limits, ServeConfig, Server};

const SIZE: usize = 200_000; // more than the 64 KiB streaming buffer

fn content() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 31 % 253) as u8).collect()
}

/// A test's files, removed when the test ends.
struct Fixture {
    base: PathBuf,
    root: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// base/root/{data.bin, x.torrent, sub/}, base/outside/secret, and
/// root/out → ../outside (a symlink out of the root).
fn fixture(tag: &str) -> Fixture {
    let base = std::env::temp_dir().join(format!("gtio-serve-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("root");
    std::fs::create_dir_all(root.join("sub")).expect("mkdir");
    std::fs::create_dir_all(base.join("outside")).expect("mkdir");
    std::fs::write(root.join("data.bin"), content()).expect("write");
    std::fs::write(root.join("x.torrent"), b"d4:infod4:name1:xee").expect("write");
    std::fs::write(base.join("outside/secret"), b"secret").expect("write");
    std::os::unix::fs::symlink(base.join("outside"), root.join("out")).expect("symlink");
    std::os::unix::fs::symlink("data.bin", root.join("sub-link.bin")).expect("symlink");
    Fixture { base, root }
}

struct Curl {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Curl {
    fn header(&self, name: &str) -> Option<String> {
        // curl -D writes every head it saw; the last one is the answer.
        let last = self.head.trim_end().rsplit("\r\n\r\n").next().unwrap_or("");
        last.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    }
}

fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-s", "-D", "/dev/stderr", "-o", "-", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    let head = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = head
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Curl {
        status,
        head,
        body: out.stdout,
    }
}

#[test]
fn serves_files_ranges_and_validators_to_curl() {
    let fx = fixture("curl");
    let root = fx.root.clone();
    let server = Server::start(ServeConfig::new(&root)).expect("start");
    let url = |p: &str| format!("http://{}{}", server.local_addr(), p);
    let data = content();

    let head = curl(&["-I", &url("/data.bin")]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(SIZE.to_string()));
    assert_eq!(head.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(
        head.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    let etag = head.header("etag").expect("etag");
    assert!(
        etag.starts_with('"') && etag.ends_with(&format!("-{SIZE:x}\"")),
        "{etag}"
    );
    let lm = head.header("last-modified").expect("last-modified");
    assert_eq!(
        gtio_cli::serve::http::parse_http_date(&lm).map(|_| ()),
        Some(())
    );

    let full = curl(&[&url("/data.bin")]);
    assert_eq!((full.status, &full.body), (200, &data));
    let t = curl(&["-I", &url("/x.torrent")]);
    assert_eq!(
        t.header("content-type").as_deref(),
        Some("application/x-bittorrent")
    );

    let r = curl(&["-r", "100000-170000", &url("/data.bin")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100000-170000/{SIZE}"))
    );
    assert_eq!(r.body, data[100_000..=170_000]);
    let r = curl(&["-r", "-10", &url("/data.bin")]);
    assert_eq!((r.status, &r.body[..]), (206, &data[SIZE - 10..]));
    let r = curl(&["-r", "199990-", &url("/data.bin")]);
    assert_eq!((r.status, &r.body[..]), (206, &data[199_990..]));
    let r = curl(&["-r", "0-1,5-6", &url("/data.bin")]);
    assert_eq!(
        (r.status, r.body.len()),
        (200, SIZE),
        "multi-range → full 200"
    );

    let r = curl(&["-r", "300000-", &url("/data.bin")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(format!("bytes */{SIZE}")));

    let ok = curl(&[
        "-r",
        "0-9",
        "-H",
        &format!("If-Range: {etag}"),
        &url("/data.bin"),
    ]);
    assert_eq!((ok.status, ok.body.len()), (206, 10));
    let ok = curl(&[
        "-r",
        "0-9",
        "-H",
        &format!("If-Range: {lm}"),
        &url("/data.bin"),
    ]);
    assert_eq!((ok.status, ok.body.len()), (206, 10));
    let stale = curl(&["-r", "0-9", "-H", "If-Range: \"0-0\"", &url("/data.bin")]);
    assert_eq!((stale.status, &stale.body), (200, &data));
    let old = curl(&[
        "-r",
        "0-9",
        "-H",
        "If-Range: Thu, 01 Jan 1970 00:00:00 GMT",
        &url("/data.bin"),
    ]);
    assert_eq!(old.status, 200);

    for (path, want) in [
        ("/../outside/secret", 403),
        ("/%2e%2e/outside/secret", 403),
        ("/sub/%2E%2E/%2e%2e/outside/secret", 403),
        ("/..%2foutside%2fsecret", 403),
        ("/out/secret", 404),
        ("/sub", 404),
        ("/", 404),
        ("/missing", 404),
        ("/data.bin%00", 400),
    ] {
        let r = curl(&["--path-as-is", &url(path)]);
        assert_eq!(r.status, want, "{path}");
        assert!(!r.body.starts_with(b"secret"), "{path}");
    }
    let r = curl(&[&url("/sub-link.bin")]);
    assert_eq!(
        (r.status, r.body.len()),
        (200, SIZE),
        "symlink inside the root"
    );
    let r = curl(&["-X", "POST", &url("/data.bin")]);
    assert_eq!(r.status, 405);
    server.shutdown();
}

fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(bytes).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn keep_alive_limits_and_errors_over_a_raw_socket() {
    let fx = fixture("raw");
    let root = fx.root.clone();
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = Server::start_with(ServeConfig::new(&root), limits).expect("start");
    let addr = server.local_addr();

    // Two requests on one connection, the second closing it.
    let out = raw(
        addr,
        b"GET /x.torrent HTTP/1.1\r\nHost: a\r\n\r\nHEAD /x.torrent HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.contains("Connection: close"));
    assert!(out.ends_with("\r\n\r\n"), "HEAD has no body: {out}");

    assert!(raw(addr, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw(addr, b"GET /x HTTP/1.1\nHost: a\n\n").starts_with("HTTP/1.1 400"));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert!(raw(addr, big.as_bytes()).starts_with("HTTP/1.1 431"));
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert!(raw(addr, long.as_bytes()).starts_with("HTTP/1.1 414"));
    let absolute = raw(addr, b"GET http://a/x.torrent HTTP/1.0\r\n\r\n");
    assert!(absolute.starts_with("HTTP/1.1 200"), "{absolute}");

    // Idle connections are closed after the timeout.
    let mut idle = TcpStream::connect(addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let t = Instant::now();
    let mut b = [0u8; 16];
    assert_eq!(idle.read(&mut b).expect("closed cleanly"), 0);
    assert!(t.elapsed() < Duration::from_secs(3));

    // Beyond max_connections: 503 (a server of its own, so that slots
    // still held by the connections above cannot race with the count).
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let busy_server = Server::start_with(ServeConfig::new(&root), limits).expect("start");
    let addr = busy_server.local_addr();
    let _a = TcpStream::connect(addr).expect("a");
    let _b = TcpStream::connect(addr).expect("b");
    std::thread::sleep(Duration::from_millis(50));
    let busy = raw(addr, b"GET /x.torrent HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(busy.contains("Retry-After: 1"));

    // Shutdown closes held connections and returns promptly.
    let t = Instant::now();
    drop(busy_server);
    drop(server);
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn unspecified_address_shuts_down_promptly() {
    let fx = fixture("any");
    let root = fx.root.clone();
    let cfg = ServeConfig {
        root,
        addr: "0.0.0.0:0".parse().expect("addr"),
    };
    let server = Server::start(cfg).expect("start");
    let port = server.local_addr().port();
    let out = raw(
        ([127, 0, 0, 1], port).into(),
        b"GET /x.torrent HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let t = Instant::now();
    server.shutdown();
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn start_refuses_a_missing_or_file_root() {
    let fx = fixture("bad");
    let root = fx.root.clone();
    assert!(Server::start(ServeConfig::new(root.join("data.bin"))).is_err());
    assert!(Server::start(ServeConfig::new(root.join("nope"))).is_err());
}
