//! End-to-end: the QUIC tunnel with separate homes for the gateway and each device — pairing,
//! refusals, WebSocket through the tunnel, re-pairing after rotation, migration, exposes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use claw_gateway::auth::device_key::DeviceKey;
use claw_tunnel::device::DeviceHome;
use claw_tunnel::pairing::PairingUri;
use claw_tunnel::quic::client::{self, Tunnel, UpConfig};
use common::*;
use serde_json::{json, Value};

fn rotated() -> String {
    claw_proto::CloseReason::DeviceTokenRotated.to_string()
}

fn tunnel_gateway(extra: &[&str]) -> Gateway {
    let mut args = vec!["--tunnel", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Gateway::start(&args)
}

fn pair_uri(g: &Gateway, extra: &[&str]) -> String {
    let mut args = vec!["pair", "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = g.claw(&args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["uri"].as_str().unwrap().to_string()
}

/// The tunnel's UDP address as the running gateway reports it (`gateway.json`).
fn tunnel_addr(g: &Gateway) -> String {
    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(g.home.join("gateway.json")).unwrap())
            .unwrap();
    rt["tunnel"]["addr"].as_str().unwrap().to_string()
}

fn device_home(tmp: &tempfile::TempDir, name: &str) -> PathBuf {
    let p = tmp.path().join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn token_of(home: &Path) -> (String, u64) {
    let t = DeviceHome::new(home)
        .token()
        .unwrap()
        .expect("a stored token");
    (t.token, t.generation)
}

fn key_of(home: &Path) -> DeviceKey {
    claw_gateway::auth::device_key::load_or_create(&home.join("identity.key")).unwrap()
}

fn audit(g: &Gateway) -> Vec<Value> {
    let (_, out, _) = g.claw(&["gateway", "audit", "--limit", "2000", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["entries"].as_array().unwrap().clone()
}

async fn up(home: &Path) -> Tunnel {
    up_with(home, &[]).await
}

/// `client::up` with a local forward per exposed name (local_addrs[1..] in order), connected.
async fn up_with(home: &Path, forwards: &[&str]) -> Tunnel {
    let t = client::up(
        DeviceHome::new(home),
        UpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            forwards: forwards
                .iter()
                .map(|n| ("127.0.0.1:0".parse().unwrap(), n.to_string()))
                .collect(),
        },
    )
    .await
    .unwrap();
    wait_connected(&t).await;
    t
}

/// A new device home `name`, paired with `g` through a fresh code.
async fn paired(g: &Gateway, tmp: &tempfile::TempDir, name: &str) -> PathBuf {
    let h = device_home(tmp, name);
    let uri = PairingUri::parse(&pair_uri(g, &[])).unwrap();
    client::pair(&DeviceHome::new(&h), &uri, None, |_| {})
        .await
        .unwrap();
    h
}

async fn wait_connected(t: &Tunnel) {
    for _ in 0..200 {
        if t.status().connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("tunnel never connected: {:?}", t.status().last_error);
}

/// `claw tunnel up` as a real process on a free local port; returns it and its `ws://` URL.
fn spawn_tunnel_up(home: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(claw_bin())
        .args([
            "--home",
            home.to_str().unwrap(),
            "tunnel",
            "up",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no ready line from tunnel up: {line:?}"))
        .to_string();
    (child, url)
}

/// A signed device-token handshake through the tunnel's local port.
async fn ws_via(t: &Tunnel, home: &Path, token: &str) -> Outcome {
    let key = key_of(home);
    handshake(
        &format!("ws://{}", t.local_addrs[0]),
        &Creds {
            token: Some(token),
            device: Some(&key),
            scopes: &["operator.read"],
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn pair_tunnel_up_and_a_websocket_through_it() {
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let d = device_home(&tmp, "laptop");
    let uri = pair_uri(&g, &["--name", "laptop"]);
    let (code, out, err) = claw_in(&d, &["tunnel", "pair", &uri]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("paired with gateway"));
    let p = DeviceHome::new(&d).pairing().unwrap();
    assert_eq!(
        p.device_id,
        key_of(&d).device_id(),
        "one key: TLS identity = WS identity"
    );
    for f in ["identity.key", "tunnel.json", "device-token.json"] {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777,
            0o600,
            "{f}"
        );
    }

    // `claw tunnel up` as a real process.
    let (mut child, url) = spawn_tunnel_up(&d);
    let (tok, _) = token_of(&d);
    let key = key_of(&d);
    let (hello, mut ws) = handshake(
        &url,
        &Creds {
            token: Some(&tok),
            device: Some(&key),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert_eq!(hello["auth"]["method"], "device-token");
    assert_eq!(
        call(&mut ws, "health", json!({})).await["payload"]["ok"],
        true
    );
    // The gateway sees the device as connected, named as paired.
    let (_, out, _) = g.claw(&["devices", "list", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["paired"][0]["connected"], true);
    assert_eq!(v["paired"][0]["displayName"], "laptop");
    assert_eq!(v["paired"][0]["approvedVia"], "pairing-code");
    // Status from the device side.
    let mut status = Value::Null;
    for _ in 0..40 {
        let (code, out, _) = claw_in(&d, &["tunnel", "status", "--json"]);
        status = serde_json::from_str(&out).unwrap_or(Value::Null);
        if code == 0 && status["streams"].as_u64() == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["gatewayId"], p.gateway_id.as_str());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn pairing_refusals_are_clear_and_audited() {
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();

    // Wrong fingerprint: a man in the middle (or the wrong gateway) is refused by the device.
    let uri = pair_uri(&g, &[]);
    let mut bad = PairingUri::parse(&uri).unwrap();
    bad.gateway_id = "0".repeat(64);
    let (code, _, err) = claw_in(
        &device_home(&tmp, "mitm"),
        &["tunnel", "pair", &bad.to_uri()],
    );
    assert_eq!(code, 1);
    assert!(err.contains("fingerprint mismatch"), "{err}");

    // The code was not spent by the refused attempt: the real device pairs with it.
    let (code, _, err) = claw_in(&device_home(&tmp, "real"), &["tunnel", "pair", &uri]);
    assert_eq!(code, 0, "{err}");
    // Reused.
    let (code, _, err) = claw_in(&device_home(&tmp, "again"), &["tunnel", "pair", &uri]);
    assert_eq!(code, 1);
    assert!(err.contains("already used"), "{err}");

    // Expired.
    let uri = pair_uri(&g, &["--ttl", "1s"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (code, _, err) = claw_in(&device_home(&tmp, "late"), &["tunnel", "pair", &uri]);
    assert_eq!(code, 1);
    assert!(err.contains("expired"), "{err}");

    // Brute force: three wrong secrets burn the code; the right one then fails too.
    let uri = pair_uri(&g, &[]);
    let good = PairingUri::parse(&uri).unwrap();
    let id = good.code.split('.').next().unwrap().to_string();
    for i in 0..3 {
        let mut guess = good.clone();
        guess.code = format!("{id}.{}", format!("{i}").repeat(22));
        let (code, _, err) = claw_in(
            &device_home(&tmp, &format!("guess{i}")),
            &["tunnel", "pair", &guess.to_uri()],
        );
        assert_eq!(code, 1);
        assert!(err.contains("wrong"), "{err}");
    }
    let (code, _, err) = claw_in(&device_home(&tmp, "owner"), &["tunnel", "pair", &uri]);
    assert_eq!(code, 1, "a burned code stays burned");
    // Burned, not "already used": no device ever paired with it.
    assert!(
        err.contains("burned by too many wrong tries") && !err.contains("already used"),
        "{err}"
    );

    let events: Vec<String> = audit(&g)
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("tunnel.handshake_failed")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("pairing.code.refused") && e.contains("Used")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("pairing.code.refused") && e.contains("Expired")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("burned=true")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pairing_attempts_are_rate_limited_per_source() {
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let uri = PairingUri::parse(&pair_uri(&g, &[])).unwrap();
    let mut limited = false;
    for i in 0..12 {
        let mut guess = uri.clone();
        guess.code = format!(
            "{}.{}",
            "A".repeat(7) + &(i % 10).to_string(),
            "B".repeat(22)
        );
        let (_, _, err) = claw_in(
            &device_home(&tmp, &format!("g{i}")),
            &["tunnel", "pair", &guess.to_uri()],
        );
        if err.contains("too many pairing attempts") {
            limited = true;
            assert!(i >= 10, "limited after {i} attempts");
            break;
        }
    }
    assert!(limited, "12 attempts in a row were never rate-limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn unpaired_and_revoked_keys_reach_nothing() {
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let paired = device_home(&tmp, "paired");
    let (code, _, _) = claw_in(&paired, &["tunnel", "pair", &pair_uri(&g, &[])]);
    assert_eq!(code, 0);

    // An unpaired key that knows the gateway (copied tunnel.json, its own key) asks for a tunnel.
    let stranger = device_home(&tmp, "stranger");
    let mut p = DeviceHome::new(&paired).pairing().unwrap();
    p.device_id = claw_tunnel::identity::Identity::load_or_create(&stranger.join("identity.key"))
        .unwrap()
        .id();
    DeviceHome::new(&stranger).save_pairing(&p).unwrap();
    let (code, _, err) = claw_in(&stranger, &["tunnel", "up", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 77, "refused for who it is: {err}");
    assert!(err.contains("not paired"), "{err}");
    assert!(
        audit(&g).iter().any(|e| e["event"] == "tunnel.refused"),
        "audited"
    );

    // Revoked: refused in the TLS handshake; `tunnel up` stops with a clear message.
    let id = key_of(&paired).device_id();
    let (code, _, _) = g.claw(&["devices", "revoke", &id]);
    assert_eq!(code, 0);
    let (code, _, err) = claw_in(&paired, &["tunnel", "up", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("revoked"), "{err}");
    assert!(audit(&g)
        .iter()
        .any(|e| e["event"] == "tunnel.handshake_failed"
            && e["detail"].as_str().unwrap().contains("Revoked")));
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_with_20_connected_devices_repairs_them_all_over_the_tunnel() {
    let g = tunnel_gateway(&["--pair-attempts-per-min", "100"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut homes = Vec::new();
    for i in 0..20 {
        let h = device_home(&tmp, &format!("dev{i}"));
        let uri = PairingUri::parse(&pair_uri(&g, &[])).unwrap();
        client::pair(&DeviceHome::new(&h), &uri, Some(format!("dev{i}")), |_| {})
            .await
            .unwrap();
        homes.push(h);
    }
    let mut tunnels = Vec::new();
    let mut sessions = Vec::new();
    for h in &homes {
        let t = up(h).await;
        let (tok, generation) = token_of(h);
        assert_eq!(generation, 1);
        let (_, ws) = ws_via(&t, h, &tok).await.hello();
        sessions.push(ws);
        tunnels.push(t);
    }
    let old: Vec<String> = homes.iter().map(|h| token_of(h).0).collect();

    let (code, out, err) = g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    // Every device-token session is closed with the distinct reason…
    for ws in &mut sessions {
        let close = loop {
            match recv(ws).await {
                Ok(_) => continue,
                Err(c) => break c,
            }
        };
        assert_eq!(close, (1008, rotated()));
    }
    // …and every device receives a generation-2 token over its tunnel, with no human step.
    for (i, h) in homes.iter().enumerate() {
        let mut got = (String::new(), 0);
        for _ in 0..200 {
            got = token_of(h);
            if got.1 == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(got.1, 2, "device {i} got no fresh token");
        assert_ne!(got.0, old[i]);
        let (hello, _) = ws_via(&tunnels[i], h, &got.0).await.hello();
        assert_eq!(hello["auth"]["method"], "device-token");
    }
    // One token issuance per device for the new generation.
    let issued: Vec<Value> = audit(&g)
        .into_iter()
        .filter(|e| {
            e["event"] == "device.token.issued"
                && e["detail"].as_str().unwrap().contains("generation=2")
        })
        .collect();
    assert_eq!(issued.len(), 20, "{issued:?}");
    // A client still holding the old token, through the tunnel, is answered with a fresh token
    // instead of 1008; the same old token on the direct loopback port still gets 1008.
    let (hello, _) = ws_via(&tunnels[0], &homes[0], &old[0]).await.hello();
    assert_eq!(hello["auth"]["deviceToken"], token_of(&homes[0]).0.as_str());
    let key = key_of(&homes[0]);
    let (_, close) = handshake(
        &g.url,
        &Creds {
            token: Some(&old[0]),
            device: Some(&key),
            scopes: &["operator.read"],
        },
    )
    .await
    .refused();
    assert_eq!(close.1, rotated());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_offline_during_rotation_repairs_when_it_comes_back() {
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let h = device_home(&tmp, "phone");
    let uri = PairingUri::parse(&pair_uri(&g, &[])).unwrap();
    client::pair(&DeviceHome::new(&h), &uri, None, |_| {})
        .await
        .unwrap();
    let (old, _) = token_of(&h);
    let (code, _, _) = g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0);
    assert_eq!(token_of(&h).0, old, "offline: nothing changed yet");
    let t = up(&h).await;
    let mut fresh = (String::new(), 0);
    for _ in 0..200 {
        fresh = token_of(&h);
        if fresh.1 == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(fresh.1, 2);
    let (hello, _) = ws_via(&t, &h, &fresh.0).await.hello();
    assert_eq!(hello["auth"]["method"], "device-token");
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_survive_migration_to_a_new_local_socket() {
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let h = device_home(&tmp, "roamer");
    let uri = PairingUri::parse(&pair_uri(&g, &[])).unwrap();
    client::pair(&DeviceHome::new(&h), &uri, None, |_| {})
        .await
        .unwrap();
    let t = up(&h).await;
    let (tok, _) = token_of(&h);
    let (_, mut ws) = ws_via(&t, &h, &tok).await.hello();
    assert_eq!(call(&mut ws, "health", json!({})).await["ok"], true);
    for _ in 0..3 {
        let new_local = t.rebind().unwrap();
        // The same WebSocket, carried by the same QUIC stream, keeps working from the new socket.
        let r = call(&mut ws, "status", json!({})).await;
        assert_eq!(r["ok"], true, "after rebinding to {new_local}");
    }
    assert_eq!(t.status().reconnects, 0, "migration, not reconnection");
}

#[tokio::test(flavor = "multi_thread")]
async fn require_approval_leaves_the_device_waiting_until_approved() {
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let h = device_home(&tmp, "tablet");
    let uri = pair_uri(&g, &["--require-approval"]);
    let child = Command::new(claw_bin())
        .args(["--home", h.to_str().unwrap(), "tunnel", "pair", &uri])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The request shows up as pending on the gateway.
    let mut pending = Value::Null;
    for _ in 0..100 {
        let (_, out, _) = g.claw(&["devices", "list", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        if v["pending"].as_array().is_some_and(|p| !p.is_empty()) {
            pending = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending["paired"], json!([]), "not paired before approval");
    let (code, _, err) = g.claw(&["devices", "approve", "--latest"]);
    assert_eq!(code, 0, "{err}");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting for the gateway operator"));
    assert!(token_of(&h).0.len() == 43);
}

/// Rejecting a pending request is announced like an approval: every operator session (the
/// control page among them) gets `device.pair.resolved` with `decision: "rejected"`, and the
/// waiting `claw tunnel pair` ends refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_request_is_announced_as_resolved() {
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let token = g.token();
    let (_, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&token),
            device: None,
            scopes: &["operator.admin"],
        },
    )
    .await
    .hello();
    let h = device_home(&tmp, "tablet");
    let uri = pair_uri(&g, &["--require-approval", "--name", "tablet"]);
    let child = Command::new(claw_bin())
        .args(["--home", h.to_str().unwrap(), "tunnel", "pair", &uri])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The next event named `name` on the operator's socket (bounded).
    async fn event(ws: &mut Ws, name: &str) -> Value {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let f = recv(ws).await.expect("socket closed");
                if f["type"] == "event" && f["event"] == name {
                    return f["payload"].clone();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {name} event"))
    }
    let requested = event(&mut ws, "device.pair.requested").await;
    let request_id = requested["requestId"].as_str().unwrap().to_string();
    let (code, _, err) = g.claw(&["devices", "reject", &request_id]);
    assert_eq!(code, 0, "{err}");
    let resolved = event(&mut ws, "device.pair.resolved").await;
    assert_eq!(resolved["requestId"], request_id.as_str(), "{resolved}");
    assert_eq!(resolved["decision"], "rejected", "{resolved}");
    assert_eq!(resolved["deviceId"], requested["deviceId"], "{resolved}");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success(), "a rejected device paired");
}

#[tokio::test(flavor = "multi_thread")]
async fn exposed_services_and_nothing_else() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let expose = format!("echo={echo_addr}");
    let g = tunnel_gateway(&["--expose", &expose]);
    let tmp = tempfile::tempdir().unwrap();
    let h = paired(&g, &tmp, "dev").await;
    let t = up_with(&h, &["echo", "secret"]).await;
    let mut s = tokio::net::TcpStream::connect(t.local_addrs[1])
        .await
        .unwrap();
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut buf = [0u8; 23];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping through the tunnel");
    // A name the gateway does not expose reaches nothing: the local connection is closed and
    // the gateway's refusal goes to the status, never into the application's stream.
    let mut s = tokio::net::TcpStream::connect(t.local_addrs[2])
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(
        t.status()
            .last_error
            .is_some_and(|e| e.contains("not_exposed")),
        "{:?}",
        t.status().last_error
    );
    // Non-loopback exposes are refused at start.
    let (code, _, err) = claw_in(
        &tmp.path().join("gw2"),
        &[
            "gateway",
            "run",
            "--port",
            "0",
            "--tunnel",
            "127.0.0.1:0",
            "--expose",
            "x=10.0.0.1:80",
        ],
    );
    assert_eq!(code, 78, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn claw_call_on_a_paired_device_keeps_working_across_rotations() {
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let d = device_home(&tmp, "cli");
    let (code, _, err) = claw_in(&d, &["tunnel", "pair", &pair_uri(&g, &[])]);
    assert_eq!(code, 0, "{err}");
    let (mut child, url) = spawn_tunnel_up(&d);
    // No --token: the device's own key and token are used.
    let (code, out, err) = claw_in(&d, &["call", "health", "--url", &url, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"ok\":true"), "{out}");
    for round in 0..2 {
        let (code, _, _) = g.claw(&["devices", "rotate-token", "--force"]);
        assert_eq!(code, 0);
        let (code, out, err) = claw_in(&d, &["call", "status", "--url", &url, "--json"]);
        assert_eq!(code, 0, "round {round}: {err}");
        assert!(out.contains("deviceTokenGeneration"), "{out}");
    }
    // Revoked: a clear failure, non-zero.
    let id = key_of(&d).device_id();
    let (code, _, _) = g.claw(&["devices", "revoke", &id]);
    assert_eq!(code, 0);
    let (code, _, err) = claw_in(&d, &["call", "health", "--url", &url]);
    assert_ne!(code, 0);
    assert!(!err.is_empty());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pre_auth_cap_counts_per_device_through_the_tunnel_not_per_address() {
    // Three devices behind one address (here all on 127.0.0.1 UDP), like phones behind one NAT
    // reconnecting together after a rotation. With a cap of 2 per source, each device may hold
    // 2 unauthenticated sockets; the address as a whole is not the budget.
    let g = tunnel_gateway(&["--max-preauth", "2", "--pair-attempts-per-min", "100"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut tunnels = Vec::new();
    for i in 0..3 {
        let h = paired(&g, &tmp, &format!("dev{i}")).await;
        tunnels.push(up(&h).await);
    }
    let mut held = Vec::new();
    for t in &tunnels {
        let url = format!("ws://{}", t.local_addrs[0]);
        for _ in 0..2 {
            // Upgraded and challenged, but no `connect` yet: each holds a pre-auth slot.
            held.push(open(&url).await);
        }
    }
    assert_eq!(held.len(), 6);
    // A device over its own budget is refused (503) like any source…
    let url0 = format!("ws://{}", tunnels[0].local_addrs[0]);
    match tokio_tungstenite::connect_async(&url0).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected 503 for a third pre-auth socket of one device, got {other:?}"),
    }
    // …and a device that authenticates frees its slot at once.
    let (mut ws, ch) = held.remove(0);
    let (tok, _) = token_of(&tmp.path().join("dev0"));
    let key = key_of(&tmp.path().join("dev0"));
    let creds = Creds {
        token: Some(&tok),
        device: Some(&key),
        scopes: &["operator.read"],
    };
    send(
        &mut ws,
        &json!({"type":"req","id":"c1","method":"connect","params": connect_params(&creds, &ch)}),
    )
    .await;
    assert_eq!(recv(&mut ws).await.unwrap()["ok"], true);
    let (hello, _) = ws_via(&tunnels[0], &tmp.path().join("dev0"), &tok)
        .await
        .hello();
    assert_eq!(hello["auth"]["method"], "device-token");
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_data_arrives_intact_and_the_path_mtu_grows_beyond_ethernet_on_loopback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A sink that counts and hashes what it receives, then answers with both.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = sink.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let (mut n, mut sum) = (0u64, 0u64);
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                    sum = buf[..k]
                        .iter()
                        .fold(sum, |a, &b| a.wrapping_mul(31).wrapping_add(b as u64));
                }
                let _ = s.write_all(format!("{n} {sum}").as_bytes()).await;
            });
        }
    });
    let expose = format!("sink={sink_addr}");
    let g = tunnel_gateway(&["--expose", &expose]);
    let tmp = tempfile::tempdir().unwrap();
    let h = paired(&g, &tmp, "dev").await;
    let t = up_with(&h, &["sink"]).await;
    // 32 MiB of a non-repeating pattern through the tunnel, half-closed, then the sink's verdict.
    let mut s = tokio::net::TcpStream::connect(t.local_addrs[1])
        .await
        .unwrap();
    let (mut n, mut sum, mut x) = (0u64, 0u64, 0x9e37_79b9_7f4a_7c15u64);
    let mut chunk = vec![0u8; 64 * 1024];
    for _ in 0..512 {
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        s.write_all(&chunk).await.unwrap();
        n += chunk.len() as u64;
        sum = chunk
            .iter()
            .fold(sum, |a, &b| a.wrapping_mul(31).wrapping_add(b as u64));
    }
    s.shutdown().await.unwrap();
    let mut verdict = String::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_string(&mut verdict))
        .await
        .expect("the sink answers")
        .unwrap();
    assert_eq!(verdict, format!("{n} {sum}"), "bytes lost or corrupted");
    // MTU discovery found loopback's larger MTU (the default would stop at 1452).
    let mut path = None;
    for _ in 0..100 {
        path = t.status().path;
        if path.as_ref().is_some_and(|p| p.mtu > 1452) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = path.expect("path statistics while connected");
    eprintln!("tunnel path after 32 MiB: {path:?}");
    assert_eq!(
        path.mtu,
        claw_tunnel::quic::config::MAX_UDP_PAYLOAD,
        "MTU discovery climbs to the configured ceiling on loopback"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_never_sends_its_header_does_not_hold_up_the_next() {
    use claw_tunnel::control::{encode, StreamHeader};
    let g = tunnel_gateway(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let h = paired(&g, &tmp, "dev").await;
    let link = DeviceHome::new(&h).pairing().unwrap();
    let id = claw_tunnel::identity::Identity::load_or_create(&h.join("identity.key")).unwrap();
    let dialer = client::Dialer::new(&id, &link.gateway_id, &link.addrs[0]).unwrap();
    let conn = dialer.connect(&link.addrs).await.unwrap();
    // Stream 1: opened (a byte is needed for the gateway to see it) but no header line, ever.
    let (mut stalled_send, mut stalled_recv) = conn.open_bi().await.unwrap();
    stalled_send.write_all(b"{").await.unwrap();
    // Stream 2: a gateway stream, opened after it, completes a full OpenClaw handshake.
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode(&StreamHeader::Gateway))
        .await
        .unwrap();
    let io = tokio::io::join(recv, send);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::client_async("ws://claw/", io),
    )
    .await
    .expect("the second stream is served")
    .unwrap();
    let first = loop {
        match tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut ws),
        )
        .await
        .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => break t,
            Some(Ok(_)) => continue,
            other => panic!("no challenge: {other:?}"),
        }
    };
    assert!(first.contains("connect.challenge"), "{first}");
    // …while the stalled stream is still open: the gateway gives each stream 10 s for its header,
    // so had the second waited behind the first, the first would be gone by now.
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stalled_recv.read(&mut buf))
            .await
            .is_err(),
        "the stalled stream was closed early"
    );
}

/// `claw pair` prints a QR code that decodes to the URI it prints, and both fit an 80×24
/// terminal: the printed text is rendered to an image (one character = one module wide, two
/// high) and read back by `zbarimg`, as a phone would read the screen.
#[test]
fn pair_prints_a_qr_code_that_decodes_to_its_uri() {
    let have_zbar = Command::new("sh")
        .args(["-c", "command -v zbarimg"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_zbar {
        let msg = "zbarimg is not installed (apt-get install zbar-tools; .ci/run installs it)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let g = tunnel_gateway(&[]);
    let (code, out, err) = g.claw(&["pair", "--name", "phone", "--addr", "127.0.0.1:18790"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // Rows on an 80-column terminal: the long URI line wraps, nothing else may.
    let screen_rows: usize = lines
        .iter()
        .map(|l| l.chars().count().div_ceil(80).max(1))
        .sum();
    assert!(screen_rows <= 24, "{screen_rows} terminal rows:\n{out}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.chars().count() <= 80),
        "a line other than the URI is wider than 80 columns:\n{out}"
    );
    let printed = lines
        .last()
        .and_then(|l| l.strip_prefix("claw tunnel pair '"))
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or_else(|| panic!("the URI is not the last line:\n{out}"));
    let parsed = PairingUri::parse(printed).unwrap();
    assert_eq!(parsed.addrs, ["127.0.0.1:18790"]);

    // The code: the leading run of block characters and spaces of each line before the URI.
    let rows: Vec<Vec<bool>> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            l.chars()
                .take_while(|c| matches!(c, ' ' | '▀' | '▄' | '█'))
                .collect::<String>()
        })
        .take_while(|r| !r.is_empty())
        .flat_map(|r| {
            let top = r.chars().map(|c| matches!(c, '▀' | '█')).collect();
            let bottom = r.chars().map(|c| matches!(c, '▄' | '█')).collect();
            [top, bottom]
        })
        .collect();
    assert!(rows.len() >= 42, "no QR code in:\n{out}");
    let (scale, margin) = (6, 8);
    let modules = rows.iter().map(Vec::len).max().unwrap();
    let (w, h) = (
        (modules + 2 * margin) * scale,
        (rows.len() + 2 * margin) * scale,
    );
    let mut pgm = format!("P5 {w} {h} 255\n").into_bytes();
    for y in 0..h {
        for x in 0..w {
            let (mx, my) = (
                (x / scale).wrapping_sub(margin),
                (y / scale).wrapping_sub(margin),
            );
            let dark = rows
                .get(my)
                .and_then(|r| r.get(mx))
                .copied()
                .unwrap_or(false);
            pgm.push(if dark { 0 } else { 255 });
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("qr.pgm");
    std::fs::write(&img, pgm).unwrap();
    let z = Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
        .arg(&img)
        .output()
        .unwrap();
    let decoded = String::from_utf8_lossy(&z.stdout);
    assert!(
        z.status.success(),
        "zbarimg: {}",
        String::from_utf8_lossy(&z.stderr)
    );
    assert_eq!(decoded.trim_end(), printed);
}

/// When the gateway dies, `claw tunnel up` notices within a few keep-alives (QUIC alone would say
/// "connected" until its 45 s idle timeout), and a client through the tunnel fails at once with
/// "no gateway answers" (exit 69) instead of hanging; when the gateway is back, so is the tunnel.
#[tokio::test]
async fn a_dead_gateway_is_noticed_fast_and_clients_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gw");
    let mut g = Gateway::start_in(&gw_home, &["--tunnel", "127.0.0.1:0"]);
    let d = device_home(&tmp, "dev");
    let (code, _, err) = claw_in(
        &d,
        &[
            "tunnel",
            "pair",
            &pair_uri(&g, &["--addr", &tunnel_addr(&g)]),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (mut up, url) = spawn_tunnel_up(&d);
    let connected = |d: &Path| {
        let (_, out, _) = claw_in(d, &["tunnel", "status", "--json"]);
        serde_json::from_str::<Value>(&out)
            .ok()
            .map(|v| v["connected"] == true)
    };
    let wait_for = |want: bool, limit: Duration| {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < limit {
            if connected(&d) == Some(want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    };
    assert!(wait_for(true, Duration::from_secs(30)), "never connected");
    let (code, _, err) = claw_in(&d, &["call", "health", "--url", &url, "--json"]);
    assert_eq!(code, 0, "{err}");

    g.kill9();
    // Three keep-alives and some slack (16 s), far below the 45 s idle timeout it used to take.
    assert!(
        wait_for(false, Duration::from_secs(35)),
        "`tunnel status` still says connected long after the gateway died"
    );
    let (_, out, _) = claw_in(&d, &["tunnel", "status", "--json"]);
    assert!(out.contains("no answer from the gateway"), "{out}");
    let t0 = std::time::Instant::now();
    let (code, _, err) = claw_in(&d, &["call", "health", "--url", &url]);
    assert_eq!(code, 69, "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "the client hung for {:?}",
        t0.elapsed()
    );

    // The gateway comes back on the same address: the tunnel reconnects by itself.
    let port = tunnel_addr(&g);
    drop(g);
    let _g = Gateway::start_in(&gw_home, &["--tunnel", &port]);
    assert!(wait_for(true, Duration::from_secs(60)), "never reconnected");
    let (code, _, err) = claw_in(&d, &["call", "health", "--url", &url, "--json"]);
    assert_eq!(code, 0, "{err}");
    let _ = up.kill();
    let _ = up.wait();
}

/// `--rotate-every`: the root rotates on schedule with no human step, the connected device gets
/// each new token over the tunnel, `gateway status` shows the schedule, and across a `kill -9`
/// and a downtime longer than two intervals the schedule neither runs twice nor catches up once
/// per missed interval: scheduled rotations are never closer together than the interval.
#[tokio::test]
async fn scheduled_rotation_repairs_devices_and_survives_kill9() {
    let every_ms: u64 = 2_000;
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gw");
    let mut g = Gateway::start_in(
        &gw_home,
        &["--tunnel", "127.0.0.1:0", "--rotate-every", "2s"],
    );
    let d = paired(&g, &tmp, "dev").await;
    let t = up(&d).await;
    async fn gen_at_least(d: &Path, want: u64, limit: Duration) -> bool {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < limit {
            if token_of(d).1 >= want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
    assert!(
        gen_at_least(&d, 3, Duration::from_secs(60)).await,
        "the device never got scheduled tokens"
    );
    let (code, out, err) = g.claw(&["gateway", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rotation"]["everyMs"], every_ms);
    assert!(v["rotation"]["nextAtMs"].as_u64() > v["rotation"]["lastRotatedAtMs"].as_u64());
    let (_, text, _) = g.claw(&["gateway", "status"]);
    assert!(text.contains("rotation:   every 2s"), "{text}");

    // kill -9, down for more than two intervals, back on the same address.
    let addr = tunnel_addr(&g);
    g.kill9();
    let before = token_of(&d).1;
    tokio::time::sleep(Duration::from_millis(2 * every_ms + 1_500)).await;
    let g = Gateway::start_in(&gw_home, &["--tunnel", &addr, "--rotate-every", "2s"]);
    assert!(
        gen_at_least(&d, before + 1, Duration::from_secs(60)).await,
        "no rotation after the restart"
    );
    drop(t);

    let mut at: Vec<u64> = audit(&g)
        .iter()
        .filter(|e| e["event"] == "root.rotated" && e["origin"] == "schedule")
        .map(|e| e["tsMs"].as_u64().unwrap())
        .collect();
    at.sort_unstable();
    assert!(at.len() >= 3, "{at:?}");
    for w in at.windows(2) {
        assert!(
            w[1] - w[0] >= every_ms - 50,
            "two scheduled rotations {} ms apart (interval {every_ms} ms): {at:?}",
            w[1] - w[0]
        );
    }
}

/// A stock client on a paired device — no token, no device key, or a stale token — goes through
/// `claw tunnel up` as that device: the tunnel's authentication is the credential. It gets only
/// scopes the device was approved for, a root rotation does not close it (nothing on it can go
/// stale), a revoke does; `--strict-device-auth` asks for the device's token again.
#[tokio::test]
async fn stock_clients_on_a_paired_device_need_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tunnel_gateway(&[]);
    let d = paired(&g, &tmp, "laptop").await;
    let t = up(&d).await;
    let url = format!("ws://{}", t.local_addrs[0]);
    let stock = |token: Option<&'static str>| Creds {
        token,
        device: None,
        scopes: &["operator.read", "operator.admin"],
    };
    let (hello, mut ws) = handshake(&url, &stock(None)).await.hello();
    assert_eq!(hello["auth"]["method"], "transport");
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]), "{hello}");
    assert_eq!(
        call(&mut ws, "health", json!({})).await["payload"]["ok"],
        true
    );
    // An admin method is refused for the scope, and the socket stays usable.
    let r = call(&mut ws, "device.pair.list", json!({})).await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(call(&mut ws, "health", json!({})).await["ok"], true);
    // A wrong or stale token changes nothing: the transport identity decides.
    let (hello, _ws2) = handshake(&url, &stock(Some("stale-or-wrong")))
        .await
        .hello();
    assert_eq!(hello["auth"]["method"], "transport");

    let (code, _, err) = g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        call(&mut ws, "health", json!({})).await["ok"],
        true,
        "a rotation closed a stock client's session"
    );
    let (hello, _) = handshake(&url, &stock(None)).await.hello();
    assert_eq!(hello["auth"]["method"], "transport");

    // Revoked: the session is cut.
    let (_, out, _) = g.claw(&["devices", "list", "--json"]);
    let id = serde_json::from_str::<Value>(&out).unwrap()["paired"][0]["deviceId"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _, err) = g.claw(&["devices", "revoke", &id, "--yes"]);
    assert_eq!(code, 0, "{err}");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match recv(&mut ws).await {
                Err(close) => return close,
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("the revoked device's stock client stayed connected");
    // 1008 when the close frame wins the race, 1006 when the revoke closes the device's whole
    // QUIC connection first: either way the session is cut.
    assert!(matches!(closed.0, 1006 | 1008), "{closed:?}");

    // Strict mode: the device's token or signature is required again.
    let g2 = tunnel_gateway(&["--strict-device-auth"]);
    let d2 = paired(&g2, &tmp, "strict").await;
    let t2 = up(&d2).await;
    let (error, close) = handshake(&format!("ws://{}", t2.local_addrs[0]), &stock(None))
        .await
        .refused();
    assert_eq!(close.0, 1008, "{close:?}");
    // The text says what strict mode wants, not a step already done ("pair the device").
    let m = error["message"].as_str().unwrap();
    assert!(m.contains("strict device auth"), "{m}");
    assert!(
        !m.contains("pair the device") && !m.contains("gateway.auth.token"),
        "{m}"
    );
    assert_eq!(error["details"]["canRetryWithDeviceToken"], true, "{error}");
    let (error, _) = handshake(
        &format!("ws://{}", t2.local_addrs[0]),
        &stock(Some("wrong")),
    )
    .await
    .refused();
    let m = error["message"].as_str().unwrap();
    assert!(m.contains("mismatch (strict device auth"), "{m}");
}

/// A client that signs with a key of its own through device D's tunnel (`openclaw node run`, a
/// CLI with its own identity on the device) is a sub-identity of D: accepted with no token as D
/// with D's scopes at most, listed under D, untouched by a forced root rotation, cut when D is
/// revoked; forgotten with D; refused as an identity mismatch in `--strict-device-auth` mode.
#[tokio::test]
async fn a_client_key_of_its_own_through_the_tunnel_is_a_sub_identity_of_the_device() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tunnel_gateway(&[]);
    let d = paired(&g, &tmp, "laptop").await;
    let t = up(&d).await;
    let url = format!("ws://{}", t.local_addrs[0]);
    let node_key = DeviceKey::generate();
    let own = |token: Option<&'static str>| Creds {
        token,
        device: Some(&node_key),
        scopes: &["operator.read", "operator.admin"],
    };
    let (hello, mut ws) = handshake(&url, &own(None)).await.hello();
    assert_eq!(hello["auth"]["method"], "transport", "{hello}");
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]), "{hello}");
    assert!(hello["auth"].get("deviceToken").is_none(), "{hello}");
    assert_eq!(call(&mut ws, "health", json!({})).await["ok"], true);
    // Acting as D: an admin method is refused for the scope, as for D itself.
    assert_eq!(
        call(&mut ws, "device.pair.list", json!({})).await["ok"],
        false
    );
    // A stale or wrong token changes nothing.
    let (hello, _ws2) = handshake(&url, &own(Some("stale-or-wrong"))).await.hello();
    assert_eq!(hello["auth"]["method"], "transport");

    // Recorded under D (and only there).
    let list = |g: &Gateway| {
        let (code, out, err) = g.claw(&["devices", "list", "--json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()["paired"].clone()
    };
    let devices = list(&g);
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
    let dev = &devices[0];
    let id = dev["deviceId"].as_str().unwrap().to_string();
    assert_ne!(id, node_key.device_id());
    assert_eq!(
        dev["subIdentities"][0]["keyId"],
        node_key.device_id(),
        "{dev}"
    );
    assert_eq!(dev["subIdentities"][0]["client"], "cli/cli", "{dev}");
    assert_eq!(dev["subIdentities"].as_array().unwrap().len(), 1, "{dev}");

    // A forced rotation leaves it connected.
    let (code, _, err) = g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        call(&mut ws, "health", json!({})).await["ok"],
        true,
        "a rotation closed a sub-identity's session"
    );
    wait_connected(&t).await;
    let (hello, _) = handshake(&url, &own(None)).await.hello();
    assert_eq!(hello["auth"]["method"], "transport");

    // D revoked: the session is cut.
    let (code, _, err) = g.claw(&["devices", "revoke", &id, "--yes"]);
    assert_eq!(code, 0, "{err}");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Err(close) = recv(&mut ws).await {
                return close;
            }
        }
    })
    .await
    .expect("the revoked device's sub-identity stayed connected");
    assert!(matches!(closed.0, 1006 | 1008), "{closed:?}");
    // Forgotten with D.
    let (code, _, err) = g.claw(&["devices", "remove", &id, "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(list(&g), json!([]));

    // Strict mode: one key per connection, the transport's.
    let g2 = tunnel_gateway(&["--strict-device-auth"]);
    let d2 = paired(&g2, &tmp, "strict").await;
    let t2 = up(&d2).await;
    let (error, close) = handshake(&format!("ws://{}", t2.local_addrs[0]), &own(None))
        .await
        .refused();
    assert_eq!(close.0, 1008, "{close:?}");
    assert_eq!(
        error["details"]["code"],
        claw_proto::codes::DEVICE_AUTH_DEVICE_ID_MISMATCH,
        "{error}"
    );
    assert_eq!(list(&g2)[0]["subIdentities"], json!([]));
}

/// Sets the wall clock of a gateway started under libfaketime (an offset like `+2d`).
fn set_clock(file: &Path, offset: &str) {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, format!("{offset}\n")).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// The gateway host's wall clock stepped forward two days, then back four — the real binary
/// under libfaketime with its monotonic clock left alone, as an NTP step leaves it. Nothing live
/// is cut or expired en masse: the connected device keeps its tunnel and the shared-token
/// session is never closed; the schedule rotates exactly once for the step forward (the device
/// re-pairs over the tunnel) and not at all for the step back; a code made before the step
/// forward has expired, and one made before the step back is refused rather than living four
/// days longer, while a code made after it pairs.
#[tokio::test]
async fn wall_clock_steps_on_the_gateway_expire_nothing_live_and_rotate_once() {
    let lib = Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1");
    if !lib.exists() {
        eprintln!("SKIP: libfaketime is not installed (apt-get install faketime)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let clock = tmp.path().join("clock");
    set_clock(&clock, "+0");
    let g = Gateway::start_in_env(
        &tmp.path().join("gw"),
        &["--tunnel", "127.0.0.1:0", "--rotate-every", "1h"],
        &[
            ("LD_PRELOAD", lib.as_os_str()),
            ("FAKETIME_TIMESTAMP_FILE", clock.as_os_str()),
            ("FAKETIME_NO_CACHE", "1".as_ref()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".as_ref()),
        ],
    );
    let d = paired(&g, &tmp, "dev").await;
    let t = up(&d).await;
    let gen0 = token_of(&d).1;
    let shared = g.token();
    let operator = Creds {
        token: Some(&shared),
        scopes: &["operator.read"],
        ..Default::default()
    };
    let (_, mut session) = handshake(&g.url, &operator).await.hello();
    let made_before_forward = pair_uri(&g, &[]);

    set_clock(&clock, "+2d");
    // The schedule looks at least every 30 s: the overdue rotation runs, once.
    let t0 = std::time::Instant::now();
    while token_of(&d).1 == gen0 && t0.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        token_of(&d).1,
        gen0 + 1,
        "one rotation for the step forward"
    );
    let res = call(&mut session, "health", json!({})).await;
    assert_eq!(res["ok"], true, "{res}");
    let pair_with = |uri: String, name: &'static str| {
        let h = device_home(&tmp, name);
        async move {
            client::pair(
                &DeviceHome::new(&h),
                &PairingUri::parse(&uri).unwrap(),
                None,
                |_| {},
            )
            .await
        }
    };
    let err = pair_with(made_before_forward, "late").await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    wait_connected(&t).await;
    let (tok, _) = token_of(&d);
    ws_via(&t, &d, &tok).await.hello();

    let made_before_back = pair_uri(&g, &[]);
    set_clock(&clock, "-2d");
    // Longer than the schedule's longest nap: a rotation storm would have shown by now.
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(token_of(&d).1, gen0 + 1, "no rotation for the step back");
    let err = pair_with(made_before_back, "stale").await.unwrap_err();
    assert!(err.to_string().contains("clock was set back"), "{err}");
    pair_with(pair_uri(&g, &[]), "fresh").await.unwrap();
    let res = call(&mut session, "health", json!({})).await;
    assert_eq!(res["ok"], true, "the shared-token session lives on: {res}");
    wait_connected(&t).await;
    let (tok, _) = token_of(&d);
    ws_via(&t, &d, &tok).await.hello();
}
