//! `gtio mount --daemon`: detach once the mount is ready.
//!
//! The process forks before the library starts a thread (a child of a
//! threaded parent may only call async-signal-safe functions until it
//! execs, and the engine's threads would not exist in it). The parent waits
//! on a pipe: the child writes one line, `ok` once the filesystem is
//! mounted or `error: <message>` when it cannot be, and the parent exits 0
//! or prints the message and exits 1. So `gtio mount --daemon x /mnt && ls
//! /mnt` works, and a failure is reported on the terminal that asked, once.
//! The child starts a new session and, once ready, points its standard
//! streams at /dev/null so it holds no terminal.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd};

/// The child's side: how it reports readiness or failure to the parent.
pub struct Ready {
    pipe: Option<File>,
}

impl Ready {
    /// Not a daemon: nothing to report to.
    pub fn foreground() -> Ready {
        Ready { pipe: None }
    }

    /// The mount is up: tell the parent and let go of the terminal.
    pub fn mounted(&mut self) {
        let Some(mut pipe) = self.pipe.take() else {
            return;
        };
        let _ = pipe.write_all(b"ok\n");
        drop(pipe);
        detach_stdio();
    }

    /// The mount failed before it was up: the parent prints `message`.
    pub fn failed(&mut self, message: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let line = message.replace('\n', " ");
            let _ = writeln!(pipe, "error: {line}");
        }
    }

    pub fn is_daemon(&self) -> bool {
        self.pipe.is_some()
    }
}

/// Fork. In the parent this never returns: it exits with the child's
/// verdict. In the child it returns the [`Ready`] to report through.
pub fn fork_and_wait() -> Result<Ready, String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the descriptors are fresh and owned by exactly one File each.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded at this point (called before the library
    // starts any thread), so the child may run ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(reader);
            // SAFETY: setsid has no memory-safety preconditions.
            unsafe { libc::setsid() };
            Ok(Ready { pipe: Some(writer) })
        }
        _child => {
            drop(writer);
            let mut verdict = String::new();
            let _ = reader.read_to_string(&mut verdict);
            let verdict = verdict.lines().next().unwrap_or("");
            if verdict == "ok" {
                std::process::exit(0);
            }
            let message = verdict
                .strip_prefix("error: ")
                .unwrap_or("the mount process exited before the mount was ready");
            let _ = writeln!(std::io::stderr(), "gtio: {message}");
            std::process::exit(1);
        }
    }
}

fn detach_stdio() {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    let fd = null.into_raw_fd();
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which we own.
        unsafe { libc::dup2(fd, target) };
    }
    if fd > 2 {
        // SAFETY: fd came from into_raw_fd and is closed exactly once.
        unsafe { libc::close(fd) };
    }
}
