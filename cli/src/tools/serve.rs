//! `gtio serve`: run [`crate::serve::Server`] until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;

use super::input::io_message;
use super::{Failure, Outcome};
use crate::serve::{ServeConfig, Server};

/// Serve `dir` on `addr`; call `ready` with the base URL
/// (`http://HOST:PORT/`) once it accepts connections, and return after
/// SIGINT or SIGTERM, with every server thread joined. Returns the signal.
///
/// The signals are blocked before the server starts its threads (which
/// inherit the mask) and taken with `sigwait` on this thread, so no handler
/// runs in an arbitrary thread.
pub fn serve(dir: &Path, addr: SocketAddr, ready: impl FnOnce(&str)) -> Outcome<i32> {
    let set = block_stop_signals()?;
    let server = Server::start(ServeConfig {
        root: dir.to_path_buf(),
        addr,
    })
    .map_err(|e| Failure::new(format!("serve {} on {addr}", dir.display()), io_message(&e)))?;
    ready(&format!("http://{}/", server.local_addr()));
    let sig = wait_for(&set);
    server.shutdown();
    Ok(sig)
}

fn block_stop_signals() -> Outcome<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use,
    // and every pointer passed is to a live local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(Failure::new(
                "blocking SIGINT and SIGTERM",
                io_message(&std::io::Error::from_raw_os_error(rc)),
            ));
        }
        Ok(set)
    }
}

fn wait_for(set: &libc::sigset_t) -> i32 {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` was initialised by block_stop_signals; `sig` is a
        // live local.
        let rc = unsafe { libc::sigwait(set, &mut sig) };
        if rc == 0 {
            return sig;
        }
    }
}

/// A signal's conventional name, for the goodbye line.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
