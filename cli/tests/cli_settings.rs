//! The CLI's settings flags and where global options apply (issue 16, item 4).

use std::process::{Command, Output};

fn gtio(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gtio"));
    c.args(args);
    for k in [
        "GTIO_CRED",
        "GTIO_CA_BUNDLE",
        "GTIO_RETRIES",
        "GTIO_TIMEOUT_MS",
        "GTIO_CACHE_DIR",
    ] {
        c.env_remove(k);
    }
    // `gtio get` keeps pieces under the cache home by default: one per run.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    c.env(
        "XDG_CACHE_HOME",
        std::env::temp_dir().join(format!("gtio-cli-cache-{}-{n}", std::process::id())),
    );
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run gtio")
}

fn help(cmd: &str) -> String {
    let out = gtio(&[cmd, "--help"], &[]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn reading_commands_offer_every_supported_setting_with_its_variable() {
    for cmd in ["ls", "cat", "get"] {
        let h = help(cmd);
        for (flag, var) in [
            ("--cred", "GTIO_CRED"),
            ("--ca-bundle", "GTIO_CA_BUNDLE"),
            ("--cache-bytes", "GTIO_CACHE_BYTES"),
            ("--block-size", "GTIO_BLOCK_SIZE"),
            ("--workers", "GTIO_WORKERS"),
            ("--max-conns-per-host", "GTIO_MAX_CONNS_PER_HOST"),
            ("--retries", "GTIO_RETRIES"),
            ("--timeout-ms", "GTIO_TIMEOUT_MS"),
            ("--readahead-max-bytes", "GTIO_READAHEAD_MAX_BYTES"),
            ("--cache-dir", "GTIO_CACHE_DIR"),
            ("--cache-dir-bytes", "GTIO_CACHE_DIR_BYTES"),
        ] {
            assert!(h.contains(flag), "{cmd} --help lacks {flag}");
            assert!(
                h.contains(&format!("env: {var}")),
                "{cmd} --help lacks {var}"
            );
        }
        // Settings the library does not support yet are not offered.
        for absent in ["--peers", "--max-peers"] {
            assert!(!h.contains(absent), "{cmd} offers {absent}");
        }
    }
}

#[test]
fn serve_and_create_do_not_offer_network_options() {
    for cmd in ["serve", "create"] {
        let h = help(cmd);
        assert!(
            !h.contains("--cred") && !h.contains("--ca-bundle"),
            "{cmd}: {h}"
        );
    }
}

#[test]
fn a_credential_in_the_environment_is_not_shown_in_help() {
    let out = gtio(&["cat", "--help"], &[("GTIO_CRED", "s3cr3t-token")]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cr3t"));
}

#[test]
fn settings_from_the_environment_are_parsed() {
    let dir = std::env::temp_dir().join(format!("gtio-cli-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("f.bin");
    std::fs::write(&f, b"hello settings").unwrap();
    let p = f.to_str().unwrap();
    let out = gtio(&["cat", p], &[("GTIO_RETRIES", "not-a-number")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad GTIO_RETRIES is a usage error"
    );
    let out = gtio(&["cat", "--timeout-ms", "5000", "--retries", "0", p], &[]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"hello settings");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn create_without_web_seeds() {
    let dir = std::env::temp_dir().join(format!("gtio-cli-create-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), b"abc").unwrap();
    let t = dir.join("t.torrent");
    let out = gtio(
        &["create", data.to_str().unwrap(), "-o", t.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = std::fs::read(&t).unwrap();
    let text = String::from_utf8_lossy(&meta);
    assert!(text.contains("5:a.txt") && text.contains("6:pieces"));
    assert!(!text.contains("8:url-list"), "no web seed was asked for");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The defaults the help text states are the library's (they are written
/// by hand in the flags' doc comments, so a changed default must change
/// them too).
#[test]
fn help_states_the_librarys_defaults() {
    let d = gtio::Config::default();
    let h = help("cat");
    let line = |flag: &str| {
        h.lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("no {flag} in help:\n{h}"))
            .to_string()
    };
    for (flag, want) in [
        ("--workers", d.workers.to_string()),
        ("--max-conns-per-host", d.max_conns_per_host.to_string()),
        ("--retries", d.retries.to_string()),
        ("--timeout-ms", d.timeout_ms.to_string()),
        ("--block-size", d.block_size.to_string()),
        ("--cache-bytes", format!("{} MiB", d.cache_bytes >> 20)),
        (
            "--readahead-max-bytes",
            format!("{} MiB", d.readahead_max_bytes >> 20),
        ),
    ] {
        let l = line(flag);
        assert!(
            l.contains(&format!("[default: {want}]")),
            "{flag}: want [default: {want}] in {l:?}"
        );
    }
}
