//! The wait budget of a request: how long each blocking call may wait,
//! and when slow progress is a stall. Pure bookkeeping, no I/O: `conn.rs`
//! asks it for a budget before each wait and reports what the wait brought.

use std::time::{Duration, Instant};

use super::conn::Failure;

/// The wait budget of one request, from sending it to the body's last byte.
///
/// - Until the first response byte, waiting longer than `window` (the
///   `timeout_ms` setting) is [`Failure::NoAnswer`].
/// - After it, time spent *waiting on the server* is cut into windows of
///   the same length; a window that moved fewer than
///   `stall_min_bytes_per_sec × window` bytes is a [`Failure::Stall`]. Time
///   the caller spends between reads does not count, so a slow consumer is
///   never mistaken for a slow server, and a transfer that ends inside a
///   window is never judged by it.
/// - Every wait also ends at the caller's `deadline` (an open's total bound).
#[derive(Debug, Clone)]
pub struct Pace {
    pub(super) window: Duration,
    min_rate: u64,
    min_bytes: u64,
    pub(super) deadline: Option<(Instant, Duration)>,
    waited: Duration,
    bytes: u64,
    answered: bool,
}

pub const MIN_WAIT: Duration = Duration::from_millis(1);

impl Pace {
    /// `deadline`: the instant and the setting it came from (for messages).
    pub fn new(window: Duration, min_rate: u64, deadline: Option<(Instant, Duration)>) -> Pace {
        let window = window.max(Duration::from_millis(10));
        let per_window = (u128::from(min_rate) * window.as_millis() / 1000) as u64;
        Pace {
            window,
            min_rate,
            min_bytes: per_window.max(1),
            deadline,
            waited: Duration::ZERO,
            bytes: 0,
            answered: false,
        }
    }

    /// How long the next blocking call may wait.
    pub fn budget(&self) -> Result<Duration, Failure> {
        let mut b = self.window.saturating_sub(self.waited);
        if let Some((at, setting)) = self.deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Deadline(setting));
            }
            b = b.min(left);
        }
        Ok(b.max(MIN_WAIT))
    }

    /// Account one blocking call that took `took` and delivered `n` bytes.
    pub fn account(&mut self, took: Duration, n: usize) -> Result<(), Failure> {
        if !self.answered {
            if n > 0 {
                // The rate windows start with the first byte: time to first
                // byte is bounded by the timeout alone.
                self.answered = true;
                self.waited = Duration::ZERO;
                self.bytes = 0;
                return Ok(());
            }
            self.waited += took;
            if self.waited >= self.window {
                return Err(Failure::NoAnswer(self.window));
            }
            return Ok(());
        }
        self.waited += took;
        self.bytes += n as u64;
        if self.waited >= self.window {
            if self.bytes < self.min_bytes {
                return Err(Failure::Stall {
                    min_rate: self.min_rate,
                    window: self.window,
                });
            }
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
        Ok(())
    }

    /// A bound for a short exchange that must finish as a whole (connect,
    /// TLS handshake, writing the request): the timeout, or less if the
    /// deadline is nearer.
    pub fn whole(&self) -> Result<Instant, Failure> {
        let b = self.budget()?;
        Ok(Instant::now() + b.min(self.window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_bounds_first_byte_then_rate() {
        let w = Duration::from_secs(2);
        let mut p = Pace::new(w, 1024, None);
        assert_eq!(p.budget().unwrap(), w);
        p.account(Duration::from_secs(1), 0).unwrap();
        assert!(matches!(
            p.account(Duration::from_secs(1), 0),
            Err(Failure::NoAnswer(_))
        ));

        let mut p = Pace::new(w, 1024, None);
        p.account(Duration::from_millis(10), 1).unwrap();
        // 1 byte per 1.5 s: the window of 2 s holds 2 bytes < 2048.
        p.account(Duration::from_millis(1500), 1).unwrap();
        assert!(matches!(
            p.account(Duration::from_millis(1500), 1),
            Err(Failure::Stall { .. })
        ));

        // A fast transfer never trips, however long.
        let mut p = Pace::new(w, 1024, None);
        for _ in 0..10_000 {
            p.account(Duration::from_millis(1), 65536).unwrap();
        }
    }

    #[test]
    fn pace_honours_the_deadline() {
        let at = Instant::now() + Duration::from_millis(50);
        let p = Pace::new(
            Duration::from_secs(20),
            1024,
            Some((at, Duration::from_secs(6))),
        );
        assert!(p.budget().unwrap() <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(p.budget(), Err(Failure::Deadline(_))));
    }
}
