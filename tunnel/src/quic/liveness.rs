//! Is the gateway still there? (pure)
//!
//! QUIC alone notices a dead peer only at the idle timeout (45 s): until then `claw tunnel status`
//! says "connected", local clients hang and the gateway shows the device online. The device sends a keep-alive every
//! [`super::config::KEEP_ALIVE`] and the gateway acknowledges each, so a live gateway is heard
//! from at least that often; [`Liveness`] declares it gone after [`DEAD_AFTER`] without a single
//! datagram from it — three keep-alives and some slack, so one or two lost packets never count as
//! a dead gateway.

use std::time::{Duration, Instant};

/// Silence after which the gateway counts as gone and the device reconnects.
pub const DEAD_AFTER: Duration = Duration::from_secs(16);

/// Silence after which the gateway shows a tunnelled device offline (presence, the control page,
/// `claw devices list`): three of the device's keep-alives and a second of slack, so a `kill -9`
/// of `claw tunnel up` or a lost network shows within ~8 s. Only presence: the connection itself
/// lives on until the idle timeout, so a short outage resumes where it was (and the device shows
/// online again at its first packet).
pub const SILENT_AFTER: Duration = Duration::from_secs(7);

/// Watches the count of datagrams received from the peer.
#[derive(Debug, Clone)]
pub struct Liveness {
    received: u64,
    heard_at: Instant,
    after: Duration,
}

impl Liveness {
    /// Starts watching at `now` with `received` datagrams so far; silent after [`DEAD_AFTER`].
    pub fn new(received: u64, now: Instant) -> Self {
        Self::with_limit(received, now, DEAD_AFTER)
    }

    /// The same with another silence limit (the gateway's [`SILENT_AFTER`]).
    pub fn with_limit(received: u64, now: Instant, after: Duration) -> Self {
        Self {
            received,
            heard_at: now,
            after,
        }
    }

    /// Feeds the current count; true when nothing has arrived for the limit.
    pub fn silent(&mut self, received: u64, now: Instant) -> bool {
        if received != self.received {
            self.received = received;
            self.heard_at = now;
            return false;
        }
        now.saturating_duration_since(self.heard_at) >= self.after
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
    fn the_gateway_limit_is_three_keep_alives_and_a_second() {
        use crate::quic::config::{IDLE_TIMEOUT, KEEP_ALIVE};
        assert_eq!(SILENT_AFTER, KEEP_ALIVE * 3 + Duration::from_secs(1));
        assert!(SILENT_AFTER < DEAD_AFTER && DEAD_AFTER < IDLE_TIMEOUT);
        let t0 = Instant::now();
        let mut l = Liveness::with_limit(3, t0, SILENT_AFTER);
        assert!(!l.silent(3, t0 + Duration::from_secs(6)));
        assert!(l.silent(3, t0 + Duration::from_secs(7)));
        // Heard again: not silent, and the limit counts from then.
        assert!(!l.silent(4, t0 + Duration::from_secs(8)));
        assert!(!l.silent(4, t0 + Duration::from_secs(14)));
        assert!(l.silent(4, t0 + Duration::from_secs(15)));
    }

    #[test]
    fn a_clock_that_goes_back_never_declares_it_dead() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut l = Liveness::new(0, t0);
        assert!(!l.silent(0, t0 - Duration::from_secs(50)));
    }
}
