//! The `gtio` binary, for tests of the library that also run the tool. It is
//! built by the workspace member `cli/` (package gtio-cli) into the same
//! target directory; `cargo test` at the repository root builds it before
//! any test runs.

#![allow(dead_code)]

use std::path::PathBuf;

/// `target/<profile>/gtio`, beside the test's own `deps/` directory.
pub fn gtio_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("gtio"))
        .expect("the test executable is under target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release` (or `make build`) at the repository root first",
        bin.display()
    );
    bin
}
