//! `gtio mount` for real: a torrent mounted with FUSE, read with ordinary
//! tools. Skipped (with a message) where /dev/fuse or fusermount3 is absent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

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

/// Start `gtio mount` and wait (bounded) until the mount is there.
fn mount(input: &Path, mp: &Path) -> Child {
    let mut child = gtio().arg("mount").arg(input).arg(mp).spawn().unwrap();
    let t0 = Instant::now();
    while !is_mounted(mp) {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("gtio mount exited early: {st}");
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "mount not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
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

    // Random preads from 8 threads.
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (mp, big) = (&mp, &big);
            s.spawn(move || {
                use std::os::unix::fs::FileExt;
                let f = std::fs::File::open(mp.join("big.bin")).unwrap();
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
