//! The per-host connection cap (`max_conns_per_host`).
//!
//! Every request holds a [`HostPermit`] of its final host from before it
//! connects until its body is consumed or dropped. Idle pooled connections
//! hold none, but a request only opens a new connection when no idle one is
//! left for its host, so live connections (busy plus idle) never outnumber
//! the cap either.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// Counts requests in flight per host and makes new ones wait for a slot.
pub struct HostLimiter {
    cap: usize,
    open: Mutex<HashMap<String, usize>>,
    freed: Condvar,
}

/// Holds one connection slot of a host until dropped.
pub struct HostPermit {
    limiter: Arc<HostLimiter>,
    host: String,
}

impl HostLimiter {
    pub fn new(cap: usize) -> Arc<HostLimiter> {
        Arc::new(HostLimiter {
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
            freed: Condvar::new(),
        })
    }

    /// Wait for a slot of `host`. Waits for other requests of this process
    /// to finish, each of which is bounded by the client's timeouts.
    pub fn acquire(self: &Arc<Self>, host: &str) -> HostPermit {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let n = open.entry(host.to_string()).or_insert(0);
            if *n < self.cap {
                *n += 1;
                break;
            }
            open = self.freed.wait(open).unwrap_or_else(|e| e.into_inner());
        }
        HostPermit {
            limiter: Arc::clone(self),
            host: host.to_string(),
        }
    }

    #[cfg(test)]
    fn open_count(&self, host: &str) -> usize {
        self.open.lock().unwrap().get(host).copied().unwrap_or(0)
    }
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.host);
            }
        }
        drop(open);
        self.limiter.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limiter_caps_and_releases() {
        let l = HostLimiter::new(2);
        let a = l.acquire("h:80");
        let _b = l.acquire("h:80");
        assert_eq!(l.open_count("h:80"), 2);
        let l2 = Arc::clone(&l);
        let t = std::thread::spawn(move || {
            let _c = l2.acquire("h:80");
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "third permit must wait");
        drop(a);
        t.join().unwrap();
    }
}
