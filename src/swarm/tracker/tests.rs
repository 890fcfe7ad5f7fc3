use std::net::{TcpListener, UdpSocket};
use std::thread;

use super::*;

fn params(event: Event) -> AnnounceParams {
    AnnounceParams {
        info_hash: [0xab; 20],
        peer_id: new_peer_id(),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 1000,
        event,
        numwant: 50,
        key: 7,
    }
}

#[test]
fn peer_id_has_our_prefix_and_is_random() {
    let a = new_peer_id();
    let b = new_peer_id();
    assert_eq!(&a[..8], b"-GT0100-");
    assert!(a[8..].iter().all(u8::is_ascii_alphanumeric));
    assert_ne!(a, b);
}

#[test]
fn compact_peers() {
    let v4 = [127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80, 9];
    assert_eq!(
        compact_v4(&v4),
        vec![
            "127.0.0.1:6881".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap()
        ]
    );
    let mut v6 = [0u8; 18];
    v6[15] = 1;
    v6[16] = 0x1a;
    v6[17] = 0xe1;
    assert_eq!(compact_v6(&v6), vec!["[::1]:6881".parse().unwrap()]);
}

#[test]
fn http_reply_forms() {
    let r = http::parse_reply(
        b"d8:completei1e10:incompletei2e8:intervali900e12:min intervali60e5:peers6:\x7f\x00\x00\x01\x1a\xe16:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x50e",
    )
    .unwrap();
    assert_eq!(r.interval, Duration::from_secs(900));
    assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
    assert_eq!(r.seeders, Some(1));
    assert_eq!(r.leechers, Some(2));
    assert_eq!(
        r.peers,
        vec![
            "127.0.0.1:6881".parse().unwrap(),
            "[::1]:80".parse().unwrap()
        ]
    );
    // The dictionary form.
    let r = http::parse_reply(b"d8:intervali60e5:peersld2:ip9:127.0.0.14:porti7000eeee").unwrap();
    assert_eq!(r.peers, vec!["127.0.0.1:7000".parse().unwrap()]);
    let e = http::parse_reply(b"d14:failure reason12:not in swarme").unwrap_err();
    assert!(e.message().contains("not in swarm"), "{e}");
    assert!(http::parse_reply(b"<html>").is_err());
}

#[test]
fn announce_url_encodes_raw_bytes() {
    let mut p = params(Event::Started);
    p.info_hash = [0; 20];
    p.info_hash[0] = b'a';
    p.info_hash[1] = 0xff;
    let u = http::announce_url("http://t/announce?passkey=x", &p);
    assert!(
        u.starts_with("http://t/announce?passkey=x&info_hash=a%FF%00"),
        "{u}"
    );
    assert!(u.contains("&peer_id=-GT0100-"));
    assert!(
        u.contains("&compact=1") && u.ends_with("&event=started"),
        "{u}"
    );
    let u = http::announce_url("http://t/a", &params(Event::None));
    assert!(!u.contains("event="), "{u}");
}

#[test]
fn tiers_from_announce_list_or_announce() {
    let m =
        b"d8:announce9:http://a/13:announce-listll9:http://b/9:http://c/el9:http://b/ee4:infodee";
    assert_eq!(
        tiers_from_metainfo(m),
        vec![vec!["http://b/".to_string(), "http://c/".to_string()]]
    );
    let m = b"d8:announce11:udp://a:1/x4:infodee";
    assert_eq!(
        tiers_from_metainfo(m),
        vec![vec!["udp://a:1/x".to_string()]]
    );
    assert!(tiers_from_metainfo(b"d4:infodee").is_empty());
    let t = Trackers::new(
        &[
            vec!["wss://x".into(), "https://y".into()],
            vec!["udp://z:1".into()],
        ],
        udp::Timing::default(),
    );
    assert_eq!(t.order(), vec![vec!["udp://z:1".to_string()]]);
}

