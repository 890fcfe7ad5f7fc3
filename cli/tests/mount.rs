//! `gtio mount` for real: a torrent mounted with FUSE, read with ordinary
//! tools. Skipped (with a message) where /dev/fuse or fusermount3 is absent.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::nginx::{test_data, Nginx};

fn usable() -> bool {
    let ok =
        Path::new("/dev/fuse").exists() && Command::new("fusermount3").arg("-V").output().is_ok();
    if !ok {
        eprintln!("SKIP: /dev/fuse or fusermount3 (Debian fuse3) absent");
    }
    ok
}

fn gtio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gtio"))
}

fn is_mounted(mp: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mp = mp.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(mp))
}

/// A running `gtio mount`. Dropped by a failing test, it kills the process
/// and detaches the mount, so no dead mount outlives the test.
struct Mounted {
    child: Child,
    mp: PathBuf,
}

impl std::ops::Deref for Mounted {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Mounted {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if is_mounted(&self.mp) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mp)
                .status();
        }
    }
}

/// Start `gtio mount` and wait (bounded) until the mount is there.
fn mount(input: &Path, mp: &Path) -> Mounted {
    mount_with(input.as_os_str(), mp, &[])
}

fn mount_with(input: &std::ffi::OsStr, mp: &Path, extra: &[&str]) -> Mounted {
    let child = gtio()
        .arg("mount")
        .args(extra)
        .arg(input)
        .arg(mp)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut m = Mounted {
        child,
        mp: mp.to_path_buf(),
    };
    let t0 = Instant::now();
    while !is_mounted(mp) {
        if let Ok(Some(st)) = m.try_wait() {
            panic!("gtio mount exited early: {st}");
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "mount not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    m
}

/// The read_ahead_kb file of the mount's backing device (its own bdi).
fn bdi_readahead_knob(mp: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mp).unwrap().dev();
    PathBuf::from(format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    ))
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gtio-mount-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn files_read_back_readonly_and_sigterm_unmounts_with_reader_open() {
    if !usable() {
        return;
    }
    let dir = tempdir("basic");
    let src = dir.join("data");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("sub/small.txt"), b"hello\n").unwrap();
    let torrent = dir.join("data.torrent");
    let st = gtio()
        .args(["-q", "create"])
        .arg(&src)
        .arg("--web-seed")
        .arg(format!("file://{}/", dir.display()))
        .arg("-o")
        .arg(&torrent)
        .status()
        .unwrap();
    assert!(st.success());
    let mp = dir.join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let mut child = mount(&torrent, &mp);

    assert_eq!(std::fs::read(mp.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(mp.join("sub/small.txt")).unwrap(), b"hello\n");
    assert_eq!(
        std::fs::metadata(mp.join("big.bin")).unwrap().len(),
        5_000_000
    );
    let err = std::fs::write(mp.join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    // Stable inode numbers: a second lookup gives the same one.
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(mp.join("sub/small.txt")).unwrap().ino();
    assert_eq!(
        a,
        std::fs::metadata(mp.join("sub/small.txt")).unwrap().ino()
    );

    // Random preads from 8 threads: four share one open file (one FUSE
    // handle, so one reader whose window they all feed at once), four have
    // their own.
    let shared = std::fs::File::open(mp.join("big.bin")).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (mp, big, shared) = (&mp, &big, &shared);
            s.spawn(move || {
                use std::os::unix::fs::FileExt;
                let own;
                let f = if t % 2 == 0 {
                    shared
                } else {
                    own = std::fs::File::open(mp.join("big.bin")).unwrap();
                    &own
                };
                let mut x = t * 7919 + 1;
                for _ in 0..50 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let off = (x >> 20) % 4_990_000;
                    let mut buf = [0u8; 4096];
                    let n = f.read_at(&mut buf, off).unwrap();
                    assert_eq!(&buf[..n], &big[off as usize..off as usize + n]);
                }
            });
        }
    });

    drop(shared);

    // SIGTERM with a reader still open: unmounted, exit 0.
    let _reader = std::fs::File::open(mp.join("big.bin")).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!is_mounted(&mp));
    drop(_reader);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wait (bounded) for a mount process to exit; its status.
fn wait_exit(child: &mut Mounted, why: &str) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no exit after {why}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unmount(mp: &Path) {
    let st = Command::new("fusermount3")
        .arg("-u")
        .arg(mp)
        .status()
        .unwrap();
    assert!(st.success(), "fusermount3 -u {}", mp.display());
}

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", out.status);
    out.stdout
}

