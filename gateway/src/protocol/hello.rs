//! The `hello-ok` payload: the minimal shape the real OpenClaw CLI accepts (its schema rejects
//! unknown keys in most objects, so claw sends nothing extra).

use serde_json::{json, Value};

use super::frames::MAX_PAYLOAD;
use super::PROTOCOL_VERSION;

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

/// Builds the `hello-ok` payload.
pub fn hello_ok(h: &Hello<'_>) -> Value {
    let mut auth = json!({
        "method": h.method.as_str(),
        "role": h.role,
        "scopes": h.scopes,
    });
    if let Some((token, issued)) = h.device_token {
        auth["deviceToken"] = json!(token);
        auth["issuedAtMs"] = json!(issued);
    }
    json!({
        "type": "hello-ok",
        "protocol": h.protocol.min(PROTOCOL_VERSION),
        "server": {"version": crate::VERSION, "connId": h.conn_id},
        "features": {"methods": h.methods, "events": EVENTS},
        "snapshot": {
            "presence": [],
            "health": {},
            "stateVersion": {"presence": 0, "health": 0},
            "uptimeMs": h.uptime_ms,
        },
        "auth": auth,
        "policy": {
            "maxPayload": MAX_PAYLOAD,
            "maxBufferedBytes": MAX_PAYLOAD * 2,
            "tickIntervalMs": h.tick_interval_ms,
        },
    })
}
