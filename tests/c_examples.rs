//! Runs the compiled C examples (target/examples/, built by `make examples`)
//! against a real nginx (HTTP and HTTPS) and file://, and asserts they exit 0.
//!
//! `make check-mem` runs the same tests with `GTIO_VALGRIND="valgrind ..."`: every
//! example then runs under that command (0 definitely lost, no memory errors).
//! `GTIO_EXAMPLES_DIR` overrides where the binaries are.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::nginx::{tempdir, test_data, Nginx, TempDir};

const FILE_LEN: usize = 5 * 1024 * 1024 + 123;
const FILE_NAME: &str = "data.bin";

fn examples_dir() -> PathBuf {
    match std::env::var_os("GTIO_EXAMPLES_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("examples"),
    }
}

fn valgrind() -> Option<Vec<String>> {
    let v = std::env::var("GTIO_VALGRIND").ok()?;
    let words: Vec<String> = v.split_whitespace().map(str::to_owned).collect();
    if words.is_empty() {
        None
    } else {
        Some(words)
    }
}

/// A directory holding the test file, and nginx serving it.
struct Fixture {
    ngx: Nginx,
    local: PathBuf,
    _dir: TempDir,
}

fn fixture() -> Fixture {
    let dir = tempdir();
    let local = dir.join(FILE_NAME);
    std::fs::write(&local, test_data(FILE_LEN, 0x67_74_69_6f)).unwrap();
    let ngx = Nginx::start(&dir);
    Fixture {
        ngx,
        local,
        _dir: dir,
    }
}

/// Run target/examples/NAME with args (under valgrind when asked); panic with its
/// output unless it exits 0 within the time bound.
fn run_example(name: &str, args: &[&str], envs: &[(&str, &Path)]) {
    let (status, stdout, stderr) = run_example_output(name, args, envs);
    if !status.success() {
        panic!(
            "{name} {} failed ({status})\n--- stdout ---\n{}--- stderr ---\n{stderr}",
            args.join(" "),
            String::from_utf8_lossy(&stdout)
        );
    }
}

fn run_http(name: &str) {
    let f = fixture();
    let url = f.ngx.url(FILE_NAME);
    run_example(name, &[&url, f.local.to_str().unwrap()], &[]);
}

fn run_https(name: &str) {
    let f = fixture();
    let url = f.ngx.tls_url(FILE_NAME);
    let ca = f.ngx.ca_cert();
    run_example(
        name,
        &[&url, f.local.to_str().unwrap()],
        &[("GTIO_CA_BUNDLE", &ca)],
    );
}

fn run_file(name: &str) {
    let dir = tempdir();
    let local = dir.join(FILE_NAME);
    std::fs::write(&local, test_data(FILE_LEN, 7)).unwrap();
    let url = format!("file://{}", local.display());
    run_example(name, &[&url, local.to_str().unwrap()], &[]);
}

#[test]
fn header_check_links_and_runs() {
    run_example("header_check", &[], &[]);
}

#[test]
fn sync_read_http() {
    run_http("sync_read");
}

#[test]
fn sync_read_https() {
    run_https("sync_read");
}

#[test]
fn sync_read_file() {
    run_file("sync_read");
}

#[test]
fn task_thread_http() {
    run_http("task_thread");
}

#[test]
fn task_thread_https() {
    run_https("task_thread");
}

#[test]
fn task_thread_file() {
    run_file("task_thread");
}

#[test]
fn poller_http() {
    run_http("poller");
}

#[test]
fn poller_https() {
    run_https("poller");
}

// ---------------------------------------------------------------------------
// torrent_ls: a mktorrent torrent on nginx, listed and read through the C ABI.

/// Like `run_example`, but returns (stdout bytes, stderr text) and does not
/// require success: the caller checks the exit status.
fn run_example_output(
    name: &str,
    args: &[&str],
    envs: &[(&str, &Path)],
) -> (std::process::ExitStatus, Vec<u8>, String) {
    let bin = examples_dir().join(name);
    if !bin.exists() {
        panic!(
            "C example {} is missing: run `make examples` first (or `make test`)",
            bin.display()
        );
    }
    let (mut cmd, limit) = match valgrind() {
        Some(words) => {
            let mut c = Command::new(&words[0]);
            c.args(&words[1..]).arg(&bin);
            (c, Duration::from_secs(900))
        }
        None => (Command::new(&bin), Duration::from_secs(120)),
    };
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out_dir = tempdir();
    let (out_path, err_path) = (out_dir.join("stdout"), out_dir.join("stderr"));
    cmd.stdout(std::fs::File::create(&out_path).unwrap());
    cmd.stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {} did not finish within {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status, stdout, stderr)
}

