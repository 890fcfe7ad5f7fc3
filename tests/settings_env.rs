//! Settings from the environment and by name (docs/design.md, "Settings"):
//! every variable of the table is read at library start, an explicit
//! `GTIO_Config` field wins over it, `gtio_set_setting` beats the
//! environment, sizing settings are fixed while the library runs, and
//! features this version lacks are `ENOTSUP`.
//!
//! Each test runs in a child process of its own (`isolate`) with its
//! environment, since settings are read once per process start.

mod abi_common;
#[path = "support/faulty_origin.rs"]
mod faulty_origin;

use std::ffi::CString;

use abi_common::*;
use faulty_origin::FaultyOrigin;
use gtio::ffi::*;

fn set(name: &str, value: Option<&str>) -> Result<(), Box<GTIO_Error>> {
    let name = CString::new(name).unwrap();
    let value = value.map(|v| CString::new(v).unwrap());
    let mut err = new_err();
    let vp = value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    match gtio_set_setting(name.as_ptr(), vp, &mut err) {
        0 => Ok(()),
        _ => Err(Box::new(err)),
    }
}

/// `set` that must succeed.
fn ok(name: &str, value: Option<&str>) {
    if let Err(e) = set(name, value) {
        panic!("gtio_set_setting({name}, {value:?}): {}", msg(&e));
    }
}

fn local_object(len: usize) -> (nginx::TempDir, String) {
    let dir = nginx::tempdir();
    let path = dir.join("obj.bin");
    std::fs::write(&path, test_bytes(len, 2)).unwrap();
    let uri = format!("file://{}", path.display());
    (dir, uri)
}

/// Bytes fetched to read one byte at offset 0: one piece, the block size.
fn block_size_in_use(uri: &str) -> u64 {
    let ds = gtio::Dataset::open(uri, None).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(ds.pread(&mut b, 0).unwrap(), 1);
    ds.stats().fetched_total()
}

fn default_config() -> GTIO_Config {
    let mut cfg = GTIO_Config {
        cache_bytes: 0,
        block_size: 0,
        workers: 0,
        max_conns_per_host: 0,
        readahead_max_bytes: 0,
        retries: 0,
        timeout_ms: 0,
        ring_entries: 0,
        poller_thread: 0,
        ca_bundle: std::ptr::null(),
    };
    gtio_config_default(&mut cfg);
    cfg
}

#[test]
fn every_variable_of_the_table_is_read_at_start() {
    let env = [
        ("GTIO_CACHE_BYTES", "50331648"),
        ("GTIO_BLOCK_SIZE", "131072"),
        ("GTIO_WORKERS", "3"),
        ("GTIO_MAX_CONNS_PER_HOST", "2"),
        ("GTIO_RETRIES", "7"),
        ("GTIO_TIMEOUT_MS", "1234"),
        ("GTIO_READAHEAD_MAX_BYTES", "0"),
        ("GTIO_CACHE_DIR_BYTES", "1000000"),
        ("GTIO_MAX_PEERS", "5"),
        ("GTIO_PEERS", "0"),
    ];
    if !isolate("every_variable_of_the_table_is_read_at_start", &env) {
        return;
    }
    let cfg = default_config();
    assert_eq!(cfg.cache_bytes, 48 << 20);
    assert_eq!(cfg.block_size, 128 << 10);
    assert_eq!(cfg.workers, 3);
    assert_eq!(cfg.max_conns_per_host, 2);
    assert_eq!(cfg.retries, 7);
    assert_eq!(cfg.timeout_ms, 1234);
    assert_eq!(cfg.readahead_max_bytes, 0);
    // The library started with no init call uses them too.
    let (_dir, uri) = local_object(1 << 20);
    assert_eq!(block_size_in_use(&uri), 128 << 10);
    let rt = gtio::runtime::get().unwrap();
    let c = rt.config();
    assert_eq!((c.workers, c.retries, c.timeout_ms), (3, 7, 1234));
    assert_eq!(c.readahead_max_bytes, 0);
}

#[test]
fn an_explicit_config_field_wins_over_the_environment() {
    let env = [("GTIO_BLOCK_SIZE", "131072"), ("GTIO_WORKERS", "3")];
    if !isolate("an_explicit_config_field_wins_over_the_environment", &env) {
        return;
    }
    // A zeroed struct with one field: that field is explicit, the others
    // (zero) come from the environment.
    let mut cfg = default_config();
    cfg.workers = 0;
    cfg.block_size = 256 << 10;
    let mut err = new_err();
    assert_eq!(gtio_lib_init(&cfg, &mut err), 0, "{}", msg(&err));
    let (_dir, uri) = local_object(1 << 20);
    assert_eq!(block_size_in_use(&uri), 256 << 10);
    assert_eq!(gtio::runtime::get().unwrap().config().workers, 3);
}

