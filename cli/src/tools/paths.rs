//! Safe output names for `gtio get`.
//!
//! Output names come partly from the command line and partly from the
//! dataset (a torrent's name, a URI's last segment, file names), so every one
//! is checked before anything is created: a name is a `/`-separated relative
//! path whose segments are neither empty, `.` nor `..`, and which contains no
//! NUL. Directories below the output directory are created one segment at a
//! time without following symbolic links, and files are written to a
//! temporary name (`O_EXCL`, so never through a link) and renamed into place,
//! so a failed `get` leaves no half-written output and nothing is ever
//! written outside the output directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why `name` cannot be used as (part of) an output path, if it cannot.
pub fn check_relative(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.contains('\0') {
        return Err("name contains NUL".into());
    }
    if name.starts_with('/') {
        return Err("absolute path".into());
    }
    for seg in name.split('/') {
        check_segment(seg)?;
    }
    Ok(())
}

/// Why `seg` cannot be one path segment, if it cannot.
pub fn check_segment(seg: &str) -> Result<(), String> {
    match seg {
        "" => Err("empty path segment".into()),
        "." | ".." => Err(format!("path segment {seg:?} would leave its directory")),
        s if s.contains('/') => Err("segment contains '/'".into()),
        s if s.contains('\0') => Err("name contains NUL".into()),
        _ => Ok(()),
    }
}

/// A checked output path: directories below the output directory, then a
/// file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputName {
    pub dirs: Vec<String>,
    pub file: String,
}

impl OutputName {
    /// `id/range-START:LEN`.
    pub fn for_range(id: &str, start: u64, len: u64) -> Result<OutputName, String> {
        check_segment(id).map_err(|why| format!("dataset name {id:?}: {why}"))?;
        Ok(OutputName {
            dirs: vec![id.to_string()],
            file: format!("range-{start}:{len}"),
        })
    }

    /// `id/NAME-START:LEN`; NAME's `/` separators become directories.
    pub fn for_file_range(
        id: &str,
        name: &str,
        start: u64,
        len: u64,
    ) -> Result<OutputName, String> {
        check_segment(id).map_err(|why| format!("dataset name {id:?}: {why}"))?;
        check_relative(name).map_err(|why| format!("file name {name:?}: {why}"))?;
        let mut dirs = vec![id.to_string()];
        let mut segs: Vec<&str> = name.split('/').collect();
        let last = segs.pop().unwrap_or_default();
        dirs.extend(segs.into_iter().map(str::to_string));
        Ok(OutputName {
            dirs,
            file: format!("{last}-{start}:{len}"),
        })
    }

    /// The path under `outdir` (nothing is created).
    pub fn under(&self, outdir: &Path) -> PathBuf {
        let mut p = outdir.to_path_buf();
        for d in &self.dirs {
            p.push(d);
        }
        p.push(&self.file);
        p
    }

    /// Create the directories under `outdir` (which must exist) without
    /// following symbolic links; returns the directory the file goes in.
    pub fn make_dirs(&self, outdir: &Path) -> io::Result<PathBuf> {
        let mut p = outdir.to_path_buf();
        for d in &self.dirs {
            p.push(d);
            ensure_real_dir(&p)?;
        }
        Ok(p)
    }
}

/// `p` exists as a directory (not a link to one), created if missing.
fn ensure_real_dir(p: &Path) -> io::Result<()> {
    for _ in 0..2 {
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a symbolic link; refusing to follow it", p.display()),
                ))
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", p.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(p) {
                Ok(()) => return Ok(()),
                // Someone made it meanwhile: look again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "{} keeps changing under us",
        p.display()
    )))
}

/// An output file being written, invisible until [`Output::commit`].
///
/// The data goes to an unnamed file in the output directory (`O_TMPFILE`),
/// which the kernel frees however the process ends — SIGINT, SIGTERM or
/// `kill -9` — so an interrupted `gtio get` never leaves a partial file
/// behind. Commit gives it a temporary name (`linkat` through /proc) and
/// renames that over the final one. Where the file system has no
/// `O_TMPFILE`, a named temporary next to the final name is used instead,
/// removed on drop, and leftovers of dead runs are removed at the next
/// create.
pub struct Output {
    file: Option<File>,
    /// Some for the named-temporary fallback: the file's current name.
    named: Option<PathBuf>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl Output {
    /// Start writing `dir/file_name`.
    pub fn create(dir: &Path, file_name: &str) -> io::Result<Output> {
        let dest = dir.join(file_name);
        let tmp = dir.join(format!(".{file_name}.gtio-part-{}", std::process::id()));
        remove_dead_partials(dir, file_name);
        // A stale temporary from a crashed run of this same pid: remove it
        // (remove_file never follows a link).
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let unnamed = OpenOptions::new()
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(dir);
        match unnamed {
            Ok(file) => Ok(Output {
                file: Some(file),
                named: None,
                tmp,
                dest,
            }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&tmp)?;
                Ok(Output {
                    file: Some(file),
                    named: Some(tmp.clone()),
                    tmp,
                    dest,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flush and move the file to its final name (replacing what was there,
    /// a link included: `rename` never follows it).
    pub fn commit(mut self) -> io::Result<()> {
        let Some(mut f) = self.file.take() else {
            return Err(io::Error::other("output already committed"));
        };
        f.flush()?;
        if self.named.take().is_none() {
            use std::os::fd::AsRawFd;
            let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
                .map_err(io::Error::other)?;
            let tmp = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
                self.tmp.as_os_str(),
            ))
            .map_err(io::Error::other)?;
            // SAFETY: both paths are NUL-terminated and live for the call.
            let r = unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    proc_path.as_ptr(),
                    libc::AT_FDCWD,
                    tmp.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let renamed = fs::rename(&self.tmp, &self.dest);
        if renamed.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        renamed
    }
}

/// `.NAME.gtio-part-PID` files of runs that are gone (the named fallback
/// after a crash).
fn remove_dead_partials(dir: &Path, file_name: &str) {
    let prefix = format!(".{file_name}.gtio-part-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = pid > 0
            && (unsafe { libc::kill(pid, 0) } == 0
                || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
        if !alive {
            let _ = fs::remove_file(e.path());
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("output already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // An unnamed file goes with its descriptor; a named one is removed.
        if let Some(named) = self.named.take() {
            let _ = fs::remove_file(named);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names() {
        assert!(check_relative("a").is_ok());
        assert!(check_relative("a/b c/d.bin").is_ok());
        assert!(check_relative("..a/b..").is_ok());
        for bad in ["", "/a", "a/../b", "..", ".", "a//b", "a/", "a/./b", "a\0b"] {
            assert!(check_relative(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn output_names() {
        let n = OutputName::for_file_range("t", "d/e/f.bin", 5, 10).unwrap();
        assert_eq!(n.dirs, ["t", "d", "e"]);
        assert_eq!(n.file, "f.bin-5:10");
        assert_eq!(
            OutputName::for_range("t", 0, 3)
                .unwrap()
                .under(Path::new("/o")),
            Path::new("/o/t/range-0:3")
        );
        assert!(OutputName::for_range("..", 0, 3).is_err());
        assert!(OutputName::for_range("a/b", 0, 3).is_err());
        assert!(OutputName::for_file_range("t", "../x", 0, 3).is_err());
        assert!(OutputName::for_file_range("t", "/etc/passwd", 0, 3).is_err());
    }
}
