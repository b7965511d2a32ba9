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

use std::sync::Arc;
use std::time::Duration;

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

/// How long to sleep before looking again (pure): zero when due, else the time left, at most
/// `MAX_NAP`. A clock set back makes the time left longer, never negative.
pub fn nap(now_ms: u64, due_ms: u64) -> Duration {
    Duration::from_millis(due_ms.saturating_sub(now_ms)).min(MAX_NAP)
}

/// Runs the schedule until the gateway stops.
pub async fn run(state: Arc<GatewayState>, every: Duration) {
    loop {
        let rotated_at = state.store().root_rotated_at_ms();
        let wait = match rotated_at {
            Ok(at) => nap(crate::now_ms(), next_due_ms(at, every)),
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
        let due = 1_000_000;
        assert_eq!(nap(due, due), Duration::ZERO);
        // Overdue (the gateway was down, or the clock jumped forward): rotate now, once.
        assert_eq!(nap(due + 5_000_000, due), Duration::ZERO);
        assert_eq!(nap(due - 10_000, due), Duration::from_secs(10));
        // Far away, or the clock set back: never more than MAX_NAP before looking again.
        assert_eq!(nap(0, due), MAX_NAP);
    }
}
