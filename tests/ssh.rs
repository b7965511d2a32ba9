//! End-to-end: the built-in SSH forward driven by the real OpenSSH client (`ssh`), with
//! `StrictHostKeyChecking=yes` and the known_hosts line claw prints.

mod common;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

struct Ssh {
    g: Gateway,
    ssh_port: u16,
    known_hosts: PathBuf,
    _tmp: tempfile::TempDir,
    tmp: PathBuf,
}

fn setup() -> Ssh {
    let g = Gateway::start(&["--ssh", "127.0.0.1:0"]);
    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(g.home.join("gateway.json")).unwrap())
            .unwrap();
    let addr: std::net::SocketAddr = rt["ssh"]["addr"].as_str().unwrap().parse().unwrap();
    let line = rt["ssh"]["knownHosts"][0].as_str().unwrap().to_string();
    assert!(
        line.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", addr.port())),
        "{line}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{line}\n")).unwrap();
    Ssh {
        ssh_port: addr.port(),
        known_hosts,
        tmp: tmp.path().to_path_buf(),
        _tmp: tmp,
        g,
    }
}

/// A device home with an exported OpenSSH key; returns (home, key path).
fn device(s: &Ssh, name: &str, authorise: bool) -> (PathBuf, PathBuf) {
    let home = s.tmp.join(name);
    let key = home.join("id_ed25519");
    let (code, out, err) = claw_in(
        &home,
        &[
            "tunnel",
            "export-ssh-key",
            key.to_str().unwrap(),
            "--port",
            &s.ssh_port.to_string(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ssh -N -L 18789:127.0.0.1:18789 -p"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    if authorise {
        let public = out
            .lines()
            .next()
            .unwrap()
            .split("public key: ")
            .nth(1)
            .unwrap()
            .to_string();
        let (code, _, err) = s.g.claw(&["devices", "add-ssh-key", name, &public]);
        assert_eq!(code, 0, "{err}");
    }
    (home, key)
}

fn ssh_cmd(s: &Ssh, key: &Path, extra: &[&str]) -> Command {
    ssh_client(s.ssh_port, key, &s.known_hosts, extra)
}

/// `ssh -N -L LOCAL:127.0.0.1:TARGET`; waits until the local port accepts.
async fn forward(s: &Ssh, key: &Path, target: u16) -> (Child, u16) {
    let (port, key, known_hosts) = (s.ssh_port, key.to_path_buf(), s.known_hosts.clone());
    tokio::task::spawn_blocking(move || ssh_local_forward(port, &key, &known_hosts, target))
        .await
        .unwrap()
}

fn run_ssh(s: &Ssh, key: &Path, extra: &[&str]) -> (i32, String) {
    let out = ssh_cmd(s, key, extra).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn audit(g: &Gateway) -> Vec<String> {
    let (_, out, _) = g.claw(&["gateway", "audit", "--limit", "500", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_forward_reaches_the_gateway_and_repairs_after_rotation() {
    let s = setup();
    let (home, key) = device(&s, "laptop", true);
    let (mut child, local) = forward(&s, &key, s.g.port).await;
    let url = format!("ws://127.0.0.1:{local}");
    let dk = claw_gateway::auth::device_key::load_or_create(&home.join("identity.key")).unwrap();

    // First contact through SSH: the signed connect needs no token; the device gets one.
    let (hello, mut ws) = handshake(
        &url,
        &Creds {
            token: None,
            device: Some(&dk),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert_eq!(hello["auth"]["method"], "device-token");
    let t1 = hello["auth"]["deviceToken"].as_str().unwrap().to_string();
    assert_eq!(
        call(&mut ws, "health", json!({})).await["payload"]["ok"],
        true
    );
    // The operator sees the session as an SSH one, with its device.
    let (code, out, err) = s.g.claw(&["gateway", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    let clients = status["clients"].as_array().unwrap();
    assert!(
        clients
            .iter()
            .any(|c| c["channel"] == "ssh" && c["origin"] == "ssh" && c["deviceId"].is_string()),
        "{clients:?}"
    );
    let (hello, _) = handshake(
        &url,
        &Creds {
            token: Some(&t1),
            device: Some(&dk),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert_eq!(
        hello["auth"]["deviceToken"],
        t1.as_str(),
        "a valid token is kept"
    );

    // Rotation: the live session closes with the distinct reason; the old token over SSH re-pairs.
    let (code, _, err) = s.g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0, "{err}");
    let close = loop {
        match recv(&mut ws).await {
            Ok(_) => continue,
            Err(c) => break c,
        }
    };
    assert_eq!(
        close,
        (
            1008,
            claw_proto::CloseReason::DeviceTokenRotated.to_string()
        )
    );
    let (hello, _) = handshake(
        &url,
        &Creds {
            token: Some(&t1),
            device: Some(&dk),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    let t2 = hello["auth"]["deviceToken"].as_str().unwrap().to_string();
    assert_ne!(t2, t1);
    assert!(audit(&s.g).iter().any(|e| e.starts_with("device.repaired")));
    // Audited as what carried it: the SSH forward, not the QUIC tunnel.
    let (_, out, _) = s.g.claw(&["gateway", "audit", "--limit", "500", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let repaired: Vec<&Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "device.repaired")
        .collect();
    assert!(!repaired.is_empty());
    for e in repaired {
        assert_eq!(e["origin"], "ssh", "{e}");
    }
    // The same old token directly on loopback is still refused.
    let (_, close) = handshake(
        &s.g.url,
        &Creds {
            token: Some(&t1),
            device: Some(&dk),
            scopes: &["operator.read"],
        },
    )
    .await
    .refused();
    assert_eq!(close.0, 1008);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_but_forwarding_to_the_gateway_is_refused() {
    let s = setup();
    let (_, key) = device(&s, "laptop", true);
    let target = format!("127.0.0.1:{}", s.g.port);

    // Unknown key.
    let (_, stranger) = device(&s, "stranger", false);
    let (code, err) = run_ssh(
        &s,
        &stranger,
        &[
            "-N",
            "-L",
            &format!("{}:{target}", free_port()),
            "claw@127.0.0.1",
        ],
    );
    assert_eq!(code, 255);
    assert!(err.contains("Permission denied"), "{err}");

    // Password / keyboard-interactive.
    let (code, err) = run_ssh(
        &s,
        &key,
        &[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-N",
            "claw@127.0.0.1",
        ],
    );
    assert_eq!(code, 255);
    assert!(err.contains("Permission denied"), "{err}");

    // A shell / exec request.
    let (code, err) = run_ssh(&s, &key, &["claw@127.0.0.1", "id"]);
    assert_eq!(code, 255, "{err}");
    assert!(
        err.contains("prohibited") || err.contains("open failed"),
        "{err}"
    );

    // -R.
    let (code, err) = run_ssh(&s, &key, &["-N", "-R", "0:127.0.0.1:9", "claw@127.0.0.1"]);
    assert_eq!(code, 255);
    assert!(err.contains("forwarding failed"), "{err}");

    // A forward to another port: the connection is refused by the server and audited.
    let other = StdListener::bind("127.0.0.1:0").unwrap();
    let (mut child, local) = forward(&s, &key, other.local_addr().unwrap().port()).await;
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", local))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut c, &mut buf),
    )
    .await
    .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "the forward must not connect");
    let _ = child.kill();
    let _ = child.wait();

    // Revoked key.
    let (code, _, err) = s.g.claw(&["devices", "revoke", "lapt"]);
    assert_ne!(code, 0, "a 4-character prefix is not an id: {err}");
    let (code, _, err) = s.g.claw(&["devices", "revoke", "laptop"]);
    assert_eq!(code, 0, "`revoke` takes the device's name: {err}");
    let (_, out, _) = s.g.claw(&["devices", "list", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["paired"][0]["revoked"], true);
    let (code, err) = run_ssh(
        &s,
        &key,
        &[
            "-N",
            "-L",
            &format!("{}:{target}", free_port()),
            "claw@127.0.0.1",
        ],
    );
    assert_eq!(code, 255);
    assert!(err.contains("Permission denied"), "{err}");

    let events = audit(&s.g);
    // (Password auth never reaches claw: the server offers publickey only.)
    for want in [
        "unknown key",
        "session channel",
        "remote forwarding",
        "a forward to 127.0.0.1",
        "revoked device key",
    ] {
        assert!(
            events.iter().any(|e| e.contains(want)),
            "no audit entry for {want:?}: {events:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_host_key_is_caught_by_strict_checking() {
    let s = setup();
    let (_, key) = device(&s, "laptop", true);
    let other = claw_tunnel::identity::Identity::generate().unwrap();
    let fake = format!(
        "[127.0.0.1]:{} {}\n",
        s.ssh_port,
        other.ssh_public_openssh()
    );
    std::fs::write(&s.known_hosts, fake).unwrap();
    let (code, err) = run_ssh(&s, &key, &["-N", "claw@127.0.0.1"]);
    assert_eq!(code, 255);
    assert!(
        err.contains("HOST IDENTIFICATION HAS CHANGED")
            || err.contains("Host key verification failed"),
        "{err}"
    );
}
