//! The growing delay before answering a wrong secret: 250 ms, doubling to a 5 s cap, per source;
//! one success from the source resets it (OpenClaw's behaviour on loopback).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// First delay.
pub const BASE: Duration = Duration::from_millis(250);
/// Largest delay.
pub const CAP: Duration = Duration::from_secs(5);
/// A source's failures are forgotten after this long without another.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Most sources tracked; the oldest are dropped beyond it so memory stays bounded under a flood.
pub const MAX_SOURCES: usize = 4096;

/// Failure counts per source key (an IP address or a device id).
#[derive(Debug)]
pub struct FailureDelay<K> {
    base: Duration,
    failures: HashMap<K, (u32, Instant)>,
}

impl<K: Hash + Eq + Clone> FailureDelay<K> {
    /// A tracker whose first delay is `base` (normally [`BASE`]; zero disables delays).
    pub fn new(base: Duration) -> Self {
        Self {
            base,
            failures: HashMap::new(),
        }
    }

    /// Records a failure from `key` at `now` and returns how long to wait before answering.
    pub fn on_failure(&mut self, key: &K, now: Instant) -> Duration {
        if self.failures.len() >= MAX_SOURCES && !self.failures.contains_key(key) {
            self.failures
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET_AFTER);
            if self.failures.len() >= MAX_SOURCES {
                if let Some(oldest) = self
                    .failures
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                {
                    self.failures.remove(&oldest);
                }
            }
        }
        let entry = self.failures.entry(key.clone()).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        let n = entry.0;
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let factor = 1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(CAP.max(self.base))
    }

    /// True when `key` failed within [`FORGET_AFTER`] of `now` (its next secret must wait for
    /// an in-flight slot, see `limits::FAILING_IN_FLIGHT_PER_KEY`).
    pub fn is_failing(&self, key: &K, now: Instant) -> bool {
        self.failures
            .get(key)
            .is_some_and(|(n, at)| *n > 0 && now.saturating_duration_since(*at) < FORGET_AFTER)
    }

    /// Forgets `key`'s failures after a success.
    pub fn on_success(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Number of sources tracked.
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    /// True when no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_cap_and_resets() {
        let mut d = FailureDelay::new(BASE);
        let t = Instant::now();
        let got: Vec<u64> = (0..7)
            .map(|_| d.on_failure(&"a", t).as_millis() as u64)
            .collect();
        assert_eq!(got, vec![250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(d.on_failure(&"b", t), BASE, "other sources are unaffected");
        assert!(d.is_failing(&"a", t) && !d.is_failing(&"c", t));
        assert!(!d.is_failing(&"a", t + FORGET_AFTER), "forgotten");
        d.on_success(&"a");
        assert_eq!(d.on_failure(&"a", t), BASE);
        assert_eq!(
            d.on_failure(&"a", t + FORGET_AFTER),
            BASE,
            "old failures are forgotten"
        );
    }

    #[test]
    fn bounded_under_flood() {
        let mut d = FailureDelay::new(BASE);
        let t = Instant::now();
        for i in 0..(MAX_SOURCES * 3) {
            d.on_failure(&i, t);
        }
        assert!(d.len() <= MAX_SOURCES);
    }

    /// The delay runs on the monotonic clock (`Instant`), so wall-clock jumps (NTP steps, a VM
    /// resumed, `date -s`) cannot touch it. Even an `Instant` earlier than the last failure
    /// (which the monotonic clock never gives) neither panics nor resets the count, and the
    /// delay stays within the cap; a long gap forgets the source.
    #[test]
    fn time_going_back_or_leaping_ahead_stays_bounded() {
        let mut d = FailureDelay::new(BASE);
        let t = Instant::now() + Duration::from_secs(3600);
        assert_eq!(d.on_failure(&"k", t), BASE);
        let back = t - Duration::from_secs(1800);
        assert_eq!(d.on_failure(&"k", back), BASE * 2);
        assert_eq!(d.on_failure(&"k", back + Duration::from_secs(10)), BASE * 4);
        for _ in 0..40 {
            assert!(d.on_failure(&"k", t - Duration::from_secs(3000)) <= CAP);
        }
        assert_eq!(
            d.on_failure(&"k", t + Duration::from_secs(365 * 86_400)),
            BASE
        );
    }
}
