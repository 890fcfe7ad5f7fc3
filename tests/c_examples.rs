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
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "{name} {} failed ({s})\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            args.join(" ")
        ),
        None => panic!(
            "{name} {} did not finish within {limit:?}; killed\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            args.join(" ")
        ),
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
