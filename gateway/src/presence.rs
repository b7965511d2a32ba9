//! Who is connected: per device, its live links (a loopback WebSocket, a QUIC tunnel
//! connection, an SSH session), when the first of them opened and when the device last did
//! something. [`Presence`] is the pure bookkeeping (times passed in); [`Link`] is the IO shell a
//! transport holds for as long as its connection lives — it persists the device's last seen
//! time and transport and announces the change to the control pages (`device.presence`).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use crate::state::GatewayState;

/// A device with links but no activity for this long counts as idle (five minutes).
pub const IDLE_AFTER_MS: u64 = 5 * 60_000;

/// The event every WebSocket session receives when a device's presence changes.
pub const EVENT: &str = "device.presence";

/// How a device reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A WebSocket straight to the loopback port (a client on the gateway host with a device
    /// key).
    Ws,
    /// claw's QUIC tunnel (`claw tunnel up`).
    Tunnel,
    /// The built-in SSH forward.
    Ssh,
}

impl Transport {
    /// The name used on the wire, in the store and on the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Tunnel => "tunnel",
            Transport::Ssh => "ssh",
        }
    }

    /// Parses [`Transport::as_str`]'s names (what the store holds).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ws" => Some(Transport::Ws),
            "tunnel" => Some(Transport::Tunnel),
            "ssh" => Some(Transport::Ssh),
            _ => None,
        }
    }
}

/// A device's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// At least one live link, with activity within [`IDLE_AFTER_MS`].
    Online,
    /// Live links, all silent for longer than [`IDLE_AFTER_MS`].
    Idle,
    /// No live link.
    Offline,
}

impl Status {
    /// The wire and terminal name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Idle => "idle",
            Status::Offline => "offline",
        }
    }
}

#[derive(Debug, Clone)]
struct LinkRec {
    id: u64,
    transport: Transport,
    since_ms: u64,
    active_ms: u64,
}

/// What [`Presence::summary`] says about one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Online, idle or offline.
    pub status: Status,
    /// The transport of the most recently active live link (`None` when offline).
    pub transport: Option<Transport>,
    /// When the oldest live link opened (`None` when offline).
    pub connected_since_ms: Option<u64>,
    /// The device's last activity on a live link (`None` when offline).
    pub active_at_ms: Option<u64>,
}

/// Live links per device (epoch milliseconds throughout). Pure: no clock, no IO.
#[derive(Debug, Default)]
pub struct Presence {
    links: HashMap<String, Vec<LinkRec>>,
    next: u64,
}

impl Presence {
    /// Records a link of `device` opened at `now`; returns its id for [`Presence::close`].
    pub fn open(&mut self, device: &str, transport: Transport, now: u64) -> u64 {
        self.next += 1;
        self.links
            .entry(device.to_string())
            .or_default()
            .push(LinkRec {
                id: self.next,
                transport,
                since_ms: now,
                active_ms: now,
            });
        self.next
    }

    /// Marks activity of `device` at `now` on its links of `transport` (every link when
    /// `None`: a WebSocket carried by the tunnel or SSH forward does not say which).
    pub fn touch(&mut self, device: &str, transport: Option<Transport>, now: u64) {
        for l in self.links.get_mut(device).into_iter().flatten() {
            if transport.is_none_or(|t| t == l.transport) {
                l.active_ms = l.active_ms.max(now);
            }
        }
    }

    /// Forgets link `id` of `device`; true when it was the device's last live link.
    pub fn close(&mut self, device: &str, id: u64) -> bool {
        let Some(v) = self.links.get_mut(device) else {
            return false;
        };
        let before = v.len();
        v.retain(|l| l.id != id);
        let closed = v.len() < before;
        if v.is_empty() {
            self.links.remove(device);
        }
        closed && !self.links.contains_key(device)
    }

    /// The devices with at least one live link.
    pub fn connected(&self) -> Vec<String> {
        self.links.keys().cloned().collect()
    }

    /// `device`'s presence at `now`.
    pub fn summary(&self, device: &str, now: u64) -> Summary {
        let Some(links) = self.links.get(device).filter(|v| !v.is_empty()) else {
            return Summary {
                status: Status::Offline,
                transport: None,
                connected_since_ms: None,
                active_at_ms: None,
            };
        };
        let latest = links
            .iter()
            .max_by_key(|l| (l.active_ms, l.since_ms))
            .expect("non-empty");
        let active = latest.active_ms;
        Summary {
            status: if now.saturating_sub(active) > IDLE_AFTER_MS {
                Status::Idle
            } else {
                Status::Online
            },
            transport: Some(latest.transport),
            connected_since_ms: links.iter().map(|l| l.since_ms).min(),
            active_at_ms: Some(active),
        }
    }
}

/// One live connection of a device, held by its transport for the connection's lifetime. Opening
/// and dropping it record the device's last seen time and transport in the store (best effort)
/// and announce the change to the control pages with a [`EVENT`] event.
#[derive(Debug)]
pub struct Link {
    state: Arc<GatewayState>,
    device: String,
    transport: Transport,
    id: u64,
}

impl Link {
    /// Records that `device` connected over `transport`.
    pub fn open(state: &Arc<GatewayState>, device: &str, transport: Transport) -> Self {
        let now = crate::now_ms();
        let id = state.presence().open(device, transport, now);
        persist(state, device, transport, now);
        announce(state, device);
        Self {
            state: state.clone(),
            device: device.to_string(),
            transport,
            id,
        }
    }