/// A tar of `dir` that depends only on names, sizes, contents and the
/// read/execute bits a read-only mount keeps (files r--, dirs r-x).
fn canonical_tar(dir: &Path) -> Vec<u8> {
    run_ok(
        Command::new("tar")
            .args([
                "-c",
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mode=a=rX",
                "--format=gnu",
                "-C",
            ])
            .arg(dir)
            .arg("."),
    )
}

/// (path, size) of every entry under `dir`, as `ls -lRn` prints them.
fn ls_sizes(dir: &Path) -> Vec<(String, String)> {
    let out = run_ok(Command::new("ls").arg("-lRn").arg(dir));
    let text = String::from_utf8(out).unwrap();
    let mut cur = String::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Some(d) = line.strip_suffix(':') {
            cur = d
                .strip_prefix(dir.to_str().unwrap())
                .unwrap_or(d)
                .to_string();
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        // Regular files only: a directory's size is the file system's own.
        if f.len() >= 9 && line.starts_with('-') {
            rows.push((format!("{cur}/{}", f[8..].join(" ")), f[4].to_string()));
        }
    }
    rows.sort();
    rows
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn remote_torrent_over_nginx_reads_like_the_tree_with_tools_python_fork_and_stats() {
    if !usable() {
        return;
    }
    let dir = tempdir("nginx");
    let src = dir.join("set");
    for (path, len, seed) in [
        ("a.bin", 3_000_001usize, 1u64),
        ("docs/readme.txt", 1_234, 2),
        ("docs/deep/er/x y.dat", 70_001, 3),
        ("empty.txt", 0, 4),
    ] {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, test_data(len, seed)).unwrap();
    }
    // A zip made by Python's own zipfile, read back through the mount by it.
    run_ok(
        Command::new("python3")
            .args(["-c", ZIP_WRITE])
            .arg(src.join("docs/pack.zip")),
    );
    let ngx = Nginx::start(&dir);
    let torrent = dir.join("set.torrent");
    run_ok(
        Command::new("mktorrent")
            .args(["-l", "16", "-w"])
            .arg(ngx.url(""))
            .arg("-o")
            .arg(&torrent)
            .arg(&src),
    );
    let before = SystemTime::now() - Duration::from_secs(2);
    let mp = dir.join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let url = ngx.url("set.torrent");
    let mut child = mount_with(url.as_ref(), &mp, &["--stats-addr", &addr]);

    // cmp of every file.
    let mut files = Vec::new();
    files_under(&src, &mut files);
    assert_eq!(files.len(), 5);
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let st = Command::new("cmp")
            .arg(f)
            .arg(mp.join(rel))
            .status()
            .unwrap();
        assert!(st.success(), "cmp {}", rel.display());
    }
    // tar c and ls -lR see the same tree.
    assert!(
        canonical_tar(&src) == canonical_tar(&mp),
        "tar of the mount differs"
    );
    assert_eq!(ls_sizes(&src), ls_sizes(&mp));
    // mtime: the metainfo's creation date (mktorrent writes "now").
    let mtime = std::fs::metadata(mp.join("a.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(mtime >= before && mtime <= SystemTime::now(), "{mtime:?}");
    // Python's zipfile reads the zip inside the mount.
    let out = run_ok(
        Command::new("python3")
            .args(["-c", ZIP_READ])
            .arg(mp.join("docs/pack.zip")),
    );
    assert_eq!(String::from_utf8(out).unwrap().trim(), "ok 3");
    // A forked child keeps reading the file its parent opened.
    let out = run_ok(
        Command::new("python3")
            .args(["-c", FORK_READ])
            .arg(mp.join("a.bin"))
            .arg(src.join("a.bin")),
    );
    assert_eq!(
        String::from_utf8(out).unwrap().trim(),
        "parent ok, child ok"
    );
    // Statistics as Prometheus text, answered by curl.
    let stats = run_ok(
        Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://{addr}/metrics")),
    );
    let stats = String::from_utf8(stats).unwrap();
    let fetched: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("gtio_bytes_fetched_total{source=\"webseed\"} "))
        .expect("gtio_bytes_fetched_total{source=\"webseed\"} in the statistics")
        .trim()
        .parse()
        .unwrap();
    assert!(fetched >= 3_000_001, "{stats}");

    // fusermount3 -u ends the mount process with status 0.
    unmount(&mp);
    let st = wait_exit(&mut child, "fusermount3 -u");
    assert!(st.success(), "{st}");
    assert!(!is_mounted(&mp));
    let _ = std::fs::remove_dir_all(&dir);
}

