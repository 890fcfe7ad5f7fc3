//! `max_conns_per_host` seen from the server: however many readers and
//! workers, no more than the cap of requests are ever in flight at once.
//!
//! The origin here is minimal on purpose (HEAD and single ranges, each reply
//! held for a moment so that requests overlap); it counts requests between
//! "head received" and "reply sent".

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CAP: u32 = 2;
const SIZE: usize = 4 << 20;
const BLOCK: usize = 64 << 10;

fn byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// Serve SIZE bytes; returns (port, peak concurrent requests).
fn start_origin() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let peak_out = Arc::clone(&peak);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (in_flight, peak) = (Arc::clone(&in_flight), Arc::clone(&peak));
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut out = conn;
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push(line);
                    }
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(40));
                    let range = head.iter().find_map(|l| {
                        let v = l
                            .strip_prefix("Range: bytes=")
                            .or_else(|| l.strip_prefix("range: bytes="))?;
                        let (a, b) = v.trim().split_once('-')?;
                        Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
                    });
                    let reply = if head[0].starts_with("HEAD") {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\nAccept-Ranges: bytes\r\nETag: \"v1\"\r\n\r\n"
                        )
                        .into_bytes()
                    } else if let Some((a, b)) = range {
                        let mut r = format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {a}-{b}/{SIZE}\r\nETag: \"v1\"\r\n\r\n",
                            b - a + 1
                        )
                        .into_bytes();
                        r.extend((a..=b).map(byte));
                        r
                    } else {
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec()
                    };
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    if out.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, peak_out)
}

#[test]
fn requests_to_one_host_never_exceed_the_cap() {
    gtio::runtime::init(gtio::Config {
        max_conns_per_host: CAP,
        workers: 8,
        readahead_max_bytes: 0,
        block_size: BLOCK as u32,
        ..gtio::Config::default()
    })
    .unwrap();
    let (port, peak) = start_origin();
    let ds = gtio::Dataset::open(&format!("http://127.0.0.1:{port}/obj"), None).unwrap();
    // 16 readers, each on its own cold block, all at once.
    std::thread::scope(|s| {
        for t in 0..16usize {
            let ds = &ds;
            s.spawn(move || {
                let off = t * 4 * BLOCK + 17;
                let mut buf = vec![0u8; 1000];
                assert_eq!(ds.pread(&mut buf, off as u64).unwrap(), 1000);
                assert!(buf.iter().enumerate().all(|(i, &b)| b == byte(off + i)));
            });
        }
    });
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak >= 2, "requests did overlap (peak {peak})");
    assert!(
        peak <= CAP as usize,
        "{peak} requests in flight to one host, cap {CAP}"
    );
}
