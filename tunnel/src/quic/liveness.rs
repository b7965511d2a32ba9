//! Is the gateway still there? (pure)
//!
//! QUIC alone notices a dead peer only at the idle timeout (45 s): until then `claw tunnel status`
//! says "connected" and local clients hang. The device sends a keep-alive every
//! [`super::config::KEEP_ALIVE`] and the gateway acknowledges each, so a live gateway is heard
//! from at least that often; [`Liveness`] declares it gone after [`DEAD_AFTER`] without a single
//! datagram from it — three keep-alives and some slack, so one or two lost packets never count as
//! a dead gateway.

use std::time::{Duration, Instant};

/// Silence after which the gateway counts as gone and the device reconnects.
pub const DEAD_AFTER: Duration = Duration::from_secs(16);

/// Watches the count of datagrams received from the gateway.
#[derive(Debug, Clone)]
pub struct Liveness {
    received: u64,
    heard_at: Instant,
}

impl Liveness {
    /// Starts watching at `now` with `received` datagrams so far.
    pub fn new(received: u64, now: Instant) -> Self {
        Self {
            received,
            heard_at: now,
        }
    }

    /// Feeds the current count; true when nothing has arrived for [`DEAD_AFTER`].
    pub fn silent(&mut self, received: u64, now: Instant) -> bool {
        if received != self.received {
            self.received = received;
            self.heard_at = now;
            return false;
        }
        now.saturating_duration_since(self.heard_at) >= DEAD_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_datagram_keeps_it_alive_and_silence_ends_it() {
        let t0 = Instant::now();
        let mut l = Liveness::new(10, t0);
        assert!(!l.silent(10, t0 + Duration::from_secs(15)));
        assert!(!l.silent(11, t0 + Duration::from_secs(15)));
        // Heard at 15 s: alive until 31 s.
        assert!(!l.silent(11, t0 + Duration::from_secs(30)));
        assert!(l.silent(11, t0 + Duration::from_secs(31)));
    }

    #[test]
    fn a_clock_that_goes_back_never_declares_it_dead() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut l = Liveness::new(0, t0);
        assert!(!l.silent(0, t0 - Duration::from_secs(50)));
    }
}
