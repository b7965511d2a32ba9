//! Every `--json` shape of the verbs that report something, parsed back into typed mirrors with
//! `deny_unknown_fields`: a renamed or missing field fails here (docs/cli.md lists the shapes).

mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

fn parse<T: DeserializeOwned>(out: &str) -> T {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GatewayStarted {
    pid: u32,
    url: String,
    log: PathBuf,
    home: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Stopped {
    stopped: bool,
    pid: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceChange {
    action: String,
    device_id: String,
    request_id: Option<String>,
    closed_sessions: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // parsed for its shape; tests/ssh_pairing.rs checks the values
struct SshForward {
    command: String,
    known_hosts: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TunnelPaired {
    gateway_id: String,
    device_id: String,
    addrs: Vec<String>,
    home: PathBuf,
    ssh: Option<SshForward>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TunnelEvent {
    event: String,
    pid: u32,
    listen: Vec<String>,
    gateway_id: String,
    error: Option<String>,
    at_ms: u64,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Connections {
    total: u64,
    shared_token: u64,
    device_token: u64,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceCounts {
    paired: u64,
    revoked: u64,
    pending: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TunnelListener {
    addr: String,
    gateway_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SshListener {
    addr: String,
    fingerprint: String,
    known_hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GatewayStatus {
    running: bool,
    home: PathBuf,
    pid: Option<u32>,
    url: Option<String>,
    uptime_ms: Option<u64>,
    token_source: Option<String>,
    connections: Option<Connections>,
    devices: Option<DeviceCounts>,
    device_token_generation: Option<u64>,
    rotation: Option<Value>,
    tunnel: Option<TunnelListener>,
    ssh: Option<SshListener>,
    upstream: Option<Value>,
    relay: Option<Value>,
    open_sockets: Option<u64>,
    max_connections: Option<u64>,
    clients: Vec<Value>,
}

#[test]
fn gateway_start_status_and_stop_json() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("gw");
    let (code, out, err) = claw_in(
        &home,
        &[
            "gateway",
            "start",
            "--port",
            "0",
            "--tunnel",
            "127.0.0.1:0",
            "--ssh",
            "127.0.0.1:0",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let s: GatewayStarted = parse(&out);
    assert!(s.url.starts_with("ws://127.0.0.1:"), "{s:?}");
    assert_eq!(s.home, home);
    assert!(s.log.starts_with(&home));

    let (code, out, err) = claw_in(&home, &["gateway", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let st: GatewayStatus = parse(&out);
    assert!(st.running);
    assert_eq!(st.pid, Some(s.pid));
    assert_eq!(st.url.as_deref(), Some(s.url.as_str()));
    assert_eq!(st.home, home);
    assert_eq!(st.token_source.as_deref(), Some("generated"));
    assert!(st.uptime_ms.is_some() && st.open_sockets.is_some());
    assert!(st.max_connections.is_some_and(|n| n > 0));
    assert_eq!(
        st.devices,
        Some(DeviceCounts {
            paired: 0,
            revoked: 0,
            pending: 0
        })
    );
    assert_eq!(
        st.connections,
        Some(Connections {
            total: 0,
            shared_token: 0,
            device_token: 0
        })
    );
    assert!(st.device_token_generation.is_some());
    assert!(st.rotation.is_none(), "no --rotate-every");
    let t = st.tunnel.expect("tunnel listener");
    assert!(
        t.addr.starts_with("127.0.0.1:") && t.gateway_id.len() == 64,
        "{t:?}"
    );
    let ssh = st.ssh.expect("ssh listener");
    assert!(ssh.fingerprint.starts_with("SHA256:"), "{ssh:?}");
    assert!(ssh.known_hosts[0].contains("ssh-ed25519"), "{ssh:?}");
    assert!(ssh.addr.starts_with("127.0.0.1:"));
    assert!(st.upstream.is_none() && st.relay.is_none());
    assert!(st.clients.is_empty());

    let (code, out, err) = claw_in(&home, &["gateway", "stop", "--json"]);
    assert_eq!(code, 0, "{err}");
    let stop: Stopped = parse(&out);
    assert!(stop.stopped);
    assert_eq!(stop.pid, Some(s.pid));
    let (code, out, _) = claw_in(&home, &["gateway", "stop", "--json"]);
    assert_eq!(code, 0);
    let stop: Stopped = parse(&out);
    assert!(!stop.stopped && stop.pid.is_none());
    let (code, out, _) = claw_in(&home, &["gateway", "status", "--json"]);
    assert_eq!(code, 3);
    let st: GatewayStatus = parse(&out);
    assert!(!st.running && st.pid.is_none() && st.url.is_none());
}

#[test]
fn device_verbs_tunnel_pair_and_tunnel_up_json() {
    let g = Gateway::start(&["--tunnel", "127.0.0.1:0"]);
    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(g.home.join("gateway.json")).unwrap())
            .unwrap();
    let addr = rt["tunnel"]["addr"].as_str().unwrap().to_string();
    let (code, out, err) = g.claw(&["pair", "--json", "--require-approval", "--addr", &addr]);
    assert_eq!(code, 0, "{err}");
    let uri = parse::<Value>(&out)["uri"].as_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("dev");
    std::fs::create_dir_all(&d).unwrap();
    let pairing = Command::new(claw_bin())
        .arg("--home")
        .arg(&d)
        .args(["tunnel", "pair", &uri, "--json"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let request = loop {
        let (_, out, _) = g.claw(&["devices", "list", "--json"]);
        if let Some(r) = parse::<Value>(&out)["pending"]
            .as_array()
            .and_then(|p| p.first().cloned())
        {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no pending request");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (code, out, err) = g.claw(&["devices", "approve", "--latest", "--json"]);
    assert_eq!(code, 0, "{err}");
    let a: DeviceChange = parse(&out);
    assert_eq!(a.action, "approved");
    assert_eq!(a.request_id.as_deref(), request["requestId"].as_str());
    assert!(a.closed_sessions.is_none());
    let out = pairing.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let p: TunnelPaired = parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(p.device_id, a.device_id);
    assert_eq!(p.addrs, vec![addr.clone()]);
    assert_eq!(p.home, d);
    assert_eq!(p.gateway_id.len(), 64);
    assert!(p.ssh.is_none(), "no --ssh on this gateway");

    // `tunnel up --json`: an `up` line, then `connected`.
    let mut up = Command::new(claw_bin())
        .arg("--home")
        .arg(&d)
        .args(["tunnel", "up", "--listen", "127.0.0.1:0", "--json"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A bound on every read below: the process is killed after 120 s whatever happens.
    let watchdog = up.id();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(watchdog as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let mut lines = std::io::BufReader::new(up.stdout.take().unwrap()).lines();
    let first: TunnelEvent = parse(&lines.next().unwrap().unwrap());
    assert_eq!(first.event, "up");
    assert_eq!(first.pid, up.id());
    assert_eq!(first.gateway_id, p.gateway_id);
    assert!(first.listen[0].starts_with("127.0.0.1:") && first.at_ms > 0);
    let second: TunnelEvent = parse(&lines.next().unwrap().unwrap());
    assert_eq!(second.event, "connected", "{second:?}");
    assert!(second.error.is_none());

    let (code, out, err) = g.claw(&["devices", "rotate", &a.device_id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: DeviceChange = parse(&out);
    assert_eq!(
        (r.action.as_str(), r.device_id.as_str()),
        ("rotated", a.device_id.as_str())
    );
    assert!(r.closed_sessions.is_some());
    let (code, out, err) = g.claw(&["devices", "revoke", &a.device_id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: DeviceChange = parse(&out);
    assert_eq!(r.action, "revoked");
    assert!(r.closed_sessions.is_some() && r.request_id.is_none());
    // The revoked tunnel says so on its way out.
    let t0 = Instant::now();
    let mut stopped = None;
    for line in lines.by_ref() {
        let e: TunnelEvent = parse(&line.unwrap());
        if e.event == "stopped" {
            stopped = Some(e);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60));
    }
    let stopped = stopped.expect("a stopped line");
    assert!(stopped.error.unwrap().contains("revoked"));
    // And exits 77, which the tunnel's systemd unit does not restart.
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "tunnel up did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(77));
    let (code, out, err) = g.claw(&["devices", "remove", &a.device_id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: DeviceChange = parse(&out);
    assert_eq!(r.action, "removed");
}
