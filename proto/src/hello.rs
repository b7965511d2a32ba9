//! The `hello-ok` payload: the minimal shape the real OpenClaw CLI accepts (its schema rejects
//! unknown keys in most objects, so claw sends nothing extra).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::frames::MAX_PAYLOAD;
use crate::PROTOCOL_VERSION;

/// Events claw may send after the handshake.
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "tick",
    "shutdown",
    "health",
    "device.pair.requested",
    "device.pair.resolved",
];

/// How the socket authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The shared gateway token.
    Token,
    /// A device token.
    DeviceToken,
    /// No client secret: the tunnel or SSH forward authenticated the device's key, and that
    /// identity is the credential (a stock client on a paired device). Not closed by root or
    /// token rotation — there is nothing on the client to go stale — only by revoke/remove.
    Transport,
}

impl AuthMethod {
    /// The wire name (`hello-ok.auth.method`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Token => "token",
            AuthMethod::DeviceToken => "device-token",
            AuthMethod::Transport => "transport",
        }
    }
}

/// Everything `hello-ok` reports.
#[derive(Debug, Clone)]
pub struct Hello<'a> {
    /// Negotiated protocol.
    pub protocol: u32,
    /// This connection's id.
    pub conn_id: &'a str,
    /// Served methods (from the dispatch table).
    pub methods: &'a [&'a str],
    /// Events the client may receive; `None` is claw's own [`EVENTS`]. A gateway in front of
    /// another (upstream mode) passes the union of [`EVENTS`] and the upstream's, see
    /// [`union`].
    pub events: Option<&'a [&'a str]>,
    /// Largest message the client may send; `None` is claw's own [`MAX_PAYLOAD`]. A gateway in
    /// front of another passes the other's limit (the outbound backlog it advertises is twice
    /// that, as OpenClaw's own policy says).
    pub max_payload: Option<usize>,
    /// Auth method.
    pub method: AuthMethod,
    /// Role.
    pub role: &'a str,
    /// Effective scopes.
    pub scopes: &'a [String],
    /// Device token to hand out, with its issue time.
    pub device_token: Option<(&'a str, u64)>,
    /// Gateway uptime.
    pub uptime_ms: u64,
    /// Tick interval.
    pub tick_interval_ms: u64,
}

/// The `hello-ok` payload as it is on the wire. The gateway builds it with [`hello_ok`];
/// a client may read it back with `serde_json::from_value` (every field below is sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloOk {
    /// Always `hello-ok`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Negotiated protocol.
    pub protocol: u32,
    /// The gateway.
    pub server: HelloServer,
    /// Methods and events served.
    pub features: HelloFeatures,
    /// State at connect time (claw sends an empty presence and health).
    pub snapshot: HelloSnapshot,
    /// How this socket authenticated.
    pub auth: HelloAuth,
    /// Limits and the tick interval.
    pub policy: HelloPolicy,
}

/// `hello-ok.server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloServer {
    /// The gateway's version.
    pub version: String,
    /// This connection's id.
    pub conn_id: String,
}

/// `hello-ok.features`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloFeatures {
    /// Served methods.
    pub methods: Vec<String>,
    /// Events the gateway may send.
    pub events: Vec<String>,
}

/// `hello-ok.snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloSnapshot {
    /// Presence entries (claw: none).
    pub presence: Vec<Value>,
    /// Health (claw: `{}`).
    pub health: Value,
    /// Versions of presence and health.
    pub state_version: StateVersion,
    /// Gateway uptime.
    pub uptime_ms: u64,
}

/// `hello-ok.snapshot.stateVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateVersion {
    /// Presence version.
    pub presence: u64,
    /// Health version.
    pub health: u64,
}

/// `hello-ok.auth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAuth {
    /// [`AuthMethod::as_str`].
    pub method: String,
    /// Role.
    pub role: String,
    /// Effective scopes.
    pub scopes: Vec<String>,
    /// A device token handed out on this connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// When that token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<u64>,
}

/// `hello-ok.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloPolicy {
    /// Largest message accepted.
    pub max_payload: usize,
    /// Largest outbound backlog before the gateway drops the session.
    pub max_buffered_bytes: usize,
    /// Tick interval.
    pub tick_interval_ms: u64,
}

