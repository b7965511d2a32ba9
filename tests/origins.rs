//! Browser origins on the real binary: an upgrade whose `Origin` is not allowed is refused with
//! HTTP 403 before the upgrade (no challenge, no pre-auth socket), and audited once per origin;
//! the gateway's own loopback origins, `--allow-origin` and the persisted list
//! (`claw gateway origins`) are allowed; clients without `Origin` are untouched. Also: the methods
//! the Control UI calls that claw does not serve get OpenClaw's "unknown method" error and the
//! socket stays open.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a WebSocket upgrade with this `Origin` (or none) and returns the status line.
async fn upgrade_status(port: u16, origin: Option<&str>) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{origin}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    let read = async {
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no HTTP answer");
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().unwrap_or("").to_string()
}

fn audit_rows(g: &Gateway, needle: &str) -> usize {
    let (code, out, err) = g.claw(&["gateway", "audit", "--json", "--limit", "500"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"].as_str().unwrap_or("").contains(needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_origins_not_allowed_are_refused_before_the_upgrade() {
    let g = Gateway::start(&["--allow-origin", "HTTP://127.0.0.1:5173"]);
    let own = format!("http://127.0.0.1:{}", g.port);
    let own_name = format!("http://localhost:{}", g.port);
    let own_v6 = format!("http://[::1]:{}", g.port);
    for allowed in [
        None,
        Some(own.as_str()),
        Some(own_name.as_str()),
        Some(own_v6.as_str()),
        Some("http://127.0.0.1:5173"),
    ] {
        let status = upgrade_status(g.port, allowed).await;
        assert!(status.starts_with("HTTP/1.1 101"), "{allowed:?}: {status}");
    }
    // Fails on the old code (every Origin was upgraded).
    for refused in [
        "https://evil.example",
        "null",
        "http://127.0.0.1:5174",
        "https://127.0.0.1:5173",
        "http://127.0.0.1:5173/x",
        "",
    ] {
        let status = upgrade_status(g.port, Some(refused)).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{refused:?}: {status}");
    }
    // A page reconnecting in a loop costs one audit row, not one per attempt.
    for _ in 0..5 {
        let status = upgrade_status(g.port, Some("https://evil.example")).await;
        assert!(status.starts_with("HTTP/1.1 403"));
    }
    assert_eq!(audit_rows(&g, "origin_not_allowed https://evil.example"), 1);
    assert_eq!(audit_rows(&g, "origin_not_allowed null"), 1);
    // The CLI path (no Origin) still works end to end.
    let token = g.token();
    let (hello, _ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&token),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    assert_eq!(hello["type"], "hello-ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_origins_apply_to_the_running_gateway() {
    let g = Gateway::start(&[]);
    let ui = "https://ui.example:8443";
    assert!(upgrade_status(g.port, Some(ui))
        .await
        .starts_with("HTTP/1.1 403"));
    let (code, out, err) = g.claw(&["gateway", "origins", "add", "HTTPS://UI.example:8443"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("allowed browser origin https://ui.example:8443"),
        "{out}"
    );
    assert!(upgrade_status(g.port, Some(ui))
        .await
        .starts_with("HTTP/1.1 101"));
    let (code, out, _) = g.claw(&["gateway", "origins", "list", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["running"], true);
    assert_eq!(v["persisted"], json!([ui]));
    let all: Vec<&str> = v["allowedOrigins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(all.contains(&ui) && all.contains(&format!("http://127.0.0.1:{}", g.port).as_str()));
    // The file is a secret-mode file in the home.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(g.home.join("origins.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Contracts: bad origins are refused with exit 78 and nothing is written.
    for bad in ["*", "null", "https://*.example", "http://a/path", "ftp://a"] {
        let (code, _, err) = g.claw(&["gateway", "origins", "add", bad]);
        assert_eq!(code, 78, "{bad}: {err}");
    }
    let (code, _, _) = g.claw(&["gateway", "origins", "remove", ui]);
    assert_eq!(code, 0);
    assert!(upgrade_status(g.port, Some(ui))
        .await
        .starts_with("HTTP/1.1 403"));
    let (code, _, _) = g.claw(&["gateway", "origins", "remove", ui]);
    assert_eq!(code, 1);
}

#[test]
fn bad_allow_origin_flags_are_config_errors() {
    let t = tempfile::tempdir().unwrap();
    for bad in ["*", "null", "https://a.example/", "https://*.a.example"] {
        let (code, _, err) = claw_in(
            &t.path().join("home"),
            &["gateway", "run", "--port", "0", "--allow-origin", bad],
        );
        assert_eq!(code, 78, "{bad}: {err}");
        assert!(err.contains("--allow-origin"), "{err}");
    }
}

/// What the Control UI calls right after `hello-ok` that claw does not serve: OpenClaw's own
/// "unknown method" error (admin) or the admin-scope error (others), and the socket stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_control_ui_methods_get_openclaws_unknown_method_error() {
    let g = Gateway::start(&[]);
    let token = g.token();
    let (_, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&token),
            scopes: &["operator.admin", "operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    for m in [
        "chat.history",
        "sessions.list",
        "models.list",
        "agents.list",
    ] {
        let r = call(&mut ws, m, json!({})).await;
        assert_eq!(
            r["error"],
            json!({"code":claw_proto::codes::INVALID_REQUEST,"message":format!("unknown method: {m}")}),
            "{m}"
        );
    }
    let (_, mut ro) = handshake(
        &g.url,
        &Creds {
            token: Some(&token),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    let r = call(&mut ro, "chat.history", json!({})).await;
    assert_eq!(
        r["error"]["details"]["code"],
        claw_proto::codes::MISSING_SCOPE
    );
    // Both sockets are still open and served.
    assert_eq!(call(&mut ws, "health", json!({})).await["ok"], true);
    assert_eq!(call(&mut ro, "health", json!({})).await["ok"], true);
}
