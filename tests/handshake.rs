//! End-to-end: every row of the handshake failure table, silent local pairing, device-token
//! reconnect and scopes, against a gateway started in-process (`claw::daemon::Daemon`) with a
//! real WebSocket client.

mod common;

use std::time::Duration;

use claw_gateway::auth::device_key::DeviceKey;
use common::*;
use serde_json::json;

#[tokio::test]
async fn shared_token_hello_ok_has_the_openclaw_shape() {
    let g = InProcess::start().await;
    let t = g.token();
    let (hello, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 4);
    assert_eq!(hello["auth"]["method"], "token");
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]));
    assert!(
        hello["auth"].get("deviceToken").is_none(),
        "no device, no device token"
    );
    for k in ["server", "features", "snapshot", "policy"] {
        assert!(hello.get(k).is_some(), "{k} missing");
    }
    // features.methods is exactly what is served: each advertised method answers (or is scope-gated).
    let methods: Vec<String> =
        serde_json::from_value(hello["features"]["methods"].clone()).unwrap();
    assert!(
        methods.contains(&"health".to_string())
            && methods.contains(&"gateway.token.rotate".to_string())
    );
    assert!(
        !methods.contains(&"gateway.stop".to_string()),
        "admin-socket methods are not advertised"
    );
    for m in &methods {
        let r = call(&mut ws, m, json!({})).await;
        let code = r["error"]["code"].as_str().unwrap_or("");
        assert!(
            r["ok"] == true
                || code == claw_proto::codes::FORBIDDEN
                || code == claw_proto::codes::INVALID_REQUEST
                || code == claw_proto::codes::NOT_FOUND,
            "{m}: {r}"
        );
        assert_ne!(
            r["error"]["message"].as_str().unwrap_or(""),
            format!("unknown method: {m}")
        );
    }
    let h = call(&mut ws, "health", json!({})).await;
    assert_eq!(h["payload"]["ok"], true);
}