const ZIP_WRITE: &str = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for i in range(3):
        z.writestr(f"m{i}.txt", (f"member {i} " * 5000).encode())
"#;

const ZIP_READ: &str = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = z.namelist()
    for i, n in enumerate(sorted(names)):
        assert z.read(n) == (f"member {i} " * 5000).encode(), n
    assert z.testzip() is None
print("ok", len(names))
"#;

const FORK_READ: &str = r#"
import os, sys
mounted, local = sys.argv[1], sys.argv[2]
want = open(local, "rb").read()
f = open(mounted, "rb", buffering=0)
head = f.read(100_000)
assert head == want[:100_000]
pid = os.fork()
if pid == 0:
    ok = os.pread(f.fileno(), 1_000_000, 1_500_000) == want[1_500_000:2_500_000]
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
rest = f.read()
assert head + rest == want
assert status == 0, status
print("parent ok, child ok")
"#;

#[test]
fn plain_object_mounts_as_one_file_with_its_last_modified() {
    if !usable() {
        return;
    }
    let dir = tempdir("object");
    let data = test_data(2_500_000, 9);
    std::fs::write(dir.join("obj.bin"), &data).unwrap();
    // An old, exact Last-Modified (nginx sends the file's mtime).
    run_ok(
        Command::new("touch")
            .args(["-d", "@1000000000"])
            .arg(dir.join("obj.bin")),
    );
    let ngx = Nginx::start(&dir);
    let mp = dir.join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let url = ngx.url("obj.bin");
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let extra: &[&str] = if root { &["--allow-other"] } else { &[] };
    let mut child = mount_with(url.as_ref(), &mp, extra);
    if root {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == mp.to_str())
            .unwrap();
        assert!(
            line.contains("allow_other") && line.contains("default_permissions"),
            "--allow-other not in the mount's options: {line}"
        );
    }
    let names: Vec<_> = std::fs::read_dir(&mp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["obj.bin"]);
    assert_eq!(std::fs::read(mp.join("obj.bin")).unwrap(), data);
    let mtime = std::fs::metadata(mp.join("obj.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
    );
    // As root the mount lifts its own kernel readahead from 128 KiB to its
    // max_read (docs/mount.md, "Kernel requests"); others keep 128 KiB.
    let knob = bdi_readahead_knob(&mp);
    let want = if root { "1024" } else { "128" };
    let t0 = Instant::now();
    let mut got = String::new();
    while t0.elapsed() < Duration::from_secs(5) {
        got = std::fs::read_to_string(&knob).unwrap().trim().to_string();
        if got == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(got, want, "{}", knob.display());
    unmount(&mp);
    assert!(wait_exit(&mut child, "fusermount3 -u").success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_no_seed_can_give_reads_eio_while_other_files_and_the_mount_keep_working() {
    if !usable() {
        return;
    }
    let dir = tempdir("eio");
    let src = dir.join("set");
    std::fs::create_dir_all(&src).unwrap();
    let good = test_data(600_000, 5);
    // A whole number of 32 KiB pieces, so no piece spans both files.
    let bad = test_data(18 << 15, 6);
    std::fs::write(src.join("good.bin"), &good).unwrap();
    std::fs::write(src.join("bad.bin"), &bad).unwrap();
    let torrent = dir.join("set.torrent");
    let ngx_root = dir.join("seed");
    std::fs::create_dir_all(ngx_root.join("set")).unwrap();
    let ngx = Nginx::start(&ngx_root);
    run_ok(
        Command::new("mktorrent")
            .args(["-l", "15", "-w"])
            .arg(ngx.url(""))
            .arg("-o")
            .arg(&torrent)
            .arg(&src),
    );
    // The only seed serves good.bin intact and bad.bin corrupted.
    std::fs::write(ngx_root.join("set/good.bin"), &good).unwrap();
    let mut corrupt = bad.clone();
    for b in corrupt.iter_mut().step_by(4096) {
        *b ^= 0x5a;
    }
    std::fs::write(ngx_root.join("set/bad.bin"), &corrupt).unwrap();
    let mp = dir.join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let mut child = mount(&torrent, &mp);
    let err = std::fs::read(mp.join("bad.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(std::fs::read(mp.join("good.bin")).unwrap(), good);
    // The failed read took nothing down.
    assert!(child.try_wait().unwrap().is_none(), "mount process died");
    assert_eq!(std::fs::read_dir(&mp).unwrap().count(), 2);
    unmount(&mp);
    assert!(wait_exit(&mut child, "fusermount3 -u").success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn daemon_returns_once_mounted_and_reports_failure_once() {
    if !usable() {
        return;
    }
    let dir = tempdir("daemon");
    let data = test_data(100_000, 7);
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let mp = dir.join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let st = gtio()
        .args(["mount", "--daemon"])
        .arg(dir.join("f.bin"))
        .arg(&mp)
        .status()
        .unwrap();
    assert!(st.success(), "{st}");
    // Ready when the parent returns: no polling needed.
    assert!(is_mounted(&mp), "--daemon returned before the mount was up");
    assert_eq!(std::fs::read(mp.join("f.bin")).unwrap(), data);
    unmount(&mp);
    assert!(!is_mounted(&mp));

    // A mount point that does not exist: exit 1 with one message.
    let out = gtio()
        .args(["mount", "--daemon"])
        .arg(dir.join("f.bin"))
        .arg(dir.join("no-such-dir"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("gtio:").count(), 1, "{err}");
    assert!(err.contains("no-such-dir"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A number from the mount's `--stats-addr` page.
fn scrape(addr: &str, series: &str) -> u64 {
    let out = run_ok(
        Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://{addr}/metrics")),
    );
    let text = String::from_utf8(out).unwrap();
    let pre = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&pre))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn each_open_file_keeps_its_own_readahead_when_reads_interleave() {
    if !usable() {
        return;
    }
    // Two 8 MiB files of 32 KiB pieces, read 64 KiB at a time in turn with
    // O_DIRECT, so every read reaches the mount as it was made (no page
    // cache readahead in between). With a window per open file, the web
    // seed sees a few large requests; with one window for the whole
    // dataset (or a reader per read) every alternation is a seek, and each
    // 64 KiB read is its own request: 256 of them.
    let dir = tempdir("interleave");
    let src = dir.join("set");
    std::fs::create_dir_all(&src).unwrap();
    let (a, b) = (test_data(8 << 20, 11), test_data(8 << 20, 12));
    std::fs::write(src.join("a.bin"), &a).unwrap();
    std::fs::write(src.join("b.bin"), &b).unwrap();
    let ngx = Nginx::start(&dir);
    let torrent = dir.join("set.torrent");
    run_ok(
        Command::new("mktorrent")
            .args(["-l", "15", "-w"])
            .arg(ngx.url(""))
            .arg("-o")
            .arg(&torrent)
            .arg(&src),
    );
    let mp = dir.join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = mount_with(torrent.as_os_str(), &mp, &["--stats-addr", &addr]);
    let out = run_ok(
        Command::new("python3")
            .args(["-c", INTERLEAVE])
            .arg(mp.join("a.bin"))
            .arg(mp.join("b.bin"))
            .arg(src.join("a.bin"))
            .arg(src.join("b.bin")),
    );
    assert_eq!(String::from_utf8(out).unwrap().trim(), "ok 256");
    let requests = scrape(&addr, "gtio_requests_total");
    assert!(
        requests <= 64,
        "{requests} requests for two interleaved sequential files"
    );
    // Both readers were released when the files were closed.
    assert_eq!(scrape(&addr, "gtio_mount_open_files"), 0);
    unmount(&mp);
    assert!(wait_exit(&mut child, "fusermount3 -u").success());
    let _ = std::fs::remove_dir_all(&dir);
}

const INTERLEAVE: &str = r#"
import mmap, os, sys
fa, fb = (os.open(p, os.O_RDONLY | os.O_DIRECT) for p in sys.argv[1:3])
want = [open(p, "rb").read() for p in sys.argv[3:5]]
buf = mmap.mmap(-1, 65536)
reads, off = 0, 0
while off < len(want[0]):
    for i, fd in enumerate((fa, fb)):
        n = os.preadv(fd, [buf], off)
        assert buf[:n] == want[i][off:off + n], (i, off, n)
        reads += 1
    off += 65536
os.close(fa); os.close(fb)
print("ok", reads)
"#;
