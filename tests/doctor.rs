//! End-to-end: `claw doctor` and `claw channels status` against the real binary. Each test builds
//! one broken condition in a temporary home (kill -9, an orphaned socket, a corrupted store, a
//! loose secret, a rival on the port, a pinned token that drifted from the home's), then checks
//! the finding, what `--fix` does, and that the next run is clean.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Runs `claw --home H doctor --json args…`: (exit status, report).
fn doctor(home: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = claw_in(home, &all);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {out}{err}"));
    (code, v)
}

/// The findings reported under `id`.
fn findings<'a>(report: &'a Value, id: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id)
        .collect()
}

/// The single finding under `id`.
fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    let f = findings(report, id);
    assert_eq!(f.len(), 1, "one {id} finding expected: {report:#}");
    f[0]
}

/// Findings that need the human (warn/error, not fixed), as "id: message".
fn problems(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| (f["severity"] == "warn" || f["severity"] == "error") && f["fixed"].is_null())
        .map(|f| format!("{}: {}", f["id"], f["message"]))
        .collect()
}

fn assert_clean(home: &Path, args: &[&str]) -> Value {
    let (code, v) = doctor(home, args);
    assert_eq!(code, 0, "doctor is not clean: {:#?}", problems(&v));
    assert_eq!(v["summary"]["healthy"], true);
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// A gateway that ran once and stopped cleanly: the home has a token and a store.
fn stopped_home(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let home = tmp.path().join("home");
    let mut g = Gateway::start_in(&home, &[]);
    assert_eq!(g.terminate(), Some(0));
    home
}

/// Runs `claw --home H args…`, killing it after `limit`: (status or None, stdout, stderr).
fn run_bounded(home: &Path, args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(claw_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut killed = false;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        if killed { None } else { out.status.code() },
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_home_is_clean_running_and_stopped_and_channels_list_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut g = Gateway::start_in(&home, &[]);
    let (_, _ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&g.token()),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();

    let v = assert_clean(&home, &[]);
    assert_eq!(finding(&v, "token.drift")["severity"], "ok");
    assert_eq!(finding(&v, "lock.stale")["severity"], "ok");
    let port = finding(&v, "port.rival");
    assert!(
        port["message"].as_str().unwrap().contains(&format!(
            "port {} is served by the gateway (pid {})",
            g.port,
            g.child.id()
        )),
        "{port}"
    );
    // The remote listeners do not exist yet: informational, not failures.
    assert_eq!(finding(&v, "tunnel.listener")["severity"], "info");
    assert_eq!(finding(&v, "ssh.listener")["severity"], "info");

    // The human form: one line per finding and the summary line.
    let (code, out, _) = g.claw(&["doctor"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "[ok]    home.permissions     {} is 0700",
            home.display()
        )),
        "{out}"
    );
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("doctor: ") && last.ends_with("0 warnings, 0 errors (0 fixed)"),
        "{last}"
    );

    // Channels: the WebSocket listener with its client, the admin socket, both probed.
    let (code, out, err) = g.claw(&["channels", "status", "--probe", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let c: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["running"], true);
    let ws = &c["channels"][0];
    assert_eq!(ws["name"], "ws");
    assert_eq!(ws["address"], format!("127.0.0.1:{}", g.port));
    let clients = ws["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{c:#}");
    assert_eq!(clients[0]["method"], "token");
    assert_eq!(clients[0]["origin"], "loopback");
    assert!(clients[0]["connectedAtMs"].as_u64().unwrap() > 0);
    assert_eq!(ws["probe"]["ok"], true, "{c:#}");
    assert!(ws["probe"]["latencyMs"].as_f64().unwrap() > 0.0);
    let admin = &c["channels"][1];
    assert_eq!(admin["name"], "admin");
    assert_eq!(admin["probe"]["ok"], true);
    assert_eq!(c["channels"][2]["state"], "not configured");
    assert_eq!(c["channels"][3]["state"], "not configured");
    let (code, out, _) = g.claw(&["channels", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("1 client"), "{out}");

    // Stopped cleanly: nothing left behind, still clean; channels says not running (exit 3).
    assert_eq!(g.terminate(), Some(0));
    assert!(
        !home.join("gateway.lock").exists(),
        "a clean stop removes the lock file"
    );
    let v = assert_clean(&home, &[]);
    assert_eq!(finding(&v, "token.drift")["severity"], "info");
    let (code, _, _) = claw_in(&home, &["channels", "status"]);
    assert_eq!(code, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_leaves_a_stale_lock_an_orphan_socket_and_a_runtime_file_that_fix_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut g = Gateway::start_in(&home, &[]);
    let pid = g.child.id();
    // Let the start-up snapshot finish, so the kill leaves exactly the three leftovers below
    // (one cut off mid-write would leave a temporary file, which --fix removes too).
    for _ in 0..200 {
        let done = std::fs::read_dir(home.join("snapshots")).is_ok_and(|d| {
            let names: Vec<String> = d
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.iter().any(|n| n.ends_with(".db"))
                && !names.iter().any(|n| n.ends_with(".claw-tmp"))
        });
        if done {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    g.kill9();
    for f in ["gateway.lock", "admin.sock", "gateway.json"] {
        assert!(home.join(f).exists(), "kill -9 leaves {f}");
    }

    let (code, v) = doctor(&home, &[]);
    assert_eq!(code, 1, "{v:#}");
    let lock = finding(&v, "lock.stale");
    assert_eq!(lock["severity"], "warn");
    assert!(
        lock["message"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {pid}")),
        "{lock}"
    );
    assert_eq!(lock["fix"]["kind"], "removeStaleLock");
    assert_eq!(finding(&v, "admin_socket.orphan")["severity"], "warn");
    assert_eq!(finding(&v, "runtime.stale")["severity"], "warn");
    assert_eq!(
        finding(&v, "store.integrity")["severity"],
        "ok",
        "WAL replays"
    );

    let (code, v) = doctor(&home, &["--fix"]);
    assert_eq!(code, 0, "{v:#}");
    for id in ["lock.stale", "admin_socket.orphan", "runtime.stale"] {
        let f = finding(&v, id);
        assert!(
            f["fixed"].as_str().unwrap().starts_with("removed "),
            "{id}: {f}"
        );
    }
    assert_eq!(v["summary"]["fixed"], 3);
    for f in ["gateway.lock", "admin.sock", "gateway.json"] {
        assert!(!home.join(f).exists(), "--fix removed {f}");
    }
    assert_clean(&home, &[]);

    // The credentials survived: the next gateway starts on the same token.
    let token = std::fs::read_to_string(home.join("gateway.token")).unwrap();
    let g2 = Gateway::start_in(&home, &[]);
    assert_eq!(g2.token(), token.trim());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_file_without_its_listener_is_an_orphan() {
    let tmp = tempfile::tempdir().unwrap();
    let home = stopped_home(&tmp);
    let sock = home.join("admin.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists(), "the socket file outlives its listener");

    let (code, v) = doctor(&home, &[]);
    assert_eq!(code, 1);
    let f = finding(&v, "admin_socket.orphan");
    assert_eq!(f["severity"], "warn");
    assert!(
        f["message"].as_str().unwrap().contains("nothing listens"),
        "{f}"
    );

    let (code, v) = doctor(&home, &["--fix"]);
    assert_eq!(code, 0, "{v:#}");
    assert!(finding(&v, "admin_socket.orphan")["fixed"].is_string());
    assert!(!sock.exists());
    assert_clean(&home, &[]);

    // A live listener is never removed.
    let live = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (_, v) = doctor(&home, &["--fix"]);
    assert_eq!(finding(&v, "admin_socket.orphan")["severity"], "warn");
    assert!(finding(&v, "admin_socket.orphan")["fix"].is_null());
    assert!(sock.exists());
    drop(live);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_store_is_reported_and_never_repaired_automatically() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut g = Gateway::start_in(&home, &[]);
    // Some data worth losing: a paired device.
    let key = claw_gateway::auth::device_key::DeviceKey::generate();
    let _ = handshake(
        &g.url,
        &Creds {
            token: Some(&g.token()),
            device: Some(&key),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert_eq!(g.terminate(), Some(0));
    // Without a snapshot to restore (the one the gateway took at start is removed; restoring
    // one is tests/faults.rs's `a_corrupt_store_is_restored_from_a_snapshot_…`).
    let _ = std::fs::remove_dir_all(home.join("snapshots"));

    let db = home.join("state.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let n = bytes.len();
    assert!(n >= 3 * 4096, "store too small to corrupt its middle: {n}");
    for b in &mut bytes[n / 3..2 * n / 3] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();

    let (code, v) = doctor(&home, &[]);
    assert_eq!(code, 1);
    let f = finding(&v, "store.integrity");
    assert_eq!(f["severity"], "error", "{f}");
    assert!(f["fix"].is_null());
    let hint = f["hint"].as_str().unwrap();
    assert!(
        hint.contains(".recover") && hint.contains("state.db.corrupt"),
        "{hint}"
    );

    // --fix leaves the store alone: salvaging it is the human's call.
    let (code, v) = doctor(&home, &["--fix"]);
    assert_eq!(code, 1);
    assert!(finding(&v, "store.integrity")["fixed"].is_null());
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "--fix touched the store"
    );

    // The human moves it aside as the hint says; the next run is clean.
    std::fs::rename(&db, home.join("state.db.corrupt")).unwrap();
    let v = assert_clean(&home, &[]);
    assert_eq!(finding(&v, "store.integrity")["severity"], "info");
}

#[tokio::test(flavor = "multi_thread")]
async fn loose_permissions_are_tightened_while_the_gateway_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let g = Gateway::start_in(&home, &[]);
    let token = home.join("gateway.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (code, v) = doctor(&home, &[]);
    assert_eq!(code, 1);
    let h = finding(&v, "home.permissions");
    assert_eq!(h["severity"], "error");
    assert!(h["message"].as_str().unwrap().contains("0755"), "{h}");
    let s = finding(&v, "secret.permissions");
    assert_eq!(s["severity"], "error");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("gateway.token is 0644"),
        "{s}"
    );
    // Exposure is advice: the rotation command is printed, never run.
    assert!(s["hint"]
        .as_str()
        .unwrap()
        .contains("claw devices rotate-token --shared --force"));

    let (code, v) = doctor(&home, &["--fix"]);
    assert_eq!(code, 0, "{:#?}", problems(&v));
    assert_eq!(
        finding(&v, "secret.permissions")["fixed"],
        format!("chmod 600 {}", token.display())
    );
    assert_eq!(mode(&token), 0o600);
    assert_eq!(mode(&home), 0o700);
    assert_eq!(
        g.token(),
        std::fs::read_to_string(&token).unwrap().trim(),
        "the token is unchanged"
    );
    assert_clean(&home, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rival_on_the_port_is_named_by_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let home = stopped_home(&tmp);
    let rival = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = rival.local_addr().unwrap().port().to_string();

    // The gateway cannot start there...
    let (code, out, err) = run_bounded(
        &home,
        &["gateway", "run", "--port", &port],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("cannot listen"), "{err}");
    // ... and its failed start left nothing behind.
    assert!(!home.join("gateway.lock").exists());

    // The doctor names who holds the port: this test process.
    let (code, v) = doctor(&home, &["--port", &port]);
    assert_eq!(code, 1);
    let f = finding(&v, "port.rival");
    assert_eq!(f["severity"], "warn");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "the holder is the test process {}: {msg}",
        std::process::id()
    );
    assert!(f["hint"].as_str().unwrap().contains("--port"));
    // Doctor never kills a process.
    let (code, v) = doctor(&home, &["--port", &port, "--fix"]);
    assert_eq!(code, 1);
    assert!(finding(&v, "port.rival")["fixed"].is_null());

    drop(rival);
    let v = assert_clean(&home, &["--port", &port]);
    assert!(finding(&v, "port.rival")["message"]
        .as_str()
        .unwrap()
        .ends_with("is free"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_token_that_differs_from_the_homes_is_drift_with_the_command_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let home = stopped_home(&tmp);
    let generated = std::fs::read_to_string(home.join("gateway.token")).unwrap();
    let mut g = Gateway::start_in(&home, &["--token", "pinned-by-the-operator-0123456789"]);

    let (code, v) = doctor(&home, &[]);
    assert_eq!(code, 1);
    let f = finding(&v, "token.drift");
    assert_eq!(f["severity"], "error", "{f}");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("gateway token mismatch") && msg.contains("pinned"),
        "{msg}"
    );
    assert!(f["hint"]
        .as_str()
        .unwrap()
        .contains("claw gateway stop && claw gateway start"));

    // --fix does not touch credentials: still drift, exit 1, both tokens unchanged.
    let (code, out, _) = g.claw(&["doctor", "--fix"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[error] token.drift"), "{out}");
    assert!(out.contains("hint: restart it without the pin"), "{out}");
    assert_eq!(
        std::fs::read_to_string(home.join("gateway.token")).unwrap(),
        generated
    );
    let (_, _ws) = handshake(
        &g.url,
        &Creds {
            token: Some("pinned-by-the-operator-0123456789"),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();

    // The human restarts without the pin, as the hint says: clean.
    assert_eq!(g.terminate(), Some(0));
    let _g = Gateway::start_in(&home, &[]);
    let v = assert_clean(&home, &[]);
    assert_eq!(finding(&v, "token.drift")["severity"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn leftover_temp_files_and_expired_pairing_requests_are_cleaned() {
    use claw_gateway::store::{NewDevice, Store};
    let tmp = tempfile::tempdir().unwrap();
    let home = stopped_home(&tmp);
    let expire_one = |id: &str| {
        let mut s = Store::open(&home.join("state.db")).unwrap();
        let d = NewDevice {
            device_id: id.into(),
            public_key: "pk".into(),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            ..Default::default()
        };
        s.request_pairing(&d, "loopback", 1).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    };
    expire_one("device-a");
    // A temporary file of a dead writer, and one of a live writer (this process).
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let left = home.join(format!("gateway.token.{dead_pid}.claw-tmp"));
    let live = home.join(format!("gateway.json.{}.claw-tmp", std::process::id()));
    std::fs::write(&left, "partial").unwrap();
    std::fs::write(&live, "in progress").unwrap();

    let (code, v) = doctor(&home, &[]);
    assert_eq!(code, 1);
    let t = finding(&v, "files.temporary");
    assert_eq!(t["severity"], "warn");
    assert_eq!(t["fix"]["paths"].as_array().unwrap().len(), 1, "{t}");
    let p = finding(&v, "pairing.expired");
    assert_eq!(p["severity"], "info");
    assert!(
        p["message"].as_str().unwrap().starts_with("1 expired"),
        "{p}"
    );

    let (code, v) = doctor(&home, &["--fix"]);
    assert_eq!(code, 0, "{:#?}", problems(&v));
    assert!(!left.exists());
    assert!(live.exists(), "a live writer's file is left alone");
    assert!(finding(&v, "pairing.expired")["fixed"]
        .as_str()
        .unwrap()
        .starts_with("pruned 1 expired"));
    let v = assert_clean(&home, &[]);
    assert_eq!(finding(&v, "files.temporary")["severity"], "info");
    assert_eq!(finding(&v, "pairing.expired")["severity"], "ok");
    std::fs::remove_file(&live).unwrap();

    // With a gateway running, the prune goes through its admin socket.
    let _g = Gateway::start_in(&home, &[]);
    expire_one("device-b");
    let (code, v) = doctor(&home, &["--fix"]);
    assert_eq!(code, 0, "{:#?}", problems(&v));
    let fixed = finding(&v, "pairing.expired")["fixed"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fixed.contains("through the running gateway"), "{fixed}");
    assert_eq!(
        finding(&assert_clean(&home, &[]), "pairing.expired")["severity"],
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tunnel_and_ssh_listeners_are_reported_with_their_fingerprints() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let g = Gateway::start_in(&home, &["--tunnel", "127.0.0.1:0", "--ssh", "127.0.0.1:0"]);
    let v = assert_clean(&home, &[]);
    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("gateway.json")).unwrap()).unwrap();
    let tunnel = finding(&v, "tunnel.listener");
    assert_eq!(tunnel["severity"], "ok", "{tunnel}");
    let id = rt["tunnel"]["gatewayId"].as_str().unwrap();
    assert!(
        tunnel["message"].as_str().unwrap().contains(&id[..16]),
        "{tunnel}"
    );
    let ssh = finding(&v, "ssh.listener");
    assert_eq!(ssh["severity"], "ok", "{ssh}");
    assert!(
        ssh["message"]
            .as_str()
            .unwrap()
            .contains(rt["ssh"]["fingerprint"].as_str().unwrap()),
        "{ssh}"
    );
    // The identity key is a secret like the others.
    assert_eq!(mode(&home.join("identity.key")), 0o600);

    let (code, out, err) = g.claw(&["channels", "status", "--probe", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let c: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["channels"][2]["name"], "tunnel");
    assert_eq!(c["channels"][2]["state"], "listening");
    assert_eq!(
        c["channels"][2]["probe"]["ok"], true,
        "QUIC handshake: {c:#}"
    );
    assert_eq!(c["channels"][3]["name"], "ssh");
    assert_eq!(c["channels"][3]["probe"]["ok"], true, "SSH banner: {c:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_rotated_behind_a_devices_back_is_reported_with_the_command_to_run() {
    let g = Gateway::start(&["--tunnel", "127.0.0.1:0"]);
    let (code, out, err) = g.claw(&["pair", "--json"]);
    assert_eq!(code, 0, "{err}");
    let uri = serde_json::from_str::<Value>(&out).unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("device");
    let (code, _, err) = claw_in(&dev, &["tunnel", "pair", &uri]);
    assert_eq!(code, 0, "{err}");
    // In step: clean.
    let (code, v) = doctor(&dev, &[]);
    assert_eq!(code, 0, "{:#?}", problems(&v));
    assert_eq!(finding(&v, "token.drift.device")["severity"], "ok");

    // The operator rotates while the device is offline.
    let (code, _, _) = g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0);
    let before = std::fs::read(dev.join("device-token.json")).unwrap();
    let (code, v) = doctor(&dev, &["--fix"]);
    assert_eq!(code, 1, "drift needs the human: {v}");
    let f = finding(&v, "token.drift.device");
    assert_eq!(f["severity"], "error");
    assert!(
        f["hint"].as_str().unwrap().contains("claw tunnel up"),
        "{f}"
    );
    // Doctor never fetches, mints or stores a credential, even with --fix.
    assert_eq!(
        std::fs::read(dev.join("device-token.json")).unwrap(),
        before
    );

    // Doing what the hint says: `claw tunnel up` re-pairs over the tunnel.
    let mut up = Command::new(claw_bin())
        .args([
            "--home",
            dev.to_str().unwrap(),
            "tunnel",
            "up",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::read(dev.join("device-token.json")).unwrap() == before
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = up.kill();
    let _ = up.wait();
    let (code, v) = doctor(&dev, &[]);
    assert_eq!(code, 0, "{:#?}", problems(&v));

    // Revoked behind its back: an error that says re-pairing will not help.
    let id = claw_tunnel::device::DeviceHome::new(&dev)
        .pairing()
        .unwrap()
        .device_id;
    let (code, _, _) = g.claw(&["devices", "revoke", &id]);
    assert_eq!(code, 0);
    let (code, v) = doctor(&dev, &[]);
    assert_eq!(code, 1);
    let f = finding(&v, "token.drift.device");
    assert!(f["message"].as_str().unwrap().contains("revoked"), "{f}");
}
