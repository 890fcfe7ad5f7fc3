//! Generates the C header with cbindgen and keeps the committed copy honest.
//!
//! The header is generated into OUT_DIR on every build and compared with
//! `include/gtio.h`: a difference is a warning locally and an error when
//! `GTIO_CHECK_HEADER=1` (CI). `GTIO_UPDATE_HEADER=1` (`make header`) writes
//! the new header into `include/`. The shared library gets its soname here.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=GTIO_CHECK_HEADER");
    println!("cargo:rerun-if-env-changed=GTIO_UPDATE_HEADER");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libgtio.so.0");
    }

    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets this")).join("gtio.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let bindings = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            // A syntax error in src/ will be reported by rustc, more clearly.
            println!("cargo:warning=cbindgen could not generate the header: {e}");
            return;
        }
    };
    bindings.write_to_file(&out);
    let committed_path = crate_dir.join("include").join("gtio.h");
    let generated = std::fs::read_to_string(&out).unwrap_or_default();
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if generated == committed {
        return;
    }
    if std::env::var("GTIO_UPDATE_HEADER").as_deref() == Ok("1") {
        std::fs::create_dir_all(crate_dir.join("include")).expect("create include/");
        std::fs::write(&committed_path, generated).expect("write include/gtio.h");
        return;
    }
    if std::env::var("GTIO_CHECK_HEADER").as_deref() == Ok("1") {
        panic!("include/gtio.h is out of date with src/ffi: run `make header` and commit it");
    }
    println!("cargo:warning=include/gtio.h is out of date: run `make header`");
}