#[test]
fn own_address_and_junk_are_filtered() {
    let peers = vec![
        "127.0.0.1:6881".parse().unwrap(),
        "127.0.0.1:6882".parse().unwrap(),
        "127.0.0.1:6882".parse().unwrap(),
        "0.0.0.0:5".parse().unwrap(),
        "10.9.9.9:0".parse().unwrap(),
        "192.0.2.1:6881".parse().unwrap(),
    ];
    assert_eq!(
        filter_peers(peers, 6881),
        vec![
            "127.0.0.1:6882".parse().unwrap(),
            "192.0.2.1:6881".parse().unwrap()
        ]
    );
}

#[test]
fn udp_announce_answer() {
    let mut b = vec![0, 0, 0, 60, 0, 0, 0, 1, 0, 0, 0, 2];
    b.extend([127, 0, 0, 1, 0x1a, 0xe1]);
    let r = udp::test_parse_announce(&b, false).unwrap();
    assert_eq!(r.interval, Duration::from_secs(60));
    assert_eq!((r.leechers, r.seeders), (Some(1), Some(2)));
    assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
    assert!(udp::test_parse_announce(&b[..8], false).is_err());
}

/// A UDP tracker that drops the first datagram of each kind, answers with a
/// wrong transaction id first, and checks the connection ID it handed out:
/// the client must retransmit, ignore the stray and reuse its ID.
#[test]
fn udp_retransmits_and_reuses_its_connection_id() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut connects = 0;
        let mut announces = 0;
        let conn_id = 0x1122_3344_5566_7788u64;
        while announces < 3 {
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            let action = u32::from_be_bytes(buf[8..12].try_into().unwrap());
            let tid = &buf[12..16];
            if action == 0 {
                assert_eq!(&buf[..8], &0x0417_2710_1980u64.to_be_bytes());
                connects += 1;
                if connects == 1 {
                    continue; // lost
                }
                let mut stray = vec![0, 0, 0, 0, 9, 9, 9, 9];
                stray.extend(1u64.to_be_bytes());
                sock.send_to(&stray, from).unwrap();
                let mut r = vec![0, 0, 0, 0];
                r.extend_from_slice(tid);
                r.extend(conn_id.to_be_bytes());
                sock.send_to(&r, from).unwrap();
            } else {
                assert_eq!(n, 98);
                assert_eq!(&buf[..8], &conn_id.to_be_bytes(), "connection id reused");
                assert_eq!(&buf[16..36], &[0xab; 20]);
                announces += 1;
                if announces == 1 {
                    continue; // lost: the client reconnects, then announces
                }
                let mut r = vec![0, 0, 0, 1];
                r.extend_from_slice(tid);
                r.extend([0, 0, 0, 30, 0, 0, 0, 0, 0, 0, 0, 1]);
                r.extend([127, 0, 0, 1, 0x1b, 0x58]);
                sock.send_to(&r, from).unwrap();
            }
        }
        connects
    });
    let timing = udp::Timing {
        base: Duration::from_millis(100),
    };
    let url = format!("udp://127.0.0.1:{port}/announce");
    let mut t = udp::UdpTracker::new(&url, timing);
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = t.announce(&params(Event::Started), deadline).unwrap();
    assert_eq!(r.peers, vec!["127.0.0.1:7000".parse().unwrap()]);
    // Second announce within 60 s: no connect.
    let r = t.announce(&params(Event::None), deadline).unwrap();
    assert_eq!(r.interval, Duration::from_secs(30));
    let connects = server.join().unwrap();
    assert_eq!(
        connects, 3,
        "lost connect, then one connect per lost announce"
    );
}

#[test]
fn dead_trackers_cost_bounded_time() {
    // UDP: nothing listens (a bound socket that never answers).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_url = format!("udp://127.0.0.1:{}/", silent.local_addr().unwrap().port());
    // HTTP: accepts and never answers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_url = format!(
        "http://127.0.0.1:{}/announce",
        l.local_addr().unwrap().port()
    );
    let mut t = Trackers::new(&[vec![udp_url], vec![http_url]], udp::Timing::default());
    let start = Instant::now();
    let e = t
        .announce(
            &params(Event::Stopped),
            Duration::from_millis(400),
            Instant::now() + Duration::from_secs(2),
        )
        .unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(took >= Duration::from_millis(700), "both tried: {took:?}");
    assert!(e.message().contains("no tracker answered"), "{e}");
    drop(l);
}
