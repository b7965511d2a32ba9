//! The client side of the wire, as pure functions: building `connect`, reading what the gateway
//! sends. Nothing here does IO, and nothing here panics on any input.

use claw_proto::connect::{AuthParams, ClientInfo, ConnectParams};
use claw_proto::DeviceKey;
use serde_json::{json, Value};

/// Who the client is and what it asks for; everything of a `connect` except the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `client.id`.
    pub client_id: String,
    /// `client.mode`.
    pub client_mode: String,
    /// `role`.
    pub role: String,
    /// `scopes`.
    pub scopes: Vec<String>,
}

/// The `connect` params for `identity` with `token`, signed by `device` over the challenge
/// (`nonce`, `ts`) when a device key is given.
pub fn connect_params(
    identity: &Identity,
    token: Option<&str>,
    device: Option<&DeviceKey>,
    nonce: &str,
    ts: u64,
) -> Value {
    let client = ClientInfo {
        id: identity.client_id.clone(),
        version: claw_proto::VERSION.into(),
        platform: std::env::consts::OS.into(),
        device_family: "Linux".into(),
        mode: identity.client_mode.clone(),
        instance_id: None,
        display_name: None,
    };
    let auth = AuthParams {
        token: token.map(str::to_string),
        ..Default::default()
    };
    let mut params = ConnectParams::new(client, &identity.role, identity.scopes.clone(), auth);
    if let Some(k) = device {
        params.sign(k, nonce, ts);
    }
    params.to_value()
}

/// A request frame.
pub fn request(id: &str, method: &str, params: &Value) -> String {
    json!({"type":"req","id":id,"method":method,"params":params}).to_string()
}

/// The `error` object of a failed response: the wire contract's [`ErrorShape`](claw_proto::ErrorShape), read
/// leniently ([`ErrorShape::from_wire`](claw_proto::ErrorShape::from_wire)).
pub type RemoteError = claw_proto::ErrorShape;

/// Longest string kept from the network for messages and logs.
const MAX_TEXT: usize = claw_proto::frames::MAX_ERROR_TEXT;

fn short(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// A text message from the gateway, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A response to request `id`.
    Response {
        /// The request id it answers (numbers are turned into strings).
        id: String,
        /// The payload, or the error.
        result: Result<Value, RemoteError>,
    },
    /// An event.
    Event {
        /// `event`.
        name: String,
        /// `payload` (`null` when absent).
        payload: Value,
        /// `seq`, when present.
        seq: Option<u64>,
    },
    /// Anything else (not JSON, not an object, an unknown frame type): ignored.
    Other,
}

/// Classifies a text message. Total: any input gives an answer.
pub fn parse_incoming(text: &str) -> Incoming {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Incoming::Other;
    };
    match v.get("type").and_then(Value::as_str) {
        Some("res") => {
            let id = match v.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Incoming::Other,
            };
            let result = if v.get("ok") == Some(&Value::Bool(true)) {
                Ok(v.get("payload").cloned().unwrap_or(Value::Null))
            } else {
                Err(RemoteError::from_wire(
                    v.get("error").unwrap_or(&Value::Null),
                ))
            };
            Incoming::Response { id, result }
        }
        Some("event") => match v.get("event").and_then(Value::as_str) {
            Some(name) => Incoming::Event {
                name: short(name),
                payload: v.get("payload").cloned().unwrap_or(Value::Null),
                seq: v.get("seq").and_then(Value::as_u64),
            },
            None => Incoming::Other,
        },
        _ => Incoming::Other,
    }
}

/// The challenge (`nonce`, `ts`) from a `connect.challenge` event payload.
pub fn challenge(payload: &Value) -> Option<(String, u64)> {
    let nonce = payload.get("nonce")?.as_str()?;
    if nonce.is_empty() || nonce.len() > 512 {
        return None;
    }
    Some((nonce.to_string(), payload.get("ts")?.as_u64()?))
}

/// `hello-ok.policy.tickIntervalMs`, if present and sane (1 ms ..= 1 day).
pub fn tick_interval_ms(hello: &Value) -> Option<u64> {
    hello
        .get("policy")?
        .get("tickIntervalMs")?
        .as_u64()
        .filter(|ms| (1..=86_400_000).contains(ms))
}