#[tokio::test]
async fn failure_table() {
    let g = InProcess::start().await;
    let t = g.token();
    let key = DeviceKey::generate();

    // No token, no device.
    let (e, close) = handshake(
        &g.url,
        &Creds {
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .refused();
    assert_eq!(
        (e["code"].as_str(), e["details"]["code"].as_str()),
        (
            Some(claw_proto::codes::NOT_PAIRED),
            Some(claw_proto::codes::DEVICE_IDENTITY_REQUIRED)
        )
    );
    assert_eq!(
        close,
        (
            1008,
            claw_proto::CloseReason::DeviceIdentityRequired.to_string()
        )
    );

    // Wrong shared token.
    let (e, close) = handshake(
        &g.url,
        &Creds {
            token: Some("tok-WRONG"),
            ..Default::default()
        },
    )
    .await
    .refused();
    assert_eq!(e["details"]["code"], claw_proto::codes::AUTH_TOKEN_MISMATCH);
    assert_eq!(
        e["details"]["recommendedNextStep"],
        "update_auth_credentials"
    );
    assert_eq!(e["details"]["canRetryWithDeviceToken"], false);
    assert_eq!(
        close,
        (1008, claw_proto::CloseReason::TokenMismatch.to_string())
    );

    // Signed device, no token.
    let (e, close) = handshake(
        &g.url,
        &Creds {
            device: Some(&key),
            ..Default::default()
        },
    )
    .await
    .refused();
    assert_eq!(e["details"]["code"], claw_proto::codes::AUTH_TOKEN_MISSING);
    assert_eq!(
        e["details"]["recommendedNextStep"],
        "update_auth_configuration"
    );
    assert_eq!(close.0, 1008);
    assert!(close.1.starts_with("unauthorized: gateway token missing"));

    // Bad signature: sign, then tamper with the scopes.
    let (mut ws, ch) = open(&g.url).await;
    let mut p = connect_params(
        &Creds {
            token: Some(&t),
            device: Some(&key),
            scopes: &["operator.read"],
        },
        &ch,
    );
    p["scopes"] = json!(["operator.admin"]);
    send(
        &mut ws,
        &json!({"type":"req","id":"c1","method":"connect","params":p}),
    )
    .await;
    let r = recv(&mut ws).await.unwrap();
    assert_eq!(
        r["error"]["details"]["code"],
        claw_proto::codes::DEVICE_AUTH_SIGNATURE_INVALID
    );
    assert_eq!(
        recv(&mut ws).await.unwrap_err(),
        (1008, claw_proto::CloseReason::SignatureInvalid.to_string())
    );

    // device.id not the key's hash.
    let (mut ws, ch) = open(&g.url).await;
    let mut p = connect_params(
        &Creds {
            token: Some(&t),
            device: Some(&key),
            scopes: &[],
        },
        &ch,
    );
    p["device"]["id"] = json!(format!("00{}", &key.device_id()[2..]));
    send(
        &mut ws,
        &json!({"type":"req","id":"c1","method":"connect","params":p}),
    )
    .await;
    let r = recv(&mut ws).await.unwrap();
    assert_eq!(
        r["error"]["details"]["code"],
        claw_proto::codes::DEVICE_AUTH_DEVICE_ID_MISMATCH
    );
    assert_eq!(
        recv(&mut ws).await.unwrap_err(),
        (1008, claw_proto::CloseReason::IdentityMismatch.to_string())
    );

    // First request not connect.
    let (mut ws, _) = open(&g.url).await;
    send(
        &mut ws,
        &json!({"type":"req","id":"x1","method":"health","params":{}}),
    )
    .await;
    let r = recv(&mut ws).await.unwrap();
    assert_eq!(r["id"], "x1");
    assert_eq!(
        r["error"]["message"],
        claw_proto::CloseReason::FirstRequestNotConnect.to_string()
    );
    assert_eq!(
        recv(&mut ws).await.unwrap_err(),
        (
            1008,
            claw_proto::CloseReason::FirstRequestNotConnect.to_string()
        )
    );

    // Protocol mismatch closes 1002.
    let (mut ws, ch) = open(&g.url).await;
    let mut p = connect_params(
        &Creds {
            token: Some(&t),
            ..Default::default()
        },
        &ch,
    );
    p["minProtocol"] = json!(99);
    p["maxProtocol"] = json!(99);
    send(
        &mut ws,
        &json!({"type":"req","id":"c1","method":"connect","params":p}),
    )
    .await;
    let r = recv(&mut ws).await.unwrap();
    assert_eq!(
        r["error"]["details"],
        json!({"code":claw_proto::codes::PROTOCOL_MISMATCH,"clientMinProtocol":99,"clientMaxProtocol":99,"expectedProtocol":4,"minimumProbeProtocol":3})
    );
    assert_eq!(
        recv(&mut ws).await.unwrap_err(),
        (1002, claw_proto::CloseReason::ProtocolMismatch.to_string())
    );

    // Probe clients may speak v3.
    let (mut ws, ch) = open(&g.url).await;
    let mut p = connect_params(
        &Creds {
            token: Some(&t),
            ..Default::default()
        },
        &ch,
    );
    p["minProtocol"] = json!(3);
    p["maxProtocol"] = json!(3);
    p["client"]["mode"] = json!("probe");
    send(
        &mut ws,
        &json!({"type":"req","id":"c1","method":"connect","params":p}),
    )
    .await;
    let r = recv(&mut ws).await.unwrap();
    assert_eq!(r["payload"]["protocol"], 3, "{r}");
}

#[tokio::test]
async fn silent_local_pairing_device_token_reconnect_and_scopes() {
    let g = InProcess::start().await;
    let t = g.token();
    let key = DeviceKey::generate();
    let (hello, ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            device: Some(&key),
            scopes: &["operator.read", "operator.pairing"],
        },
    )
    .await
    .hello();
    let dt = hello["auth"]["deviceToken"]
        .as_str()
        .expect("silent pairing issues a device token")
        .to_string();
    assert_eq!(dt.len(), 43);
    assert!(hello["auth"]["issuedAtMs"].as_u64().is_some());
    drop(ws);

    // The same device again with the shared token gets the same token back (nothing rotated).
    let (hello, _ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            device: Some(&key),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert_eq!(hello["auth"]["deviceToken"], dt.as_str());

    // Device-token reconnect.
    let (hello, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&dt),
            device: Some(&key),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert_eq!(hello["auth"]["method"], "device-token");
    // operator.read only: pairing methods are forbidden, the socket stays open.
    let r = call(&mut ws, "device.pair.list", json!({})).await;
    assert_eq!(r["error"]["code"], claw_proto::codes::FORBIDDEN);
    assert_eq!(
        r["error"]["details"],
        json!({"code":claw_proto::codes::MISSING_SCOPE,"missingScope":"operator.pairing","requiredScopes":["operator.pairing"]})
    );
    let r = call(&mut ws, "no.such.method", json!({})).await;
    assert_eq!(r["error"]["details"]["missingScope"], "operator.admin");
    let r = call(&mut ws, "status", json!({})).await;
    assert_eq!(r["ok"], true, "socket still open and serving: {r}");

    // Asking for more than was granted.
    let (e, close) = handshake(
        &g.url,
        &Creds {
            token: Some(&dt),
            device: Some(&key),
            scopes: &["operator.admin"],
        },
    )
    .await
    .refused();
    assert_eq!(e["details"]["code"], claw_proto::codes::AUTH_SCOPE_MISMATCH);
    assert_eq!(close.0, 1008);

    // A device token without the device's signature.
    let (e, _) = handshake(
        &g.url,
        &Creds {
            token: Some(&dt),
            ..Default::default()
        },
    )
    .await
    .refused();
    assert_eq!(e["details"]["code"], claw_proto::codes::AUTH_TOKEN_MISMATCH);

    // A bogus token from a paired device: can retry with its device token.
    let (e, _) = handshake(
        &g.url,
        &Creds {
            token: Some("AAAAwrongdevicetokenAAAA"),
            device: Some(&key),
            scopes: &[],
        },
    )
    .await
    .refused();
    assert_eq!(e["details"]["canRetryWithDeviceToken"], true);
    assert_eq!(
        e["details"]["recommendedNextStep"],
        "retry_with_device_token"
    );

    // Another device cannot use this device's token.
    let other = DeviceKey::generate();
    let (e, _) = handshake(
        &g.url,
        &Creds {
            token: Some(&dt),
            device: Some(&other),
            scopes: &[],
        },
    )
    .await
    .refused();
    assert_eq!(e["details"]["code"], claw_proto::codes::AUTH_TOKEN_MISMATCH);

    // The device shows up in device.pair.list as silently approved and connected.
    let (_, mut admin) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            scopes: &["operator.admin"],
            ..Default::default()
        },
    )
    .await
    .hello();
    let r = call(&mut admin, "device.pair.list", json!({})).await;
    let paired = r["payload"]["paired"].as_array().unwrap();
    assert_eq!(paired.len(), 1);
    assert_eq!(paired[0]["deviceId"], key.device_id().as_str());
    assert_eq!(paired[0]["approvedVia"], "silent");
    assert_eq!(paired[0]["connected"], true);
}

#[tokio::test]
async fn wrong_secrets_are_delayed_and_a_success_resets() {
    let g = InProcess::start_with(|c| c.gateway.auth_fail_delay = Duration::from_millis(300)).await;
    let t = g.token();
    let mut waits = Vec::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let _ = handshake(
            &g.url,
            &Creds {
                token: Some("nope"),
                ..Default::default()
            },
        )
        .await
        .refused();
        waits.push(started.elapsed().as_millis());
    }
    // 300, 600, 1200 ms: each answer waits at least its step.
    assert!(
        waits[0] >= 300 && waits[1] >= 600 && waits[2] >= 1200,
        "{waits:?}"
    );
    let _ = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            ..Default::default()
        },
    )
    .await
    .hello();
    let started = std::time::Instant::now();
    let _ = handshake(
        &g.url,
        &Creds {
            token: Some("nope"),
            ..Default::default()
        },
    )
    .await
    .refused();
    let after = started.elapsed().as_millis();
    // Without the reset this answer would wait 2400 ms.
    assert!(
        (300..2000).contains(&after),
        "a success resets the delay: {after} ms"
    );
}
