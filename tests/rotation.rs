//! End-to-end: root rotation, per-device rotation, revocation and removal — what live sessions
//! see, what old tokens get, and how a device gets back in.

mod common;

use claw_gateway::auth::device_key::DeviceKey;
use common::*;
use serde_json::json;

fn rotated() -> String {
    claw_proto::CloseReason::DeviceTokenRotated.to_string()
}

fn revoked() -> String {
    claw_proto::CloseReason::DeviceRevoked.to_string()
}

/// Pairs `key` silently over loopback and returns its device token.
async fn pair(g: &Gateway, key: &DeviceKey) -> String {
    let t = g.token();
    let (hello, _ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            device: Some(key),
            scopes: &["operator.read", "operator.pairing"],
        },
    )
    .await
    .hello();
    hello["auth"]["deviceToken"].as_str().unwrap().to_string()
}

async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match recv(ws).await {
            Ok(_) => continue,
            Err(c) => return c,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_token_force_closes_device_sessions_and_kills_old_tokens() {
    let g = Gateway::start(&[]);
    let shared = g.token();
    let a = DeviceKey::generate();
    let b = DeviceKey::generate();
    let ta = pair(&g, &a).await;
    let tb = pair(&g, &b).await;
    let (_, mut wa) = handshake(
        &g.url,
        &Creds {
            token: Some(&ta),
            device: Some(&a),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    let (_, mut wb) = handshake(
        &g.url,
        &Creds {
            token: Some(&tb),
            device: Some(&b),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    let (_, mut ws_shared) = handshake(
        &g.url,
        &Creds {
            token: Some(&shared),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();

    // Non-interactive without --force: refused, nothing rotated.
    let (code, _, err) = g.claw(&["devices", "rotate-token"]);
    assert_ne!(code, 0);
    assert!(err.contains("--force") && err.contains("2 live"), "{err}");
    let r = call(&mut wa, "health", json!({})).await;
    assert_eq!(r["ok"], true, "the refused rotation closed nothing");

    let (code, out, err) = g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("generation 2"), "{out}");
    assert_eq!(expect_close(&mut wa).await, (1008, rotated()));
    assert_eq!(expect_close(&mut wb).await, (1008, rotated()));
    // Shared-token sessions are untouched, and the shared token still works.
    let r = call(&mut ws_shared, "status", json!({})).await;
    assert_eq!(r["payload"]["deviceTokenGeneration"], 2);
    assert_eq!(g.token(), shared);

    // Old tokens: a distinct reason, so the client knows re-pairing helps.
    let (e, close) = handshake(
        &g.url,
        &Creds {
            token: Some(&ta),
            device: Some(&a),
            scopes: &["operator.read"],
        },
    )
    .await
    .refused();
    assert_eq!(close, (1008, rotated()));
    assert_eq!(
        e["details"]["code"],
        claw_proto::codes::AUTH_DEVICE_TOKEN_ROTATED
    );
    assert_eq!(e["details"]["canRepair"], true);

    // Re-pairing locally (shared token + device key) issues a new-generation token that works.
    let ta2 = pair(&g, &a).await;
    assert_ne!(ta2, ta);
    let (hello, _) = handshake(
        &g.url,
        &Creds {
            token: Some(&ta2),
            device: Some(&a),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert_eq!(hello["auth"]["method"], "device-token");

    // The audit log recorded the rotation.
    let (_, out, _) = g.claw(&["call", "health"]);
    assert!(out.contains("\"ok\": true"));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_closes_sessions_and_refuses_the_device_everywhere() {
    let g = Gateway::start(&[]);
    let shared = g.token();
    let a = DeviceKey::generate();
    let ta = pair(&g, &a).await;
    let (_, mut wa) = handshake(
        &g.url,
        &Creds {
            token: Some(&ta),
            device: Some(&a),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    let prefix = &a.device_id()[..12];
    let (code, out, err) = g.claw(&["devices", "revoke", prefix]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(expect_close(&mut wa).await, (1008, revoked()));
    let (e, close) = handshake(
        &g.url,
        &Creds {
            token: Some(&ta),
            device: Some(&a),
            scopes: &["operator.read"],
        },
    )
    .await
    .refused();
    assert_eq!(close, (1008, revoked()));
    assert_eq!(e["details"]["canRepair"], false);
    // Even the shared token does not bring a revoked key back.
    let (_, close) = handshake(
        &g.url,
        &Creds {
            token: Some(&shared),
            device: Some(&a),
            scopes: &["operator.read"],
        },
    )
    .await
    .refused();
    assert_eq!(close.1, revoked());
    let (_, out, _) = g.claw(&["devices", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["paired"][0]["revoked"], true);
    // Removing the device lets it pair again from scratch.
    let (code, _, _) = g.claw(&["devices", "remove", prefix]);
    assert_eq!(code, 0);
    let again = pair(&g, &a).await;
    assert_ne!(again, ta);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_device_rotate_and_big_red_button() {
    let g = Gateway::start(&[]);
    let a = DeviceKey::generate();
    let b = DeviceKey::generate();
    let ta = pair(&g, &a).await;
    let tb = pair(&g, &b).await;
    let (_, mut wb) = handshake(
        &g.url,
        &Creds {
            token: Some(&tb),
            device: Some(&b),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    let (code, out, err) = g.claw(&["devices", "rotate", &a.device_id()]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, close) = handshake(
        &g.url,
        &Creds {
            token: Some(&ta),
            device: Some(&a),
            scopes: &["operator.read"],
        },
    )
    .await
    .refused();
    assert_eq!(close.1, rotated());
    // Device b is unaffected.
    assert_eq!(call(&mut wb, "health", json!({})).await["ok"], true);

    // --revoke-devices: everyone must pair again; device sessions close.
    let (code, out, _) = g.claw(&["devices", "rotate-token", "--force", "--revoke-devices"]);
    assert_eq!(code, 0);
    assert!(out.contains("2 device(s) removed"), "{out}");
    assert_eq!(expect_close(&mut wb).await.0, 1008);
    let (_, out, _) = g.claw(&["devices", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["paired"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_rotation_replaces_a_generated_token() {
    let g = Gateway::start(&[]);
    let old = g.token();
    let (_, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&old),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    let (code, _, err) = g.claw(&["devices", "rotate-token", "--force", "--shared"]);
    assert_eq!(code, 0, "{err}");
    let new = g.token();
    assert_ne!(new, old);
    assert_eq!(
        expect_close(&mut ws).await,
        (
            1008,
            claw_proto::CloseReason::SharedTokenRotated.to_string()
        )
    );
    let _ = handshake(
        &g.url,
        &Creds {
            token: Some(&old),
            ..Default::default()
        },
    )
    .await
    .refused();
    let _ = handshake(
        &g.url,
        &Creds {
            token: Some(&new),
            ..Default::default()
        },
    )
    .await
    .hello();
    let (_, shown, _) = g.claw(&["gateway", "token", "--show"]);
    assert_eq!(shown.trim(), new);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_commands_work_with_the_gateway_stopped() {
    let mut g = Gateway::start(&[]);
    let a = DeviceKey::generate();
    let ta = pair(&g, &a).await;
    g.terminate();
    let (code, out, err) = g.claw(&["devices", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&a.device_id()));
    let (code, _, err) = g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0, "{err}");
    let home = g.home.clone();
    let g2 = Gateway::start_in(&home, &[]);
    let (_, close) = handshake(
        &g2.url,
        &Creds {
            token: Some(&ta),
            device: Some(&a),
            scopes: &["operator.read"],
        },
    )
    .await
    .refused();
    assert_eq!(
        close.1,
        rotated(),
        "an offline rotation is in force after restart"
    );
}

/// Destructive verbs ask on a terminal (`script` gives the command one) and do nothing on "n";
/// `--yes` skips the question; a one-character prefix names nothing.
#[tokio::test]
async fn revoke_asks_on_a_terminal_and_refuses_short_prefixes() {
    let g = Gateway::start(&[]);
    let a = DeviceKey::generate();
    pair(&g, &a).await;
    let id = a.device_id();
    let (code, _, err) = g.claw(&["devices", "revoke", &id[..1]]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("at least 8"), "{err}");
    let revoked = |g: &Gateway| {
        let (_, out, _) = g.claw(&["devices", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["paired"][0]["revoked"] == true
    };
    let cmd = format!(
        "{} --home {} devices revoke {}",
        claw_bin(),
        g.home.display(),
        &id[..8]
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("[y/N]"),
        "no question on the terminal: {shown}"
    );
    assert!(!out.status.success(), "{shown}");
    assert!(!revoked(&g), "answered n, yet revoked");
    let (code, _, err) = g.claw(&["devices", "revoke", &id[..8], "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(revoked(&g));
}
