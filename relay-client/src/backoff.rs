//! Capped exponential backoff with **full jitter**: the delay before reconnect attempt `n` is
//! uniform in `[0, min(cap, base · 2ⁿ)]`.
//!
//! Why our own ~30 lines rather than a crate: `backon`'s jitter *adds* a random amount in
//! `(0, current_delay)` to the delay (so delays stay within `[d, 2d)` and clients restarted
//! together still arrive in waves), and `backoff` (0.4) uses a ± randomization factor and is
//! unmaintained. Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter") spreads a
//! thundering herd over the whole window, which is what a thousand clients restarted together
//! need. The random source is a seedable [`fastrand::Rng`], so the state machine that owns a
//! [`Backoff`] stays deterministic under test.
//!
//! ```
//! use std::time::Duration;
//! use relay_client::backoff::{Backoff, BackoffPolicy};
//!
//! let policy = BackoffPolicy {
//!     base: Duration::from_millis(100),
//!     cap: Duration::from_secs(2),
//! };
//! let mut b = Backoff::with_seed(policy, 7);
//! for n in 0..20 {
//!     let d = b.next_delay();
//!     assert!(d <= policy.ceiling(n) && policy.ceiling(n) <= policy.cap);
//! }
//! b.reset(); // after a stable connection
//! assert!(b.next_delay() <= Duration::from_millis(100));
//! ```

use std::time::Duration;

/// The shape of the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Ceiling of the first delay.
    pub base: Duration,
    /// Largest delay ever returned.
    pub cap: Duration,
}

impl Default for BackoffPolicy {
    /// 500 ms doubling to a 30 s cap.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl BackoffPolicy {
    /// The ceiling for attempt `n` (0-based): `min(cap, base · 2ⁿ)`, without overflow.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay for attempt `n` given a uniform sample `u` in `[0, 1]`: `u · ceiling(n)`.
    pub fn delay(&self, attempt: u32, u: f64) -> Duration {
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let ceiling = self.ceiling(attempt);
        // Not `mul_f64`: it panics when float rounding lands past `Duration::MAX`.
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * u)
            .unwrap_or(ceiling)
            .min(ceiling)
    }
}

/// A backoff sequence: each [`next_delay`](Backoff::next_delay) is one attempt further.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A sequence with a random seed.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self::with_seed(policy, fastrand::u64(..))
    }

    /// A sequence with a fixed seed (deterministic; for tests).
    pub fn with_seed(policy: BackoffPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The policy.
    pub fn policy(&self) -> BackoffPolicy {
        self.policy
    }

    /// Attempts made since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The next delay; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.policy.delay(self.attempt, self.rng.f64());
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Back to the first attempt (after a stable connection or new credentials).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: BackoffPolicy = BackoffPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(10),
    };

    #[test]
    fn ceilings_double_then_cap_without_overflow() {
        assert_eq!(P.ceiling(0), Duration::from_millis(100));
        assert_eq!(P.ceiling(1), Duration::from_millis(200));
        assert_eq!(P.ceiling(6), Duration::from_millis(6400));
        assert_eq!(P.ceiling(7), Duration::from_secs(10));
        assert_eq!(P.ceiling(u32::MAX), Duration::from_secs(10));
        let huge = BackoffPolicy {
            base: Duration::MAX,
            cap: Duration::from_secs(1),
        };
        assert_eq!(huge.ceiling(3), Duration::from_secs(1));
        assert_eq!(P.delay(0, f64::NAN), Duration::ZERO);
        assert_eq!(P.delay(0, 7.0), Duration::from_millis(100));
        let max = BackoffPolicy {
            base: Duration::MAX,
            cap: Duration::MAX,
        };
        for u in [0.0, 0.5, 0.999_999_999, 1.0] {
            assert!(max.delay(40, u) <= Duration::MAX);
        }
    }

    /// 1000 samples per attempt: bounded by the ceiling, spread over the whole window (full
    /// jitter: mean ≈ ceiling/2, every tenth of the window hit), capped at high attempts.
    #[test]
    fn distribution_is_bounded_jittered_and_capped() {
        let mut rng_seed = 1u64;
        for attempt in [0u32, 3, 7, 20] {
            let ceiling = P.ceiling(attempt);
            let mut buckets = [0u32; 10];
            let mut sum = 0f64;
            for _ in 0..1000 {
                let mut b = Backoff::with_seed(P, rng_seed);
                rng_seed += 1;
                for _ in 0..attempt {
                    b.next_delay();
                }
                let d = b.next_delay();
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                let frac = d.as_secs_f64() / ceiling.as_secs_f64();
                buckets[((frac * 10.0) as usize).min(9)] += 1;
                sum += frac;
            }
            let mean = sum / 1000.0;
            assert!(
                (0.45..0.55).contains(&mean),
                "attempt {attempt}: mean {mean}"
            );
            // Uniform: each decile expects 100; allow a wide margin (p ≪ 1e-6 to fail).
            for (i, n) in buckets.iter().enumerate() {
                assert!((50..160).contains(n), "attempt {attempt} decile {i}: {n}");
            }
            assert!(ceiling <= P.cap);
        }
    }

    /// A thousand clients that lose the gateway at the same instant do not come back in
    /// lockstep: their first delays are nearly all distinct and spread over the whole window
    /// (no tenth of it holds more than 16% of them; without jitter one instant would hold all).
    #[test]
    fn a_thousand_clients_do_not_reconnect_in_lockstep() {
        let mut slots = [0u32; 10];
        let mut distinct = std::collections::BTreeSet::new();
        for seed in 0..1000u64 {
            let d = Backoff::with_seed(P, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_delay();
            distinct.insert(d.as_micros());
            slots[(d.as_millis() as usize / 10).min(9)] += 1;
        }
        assert!(distinct.len() > 900, "{}", distinct.len());
        assert!(slots.iter().all(|&n| n <= 160), "{slots:?}");
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::with_seed(P, 3);
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.attempt(), 10);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay() <= P.base);
    }
}
