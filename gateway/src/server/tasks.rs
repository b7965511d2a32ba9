//! Periodic work shared by all sessions: `tick` events, WebSocket pings, reaping dead peers,
//! store snapshots.
//! One timer for the whole gateway instead of one per socket keeps idle sessions cheap.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::state::{GatewayState, Outbound};

/// Sends `tick` to every session at the configured interval.
pub(super) async fn ticker(state: Arc<GatewayState>) {
    let mut iv = tokio::time::interval(state.config.tick_interval);
    iv.tick().await;
    loop {
        iv.tick().await;
        let ev = crate::protocol::frames::event(
            "tick",
            &serde_json::json!({"ts": crate::now_ms()}),
            Some(state.next_seq()),
        );
        state.broadcast(&ev);
        state.flush_presence();
    }
}

/// Pings every session; closes those silent for three ping intervals.
pub(super) async fn pinger(state: Arc<GatewayState>) {
    let period = state.config.ping_interval;
    let mut iv = tokio::time::interval(period);
    iv.tick().await;
    loop {
        iv.tick().await;
        let now = state.uptime_ms();
        let dead_after = 3 * period.as_millis() as u64;
        let sessions = state.sessions();
        for s in sessions.values() {
            if now.saturating_sub(s.last_seen.load(Ordering::Relaxed)) > dead_after {
                let _ = s.tx.send(Outbound::Close(1001, "ping timeout".into()));
            } else {
                let _ = s.tx.send(Outbound::Ping);
            }
        }
    }
}

/// Snapshots the store at start and every [`crate::store::snapshot::INTERVAL`] (off the async
/// workers: a backup copies every page).
pub(super) async fn snapshotter(state: Arc<GatewayState>) {
    let mut iv = tokio::time::interval(crate::store::snapshot::INTERVAL);
    loop {
        iv.tick().await;
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || s.snapshot("periodic")).await;
    }
}