/// `ours` followed by those of `theirs` not in it, in order, without duplicates: what a gateway
/// in front of another advertises (its own methods or events and the other's).
pub fn union(ours: &[&str], theirs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(ours.len() + theirs.len());
    for x in ours
        .iter()
        .copied()
        .chain(theirs.iter().map(String::as_str))
    {
        if !out.iter().any(|o| o == x) {
            out.push(x.to_string());
        }
    }
    out
}

/// Builds the `hello-ok` payload.
pub fn hello_ok(h: &Hello<'_>) -> Value {
    let hello = HelloOk {
        kind: "hello-ok".into(),
        protocol: h.protocol.min(PROTOCOL_VERSION),
        server: HelloServer {
            version: crate::VERSION.into(),
            conn_id: h.conn_id.into(),
        },
        features: HelloFeatures {
            methods: h.methods.iter().map(|m| m.to_string()).collect(),
            events: h
                .events
                .unwrap_or(EVENTS)
                .iter()
                .map(|e| e.to_string())
                .collect(),
        },
        snapshot: HelloSnapshot {
            presence: Vec::new(),
            health: json!({}),
            state_version: StateVersion {
                presence: 0,
                health: 0,
            },
            uptime_ms: h.uptime_ms,
        },
        auth: HelloAuth {
            method: h.method.as_str().into(),
            role: h.role.into(),
            scopes: h.scopes.to_vec(),
            device_token: h.device_token.map(|(t, _)| t.to_string()),
            issued_at_ms: h.device_token.map(|(_, at)| at),
        },
        policy: HelloPolicy {
            max_payload: h.max_payload.unwrap_or(MAX_PAYLOAD),
            max_buffered_bytes: h.max_payload.unwrap_or(MAX_PAYLOAD) * 2,
            tick_interval_ms: h.tick_interval_ms,
        },
    };
    serde_json::to_value(hello).expect("hello-ok serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload is the shape the real CLI accepted before it became a struct (the same
    /// keys and values, so the same bytes once `serde_json` sorts them).
    #[test]
    fn hello_ok_is_the_accepted_shape() {
        let scopes = vec!["operator.read".to_string()];
        let h = Hello {
            protocol: 4,
            conn_id: "c1",
            methods: &["health", "status"],
            events: None,
            max_payload: None,
            method: AuthMethod::DeviceToken,
            role: "operator",
            scopes: &scopes,
            device_token: Some(("dt", 7)),
            uptime_ms: 5,
            tick_interval_ms: 30_000,
        };
        let want = json!({
            "type": "hello-ok",
            "protocol": 4,
            "server": {"version": crate::VERSION, "connId": "c1"},
            "features": {"methods": ["health", "status"], "events": EVENTS},
            "snapshot": {
                "presence": [],
                "health": {},
                "stateVersion": {"presence": 0, "health": 0},
                "uptimeMs": 5,
            },
            "auth": {"method": "device-token", "role": "operator", "scopes": ["operator.read"],
                     "deviceToken": "dt", "issuedAtMs": 7},
            "policy": {"maxPayload": MAX_PAYLOAD, "maxBufferedBytes": MAX_PAYLOAD * 2, "tickIntervalMs": 30_000},
        });
        let got = hello_ok(&h);
        assert_eq!(got, want);
        assert_eq!(got.to_string(), want.to_string());
        let back: HelloOk = serde_json::from_value(got).unwrap();
        assert_eq!(back.auth.device_token.as_deref(), Some("dt"));
        let without = hello_ok(&Hello {
            device_token: None,
            ..h
        });
        assert!(without["auth"].get("deviceToken").is_none());
        assert!(without["auth"].get("issuedAtMs").is_none());
        let events = ["tick", "chat"];
        let upstream = hello_ok(&Hello {
            events: Some(&events),
            max_payload: Some(25 * 1024 * 1024),
            ..h
        });
        assert_eq!(upstream["features"]["events"], json!(["tick", "chat"]));
        assert_eq!(upstream["policy"]["maxPayload"], 25 * 1024 * 1024);
        assert_eq!(upstream["policy"]["maxBufferedBytes"], 50 * 1024 * 1024);
    }

    #[test]
    fn union_keeps_ours_first_and_drops_duplicates() {
        let theirs: Vec<String> = ["tick", "chat", "chat", "presence"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            union(&["connect.challenge", "tick"], &theirs),
            vec!["connect.challenge", "tick", "chat", "presence"]
        );
        assert_eq!(union(&["a", "a"], &[]), vec!["a"]);
        assert!(union(&[], &[]).is_empty());
    }
}
