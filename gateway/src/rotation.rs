//! Scheduled rotation of the device-token root (`claw gateway run --rotate-every 24h`).
//!
//! The schedule needs no state of its own: the next rotation is due `every` after the root's own
//! `rotated_at_ms`, which the rotation transaction itself writes. So a restart or a `kill -9` at
//! any instant can neither run a rotation twice (once committed, the next one is `every` away) nor
//! skip one (uncommitted, it is still due and runs at the next start); a gateway that was down
//! past the due time rotates once when it comes back, not once per missed interval; a manual
//! `rotate-token` also restarts the clock. Connected devices re-pair over the tunnel at once
//! (the rotation's event), offline ones at their next connect. Audited as `root.rotated` with
//! actor `schedule`.
//!
//! Clock jumps: while the gateway runs, the time since the last rotation is the larger of the
//! wall clock's answer and the monotonic clock's (counted from when this process first saw that
//! rotation). A clock set forward past the due time rotates once (it cannot be told from time
//! really passing while the gateway was down); a clock set back days does not postpone the
//! rotation by days — the monotonic count still reaches the interval. After a restart with the
//! clock behind the last rotation, the count starts at the restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::methods::{rotate_root, RotateOptions};
use crate::state::GatewayState;

/// Shortest interval accepted (rotating more often than this is a mistake, not a policy).
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// Longest single sleep: the schedule is re-read at least this often, so a clock that was set
/// forward or back is noticed without waiting out a stale sleep.
const MAX_NAP: Duration = Duration::from_secs(30);

/// When the next rotation is due, in ms since the epoch (pure).
pub fn next_due_ms(rotated_at_ms: u64, every: Duration) -> u64 {
    rotated_at_ms.saturating_add(every.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// The last rotation as this process has watched it (pure data; the loop feeds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// The root's `rotated_at_ms` when first seen.
    pub rotated_at_ms: u64,
    /// Its wall-clock age at that moment (zero if the clock stood before it).
    pub age_when_seen: Duration,
    /// Monotonic time since then.
    pub since_seen: Duration,
}

/// How long ago the last rotation was (pure): the larger of the wall clock's answer and the
/// monotonic count, so a clock set back cannot stretch the interval.
pub fn age(now_ms: u64, rotated_at_ms: u64, watched: Option<Watched>) -> Duration {
    let wall = Duration::from_millis(now_ms.saturating_sub(rotated_at_ms));
    let mono = watched
        .filter(|w| w.rotated_at_ms == rotated_at_ms)
        .map_or(Duration::ZERO, |w| w.age_when_seen + w.since_seen);
    wall.max(mono)
}

/// How long to sleep before looking again, given the age of the last rotation (pure): zero
/// when due, else the time left, at most `MAX_NAP`.
pub fn nap_for_age(age: Duration, every: Duration) -> Duration {
    every.saturating_sub(age).min(MAX_NAP)
}

/// Runs the schedule until the gateway stops.
pub async fn run(state: Arc<GatewayState>, every: Duration) {
    // (rotated_at_ms, its wall age then, monotonic instant) of the rotation first seen.
    let mut seen: Option<(u64, Duration, Instant)> = None;
    loop {
        let rotated_at = state.store().root_rotated_at_ms();
        let wait = match rotated_at {
            Ok(at) => {
                let now = crate::now_ms();
                if seen.is_none_or(|(s, _, _)| s != at) {
                    let age_now = Duration::from_millis(now.saturating_sub(at));
                    seen = Some((at, age_now, Instant::now()));
                }
                let watched = seen.map(|(rotated_at_ms, age_when_seen, t)| Watched {
                    rotated_at_ms,
                    age_when_seen,
                    since_seen: t.elapsed(),
                });
                nap_for_age(age(now, at, watched), every)
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduled rotation: cannot read the root; retrying");
                MAX_NAP
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            continue;
        }
        // Force: a schedule exists to rotate without a human, live sessions included (devices
        // behind the tunnel get their new tokens pushed at once).
        let s = state.clone();
        let out = tokio::task::spawn_blocking(move || {
            rotate_root(
                &s,
                "schedule",
                RotateOptions {
                    force: true,
                    ..Default::default()
                },
            )
        })
        .await;
        match out {
            Ok(Ok(v)) => tracing::info!(
                generation = %v["generation"],
                closed = %v["closedSessions"],
                "scheduled rotation of the device-token root"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e.message, "scheduled rotation failed; retrying");
                tokio::time::sleep(MAX_NAP).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduled rotation panicked; retrying");
                tokio::time::sleep(MAX_NAP).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_every_interval_after_the_last_rotation() {
        let day = Duration::from_secs(86_400);
        assert_eq!(next_due_ms(1_000, day), 86_401_000);
        assert_eq!(next_due_ms(u64::MAX - 5, day), u64::MAX);
    }

    #[test]
    fn naps_are_bounded_and_a_clock_jump_is_harmless() {
        let every = Duration::from_secs(1_000);
        let nap = |now_ms: u64| nap_for_age(age(now_ms, 0, None), every);
        assert_eq!(nap(1_000_000), Duration::ZERO);
        // Overdue (the gateway was down, or the clock jumped forward): rotate now, once.
        assert_eq!(nap(6_000_000), Duration::ZERO);
        assert_eq!(nap(990_000), Duration::from_secs(10));
        // Far away: never more than MAX_NAP before looking again.
        assert_eq!(nap(0), MAX_NAP);
    }

    /// A clock set back days: the wall clock says the rotation is in the future, the monotonic
    /// count says an interval has passed — the schedule follows the count and rotates once.
    /// A clock set forward: the wall clock says overdue — rotate now (once: the rotation itself
    /// moves `rotated_at_ms`, and a new value restarts the watch).
    #[test]
    fn a_clock_set_back_does_not_postpone_the_rotation_and_forward_rotates_once() {
        let hour = Duration::from_secs(3_600);
        let day_ms = 86_400_000;
        let at = 10 * day_ms;
        let watched = |since_s| {
            Some(Watched {
                rotated_at_ms: at,
                age_when_seen: Duration::ZERO,
                since_seen: Duration::from_secs(since_s),
            })
        };
        // Set back two days, ten minutes after the rotation: not due yet, looks again soon.
        let back = at - 2 * day_ms;
        assert_eq!(age(back, at, watched(600)), Duration::from_secs(600));
        assert_eq!(nap_for_age(age(back, at, watched(600)), hour), MAX_NAP);
        // An hour of real time later, the wall clock still two days behind: due.
        assert_eq!(
            nap_for_age(age(back, at, watched(3_600)), hour),
            Duration::ZERO
        );
        // Set forward two days: due at once by the wall clock.
        assert_eq!(
            nap_for_age(age(at + 2 * day_ms, at, watched(5)), hour),
            Duration::ZERO
        );
        // The watch of an older rotation is ignored: a new rotation starts from zero.
        let stale = Some(Watched {
            rotated_at_ms: at - day_ms,
            age_when_seen: Duration::ZERO,
            since_seen: Duration::from_secs(7_200),
        });
        assert_eq!(age(at, at, stale), Duration::ZERO);
        // No watch (just started, clock behind the last rotation): the count starts now.
        assert_eq!(age(back, at, None), Duration::ZERO);
    }
}
