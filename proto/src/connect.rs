//! The `connect` request, both ways: the gateway parses it ([`parse_connect`]), a client builds
//! and signs it ([`ConnectParams::new`], [`ConnectParams::sign`], [`ConnectParams::to_value`]);
//! protocol negotiation and the device-signature payloads (v3 and the legacy v2).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::device_key::DeviceKey;
use crate::{MIN_PROBE_PROTOCOL, PROTOCOL_VERSION};

/// Most scopes a connect may ask for.
pub const MAX_SCOPES: usize = 32;
/// Longest string accepted in any connect field.
pub const MAX_FIELD_LEN: usize = 512;

/// Who the client says it is (`params.client`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    /// Client id, e.g. `cli`, `gateway-client`.
    #[serde(default)]
    pub id: String,
    /// Client version.
    #[serde(default)]
    pub version: String,
    /// Platform, e.g. `linux`.
    #[serde(default)]
    pub platform: String,
    /// Device family, e.g. `Linux`.
    #[serde(default)]
    pub device_family: String,
    /// Mode: `cli`, `backend`, `probe`, `ui`, …
    #[serde(default)]
    pub mode: String,
    /// Optional instance id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Optional display name (used as the device's name when it pairs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Secrets (`params.auth`). `token` and `password` may carry the shared token; `token` or
/// `deviceToken` a device token (the real OpenClaw CLI sends a stored device token as
/// `deviceToken`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthParams {
    /// Shared gateway token or device token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Shared secret sent as a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A device token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// A bootstrap (setup-code) token: claw has none, but it is part of what clients sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<String>,
}

/// A signed device identity (`params.device`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProof {
    /// Lowercase hex SHA-256 of the raw public key.
    pub id: String,
    /// Base64url (no padding) raw 32-byte Ed25519 public key.
    pub public_key: String,
    /// Base64url Ed25519 signature over [`signature_payload`].
    pub signature: String,
    /// When the client signed, in ms since the epoch by its own clock; must be within
    /// [`crate::signature::SIGNATURE_SKEW_MS`] of the gateway's (it need not equal the
    /// challenge `ts`: the Control UI signs with the browser's clock).
    pub signed_at: u64,
    /// The challenge nonce the client signed.
    pub nonce: String,
}

/// Parsed `connect` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// Lowest protocol the client speaks.
    pub min_protocol: u32,
    /// Highest protocol the client speaks.
    pub max_protocol: u32,
    /// Client description.
    pub client: ClientInfo,
    /// Requested role (default `operator`).
    pub role: String,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Secrets.
    pub auth: AuthParams,
    /// Signed device identity, if any.
    pub device: Option<DeviceProof>,
}

impl ConnectParams {
    /// What a client sends: this claw's protocol range (v4 only), unsigned.
    pub fn new(client: ClientInfo, role: &str, scopes: Vec<String>, auth: AuthParams) -> Self {
        Self {
            min_protocol: PROTOCOL_VERSION,
            max_protocol: PROTOCOL_VERSION,
            client,
            role: role.to_string(),
            scopes,
            auth,
            device: None,
        }
    }

    /// Signs these params with `key` over the challenge (`nonce`, `ts`): sets `device`.
    pub fn sign(&mut self, key: &DeviceKey, nonce: &str, ts: u64) {
        self.device = Some(key.prove(self, nonce, ts));
    }

    /// The `params` of a `connect` request as a client sends them: OpenClaw's keys, an empty
    /// `caps`, `auth` only when it carries a secret, `device` only when signed. The gateway
    /// reads it back with [`parse_connect`].
    pub fn to_value(&self) -> Value {
        let mut p = json!({
            "minProtocol": self.min_protocol,
            "maxProtocol": self.max_protocol,
            "client": self.client,
            "caps": [],
            "role": self.role,
            "scopes": self.scopes,
        });
        if self.auth != AuthParams::default() {
            p["auth"] = json!(self.auth);
        }
        if let Some(d) = &self.device {
            p["device"] = json!(d);
        }
        p
    }

    /// The secret presented (`auth.token`, else `auth.password`, else `auth.deviceToken`), if
    /// non-empty.
    pub fn secret(&self) -> Option<&str> {
        non_empty(&self.auth.token)
            .or(non_empty(&self.auth.password))
            .or(non_empty(&self.auth.device_token))
    }