    /// Records activity on this link (a stream opened, a message arrived).
    pub fn touch(&self) {
        self.state
            .presence()
            .touch(&self.device, Some(self.transport), crate::now_ms());
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let last = self.state.presence().close(&self.device, self.id);
        persist(&self.state, &self.device, self.transport, crate::now_ms());
        if last {
            announce(&self.state, &self.device);
        }
    }
}

/// Writes `device`'s last seen time and transport (best effort: a store that cannot write does
/// not stop a connection).
fn persist(state: &GatewayState, device: &str, transport: Transport, now: u64) {
    let r = crate::store::off_worker(|| state.store().record_seen(device, transport.as_str(), now));
    if let Err(e) = r {
        tracing::debug!(error = %e, "could not record last seen");
    }
}

/// Tells the control pages about `device`'s presence (OpenClaw clients are not sent claw's own
/// events).
fn announce(state: &GatewayState, device: &str) {
    let s = state.presence().summary(device, crate::now_ms());
    crate::web::notify_pages(
        state,
        EVENT,
        &json!({
            "deviceId": device,
            "status": s.status,
            "transport": s.transport,
            "connectedSinceMs": s.connected_since_ms,
            "lastSeenAtMs": crate::now_ms(),
        }),
    );
}

impl GatewayState {
    /// The presence table, locked (never across an await).
    pub fn presence(&self) -> std::sync::MutexGuard<'_, Presence> {
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the last seen time of every connected device (called on the tick, so a `kill -9`
    /// loses at most a tick of it). Minute resolution: at most one write per device per minute.
    pub fn flush_presence(&self) {
        let connected = self.presence().connected();
        for d in connected {
            if let Err(e) = crate::store::off_worker(|| self.store().touch_device(&d)) {
                tracing::debug!(error = %e, "could not record last seen");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_with_no_link_is_offline() {
        let p = Presence::default();
        let s = p.summary("d", 1_000);
        assert_eq!(s.status, Status::Offline);
        assert_eq!(s.transport, None);
        assert_eq!(s.connected_since_ms, None);
    }

    #[test]
    fn online_then_idle_then_online_again() {
        let mut p = Presence::default();
        p.open("d", Transport::Tunnel, 1_000);
        let s = p.summary("d", 2_000);
        assert_eq!(s.status, Status::Online);
        assert_eq!(s.transport, Some(Transport::Tunnel));
        assert_eq!(s.connected_since_ms, Some(1_000));
        assert_eq!(
            p.summary("d", 1_000 + IDLE_AFTER_MS + 1).status,
            Status::Idle
        );
        p.touch("d", None, 1_000 + IDLE_AFTER_MS);
        assert_eq!(
            p.summary("d", 1_000 + IDLE_AFTER_MS + 1).status,
            Status::Online
        );
        // Connected since stays the first link's.
        assert_eq!(
            p.summary("d", 1_000 + IDLE_AFTER_MS + 1).connected_since_ms,
            Some(1_000)
        );
    }

    #[test]
    fn the_most_recently_active_link_names_the_transport() {
        let mut p = Presence::default();
        let t = p.open("d", Transport::Tunnel, 1_000);
        let s = p.open("d", Transport::Ssh, 2_000);
        assert_eq!(p.summary("d", 2_000).transport, Some(Transport::Ssh));
        p.touch("d", Some(Transport::Tunnel), 3_000);
        assert_eq!(p.summary("d", 3_000).transport, Some(Transport::Tunnel));
        assert_eq!(p.summary("d", 3_000).connected_since_ms, Some(1_000));
        assert!(!p.close("d", t), "the SSH link is still up");
        assert_eq!(p.summary("d", 3_000).transport, Some(Transport::Ssh));
        assert_eq!(p.summary("d", 3_000).connected_since_ms, Some(2_000));
        assert!(p.close("d", s), "last link");
        assert_eq!(p.summary("d", 3_000).status, Status::Offline);
        assert!(p.connected().is_empty());
    }

    #[test]
    fn closing_twice_or_an_unknown_link_changes_nothing() {
        let mut p = Presence::default();
        let a = p.open("d", Transport::Ws, 1);
        let b = p.open("d", Transport::Ws, 2);
        assert!(!p.close("d", 999));
        assert!(!p.close("other", a));
        assert!(!p.close("d", a));
        assert!(!p.close("d", a), "already gone");
        assert!(p.close("d", b));
        assert!(!p.close("d", b));
    }

    #[test]
    fn a_touch_of_one_device_does_not_wake_another() {
        let mut p = Presence::default();
        p.open("a", Transport::Tunnel, 0);
        p.open("b", Transport::Tunnel, 0);
        p.touch("a", None, IDLE_AFTER_MS * 2);
        assert_eq!(p.summary("a", IDLE_AFTER_MS * 2).status, Status::Online);
        assert_eq!(p.summary("b", IDLE_AFTER_MS * 2).status, Status::Idle);
    }

    #[test]
    fn transport_names_round_trip() {
        for t in [Transport::Ws, Transport::Tunnel, Transport::Ssh] {
            assert_eq!(Transport::parse(t.as_str()), Some(t));
        }
        assert_eq!(Transport::parse("carrier-pigeon"), None);
    }
}
