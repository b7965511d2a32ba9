//! End-to-end: device presence with the real binary — a device with `claw tunnel up` running
//! shows online over the tunnel; after the tunnel goes down it shows offline with its last seen
//! time and transport, also after a gateway restart; a pending request names the device and the
//! address it came from.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn pair_uri(g: &Gateway, extra: &[&str]) -> String {
    let mut args = vec!["pair", "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = g.claw(&args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["uri"].as_str().unwrap().to_string()
}

fn list(g: &Gateway) -> Value {
    let (code, out, err) = g.claw(&["devices", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Polls `claw devices list --json` (up to 30 s) until the first paired device satisfies `ok`.
fn wait_device(g: &Gateway, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        let v = list(g);
        if let Some(d) = v["paired"].get(0).filter(|d| ok(d)) {
            return d.clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("device never {what}: {}", list(g));
}

fn tunnel_up(home: &Path) -> Child {
    let mut child = Command::new(claw_bin())
        .args(["--home", home.to_str().unwrap(), "tunnel", "up"])
        .args(["--listen", "127.0.0.1:0"])
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
    assert!(line.contains("ws://"), "no ready line: {line:?}");
    child
}

fn sigterm(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

#[test]
fn a_device_with_its_tunnel_up_is_online_and_offline_with_last_seen_after() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("gw");
    let mut g = Gateway::start_in(&home, &["--tunnel", "127.0.0.1:0"]);
    let dev = tmp.path().join("laptop");
    std::fs::create_dir_all(&dev).unwrap();
    let uri = pair_uri(&g, &["--name", "laptop"]);
    let (code, _, err) = claw_in(&dev, &["tunnel", "pair", &uri]);
    assert_eq!(code, 0, "{err}");
    // Paired, nothing up: offline, and never connected.
    let d = wait_device(&g, "listed", |_| true);
    assert_eq!(d["status"], "offline", "{d}");

    let mut up = tunnel_up(&dev);
    let d = wait_device(&g, "online over the tunnel", |d| {
        d["status"] == "online" && d["transport"] == "tunnel"
    });
    let since = d["connectedSinceMs"].as_u64().expect("connected since");
    assert!(since > 0 && since <= claw_gateway::now_ms(), "{d}");
    let (_, human, _) = g.claw(&["devices", "list"]);
    assert!(
        human.contains("online/tunnel") && human.contains("connected "),
        "{human}"
    );

    sigterm(&mut up);
    let d = wait_device(&g, "offline after tunnel down", |d| {
        d["status"] == "offline"
    });
    let seen = d["lastSeenAtMs"].as_u64().expect("last seen");
    assert!(seen >= since, "{d}");
    assert_eq!(d["lastTransport"], "tunnel", "{d}");
    assert_eq!(d["connectedSinceMs"], Value::Null, "{d}");
    let (_, human, _) = g.claw(&["devices", "list"]);
    assert!(
        human.contains("offline") && human.contains("last seen just now (tunnel)"),
        "{human}"
    );

    // Last seen is persisted: a restarted gateway still knows it.
    g.terminate();
    let g = Gateway::start_in(&home, &["--tunnel", "127.0.0.1:0"]);
    let d = wait_device(&g, "listed after restart", |_| true);
    assert_eq!(d["status"], "offline", "{d}");
    assert_eq!(d["lastSeenAtMs"].as_u64(), Some(seen), "{d}");
    assert_eq!(d["lastTransport"], "tunnel", "{d}");
}

#[test]
fn a_pending_request_carries_the_name_and_the_address_it_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    let g = Gateway::start_in(&tmp.path().join("gw"), &["--tunnel", "127.0.0.1:0"]);
    let dev = tmp.path().join("tablet");
    std::fs::create_dir_all(&dev).unwrap();
    let uri = pair_uri(&g, &["--name", "tablet", "--require-approval"]);
    let mut child = Command::new(claw_bin())
        .args(["--home", dev.to_str().unwrap(), "tunnel", "pair", &uri])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut req = Value::Null;
    for _ in 0..300 {
        let v = list(&g);
        if let Some(r) = v["pending"].get(0).filter(|r| r["remoteAddr"].is_string()) {
            req = r.clone();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(req["displayName"], "tablet", "{req}");
    let addr = req["remoteAddr"].as_str().unwrap_or_default();
    assert!(addr.starts_with("127.0.0.1:"), "{req}");
    let (_, human, _) = g.claw(&["devices", "list"]);
    assert!(
        human.contains("tablet") && human.contains(&format!("from tunnel {addr}")),
        "{human}"
    );
}

/// `kill -9` of `claw tunnel up` (no polite close): the gateway shows the device offline after a
/// few missed keep-alives (~8 s), long before the tunnel's 45 s idle timeout, and the control
/// pages hear of it. Bounded at 20 s: the old behaviour (45 s) fails it.
#[test]
fn a_killed_tunnel_shows_offline_within_a_few_keep_alives() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("gw");
    let g = Gateway::start_in(&home, &["--tunnel", "127.0.0.1:0"]);
    let dev = tmp.path().join("laptop");
    std::fs::create_dir_all(&dev).unwrap();
    let uri = pair_uri(&g, &["--name", "laptop"]);
    let (code, _, err) = claw_in(&dev, &["tunnel", "pair", &uri]);
    assert_eq!(code, 0, "{err}");
    let mut up = tunnel_up(&dev);
    wait_device(&g, "online over the tunnel", |d| {
        d["status"] == "online" && d["transport"] == "tunnel"
    });
    up.kill().unwrap();
    let _ = up.wait();
    let t0 = std::time::Instant::now();
    let mut last = Value::Null;
    while t0.elapsed() < Duration::from_secs(20) {
        last = list(&g)["paired"][0].clone();
        if last["status"] == "offline" {
            assert_eq!(last["lastTransport"], "tunnel", "{last}");
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("still not offline 20 s after kill -9 of tunnel up: {last}");
}