    /// The token a device signs: `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`,
    /// as OpenClaw resolves it (`??`: the first one present, even when it is empty).
    pub fn signed_token(&self) -> &str {
        self.auth
            .token
            .as_deref()
            .or(self.auth.device_token.as_deref())
            .or(self.auth.bootstrap_token.as_deref())
            .unwrap_or("")
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConnect {
    min_protocol: Option<u32>,
    max_protocol: Option<u32>,
    #[serde(default)]
    client: Option<ClientInfo>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    auth: Option<AuthParams>,
    #[serde(default)]
    device: Option<DeviceProof>,
}

/// Parses and bounds-checks `connect` params. The error is the text after
/// `invalid connect params: `.
pub fn parse_connect(params: &Value) -> Result<ConnectParams, String> {
    let raw: RawConnect = serde_json::from_value(params.clone()).map_err(|e| {
        let msg = e.to_string();
        msg.chars().take(200).collect::<String>()
    })?;
    let (Some(min_protocol), Some(max_protocol)) = (raw.min_protocol, raw.max_protocol) else {
        return Err("minProtocol and maxProtocol are required".into());
    };
    let client = raw.client.unwrap_or_default();
    let role = raw
        .role
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "operator".into());
    let scopes = raw.scopes.unwrap_or_default();
    let auth = raw.auth.unwrap_or_default();
    if scopes.len() > MAX_SCOPES {
        return Err(format!("at most {MAX_SCOPES} scopes"));
    }
    let too_long = [
        &client.id,
        &client.version,
        &client.platform,
        &client.device_family,
        &client.mode,
        &role,
    ]
    .into_iter()
    .chain(scopes.iter())
    .chain(auth.token.iter())
    .chain(auth.password.iter())
    .chain(client.instance_id.iter())
    .chain(client.display_name.iter())
    .any(|s| s.len() > MAX_FIELD_LEN);
    let device_too_long = raw.device.as_ref().is_some_and(|d| {
        [&d.id, &d.public_key, &d.signature, &d.nonce]
            .iter()
            .any(|s| s.len() > MAX_FIELD_LEN)
    });
    if too_long || device_too_long {
        return Err(format!("a field exceeds {MAX_FIELD_LEN} bytes"));
    }
    // What an operator reads in `claw devices list` and the logs: printable text only.
    let labels = [
        ("client.id", Some(&client.id)),
        ("client.version", Some(&client.version)),
        ("client.platform", Some(&client.platform)),
        ("client.deviceFamily", Some(&client.device_family)),
        ("client.mode", Some(&client.mode)),
        ("client.displayName", client.display_name.as_ref()),
        ("client.instanceId", client.instance_id.as_ref()),
        ("role", Some(&role)),
    ];
    for (what, v) in labels {
        if let Some((at, c)) = v.and_then(|v| {
            v.char_indices()
                .find(|(_, c)| crate::text::is_forbidden(*c))
        }) {
            return Err(format!(
                "{what} contains the control or format character U+{:04X} at byte {at}",
                c as u32
            ));
        }
    }
    if let Some(s) = scopes
        .iter()
        .find(|s| s.chars().any(crate::text::is_forbidden))
    {
        return Err(format!(
            "scope {} contains a control or format character",
            crate::text::escape(s)
        ));
    }
    Ok(ConnectParams {
        min_protocol,
        max_protocol,
        client,
        role,
        scopes,
        auth,
        device: raw.device,
    })
}

/// Picks the protocol version for a client range: v4 when offered; v3 only for probe clients.
pub fn negotiate_protocol(min: u32, max: u32, mode: &str) -> Option<u32> {
    let lowest = if mode == "probe" {
        MIN_PROBE_PROTOCOL
    } else {
        PROTOCOL_VERSION
    };
    if min > max {
        return None;
    }
    if (min..=max).contains(&PROTOCOL_VERSION) {
        Some(PROTOCOL_VERSION)
    } else if max >= lowest && max < PROTOCOL_VERSION {
        Some(max)
    } else {
        None
    }
}

/// The UTF-8 string a device signs (OpenClaw's v3 payload):
/// `v3|deviceId|client.id|client.mode|role|scopes,joined|signedAt|token|nonce|platform|deviceFamily`
/// with platform and device family normalised by [`normalize_metadata`] and `token` the
/// [`ConnectParams::signed_token`].
pub fn signature_payload(p: &ConnectParams, device: &DeviceProof) -> String {
    format!(
        "{}|{}|{}",
        payload_base("v3", p, device),
        normalize_metadata(&p.client.platform),
        normalize_metadata(&p.client.device_family)
    )
}

/// OpenClaw's legacy v2 payload, which the gateway still accepts when the v3 one does not verify:
/// `v2|deviceId|client.id|client.mode|role|scopes,joined|signedAt|token|nonce`.
pub fn signature_payload_v2(p: &ConnectParams, device: &DeviceProof) -> String {
    payload_base("v2", p, device)
}

fn payload_base(version: &str, p: &ConnectParams, device: &DeviceProof) -> String {
    format!(
        "{version}|{}|{}|{}|{}|{}|{}|{}|{}",
        device.id,
        p.client.id,
        p.client.mode,
        p.role,
        p.scopes.join(","),
        device.signed_at,
        p.signed_token(),
        device.nonce,
    )
}

/// Platform and device family as OpenClaw signs them: trimmed (JavaScript's `trim`), then only
/// ASCII `A`–`Z` lowercased (`"Linux x86_64"` → `"linux x86_64"`; `"ÄB"` → `"Äb"`).
pub fn normalize_metadata(s: &str) -> String {
    js_trim(s).to_ascii_lowercase()
}

/// JavaScript's `String.prototype.trim`: strips ECMAScript white space and line terminators
/// (which differ from Rust's `char::is_whitespace` in U+FEFF and U+0085).
pub fn js_trim(s: &str) -> &str {
    fn js_space(c: char) -> bool {
        matches!(
            c,
            '\u{9}'
                | '\u{a}'
                | '\u{b}'
                | '\u{c}'
                | '\u{d}'
                | ' '
                | '\u{a0}'
                | '\u{1680}'
                | '\u{2000}'
                ..='\u{200a}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202f}'
                    | '\u{205f}'
                    | '\u{3000}'
                    | '\u{feff}'
        )
    }
    s.trim_matches(js_space)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_real_cli_connect() {
        let v = json!({"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"0.0.1-probe","platform":"linux","deviceFamily":"Linux","mode":"cli","instanceId":"x"},"caps":[],"auth":{"token":"T"},"role":"operator","scopes":["operator.read"]});
        let p = parse_connect(&v).unwrap();
        assert_eq!(p.secret(), Some("T"));
        assert_eq!(p.client.device_family, "Linux");
        assert!(p.device.is_none());
        let v = json!({"minProtocol":4,"maxProtocol":4,"auth":{"password":"pw","token":""}});
        let p = parse_connect(&v).unwrap();
        assert_eq!(p.secret(), Some("pw"));
        assert_eq!(p.role, "operator");
        // The real CLI's stored-device-token reconnect: the device token is the secret and is
        // what the device signed.
        let v = json!({"minProtocol":4,"maxProtocol":4,"auth":{"deviceToken":"dt"}});
        let p = parse_connect(&v).unwrap();
        assert_eq!((p.secret(), p.signed_token()), (Some("dt"), "dt"));
    }

    #[test]
    fn hostile_connect_params() {
        for bad in [
            json!(null),
            json!([]),
            json!({"maxProtocol":4}),
            json!({"minProtocol":"4","maxProtocol":4}),
            json!({"minProtocol":-1,"maxProtocol":4}),
            json!({"minProtocol":4,"maxProtocol":4,"scopes":"operator.read"}),
            json!({"minProtocol":4,"maxProtocol":4,"scopes":vec!["s"; 33]}),
            json!({"minProtocol":4,"maxProtocol":4,"auth":{"token":"x".repeat(600)}}),
            json!({"minProtocol":4,"maxProtocol":4,"device":{"id":"a"}}),
            json!({"minProtocol":4,"maxProtocol":4,"client":{"id":5}}),
        ] {
            assert!(parse_connect(&bad).is_err(), "{bad}");
        }
    }

    /// What a client builds parses back on the gateway side to the same params, and the bytes
    /// are what claw clients sent before the params had one type.
    #[test]
    fn built_params_parse_back_and_keep_their_bytes() {
        let client = ClientInfo {
            id: "relay".into(),
            version: "0.1.0".into(),
            platform: "linux".into(),
            device_family: "Linux".into(),
            mode: "backend".into(),
            instance_id: None,
            display_name: None,
        };
        let auth = AuthParams {
            token: Some("tok".into()),
            ..Default::default()
        };
        let mut p = ConnectParams::new(client, "operator", vec!["operator.read".into()], auth);
        let unsigned = p.to_value();
        assert_eq!(
            unsigned.to_string(),
            r#"{"auth":{"token":"tok"},"caps":[],"client":{"deviceFamily":"Linux","id":"relay","mode":"backend","platform":"linux","version":"0.1.0"},"maxProtocol":4,"minProtocol":4,"role":"operator","scopes":["operator.read"]}"#
        );
        let key = DeviceKey::from_seed([3; 32]);
        p.sign(&key, "n-1", 9);
        let v = p.to_value();
        assert_eq!(parse_connect(&v).unwrap(), p);
        let d = p.device.as_ref().unwrap();
        crate::signature::verify_device(&p, d, "n-1", 9).unwrap();
        assert_eq!(v["device"]["publicKey"], key.public_key_b64());
        assert_eq!(v["device"]["signedAt"], 9);
        p.auth = AuthParams::default();
        assert!(p.to_value().get("auth").is_none());
    }

    #[test]
    fn protocol_negotiation() {
        assert_eq!(negotiate_protocol(4, 4, "cli"), Some(4));
        assert_eq!(negotiate_protocol(3, 4, "probe"), Some(4));
        assert_eq!(negotiate_protocol(3, 3, "probe"), Some(3));
        assert_eq!(negotiate_protocol(3, 3, "cli"), None);
        assert_eq!(negotiate_protocol(99, 99, "cli"), None);
        assert_eq!(negotiate_protocol(5, 4, "cli"), None);
        assert_eq!(negotiate_protocol(1, 2, "probe"), None);
        assert_eq!(negotiate_protocol(2, 9, "cli"), Some(4));
    }
}
