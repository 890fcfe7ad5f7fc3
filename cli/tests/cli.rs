//! The `gtio` command-line tool, run as a program against real servers:
//! nginx (tests/support) and its own `gtio serve`, with aria2c as an
//! independent BitTorrent client for the torrents `gtio create` makes.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::nginx::{tempdir, test_data, Nginx, AUTH_TOKEN};

const GTIO: &str = env!("CARGO_BIN_EXE_gtio");
/// No single command may take longer than this.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// `gtio` with a clean environment for the variables it reads.
fn gtio() -> Command {
    let mut cmd = Command::new(GTIO);
    cmd.env_remove("GTIO_CRED")
        .env_remove("GTIO_CA_BUNDLE")
        .env_remove("GTIO_CACHE_DIR")
        .env("XDG_CACHE_HOME", fresh_cache_home());
    cmd
}

/// A cache home of its own for each command: `gtio get` keeps pieces there
/// by default, and one test's pieces must not serve another's reads.
fn fresh_cache_home() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("gtio-cli-cache-{}-{n}", std::process::id()))
}

/// Run to completion within [`COMMAND_LIMIT`] (killed and failed past it).
fn run_cmd(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    // Drain both pipes on threads so a chatty child cannot block.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn run(args: &[&str]) -> Output {
    let mut cmd = gtio();
    cmd.args(args);
    run_cmd(cmd)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run and require exit 0; returns stdout.
fn ok(args: &[&str]) -> Vec<u8> {
    let out = run(args);
    assert!(
        out.status.success(),
        "gtio {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out.stdout
}

/// Run and require failure with `code` and exactly one `gtio: ...` line on
/// stderr; returns that line.
fn fails(args: &[&str], code: i32) -> String {
    let out = run(args);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "gtio {args:?}: expected exit {code}, got {}; stderr: {err}",
        out.status
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "gtio {args:?}: expected one line, got: {err:?}"
    );
    assert!(lines[0].starts_with("gtio: "), "{err:?}");
    assert!(!err.contains("panicked"), "{err:?}");
    lines[0].to_string()
}

/// A small tree: sample/{README, index/x.idx, reads/a.bin, reads/b.bin,
/// reads/deep/c.bin}, a few MiB, deterministic. Returns the files in
/// metainfo order (sorted by '/'-joined path) with their contents.
fn make_tree(parent: &Path) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = vec![
        ("README".into(), b"gtio test tree\n".to_vec()),
        ("index/x.idx".into(), test_data(70_001, 1)),
        ("reads/a.bin".into(), test_data(2 * 1024 * 1024 + 17, 2)),
        ("reads/b.bin".into(), test_data(1024 * 1024 + 5, 3)),
        ("reads/deep/c.bin".into(), test_data(333_333, 4)),
    ];
    for (name, data) in &files {
        let p = parent.join("sample").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    files
}

/// `dir/www/sample` (see `make_tree`) served by `gtio serve`, and its torrent
/// made by `gtio create` with that server as web seed and 2^`piece_log2`
/// pieces at `dir/sample.torrent`.
fn serve_sample(dir: &Path, piece_log2: u32) -> (Vec<(String, Vec<u8>)>, Served, PathBuf) {
    let www = dir.join("www");
    let files = make_tree(&www);
    let served = Served::start(&www);
    let torrent = dir.join("sample.torrent");
    let log2 = piece_log2.to_string();
    ok(&[
        "create",
        path_str(&www.join("sample")),
        "--web-seed",
        &served.url,
        "-l",
        &log2,
        "-o",
        path_str(&torrent),
    ]);
    (files, served, torrent)
}

fn stream_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    files.iter().flat_map(|(_, d)| d.iter().copied()).collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `gtio serve DIR --addr 127.0.0.1:0`, its URL read from its stdout;
/// stopped with SIGTERM on drop.
struct Served {
    child: Child,
    url: String,
    _stdout: BufReader<ChildStdout>,
}

impl Served {
    fn start(dir: &Path) -> Served {
        let mut child = gtio()
            .args(["serve", path_str(dir), "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gtio serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("gtio serve: read its URL");
        let url = line.trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
            "gtio serve printed {line:?}"
        );
        Served {
            child,
            url,
            _stdout: stdout,
        }
    }

    /// SIGTERM, then wait (bounded); returns the exit status and stderr.
    fn stop(&mut self) -> (Option<i32>, String) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("gtio serve did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.code(), err)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every regular file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn help_has_examples_and_bad_command_lines_exit_2() {
    let help = text(&ok(&["--help"]));
    assert!(help.contains("Examples:"), "{help}");
    for sub in ["ls", "cat", "get", "create", "serve"] {
        assert!(help.contains(sub), "{help}");
        let sub_help = text(&ok(&[sub, "--help"]));
        assert!(
            sub_help.contains("Example"),
            "gtio {sub} --help: {sub_help}"
        );
    }
    for args in [
        &["bogus"][..],
        &["get", "--range", "x:0:1"],
        &[
            "create",
            "/tmp",
            "--web-seed",
            "ftp://h/",
            "-o",
            "x.torrent",
        ],
        &[
            "create",
            "/tmp",
            "--web-seed",
            "http://h/",
            "-l",
            "40",
            "-o",
            "x",
        ],
        &["serve", "/tmp", "--addr", "not-an-address"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "gtio {args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("panicked"));
    }
}

#[test]
fn ls_and_cat_a_torrent_and_a_plain_object_on_nginx() {
    let dir = tempdir();
    let files = make_tree(&dir);
    let stream = stream_of(&files);
    let ngx = Nginx::start(&dir);
    let torrent = dir.join("sample.torrent");
    let summary = text(&ok(&[
        "create",
        path_str(&dir.join("sample")),
        "--web-seed",
        &ngx.url(""),
        "-l",
        "16",
        "-o",
        path_str(&torrent),
    ]));
    assert!(summary.contains("sample: 5 files"), "{summary}");

    // ls: the local torrent and the same torrent over HTTP.
    for input in [path_str(&torrent).to_string(), ngx.url("sample.torrent")] {
        let listing = text(&ok(&["ls", &input]));
        let mut offset = 0u64;
        for (name, data) in &files {
            let row = listing
                .lines()
                .find(|l| l.split_whitespace().nth(2) == Some(name.as_str()))
                .unwrap_or_else(|| panic!("{name} missing from:\n{listing}"));
            let cols: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cols[0], offset.to_string(), "{row}");
            assert_eq!(cols[1], data.len().to_string(), "{row}");
            offset += data.len() as u64;
        }
        assert!(listing.starts_with("sample: 5 files"), "{listing}");
        let json = text(&ok(&["ls", "--json", &input]));
        assert!(json.starts_with(r#"{"name":"sample","size":"#), "{json}");
        assert!(
            json.contains(r#"{"name":"reads/deep/c.bin","offset":"#),
            "{json}"
        );
    }
    let listing = text(&ok(&["ls", &ngx.url("sample/reads/b.bin")]));
    assert!(listing.contains("b.bin"), "{listing}");

    // cat: the whole stream, one file, a slice of a file, a plain object.
    let t = path_str(&torrent);
    assert!(
        ok(&["cat", t]) == stream,
        "cat of the whole torrent differs"
    );
    let (name, data) = &files[3];
    assert!(ok(&["cat", t, "--file", name]) == *data);
    let got = ok(&[
        "cat", t, "--file", name, "--offset", "1000", "--length", "70000",
    ]);
    assert!(got == data[1000..71_000]);
    let got = ok(&["cat", &ngx.url("sample/reads/a.bin"), "--offset", "5"]);
    assert!(got == files[2].1[5..]);
    // A length past the end stops at the end; an offset past it is an error.
    let got = ok(&[
        "cat",
        t,
        "--offset",
        &(stream.len() - 3).to_string(),
        "--length",
        "100",
    ]);
    assert!(got == stream[stream.len() - 3..]);
    let line = fails(&["cat", t, "--offset", &(stream.len() + 1).to_string()], 1);
    assert!(line.contains("past the end"), "{line}");
    let line = fails(&["cat", t, "--file", "nope.bin"], 1);
    assert!(line.contains("nope.bin"), "{line}");
}

#[test]
fn get_overlapping_ranges_and_a_file_range_from_gtio_serve() {
    let dir = tempdir();
    let (files, mut served, torrent) = serve_sample(&dir, 15);
    let stream = stream_of(&files);
    let plain = format!("{}sample/reads/a.bin", served.url);
    let out = dir.join("out");
    let stdout = text(&ok(&[
        "get",
        "-d",
        path_str(&torrent),
        "-d",
        &plain,
        "--range",
        "sample:1000:2500000",
        "--range",
        "sample:2000000:1500000",
        "--file-range",
        "sample:reads/deep/c.bin:7:300000",
        "--range",
        "a.bin:0:65536",
        // The same bytes twice: written once.
        "--range",
        "sample:1000:2500000",
        "-o",
        path_str(&out),
    ]));
    let expected = [
        "a.bin/range-0:65536",
        "sample/range-1000:2500000",
        "sample/range-2000000:1500000",
        "sample/reads/deep/c.bin-7:300000",
    ];
    assert_eq!(files_under(&out), expected);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let read = |p: &str| std::fs::read(out.join(p)).unwrap();
    assert!(read(expected[0]) == files[2].1[..65536]);
    assert!(read(expected[1]) == stream[1000..2_501_000]);
    assert!(read(expected[2]) == stream[2_000_000..3_500_000]);
    assert!(read(expected[3]) == files[4].1[7..300_007]);

    // Again, over the existing outputs: replaced, same bytes, no leftovers.
    ok(&[
        "get",
        "-q",
        "-d",
        path_str(&torrent),
        "--range",
        "sample:1000:2500000",
        "-o",
        path_str(&out),
    ]);
    assert_eq!(files_under(&out), expected);
    assert!(read(expected[1]) == stream[1000..2_501_000]);

    // Ranges past the end, unknown IDs and files are refused up front.
    let t = path_str(&torrent);
    let o = path_str(&out);
    let size = stream.len().to_string();
    let past = format!("sample:{size}:1");
    assert!(fails(&["get", "-d", t, "--range", &past, "-o", o], 1).contains("past the end"));
    assert!(fails(&["get", "-d", t, "--range", "other:0:1", "-o", o], 2).contains("other"));
    assert!(fails(
        &[
            "get",
            "-d",
            t,
            "--file-range",
            "sample:no/such:0:1",
            "-o",
            o
        ],
        1
    )
    .contains("no/such"));
    assert!(fails(&["get", "-d", t, "--range", "sample:0:ten", "-o", o], 2).contains("ten"));
    assert_eq!(files_under(&out), expected);

    // A single-file torrent's ID and file name are both the file's name; a
    // seed URL ending in '/' gets the name appended (BEP 19).
    let single = dir.join("c.torrent");
    let seed = format!("{}sample/reads/deep/", served.url);
    ok(&[
        "create",
        path_str(&dir.join("www/sample/reads/deep/c.bin")),
        "--web-seed",
        &seed,
        "-o",
        path_str(&single),
    ]);
    let out2 = dir.join("out2");
    ok(&[
        "get",
        "-q",
        "-d",
        path_str(&single),
        "--file-range",
        "c.bin:c.bin:0:10",
        "--range",
        "c.bin:5:5",
        "-o",
        path_str(&out2),
    ]);
    assert_eq!(files_under(&out2), ["c.bin/c.bin-0:10", "c.bin/range-5:5"]);
    assert!(std::fs::read(out2.join("c.bin/c.bin-0:10")).unwrap() == files[4].1[..10]);
    assert!(std::fs::read(out2.join("c.bin/range-5:5")).unwrap() == files[4].1[5..10]);

    let (code, err) = served.stop();
    assert_eq!(code, Some(0), "gtio serve after SIGTERM: {err}");
    assert!(err.contains("stopped (SIGTERM)"), "{err}");
}

#[test]
fn get_refuses_output_names_that_escape_the_output_directory() {
    let dir = tempdir();
    let www = dir.join("www");
    make_tree(&www);
    let torrent = dir.join("sample.torrent");
    ok(&[
        "create",
        path_str(&www.join("sample")),
        "--web-seed",
        "http://127.0.0.1:9/",
        "-o",
        path_str(&torrent),
    ]);
    let parent = dir.join("p");
    std::fs::create_dir(&parent).unwrap();
    let out = parent.join("out");
    let t = path_str(&torrent);
    let o = path_str(&out);
    for spec in [
        "sample:../evil:0:1",
        "sample:../../evil:0:1",
        "sample:reads/../../../evil:0:1",
        "sample:/tmp/evil:0:1",
        "sample:reads//a.bin:0:1",
        "sample:./README:0:1",
    ] {
        let line = fails(&["get", "-d", t, "--file-range", spec, "-o", o], 2);
        assert!(line.contains("refusing output name"), "{spec}: {line}");
    }
    // Nothing was fetched (the seed is a dead port) or written anywhere.
    assert_eq!(files_under(&dir.join("p")), Vec::<String>::new());
    assert!(!out.exists());
    assert!(!dir.join("evil").exists());

    // An ID directory that is a symbolic link is not followed.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("sample")).unwrap();
    let served = Served::start(&www);
    let torrent2 = dir.join("sample2.torrent");
    ok(&[
        "create",
        path_str(&www.join("sample")),
        "--web-seed",
        &served.url,
        "-o",
        path_str(&torrent2),
    ]);
    let line = fails(
        &[
            "get",
            "-d",
            path_str(&torrent2),
            "--range",
            "sample:0:10",
            "-o",
            o,
        ],
        1,
    );
    assert!(line.contains("symbolic link"), "{line}");
    assert_eq!(files_under(&elsewhere), Vec::<String>::new());
}

#[test]
fn missing_inputs_fail_with_one_line() {
    let dir = tempdir();
    std::fs::write(dir.join("there.bin"), b"x").unwrap();
    let ngx = Nginx::start(&dir);
    let missing = dir.join("missing.torrent");
    let line = fails(&["ls", path_str(&missing)], 1);
    assert!(
        line.contains("missing.torrent") && line.contains("No such file"),
        "{line}"
    );
    fails(&["cat", path_str(&dir.join("missing.bin"))], 1);
    let line = fails(&["ls", &ngx.url("missing.bin")], 1);
    assert!(
        line.contains("404") || line.to_lowercase().contains("not found"),
        "{line}"
    );
    fails(
        &["get", "-d", &ngx.url("missing.torrent"), "--range", "x:0:1"],
        1,
    );
    let line = fails(&["ls", "ftp://127.0.0.1/x"], 1);
    assert!(line.contains("scheme"), "{line}");
    fails(&["ls", path_str(&dir)], 1);
    let line = fails(
        &[
            "create",
            path_str(&dir.join("nope")),
            "--web-seed",
            "http://h/",
            "-o",
            path_str(&dir.join("n.torrent")),
        ],
        1,
    );
    assert!(line.contains("nope"), "{line}");
    let line = fails(&["serve", path_str(&dir.join("nope"))], 1);
    assert!(line.contains("nope"), "{line}");
}

#[test]
fn credentials_and_tls_options() {
    let dir = tempdir();
    let data = test_data(300_000, 9);
    std::fs::write(dir.join("secret.bin"), &data).unwrap();
    let ngx = Nginx::start(&dir);
    let url = ngx.url("auth/secret.bin");
    let line = fails(&["cat", &url], 1);
    assert!(!line.contains(AUTH_TOKEN));
    assert!(ok(&["cat", "--cred", AUTH_TOKEN, &url]) == data);
    let mut cmd = gtio();
    cmd.env("GTIO_CRED", AUTH_TOKEN)
        .args(["cat", &url, "--length", "10"]);
    let out = run_cmd(cmd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout == data[..10]);
    // https: untrusted without the test CA, fine with it.
    let tls = ngx.tls_url("secret.bin");
    fails(&["ls", &tls], 1);
    let ca = ngx.ca_cert();
    assert!(ok(&["cat", "--ca-bundle", path_str(&ca), &tls]) == data);
}

#[test]
fn cat_into_a_closed_pipe_is_a_quiet_success() {
    let dir = tempdir();
    std::fs::write(dir.join("big.bin"), test_data(16 << 20, 5)).unwrap();
    let ngx = Nginx::start(&dir);
    // The pipe read end closes after 10 bytes, as with `| head -c 10`.
    let mut child = gtio()
        .args(["cat", &ngx.url("big.bin")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < COMMAND_LIMIT, "gtio cat did not end");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "gtio cat | head: {status}, stderr {err:?}"
    );
    assert_eq!(err, "");
    assert_eq!(&first[..], &test_data(10, 5)[..]);

    // The same through a real shell pipeline.
    let mut sh = Command::new("bash");
    sh.arg("-c").arg(format!(
        "set -o pipefail; '{GTIO}' cat '{}' | head -c 10 | wc -c",
        ngx.url("big.bin")
    ));
    let out = run_cmd(sh);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "10");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn aria2c_downloads_a_torrent_made_by_gtio_create_from_gtio_serve() {
    let aria2c = ["/usr/bin/aria2c", "/usr/local/bin/aria2c"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("aria2c is not installed (make deps)");
    let dir = tempdir();
    let (files, mut served, torrent) = serve_sample(&dir, 16);
    let dl = dir.join("dl");
    let mut cmd = Command::new(aria2c);
    cmd.args([
        "--seed-time=0",
        "--allow-overwrite=true",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--follow-torrent=mem",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--check-integrity=true",
        &format!("--dir={}", path_str(&dl)),
        path_str(&torrent),
    ]);
    let out = run_cmd(cmd);
    assert!(
        out.status.success(),
        "aria2c failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    for (name, data) in &files {
        let got = std::fs::read(dl.join("sample").join(name))
            .unwrap_or_else(|e| panic!("aria2c did not write {name}: {e}"));
        assert!(got == *data, "aria2c's {name} differs from the source");
    }
    let (code, err) = served.stop();
    assert_eq!(code, Some(0), "{err}");
}