/// `<root>/ds tree/` with nested, non-ASCII and empty files, a torrent of it
/// made by mktorrent (piece 2^15, web seed = nginx root) at
/// `<root>/t/ds.torrent`, and nginx serving `<root>`.
struct TorrentFixture {
    ngx: Nginx,
    root: TempDir,
    files: Vec<(&'static str, Vec<u8>)>,
}

fn torrent_fixture() -> TorrentFixture {
    let root = tempdir();
    let files: Vec<(&'static str, Vec<u8>)> = vec![
        ("a.bin", test_data(100_003, 0x7101)),
        ("dír/ä b.txt", test_data(45_001, 0x7102)),
        ("dír/empty", Vec::new()),
        ("z/deep/last.dat", test_data(70_000, 0x7103)),
    ];
    for (rel, data) in &files {
        let p = root.join("ds tree").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    std::fs::create_dir(root.join("t")).unwrap();
    let ngx = Nginx::start(&root);
    let out = Command::new("mktorrent")
        .args(["-d", "-l", "15", "-w", &ngx.url(""), "-o"])
        .arg(root.join("t").join("ds.torrent"))
        .arg(root.join("ds tree"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run mktorrent (scripts/install-deps.sh): {e}"));
    assert!(
        out.status.success(),
        "mktorrent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    TorrentFixture { ngx, root, files }
}

fn torrent_ls_reads(target: &str, fx: &TorrentFixture) {
    for (name, data) in &fx.files {
        let len = data.len();
        for (off, want) in [
            (0usize, len),
            (len / 3, 5_000),
            (len.saturating_sub(7), 100),
        ] {
            let off = off.min(len);
            let (status, stdout, stderr) = run_example_output(
                "torrent_ls",
                &[target, name, &off.to_string(), &want.to_string()],
                &[],
            );
            assert!(
                status.success(),
                "torrent_ls {target} {name} {off} {want} failed ({status}):\n{stderr}"
            );
            let end = (off + want).min(len);
            assert!(
                stdout == data[off..end],
                "torrent_ls {target} {name} {off} {want}: {} bytes on stdout, expected the \
                 file's {} bytes\n{stderr}",
                stdout.len(),
                end - off
            );
            // The listing (on stderr) names every file.
            for (n, d) in &fx.files {
                assert!(
                    stderr.contains(&format!(" {}  {n}\n", d.len())),
                    "listing lacks {n}:\n{stderr}"
                );
            }
        }
    }
}

#[test]
fn torrent_ls_remote_torrent_uri() {
    let fx = torrent_fixture();
    let uri = fx.ngx.url("t/ds.torrent");
    torrent_ls_reads(&uri, &fx);
}

#[test]
fn torrent_ls_local_torrent_file() {
    let fx = torrent_fixture();
    let path = fx.root.join("t").join("ds.torrent");
    torrent_ls_reads(path.to_str().unwrap(), &fx);
}

#[test]
fn torrent_ls_reports_errors() {
    let fx = torrent_fixture();
    let uri = fx.ngx.url("t/ds.torrent");
    let bad_torrent = fx.root.join("t").join("bad.torrent");
    std::fs::write(&bad_torrent, b"d4:infod4:name999999999999:xee").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![uri.clone(), "no/such/file".into(), "0".into(), "1".into()],
            "no file named",
        ),
        (
            vec![uri.clone(), "a.bin".into(), "100004".into(), "1".into()],
            "past the end",
        ),
        (
            vec![
                fx.ngx.url("t/missing.torrent"),
                "a.bin".into(),
                "0".into(),
                "1".into(),
            ],
            "gtio_open_uri failed",
        ),
        (
            vec![
                bad_torrent.to_str().unwrap().into(),
                "a.bin".into(),
                "0".into(),
                "1".into(),
            ],
            "gtio_open_gto failed",
        ),
        (
            vec![
                fx.root.join("nope.torrent").to_str().unwrap().into(),
                "a".into(),
                "0".into(),
                "1".into(),
            ],
            "cannot open",
        ),
        (
            vec![uri.clone(), "a.bin".into(), "-1".into(), "1".into()],
            "non-negative",
        ),
    ];
    for (args, expect) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, stdout, stderr) = run_example_output("torrent_ls", &args, &[]);
        assert!(!status.success(), "torrent_ls {args:?} succeeded");
        assert!(stdout.is_empty(), "torrent_ls {args:?} wrote to stdout");
        assert!(
            stderr.contains(expect),
            "torrent_ls {args:?}: expected {expect:?} in stderr:\n{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// misuse: the C ABI under misuse (NULL pointers, closed and foreign handles,
// double frees, huge counts and offsets, re-entrant callbacks, an orphaned
// thread, gtio_lib_fini with handles open), every outcome checked exactly.

#[test]
fn misuse_http() {
    run_http("misuse");
}
