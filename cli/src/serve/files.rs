//! Mapping a request-target to a regular file under the served root.
//!
//! The order of the checks is the security argument:
//!
//! 1. Take the path part of the target (origin-form, or absolute-form with
//!    its scheme and authority dropped) and cut off the query.
//! 2. Percent-decode it strictly (a `%` not followed by two hex digits is a
//!    400). Decoding comes *before* every other check, so `%2e%2e` is seen as
//!    `..` and `%2f` as a separator: no encoded form can slip past.
//! 3. Refuse NUL (400) and backslashes (403), then split on `/` and refuse
//!    any `..` segment (403). Empty and `.` segments are dropped.
//! 4. Join the segments onto the canonical root, canonicalize the result
//!    (which resolves every symlink) and refuse (404) anything whose
//!    canonical path is not inside the canonical root. A symlink that stays
//!    inside the root is fine; one that leads out is "not found", so the
//!    server does not reveal what exists elsewhere.
//! 5. Only regular files are served: directories, FIFOs, devices are 404.
//!    The file is opened with `O_NONBLOCK` so that a FIFO planted in the tree
//!    cannot block a connection thread in `open`, and the type is checked
//!    again on the opened descriptor.
//!
//! A symlink swapped between the canonicalize and the open (a TOCTOU race)
//! could still escape; that takes write access to the served tree, which is
//! outside the threat model of a demo server.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::http::unix_secs;

/// Why a target does not name a servable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// Malformed target: bad percent-encoding, NUL, not a path. 400.
    BadRequest,
    /// A path the server refuses on sight: `..`, backslash. 403.
    Forbidden,
    /// Missing, outside the root, or not a regular file. 404.
    NotFound,
}

impl ResolveError {
    pub fn status(self) -> u16 {
        match self {
            ResolveError::BadRequest => 400,
            ResolveError::Forbidden => 403,
            ResolveError::NotFound => 404,
        }
    }
}

/// Strict percent-decoding; `None` if a `%` is not followed by two hex digits.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The encoded path of a request-target, without query: `/a/b?x` → `/a/b`;
/// `http://host/a` → `/a`.
pub fn target_path(target: &str) -> Result<&str, ResolveError> {
    let path = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return Err(ResolveError::BadRequest);
        };
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    Ok(&path[..end])
}

/// The decoded, checked segments of a target, relative to the root.
pub fn target_segments(target: &str) -> Result<Vec<Vec<u8>>, ResolveError> {
    let decoded = percent_decode(target_path(target)?).ok_or(ResolveError::BadRequest)?;
    if decoded.contains(&0) {
        return Err(ResolveError::BadRequest);
    }
    if decoded.contains(&b'\\') {
        return Err(ResolveError::Forbidden);
    }
    let mut segs = Vec::new();
    for seg in decoded.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => return Err(ResolveError::Forbidden),
            s => segs.push(s.to_vec()),
        }
    }
    Ok(segs)
}

/// Resolve a request-target to the canonical path of a regular file inside
/// `root`, which must itself be canonical (see [`std::fs::canonicalize`]).
pub fn resolve(root: &Path, target: &str) -> Result<PathBuf, ResolveError> {
    let mut path = root.to_path_buf();
    for seg in target_segments(target)? {
        path.push(OsStr::from_bytes(&seg));
    }
    let canon = std::fs::canonicalize(&path).map_err(io_to_resolve)?;
    if !canon.starts_with(root) {
        return Err(ResolveError::NotFound);
    }
    let meta = std::fs::metadata(&canon).map_err(io_to_resolve)?;
    if !meta.is_file() {
        return Err(ResolveError::NotFound);
    }
    Ok(canon)
}

fn io_to_resolve(e: io::Error) -> ResolveError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => ResolveError::Forbidden,
        _ => ResolveError::NotFound,
    }
}

/// An open regular file with the facts its response needs.
#[derive(Debug)]
pub struct OpenFile {
    pub file: File,
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, whole seconds since the epoch.
    pub mtime: u64,
}

/// [`resolve`] then open read-only, re-checking the type on the descriptor.
pub fn open(root: &Path, target: &str) -> Result<OpenFile, ResolveError> {
    let path = resolve(root, target)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io_to_resolve)?;
    let meta = file.metadata().map_err(io_to_resolve)?;
    if !meta.is_file() {
        return Err(ResolveError::NotFound);
    }
    let mtime = meta.modified().map_or(0, unix_secs);
    Ok(OpenFile {
        file,
        path,
        size: meta.len(),
        mtime,
    })
}