#[test]
fn a_setting_set_by_name_beats_the_environment_and_is_fixed_while_running() {
    let env = [("GTIO_BLOCK_SIZE", "262144")];
    let name = "a_setting_set_by_name_beats_the_environment_and_is_fixed_while_running";
    if !isolate(name, &env) {
        return;
    }
    ok("block_size", Some("131072"));
    let (_dir, uri) = local_object(1 << 20);
    assert_eq!(block_size_in_use(&uri), 128 << 10);
    // Running now: sizing settings are fixed.
    let e = set("block_size", Some("65536")).unwrap_err();
    assert_eq!(e.code, libc::EBUSY, "{}", msg(&e));
    assert!(msg(&e).contains("block_size"), "{}", msg(&e));
    // After fini they apply to the next start; NULL is the default again
    // (not the environment's value).
    assert_eq!(gtio_lib_fini(std::ptr::null_mut()), 0);
    ok("block_size", None);
    assert_eq!(block_size_in_use(&uri), 64 << 10, "default, env ignored");
}

#[test]
fn bad_values_and_names_are_einval() {
    if !isolate("bad_values_and_names_are_einval", &[]) {
        return;
    }
    for (name, value) in [
        ("cache_bytes", "lots"),
        ("workers", "-3"),
        ("block_size", "64k"),
        ("peers", "2"),
        ("retries", "99999999999"),
    ] {
        let e = set(name, Some(value)).unwrap_err();
        assert_eq!(e.code, libc::EINVAL, "{name}={value}: {}", msg(&e));
        assert!(msg(&e).contains(name), "{}", msg(&e));
    }
    let e = set("cache_byte", Some("1")).unwrap_err();
    assert_eq!(e.code, libc::EINVAL);
    assert!(
        msg(&e).contains("cache_bytes"),
        "lists the names: {}",
        msg(&e)
    );
    let mut err = new_err();
    assert_eq!(
        gtio_set_setting(std::ptr::null(), std::ptr::null(), &mut err),
        -1
    );
    assert_eq!(err.code, libc::EINVAL);
    assert_eq!(
        gtio_set_setting(std::ptr::null(), std::ptr::null(), std::ptr::null_mut()),
        -1
    );
}

#[test]
fn swarm_settings_are_checked_and_cache_dir_starts_a_store() {
    if !isolate(
        "swarm_settings_are_checked_and_cache_dir_starts_a_store",
        &[],
    ) {
        return;
    }
    ok("peers", Some("1"));
    let e = set("peers", Some("2")).unwrap_err();
    assert_eq!(e.code, libc::EINVAL, "peers: {}", msg(&e));
    ok("peers", Some("0"));
    ok("max_peers", Some("12"));
    ok("cache_dir_bytes", Some("1000000"));
    // cache_dir has no GTIO_Config field: set by name, the library starts
    // with a store there.
    let dir = std::env::temp_dir().join(format!("gtio-settings-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ok("cache_dir", Some(dir.to_str().unwrap()));
    let (_d, uri) = local_object(1000);
    close(open(&uri, None));
    assert!(
        dir.join("gtio-store-v1/pieces").is_dir(),
        "no store under cache_dir"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_environment_stops_the_library_with_its_name() {
    let env = [("GTIO_CACHE_DIR_BYTES", "ten gigs")];
    if !isolate("a_bad_environment_stops_the_library_with_its_name", &env) {
        return;
    }
    let (_dir, uri) = local_object(1000);
    let e = try_open(&uri, None).unwrap_err();
    assert_eq!(e.code, libc::EINVAL, "{}", msg(&e));
    assert!(msg(&e).contains("GTIO_CACHE_DIR_BYTES"), "{}", msg(&e));
    let mut err = new_err();
    assert_eq!(gtio_lib_init(std::ptr::null(), &mut err), -1);
    assert_eq!(err.code, libc::EINVAL);
    // Fixing it by name lets the library start.
    ok("cache_dir_bytes", None);
    close(open(&uri, None));
}

fn authorization_sent(origin: &FaultyOrigin) -> Vec<Option<String>> {
    origin
        .requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_string))
        .collect()
}

#[test]
fn the_default_credential_comes_from_gtio_cred_and_by_name_at_once() {
    let env = [("GTIO_CRED", "from-env")];
    let name = "the_default_credential_comes_from_gtio_cred_and_by_name_at_once";
    if !isolate(name, &env) {
        return;
    }
    let origin = FaultyOrigin::single(test_bytes(1000, 1));
    close(open(&origin.url("/a"), None));
    let sent = authorization_sent(&origin);
    assert!(!sent.is_empty());
    assert!(
        sent.iter().all(|a| a.as_deref() == Some("Bearer from-env")),
        "{sent:?}"
    );
    // Changed while running: applies to the next open.
    ok("cred", Some("Token by-name"));
    let origin = FaultyOrigin::single(test_bytes(1000, 1));
    close(open(&origin.url("/a"), None));
    let sent = authorization_sent(&origin);
    assert!(
        sent.iter().all(|a| a.as_deref() == Some("Token by-name")),
        "{sent:?}"
    );
    // An explicit credential wins; NULL (default: none) stops sending.
    let origin = FaultyOrigin::single(test_bytes(1000, 1));
    close(open(&origin.url("/a"), Some("explicit")));
    assert!(authorization_sent(&origin)
        .iter()
        .all(|a| a.as_deref() == Some("Bearer explicit")));
    ok("cred", None);
    let origin = FaultyOrigin::single(test_bytes(1000, 1));
    close(open(&origin.url("/a"), None));
    assert!(authorization_sent(&origin).iter().all(Option::is_none));
}