/// `hello-ok.auth.deviceToken`, if present.
pub fn device_token(hello: &Value) -> Option<&str> {
    hello
        .get("auth")?
        .get("deviceToken")?
        .as_str()
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_frames() {
        assert_eq!(
            parse_incoming(r#"{"type":"res","id":"7","ok":true,"payload":{"ok":true}}"#),
            Incoming::Response {
                id: "7".into(),
                result: Ok(json!({"ok":true}))
            }
        );
        assert_eq!(
            parse_incoming(
                &json!({"type":"res","id":7,"ok":false,"error":{"code":claw_proto::codes::FORBIDDEN,"message":"missing scope: operator.admin","details":{"code":claw_proto::codes::MISSING_SCOPE}}})
                    .to_string()
            ),
            Incoming::Response {
                id: "7".into(),
                result: Err(RemoteError {
                    code: claw_proto::codes::FORBIDDEN.into(),
                    message: "missing scope: operator.admin".into(),
                    details: Some(json!({"code":claw_proto::codes::MISSING_SCOPE})),
                    retryable: None,
                    retry_after_ms: None,
                })
            }
        );
        assert_eq!(
            parse_incoming(r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":3}"#),
            Incoming::Event {
                name: "tick".into(),
                payload: json!({"ts":1}),
                seq: Some(3)
            }
        );
    }

    #[test]
    fn hostile_frames_never_panic() {
        let deep = "[".repeat(100_000);
        let long_msg = format!(
            r#"{{"type":"res","id":"1","ok":false,"error":{{"message":"{}"}}}}"#,
            "m".repeat(100_000)
        );
        for text in [
            "",
            "not json",
            "[]",
            "null",
            "42",
            r#"{"type":"res"}"#,
            r#"{"type":"res","id":{}}"#,
            r#"{"type":"res","id":null,"ok":true}"#,
            r#"{"type":"event"}"#,
            r#"{"type":"event","event":5}"#,
            r#"{"type":5}"#,
            r#"["res","1",true]"#,
            deep.as_str(),
        ] {
            assert_eq!(parse_incoming(text), Incoming::Other, "{text:.40}");
        }
        // A failed response without an error object still parses, with defaults.
        match parse_incoming(r#"{"type":"res","id":"1","ok":"yes"}"#) {
            Incoming::Response { result: Err(e), .. } => {
                assert_eq!(e.code, claw_proto::codes::UNKNOWN)
            }
            other => panic!("{other:?}"),
        }
        match parse_incoming(&long_msg) {
            Incoming::Response { result: Err(e), .. } => assert_eq!(e.message.len(), MAX_TEXT),
            other => panic!("{other:?}"),
        }
        assert_eq!(challenge(&json!({"nonce":"n","ts":-1})), None);
        assert_eq!(challenge(&json!({"nonce":"","ts":1})), None);
        assert_eq!(challenge(&json!(null)), None);
        assert_eq!(
            challenge(&json!({"nonce":"n","ts":5})),
            Some(("n".into(), 5))
        );
        assert_eq!(
            tick_interval_ms(&json!({"policy":{"tickIntervalMs":0}})),
            None
        );
        assert_eq!(
            tick_interval_ms(&json!({"policy":{"tickIntervalMs":30000}})),
            Some(30000)
        );
        assert_eq!(device_token(&json!({"auth":{"deviceToken":""}})), None);
    }

    #[test]
    fn signed_connect_verifies_on_the_gateway_side() {
        use claw_proto::connect::parse_connect;
        use claw_proto::signature::verify_device;
        let key = DeviceKey::generate();
        let id = Identity {
            client_id: "relay".into(),
            client_mode: "backend".into(),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
        };
        let p = connect_params(&id, Some("tok"), Some(&key), "nonce-1", 9);
        let parsed = parse_connect(&p).unwrap();
        let proof = parsed.device.clone().unwrap();
        verify_device(&parsed, &proof, "nonce-1", 9).unwrap();
        assert!(verify_device(&parsed, &proof, "nonce-2", 9).is_err());
        let unsigned = connect_params(&id, None, None, "n", 1);
        assert!(unsigned.get("auth").is_none() && unsigned.get("device").is_none());
    }
}