/// `Content-Type` by extension: torrents get theirs, everything else is
/// opaque bytes (the server has no business sniffing).
pub fn content_type(path: &Path) -> &'static str {
    match path.extension() {
        Some(e) if e.eq_ignore_ascii_case("torrent") => "application/x-bittorrent",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmpdir(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("gtio-files-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    /// Removes a test's directory when the test ends.
    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// root/ with a.bin, sub/b.torrent, and beside it outside/secret; the
    /// third value removes it all when dropped.
    fn tree() -> (PathBuf, PathBuf, Cleanup) {
        let base = tmpdir("tree");
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::create_dir_all(base.join("outside")).expect("mkdir");
        std::fs::write(root.join("a.bin"), b"aaaa").expect("write");
        std::fs::write(root.join("sub/b.torrent"), b"d4:infoe").expect("write");
        std::fs::write(base.join("outside/secret"), b"s").expect("write");
        let canonical = std::fs::canonicalize(&root).expect("canon");
        (canonical, base.clone(), Cleanup(base))
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some(&b"a b"[..]));
        assert_eq!(percent_decode("%2E%2e").as_deref(), Some(&b".."[..]));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%+1"), None);
    }

    #[test]
    fn target_forms() {
        assert_eq!(target_path("/a/b?x=1"), Ok("/a/b"));
        assert_eq!(target_path("http://h:1/a"), Ok("/a"));
        assert_eq!(target_path("HTTP://h"), Ok("/"));
        assert_eq!(target_path("*"), Err(ResolveError::BadRequest));
        assert_eq!(target_path("a/b"), Err(ResolveError::BadRequest));
    }

    #[test]
    fn ordinary_files_resolve() {
        let (root, _, _cleanup) = tree();
        assert_eq!(resolve(&root, "/a.bin"), Ok(root.join("a.bin")));
        assert_eq!(
            resolve(&root, "//sub/./b.torrent?q"),
            Ok(root.join("sub/b.torrent"))
        );
        assert_eq!(
            resolve(&root, "/sub%2fb.torrent"),
            Ok(root.join("sub/b.torrent"))
        );
        assert_eq!(resolve(&root, "/%61.bin"), Ok(root.join("a.bin")));
        assert_eq!(
            content_type(&root.join("sub/b.torrent")),
            "application/x-bittorrent"
        );
        assert_eq!(
            content_type(&root.join("a.bin")),
            "application/octet-stream"
        );
    }

    #[test]
    fn traversal_is_refused() {
        let (root, _, _cleanup) = tree();
        for t in [
            "/../outside/secret",
            "/sub/../a.bin",
            "/%2e%2e/outside/secret",
            "/%2E%2E%2Foutside%2Fsecret",
            "/..%2foutside/secret",
            "/sub/..",
            "/a\\b",
            "/%5c..%5coutside",
        ] {
            assert_eq!(resolve(&root, t), Err(ResolveError::Forbidden), "{t}");
        }
        assert_eq!(
            resolve(&root, "/a.bin%00.txt"),
            Err(ResolveError::BadRequest)
        );
        assert_eq!(resolve(&root, "/a%2"), Err(ResolveError::BadRequest));
    }

    #[test]
    fn directories_and_missing_are_not_found() {
        let (root, _, _cleanup) = tree();
        assert_eq!(resolve(&root, "/"), Err(ResolveError::NotFound));
        assert_eq!(resolve(&root, "/sub/"), Err(ResolveError::NotFound));
        assert_eq!(resolve(&root, "/nope"), Err(ResolveError::NotFound));
    }

    #[test]
    fn symlinks_out_of_root_refused_inside_allowed() {
        let (root, base, _cleanup) = tree();
        symlink(base.join("outside/secret"), root.join("out-file")).expect("symlink");
        symlink(base.join("outside"), root.join("out-dir")).expect("symlink");
        symlink(root.join("a.bin"), root.join("sub/in-file")).expect("symlink");
        symlink("../sub", root.join("sub/loop")).expect("symlink");
        assert_eq!(resolve(&root, "/out-file"), Err(ResolveError::NotFound));
        assert_eq!(
            resolve(&root, "/out-dir/secret"),
            Err(ResolveError::NotFound)
        );
        assert_eq!(resolve(&root, "/sub/in-file"), Ok(root.join("a.bin")));
        assert_eq!(
            resolve(&root, "/sub/loop/b.torrent"),
            Ok(root.join("sub/b.torrent"))
        );
        let f = open(&root, "/sub/in-file").expect("open");
        assert_eq!(f.size, 4);
    }

    #[test]
    fn fifo_is_not_served_and_does_not_block() {
        let (root, _, _cleanup) = tree();
        let p = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).expect("cstr");
        // SAFETY: p is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
        assert_eq!(open(&root, "/fifo").err(), Some(ResolveError::NotFound));
    }
}
