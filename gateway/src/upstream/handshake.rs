//! The upstream handshake as plain functions: the `connect` claw sends for a downstream client,
//! what an upstream refusal means, and what to try next (no IO).

use std::time::Duration;

use serde_json::{json, Value};

use crate::protocol::connect::{parse_connect, AuthParams, ClientInfo, ConnectParams};
use crate::protocol::frames::ErrorShape;
use claw_proto::DeviceKey;

/// Keys of the downstream `connect` claw replaces; every other key (`caps`, `commands`,
/// `permissions`, `userAgent`, `locale`, …) is passed upstream as the client sent it, so the
/// upstream sees the client's real description (a node's commands and caps).
const REPLACED: &[&str] = &[
    "minProtocol",
    "maxProtocol",
    "role",
    "scopes",
    "auth",
    "device",
];

/// Which secret a connect attempt presents upstream.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The upstream's shared token (fresh from its source).
    Shared(String),
    /// The upstream device token claw was given for this device.
    DeviceToken(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Shared(_) => "Shared(…)",
            Secret::DeviceToken(_) => "DeviceToken(…)",
        })
    }
}

/// The client ids OpenClaw 2026.9.6 accepts in `connect.client.id` (its `GATEWAY_CLIENT_IDS`;
/// its schema refuses any other).
pub const OPENCLAW_CLIENT_IDS: &[&str] = &[
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
];

/// The client modes OpenClaw 2026.9.6 accepts in `connect.client.mode` (`GATEWAY_CLIENT_MODES`).
pub const OPENCLAW_CLIENT_MODES: &[&str] = &[
    "webchat", "cli", "ui", "backend", "node", "worker", "probe", "test",
];

/// A downstream client block as OpenClaw will take it: a client id or mode OpenClaw does not
/// know (claw's own clients say `claw-cli`, which claw accepts) becomes its generic
/// `gateway-client` / `backend`; everything else is kept as the client sent it.
fn openclaw_client(client: &mut Value) {
    let Some(c) = client.as_object_mut() else {
        return;
    };
    let known = |c: &serde_json::Map<String, Value>, k: &str, list: &[&str]| {
        c.get(k)
            .and_then(Value::as_str)
            .is_some_and(|v| list.contains(&v))
    };
    if !known(c, "id", OPENCLAW_CLIENT_IDS) {
        c.insert("id".into(), json!("gateway-client"));
    }
    if !known(c, "mode", OPENCLAW_CLIENT_MODES) {
        c.insert("mode".into(), json!("backend"));
    }
}

