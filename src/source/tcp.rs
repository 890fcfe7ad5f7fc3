//! Socket options the TCP sources share.

use std::os::fd::AsRawFd;

/// Ask the kernel to acknowledge what `stream` received at once instead of
/// delaying the ACK (40 ms or more on Linux).
///
/// A sender with Nagle's algorithm on holds the last small segment of a
/// write until the segments before it are acknowledged, so a delayed ACK
/// stalls that tail by 40 ms: a BitTorrent seeder writing a piece message in
/// parts (docs/swarm.md, "Latency"), and nginx with `tcp_nopush on` ending
/// each response (docs/http.md, "Acknowledging at once"). The flag is not
/// sticky, the kernel may fall back to delayed ACKs, so callers set it again
/// after each read that drained the socket. Best effort: a failure only
/// costs latency.
pub fn ack_now(stream: &impl AsRawFd) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option of the right size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
