//! The Control UI's handshake replayed on the real binary without a browser: what OpenClaw's
//! browser client sends (client `openclaw-control-ui`/`webchat`, platform `Linux x86_64`, no
//! device family, `auth {token, password}`, a legacy **v2** signature, `signedAt` from its own
//! clock rather than the challenge `ts`). It is paired silently on loopback, reconnects with only
//! its stored device token, and a signature older than two minutes is refused as expired. Fails
//! on the old code, which verified v3 payloads only (`DEVICE_AUTH_SIGNATURE_INVALID`).
//! `scripts/ui-control.sh` runs the real UI in Chromium.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use claw_gateway::auth::device_key::DeviceKey;
use claw_gateway::protocol::connect::{parse_connect, signature_payload_v2};
use common::*;
use serde_json::{json, Value};

/// A Control-UI connect signed the v2 way, `signedAt` `skew_ms` away from the challenge `ts`.
fn ui_connect(key: &DeviceKey, auth: Value, challenge: &Value, skew_ms: i64) -> Value {
    let mut p = json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id":"openclaw-control-ui","version":"2026.9.6","platform":"Linux x86_64","mode":"webchat","instanceId":"i-1","timeZone":"UTC"},
        "role": "operator",
        "scopes": ["operator.admin","operator.read","operator.write","operator.approvals","operator.questions","operator.pairing"],
        "caps": ["agent-kind","approvals","tool-events"],
        "auth": auth,
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "locale": "en-US",
    });
    let signed_at = (challenge["ts"].as_i64().unwrap() + skew_ms) as u64;
    let mut proof = key.prove(
        &parse_connect(&p).unwrap(),
        challenge["nonce"].as_str().unwrap(),
        signed_at,
    );
    let payload = signature_payload_v2(&parse_connect(&p).unwrap(), &proof);
    proof.signature = URL_SAFE_NO_PAD.encode(key.sign(payload.as_bytes()));
    p["device"] = json!({"id": proof.id, "publicKey": proof.public_key, "signature": proof.signature, "signedAt": proof.signed_at, "nonce": proof.nonce});
    json!({"type":"req","id":"1:ui","method":"connect","params":p})
}

async fn connect_as_ui(url: &str, key: &DeviceKey, auth: Value, skew_ms: i64) -> Value {
    let (mut ws, ch) = open(url).await;
    send(&mut ws, &ui_connect(key, auth, &ch, skew_ms)).await;
    let res = recv(&mut ws).await.expect("connect response");
    if res["ok"] != true {
        let close = recv(&mut ws).await.expect_err("close after a refusal");
        return json!({"error": res["error"], "close": [close.0, close.1]});
    }
    res["payload"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_uis_v2_handshake_pairs_silently_and_reconnects_with_its_device_token() {
    let g = Gateway::start(&[]);
    let token = g.token();
    let key = DeviceKey::generate();
    // First visit: shared token (as token and password), the browser clock 90 s behind.
    let hello = connect_as_ui(
        &g.url,
        &key,
        json!({"token": token, "password": token}),
        -90_000,
    )
    .await;
    assert_eq!(hello["type"], "hello-ok", "{hello}");
    assert_eq!(hello["auth"]["method"], "token");
    let device_token = hello["auth"]["deviceToken"]
        .as_str()
        .expect("silent pairing issues a device token")
        .to_string();
    let (code, out, _) = g.claw(&["devices", "list", "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains(&key.device_id()), "{out}");
    // Reload: only the stored device token, the browser clock 90 s ahead.
    let hello = connect_as_ui(&g.url, &key, json!({"deviceToken": device_token}), 90_000).await;
    assert_eq!(hello["type"], "hello-ok", "{hello}");
    assert_eq!(hello["auth"]["method"], "device-token");
    // Signed more than two minutes away from the gateway's clock: expired, as OpenClaw says it.
    for skew in [-150_000, 150_000] {
        let r = connect_as_ui(&g.url, &key, json!({"deviceToken": device_token}), skew).await;
        assert_eq!(
            r["error"],
            json!({"code":claw_proto::codes::INVALID_REQUEST,"message":claw_proto::CloseReason::SignatureExpired.to_string(),"details":{"code":claw_proto::codes::DEVICE_AUTH_SIGNATURE_EXPIRED,"reason":"device-signature-stale"}}),
            "{skew}"
        );
        assert_eq!(
            r["close"],
            json!([1008, claw_proto::CloseReason::SignatureExpired.to_string()])
        );
    }
}