/// The `connect` params claw sends upstream for a downstream client: the client's own `connect`
/// (`downstream`, as received) with protocol 4, the role and scopes claw granted it, claw's
/// secret for the upstream, and a device block signed with claw's upstream key for the device
/// over the upstream's challenge (`nonce`, `ts`).
pub fn upstream_connect(
    downstream: &Value,
    role: &str,
    scopes: &[String],
    secret: &Secret,
    key: &DeviceKey,
    nonce: &str,
    ts: u64,
) -> Value {
    let auth = match secret {
        Secret::Shared(t) => AuthParams {
            token: Some(t.clone()),
            ..Default::default()
        },
        Secret::DeviceToken(t) => AuthParams {
            device_token: Some(t.clone()),
            ..Default::default()
        },
    };
    let mut out = serde_json::Map::new();
    if let Some(raw) = downstream.as_object() {
        for (k, v) in raw {
            if !REPLACED.contains(&k.as_str()) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(c) = out.get_mut("client") {
        openclaw_client(c);
    }
    out.insert("minProtocol".into(), json!(claw_proto::PROTOCOL_VERSION));
    out.insert("maxProtocol".into(), json!(claw_proto::PROTOCOL_VERSION));
    out.insert("role".into(), json!(role));
    out.insert("scopes".into(), json!(scopes));
    out.insert("auth".into(), json!(auth));
    // Signed over exactly what is sent: the gateway rebuilds the payload from these fields.
    let v = Value::Object(out);
    match parse_connect(&v) {
        Ok(parsed) => {
            let mut v = v;
            v["device"] = json!(key.prove(&parsed, nonce, ts));
            v
        }
        // A client description the upstream would refuse anyway: send claw's own.
        Err(_) => {
            let client = ClientInfo {
                id: "gateway-client".into(),
                version: claw_proto::VERSION.into(),
                mode: "backend".into(),
                ..Default::default()
            };
            let mut p = ConnectParams::new(client, role, scopes.to_vec(), auth);
            p.sign(key, nonce, ts);
            p.to_value()
        }
    }
}

/// What an upstream refusal of claw's connect means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The shared token is wrong or stale (OpenClaw's token changed).
    SharedToken,
    /// The device token is unknown, rotated or revoked (or the upstream forgot the device).
    DeviceToken,
    /// The device token does not cover the scopes asked.
    Scope,
    /// The upstream wants the device approved.
    Pairing,
    /// The upstream is starting or busy: retry after the hint.
    Busy(Duration),
    /// Anything else (signature, protocol, params): claw cannot fix it by re-pairing.
    Other(String),
}

/// Classifies the error of a refused upstream connect; `sent` is the secret it presented.
pub fn classify(e: &ErrorShape, sent: &Secret) -> Refusal {
    use crate::protocol::codes as c;
    if e.code == c::UNAVAILABLE || e.retryable == Some(true) {
        return Refusal::Busy(Duration::from_millis(
            e.retry_after_ms.unwrap_or(500).clamp(100, 5_000),
        ));
    }
    match e.detail_code() {
        Some(c::AUTH_TOKEN_MISMATCH) | Some(c::AUTH_TOKEN_MISSING) => match sent {
            Secret::Shared(_) => Refusal::SharedToken,
            Secret::DeviceToken(_) => Refusal::DeviceToken,
        },
        Some(c::AUTH_DEVICE_TOKEN_ROTATED) | Some(c::AUTH_DEVICE_REVOKED) => Refusal::DeviceToken,
        Some(c::AUTH_SCOPE_MISMATCH) => Refusal::Scope,
        Some(c::PAIRING_REQUIRED) => Refusal::Pairing,
        _ if e.code == c::NOT_PAIRED => Refusal::Pairing,
        _ => Refusal::Other(crate::text::escape(&e.message).chars().take(200).collect()),
    }
}

/// The secrets to try, in order, for one (re)connect: the device token first when claw holds
/// one (it survives a change of OpenClaw's shared token), then the shared token read afresh
/// (it re-pairs the device silently on loopback and covers any scope the client was granted).
pub fn plan(device_token: Option<String>, shared: Option<String>) -> Vec<Secret> {
    let mut v = Vec::new();
    if let Some(t) = device_token {
        v.push(Secret::DeviceToken(t));
    }
    if let Some(t) = shared {
        v.push(Secret::Shared(t));
    }
    v
}

/// Backoff between upstream reconnect rounds: 250 ms doubling to 5 s.
pub fn backoff(round: u32) -> Duration {
    Duration::from_millis((250u64 << round.min(5)).min(5_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_connect() -> Value {
        json!({
            "minProtocol": 3, "maxProtocol": 4,
            "client": {"id": "node-host", "version": "2026.9.6", "platform": "linux",
                       "deviceFamily": "Linux", "mode": "node", "displayName": "lab", "buildId": "b1"},
            "role": "node", "scopes": [], "caps": ["camera"], "commands": ["system.run"],
            "permissions": {"camera": true},
            "auth": {"token": "DOWNSTREAM-SECRET"},
            "device": {"id": "x", "publicKey": "y", "signature": "z", "signedAt": 1, "nonce": "n"}
        })
    }

    #[test]
    fn upstream_sees_the_client_but_never_its_secret_or_key() {
        let key = DeviceKey::from_seed([7; 32]);
        let v = upstream_connect(
            &node_connect(),
            "node",
            &[],
            &Secret::Shared("UP".into()),
            &key,
            "nonce-1",
            1000,
        );
        let text = v.to_string();
        assert!(!text.contains("DOWNSTREAM-SECRET"), "{text}");
        assert_eq!(v["auth"], json!({"token": "UP"}));
        assert_eq!(v["role"], "node");
        assert_eq!(v["minProtocol"], 4);
        assert_eq!(v["caps"], json!(["camera"]));
        assert_eq!(v["commands"], json!(["system.run"]));
        assert_eq!(v["permissions"], json!({"camera": true}));
        assert_eq!(v["client"]["buildId"], "b1");
        assert_eq!(v["client"]["displayName"], "lab");
        assert_eq!(v["device"]["id"], key.device_id());
        assert_eq!(v["device"]["nonce"], "nonce-1");
        // The signature verifies as the real gateway checks it.
        let parsed = parse_connect(&v).unwrap();
        let d = parsed.device.clone().unwrap();
        assert!(claw_proto::signature::verify_device(&parsed, &d, "nonce-1", 1000).is_ok());
    }

    #[test]
    fn device_token_goes_as_device_token() {
        let key = DeviceKey::from_seed([1; 32]);
        let v = upstream_connect(
            &json!({"client": {"id": "cli", "mode": "cli"}}),
            "operator",
            &["operator.read".to_string()],
            &Secret::DeviceToken("DT".into()),
            &key,
            "n",
            1,
        );
        assert_eq!(v["auth"], json!({"deviceToken": "DT"}));
        assert_eq!(v["scopes"], json!(["operator.read"]));
    }

    #[test]
    fn client_ids_openclaw_does_not_know_become_its_generic_one() {
        let key = DeviceKey::from_seed([2; 32]);
        let build = |client: Value| {
            upstream_connect(
                &json!({"client": client}),
                "operator",
                &["operator.read".to_string()],
                &Secret::Shared("S".into()),
                &key,
                "n",
                1,
            )
        };
        let v = build(
            json!({"id": "claw-cli", "version": "1", "platform": "linux", "mode": "cli",
                             "displayName": "mine"}),
        );
        assert_eq!(v["client"]["id"], "gateway-client");
        assert_eq!(v["client"]["mode"], "cli");
        assert_eq!(v["client"]["displayName"], "mine");
        assert!(
            v["device"]["signature"].is_string(),
            "signed over the sent block: {v}"
        );
        let v =
            build(json!({"id": "cli", "version": "1", "platform": "linux", "mode": "spaceship"}));
        assert_eq!(v["client"]["id"], "cli");
        assert_eq!(v["client"]["mode"], "backend");
        let v = build(json!({"id": 7, "version": "1", "platform": "linux"}));
        assert_eq!(v["client"]["id"], "gateway-client");
        // Every id in the table is distinct.
        let ids: std::collections::HashSet<_> = OPENCLAW_CLIENT_IDS.iter().collect();
        assert_eq!(ids.len(), OPENCLAW_CLIENT_IDS.len());
    }

    #[test]
    fn hostile_downstream_connects_still_build() {
        let key = DeviceKey::from_seed([2; 32]);
        for raw in [
            json!(null),
            json!([]),
            json!({"client": 5}),
            json!({"role": {}}),
        ] {
            let v = upstream_connect(
                &raw,
                "operator",
                &[],
                &Secret::Shared("t".into()),
                &key,
                "n",
                1,
            );
            assert_eq!(v["role"], "operator");
        }
    }

    fn err(code: &str, detail: &str) -> ErrorShape {
        ErrorShape::new(code, "m").with_details(json!({"code": detail}))
    }

    #[test]
    fn refusals_are_classified() {
        use crate::protocol::codes as c;
        let shared = Secret::Shared("s".into());
        let dev = Secret::DeviceToken("d".into());
        assert_eq!(
            classify(&err(c::INVALID_REQUEST, c::AUTH_TOKEN_MISMATCH), &shared),
            Refusal::SharedToken
        );
        assert_eq!(
            classify(&err(c::INVALID_REQUEST, c::AUTH_TOKEN_MISMATCH), &dev),
            Refusal::DeviceToken
        );
        assert_eq!(
            classify(&err(c::INVALID_REQUEST, c::AUTH_SCOPE_MISMATCH), &dev),
            Refusal::Scope
        );
        assert_eq!(
            classify(&err(c::NOT_PAIRED, c::PAIRING_REQUIRED), &shared),
            Refusal::Pairing
        );
        let mut busy = ErrorShape::new(c::UNAVAILABLE, "gateway starting; retry shortly");
        busy.retryable = Some(true);
        busy.retry_after_ms = Some(500);
        assert_eq!(
            classify(&busy, &shared),
            Refusal::Busy(Duration::from_millis(500))
        );
        busy.retry_after_ms = Some(u64::MAX);
        assert_eq!(
            classify(&busy, &shared),
            Refusal::Busy(Duration::from_secs(5))
        );
        let odd = ErrorShape::new("X", "\u{1b}[31mred");
        let Refusal::Other(m) = classify(&odd, &shared) else {
            panic!()
        };
        assert!(!m.contains('\u{1b}'));
    }

    #[test]
    fn plan_and_backoff() {
        assert_eq!(
            plan(Some("d".into()), Some("s".into())),
            vec![Secret::DeviceToken("d".into()), Secret::Shared("s".into())]
        );
        assert_eq!(plan(None, None), vec![]);
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(100), Duration::from_secs(5));
    }
}
