//! Real swarm parts on 127.0.0.1 for tests: opentracker (Debian, whitelist
//! mode, run as `nobody` in a chroot) and a libtorrent seeder driven through
//! python3-libtorrent (DHT, LSD, UPnP and NAT-PMP off). Every process is
//! killed and reaped on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub what: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP and UDP port on 127.0.0.1 (the same number for both).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn pct(b: &[u8]) -> String {
    b.iter().map(|x| format!("%{x:02X}")).collect()
}

/// opentracker on 127.0.0.1:`port` (TCP and UDP) with a whitelist.
pub struct Opentracker {
    pub port: u16,
    _proc: Proc,
    _dir: crate::support::nginx::TempDir,
}

impl Opentracker {
    pub fn start(info_hashes: &[[u8; 20]]) -> Opentracker {
        assert!(
            have("opentracker"),
            "opentracker is not installed (scripts/install-deps.sh installs it)"
        );
        let dir = crate::support::nginx::tempdir();
        // opentracker drops to `nobody` and reads the whitelist inside its
        // chroot: both must be readable by everyone.
        std::fs::set_permissions(&*dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let list: String = info_hashes.iter().map(|h| hex(h) + "\n").collect();
        std::fs::write(dir.join("whitelist.txt"), list).unwrap();
        let port = free_port();
        let child = Command::new("opentracker")
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-P",
                &port.to_string(),
            ])
            .args(["-d".as_ref(), dir.as_os_str()])
            .args(["-u", "nobody", "-w", "whitelist.txt"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start opentracker");
        let proc = Proc {
            child,
            what: "opentracker".into(),
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "opentracker did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Opentracker {
            port,
            _proc: proc,
            _dir: dir,
        }
    }

    pub fn http_announce(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    pub fn udp_announce(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.port)
    }

    /// (seeders, leechers) of one torrent from `/scrape`.
    pub fn scrape(&self, info_hash: &[u8; 20]) -> (i64, i64) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /scrape?info_hash={} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
            pct(info_hash)
        )
        .unwrap();
        let mut body = Vec::new();
        s.read_to_end(&mut body).unwrap();
        let text = String::from_utf8_lossy(&body);
        let num = |key: &str| -> i64 {
            text.find(key)
                .map(|i| {
                    let rest = &text[i + key.len()..];
                    rest.trim_start_matches('i')
                        .split('e')
                        .next()
                        .unwrap_or("0")
                        .parse()
                        .unwrap_or(-1)
                })
                .unwrap_or(0)
        };
        (num("8:complete"), num("10:incomplete"))
    }

    /// Wait until the scrape shows `want` (seeders, leechers).
    pub fn wait_for(&self, info_hash: &[u8; 20], want: (i64, i64), within: Duration) {
        let t0 = Instant::now();
        loop {
            let got = self.scrape(info_hash);
            if got == want {
                return;
            }
            assert!(
                t0.elapsed() < within,
                "tracker shows (seeders, leechers) = {got:?}, wanted {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const LT_SEED: &str = r#"
import sys, time, libtorrent as lt
torrent, save = sys.argv[1], sys.argv[2]
s = lt.session({
    'listen_interfaces': '127.0.0.1:0',
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'enable_outgoing_utp': False, 'enable_incoming_utp': False,
    'allow_multiple_connections_per_ip': True,
    'announce_to_all_trackers': True, 'announce_to_all_tiers': True,
})
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
t0 = time.time()
while not h.status().is_seeding:
    if time.time() - t0 > 30:
        print('NOT SEEDING', h.status().state, flush=True); sys.exit(1)
    time.sleep(0.02)
print('READY', s.listen_port(), flush=True)
sys.stdin.read()
"#;

const LT_DOWNLOAD: &str = r#"
import sys, time, libtorrent as lt
torrent, save, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = lt.session({
    'listen_interfaces': '127.0.0.1:0',
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'enable_outgoing_utp': False, 'enable_incoming_utp': False,
    'allow_multiple_connections_per_ip': True,
})
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
t0 = time.time()
h.connect_peer(('127.0.0.1', port))
while not h.status().is_seeding:
    if time.time() - t0 > 120:
        print('TIMEOUT', flush=True); sys.exit(1)
    time.sleep(0.005)
print('DONE', time.time() - t0, flush=True)
"#;

/// A libtorrent seeder of `torrent` whose data is in `save`.
pub struct LtSeed {
    pub port: u16,
    _proc: Proc,
    _out: BufReader<ChildStdout>,
}

pub fn python() -> PathBuf {
    PathBuf::from("/usr/bin/python3")
}

pub fn have_libtorrent() -> bool {
    Command::new(python())
        .args(["-c", "import libtorrent"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl LtSeed {
    pub fn start(torrent: &Path, save: &Path) -> LtSeed {
        assert!(
            have_libtorrent(),
            "python3-libtorrent is not installed (scripts/install-deps.sh installs it)"
        );
        let mut child = Command::new(python())
            .args(["-c", LT_SEED])
            .arg(torrent)
            .arg(save)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start libtorrent seeder");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let proc = Proc {
            child,
            what: "libtorrent seed".into(),
        };
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("libtorrent seeder: {line:?}"));
        LtSeed {
            port,
            _proc: proc,
            _out: out,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

/// Download `torrent` with libtorrent from the peer at `port` into `save`;
/// the seconds it took from adding the torrent to having it all.
pub fn lt_download(torrent: &Path, save: &Path, port: u16) -> f64 {
    let out = Command::new(python())
        .args(["-c", LT_DOWNLOAD])
        .arg(torrent)
        .arg(save)
        .arg(port.to_string())
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim()
        .strip_prefix("DONE ")
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("libtorrent download: {s:?}"))
}

/// `mktorrent` with the given announce tiers (each `-a`), piece size
/// 2^`log2_piece`, and no date (reproducible).
pub fn mktorrent(src: &Path, out: &Path, tiers: &[&str], log2_piece: u32) {
    assert!(have("mktorrent"), "mktorrent is not installed");
    let mut c = Command::new("mktorrent");
    for t in tiers {
        c.arg("-a").arg(t);
    }
    let st = c
        .arg("-l")
        .arg(log2_piece.to_string())
        .arg("-d")
        .arg("-o")
        .arg(out)
        .arg(src)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "mktorrent failed");
}

/// A torrent with several files made by libtorrent itself (create_torrent).
/// `trackers`: (URL, tier).
pub fn lt_make_torrent(dir: &Path, out: &Path, trackers: &[(&str, u32)], piece_len: u32) {
    let script = r#"
import sys, os, libtorrent as lt
d, out, plen = sys.argv[1], sys.argv[2], int(sys.argv[3])
fs = lt.file_storage()
lt.add_files(fs, d)
ct = lt.create_torrent(fs, plen)
for a in sys.argv[4:]:
    url, tier = a.rsplit(' ', 1)
    ct.add_tracker(url, int(tier))
lt.set_piece_hashes(ct, os.path.dirname(d))
open(out, 'wb').write(lt.bencode(ct.generate()))
"#;
    let st = Command::new(python())
        .args(["-c", script])
        .arg(dir)
        .arg(out)
        .arg(piece_len.to_string())
        .args(trackers.iter().map(|(u, t)| format!("{u} {t}")))
        .status()
        .unwrap();
    assert!(st.success(), "libtorrent create_torrent failed");
}

/// Read a whole file.
pub fn read(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

/// transmission-daemon seeding the torrents dropped in its watch dir, with
/// their data in `data_dir`; DHT, LPD, port mapping and uTP off, bound to
/// 127.0.0.1.
pub struct Transmission {
    pub peer_port: u16,
    _proc: Proc,
    _cfg: crate::support::nginx::TempDir,
}

impl Transmission {
    pub fn start(torrent: &Path, data_dir: &Path) -> Transmission {
        assert!(
            have("transmission-daemon"),
            "transmission-daemon is not installed (scripts/install-deps.sh installs it)"
        );
        let cfg = crate::support::nginx::tempdir();
        let watch = cfg.join("watch");
        std::fs::create_dir_all(&watch).unwrap();
        let peer_port = free_port();
        let rpc = free_port();
        let child = Command::new("transmission-daemon")
            .args(["-f", "-O", "-Y", "-M", "--no-utp", "-et", "-T"])
            .args(["-i", "127.0.0.1", "-r", "127.0.0.1"])
            .args(["-p", &rpc.to_string(), "-P", &peer_port.to_string()])
            .arg("-g")
            .arg(cfg.join("config"))
            .arg("-w")
            .arg(data_dir)
            .arg("-c")
            .arg(&watch)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start transmission-daemon");
        let proc = Proc {
            child,
            what: "transmission-daemon".into(),
        };
        std::fs::copy(torrent, watch.join("t.torrent")).unwrap();
        Transmission {
            peer_port,
            _proc: proc,
            _cfg: cfg,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.peer_port).into()
    }
}

/// aria2c seeding `torrent` from `data_dir` on 127.0.0.1:`port` (DHT, LPD,
/// PEX off). It checks the data first, so wait for its port.
pub struct Aria2Seed {
    pub port: u16,
    _proc: Proc,
}

impl Aria2Seed {
    pub fn start(torrent: &Path, data_dir: &Path) -> Aria2Seed {
        assert!(
            have("aria2c"),
            "aria2c is not installed (scripts/install-deps.sh installs it)"
        );
        let port = free_port();
        let child = Command::new("aria2c")
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
            ])
            .args([
                "--enable-peer-exchange=false",
                "--seed-ratio=0.0",
                "--check-integrity=true",
            ])
            .args([
                "--quiet=true",
                "--file-allocation=none",
                "--console-log-level=error",
            ])
            .arg(format!("--listen-port={port}"))
            .arg("--interface=127.0.0.1")
            .arg(format!("--dir={}", data_dir.display()))
            .arg(torrent)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aria2c");
        let proc = Proc {
            child,
            what: "aria2c".into(),
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "aria2c did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Aria2Seed { port, _proc: proc }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

/// qbittorrent-nox seeding `torrent` from `data_dir` (DHT, LSD, PEX, UPnP
/// off; bound to lo), added on its command line with the hash check skipped.
pub struct QBittorrent {
    pub port: u16,
    _proc: Proc,
    _profile: crate::support::nginx::TempDir,
}

impl QBittorrent {
    pub fn start(torrent: &Path, data_dir: &Path) -> QBittorrent {
        assert!(
            have("qbittorrent-nox"),
            "qbittorrent-nox is not installed (scripts/install-deps.sh installs it)"
        );
        let profile = crate::support::nginx::tempdir();
        let conf = profile.join("qBittorrent").join("config");
        std::fs::create_dir_all(&conf).unwrap();
        let port = free_port();
        let web = free_port();
        std::fs::write(
            conf.join("qBittorrent.conf"),
            format!(
                "[LegalNotice]\nAccepted=true\n\n[BitTorrent]\nSession\\DHTEnabled=false\n\
                 Session\\LSDEnabled=false\nSession\\PeXEnabled=false\nSession\\Port={port}\n\
                 Session\\Interface=lo\nSession\\InterfaceName=lo\nSession\\InterfaceAddress=127.0.0.1\n\
                 Session\\QueueingSystemEnabled=false\n\n[Preferences]\nConnection\\UPnP=false\n\
                 WebUI\\Port={web}\nWebUI\\Address=127.0.0.1\nWebUI\\LocalHostAuth=false\n"
            ),
        )
        .unwrap();
        let child = Command::new("qbittorrent-nox")
            .arg(format!("--profile={}", profile.display()))
            .arg(format!("--save-path={}", data_dir.display()))
            .arg("--skip-hash-check")
            .arg(torrent)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qbittorrent-nox");
        let proc = Proc {
            child,
            what: "qbittorrent-nox".into(),
        };
        // Seeding once its Web API says nothing is left.
        let t0 = Instant::now();
        loop {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "qbittorrent-nox did not seed"
            );
            std::thread::sleep(Duration::from_millis(100));
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", web)) else {
                continue;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(
                s,
                "GET /api/v2/torrents/info HTTP/1.0\r\nHost: 127.0.0.1:{web}\r\n\r\n"
            );
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            if body.contains("\"amount_left\":0") && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                break;
            }
        }
        QBittorrent {
            port,
            _proc: proc,
            _profile: profile,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}
