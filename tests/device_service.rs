//! End-to-end: the device side kept running — `claw tunnel up --daemon`, one tunnel per home,
//! following a re-pair to a new gateway address without a restart, `claw tunnel down`, and the
//! `claw tunnel install --print` unit.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde::Deserialize;
use serde_json::Value;

/// `claw tunnel up --daemon --json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Started {
    event: String,
    pid: u32,
    listen: Vec<String>,
    log: String,
}

/// `claw tunnel down --json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Stopped {
    stopped: bool,
    pid: Option<u32>,
}

/// Kills a background pid when the test ends (also on a failed assertion).
struct KillOnDrop(u32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// The running gateway's tunnel address (`gateway.json`).
fn tunnel_addr(g: &Gateway) -> String {
    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(g.home.join("gateway.json")).unwrap())
            .unwrap();
    rt["tunnel"]["addr"].as_str().unwrap().to_string()
}

/// Pairs the device home `d` with `g` through a fresh code naming the tunnel's real address.
fn pair(g: &Gateway, d: &Path) {
    let (code, out, err) = g.claw(&["pair", "--json", "--addr", &tunnel_addr(g)]);
    assert_eq!(code, 0, "{err}");
    let uri = serde_json::from_str::<Value>(&out).unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _, err) = claw_in(d, &["tunnel", "pair", &uri]);
    assert_eq!(code, 0, "{err}");
}

/// `claw call health` through the tunnel's local port succeeds within `limit`.
fn health_within(d: &Path, url: &str, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let (code, _, _) = claw_in(d, &["call", "health", "--url", url, "--json"]);
        if code == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

#[test]
fn a_daemon_tunnel_is_one_per_home_follows_a_repair_and_stops_on_down() {
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gw");
    let mut g = Gateway::start_in(&gw_home, &["--tunnel", "127.0.0.1:0"]);
    let d = tmp.path().join("dev");
    std::fs::create_dir_all(&d).unwrap();
    pair(&g, &d);

    let (code, out, err) = claw_in(
        &d,
        &[
            "tunnel",
            "up",
            "--daemon",
            "--json",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let started: Started = serde_json::from_str(out.trim()).expect(&out);
    let _guard = KillOnDrop(started.pid);
    assert_eq!(started.event, "started");
    assert!(alive(started.pid));
    assert!(Path::new(&started.log).starts_with(&d), "{}", started.log);
    let url = format!("ws://{}", started.listen[0]);
    assert!(
        health_within(&d, &url, Duration::from_secs(60)),
        "no health through the daemon tunnel"
    );

    // One per home: a second one (foreground or daemon) is refused and names the first.
    for extra in [&[][..], &["--daemon"]] {
        let mut args = vec!["tunnel", "up", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (code, _, err) = claw_in(&d, &args);
        assert_eq!(code, 75, "{extra:?}: {err}");
        assert!(
            err.contains(&format!("pid {}", started.pid)) && err.contains("since "),
            "{err}"
        );
    }

    // The gateway moves to a new tunnel port; the device is re-paired while the daemon runs and
    // the same local port works again, with no restart of the tunnel.
    let old = tunnel_addr(&g);
    g.terminate();
    drop(g);
    let g = Gateway::start_in(&gw_home, &["--tunnel", "127.0.0.1:0"]);
    assert_ne!(tunnel_addr(&g), old, "the gateway kept its port");
    pair(&g, &d);
    assert!(
        health_within(&d, &url, Duration::from_secs(90)),
        "the daemon tunnel did not follow the re-pair; log:\n{}",
        std::fs::read_to_string(&started.log).unwrap_or_default()
    );
    assert!(alive(started.pid), "the tunnel was restarted");

    let (code, out, err) = claw_in(&d, &["tunnel", "down", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s: Stopped = serde_json::from_str(out.trim()).expect(&out);
    assert!(s.stopped);
    assert_eq!(s.pid, Some(started.pid));
    let t0 = Instant::now();
    while alive(started.pid) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A zombie counts as alive to kill(0); the daemon's parent (claw) has exited, so init reaps
    // it: give it the same bound.
    assert!(!alive(started.pid), "still running after tunnel down");
    let (code, out, _) = claw_in(&d, &["tunnel", "down", "--json"]);
    assert_eq!(code, 0);
    let s: Stopped = serde_json::from_str(out.trim()).expect(&out);
    assert!(!s.stopped && s.pid.is_none());
    let (code, out, _) = claw_in(&d, &["tunnel", "down"]);
    assert_eq!(code, 0);
    assert!(out.contains("no claw tunnel is running"), "{out}");
}

#[test]
fn a_daemon_on_an_unpaired_home_is_refused_before_it_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("dev");
    std::fs::create_dir_all(&d).unwrap();
    // Not paired: refused before anything runs.
    let (code, _, err) = claw_in(&d, &["tunnel", "up", "--daemon"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not paired"), "{err}");
}

#[test]
fn the_tunnel_unit_runs_tunnel_up_and_holds_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gw");
    let g = Gateway::start_in(&gw_home, &["--tunnel", "127.0.0.1:0"]);
    let d = tmp.path().join("dev");
    std::fs::create_dir_all(&d).unwrap();
    pair(&g, &d);
    let (code, unit, err) = claw_in(
        &d,
        &[
            "tunnel",
            "install",
            "--print",
            "--listen",
            "127.0.0.1:18799",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect(&unit);
    // A revoked device (77), a second tunnel on the home (75) or a refused flag (78): no restart.
    assert!(
        unit.lines()
            .any(|l| l == "RestartPreventExitStatus=75 77 78"),
        "{unit}"
    );
    assert!(
        exec.ends_with(&format!(
            "--home {} tunnel up --listen 127.0.0.1:18799",
            std::fs::canonicalize(&d).unwrap_or(d.clone()).display()
        )) || exec.ends_with(&format!(
            "--home {} tunnel up --listen 127.0.0.1:18799",
            d.display()
        )),
        "{exec}"
    );
    let token = claw_tunnel::device::DeviceHome::new(&d)
        .token()
        .unwrap()
        .unwrap()
        .token;
    assert!(!unit.contains(&token), "the device token is in the unit");
    assert!(
        !unit.contains(&g.token()),
        "the shared token is in the unit"
    );
    assert!(unit.contains("Restart=on-failure"));
    for bad in ["--daemon", "--frobnicate"] {
        let (code, _, err) = claw_in(&d, &["tunnel", "install", "--print", bad]);
        assert_eq!(code, 78, "{bad}: {err}");
    }
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let f = tmp.path().join("claw-tunnel.service");
        std::fs::write(&f, &unit).unwrap();
        let v = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&f)
            .output()
            .unwrap();
        assert!(v.status.success(), "systemd-analyze verify: {v:?}\n{unit}");
    }
}

/// `--forward` to a name the gateway does not expose: the application sees its connection
/// closed with nothing written into it (never the gateway's JSON refusal as if the service had
/// said it), and `claw tunnel status` says why.
#[test]
fn a_forward_to_an_unexposed_name_closes_the_connection_and_reports_it() {
    use std::io::{BufRead, Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let g = Gateway::start_in(&tmp.path().join("gw"), &["--tunnel", "127.0.0.1:0"]);
    let d = tmp.path().join("dev");
    std::fs::create_dir_all(&d).unwrap();
    pair(&g, &d);
    let local = free_port();
    let mut up = std::process::Command::new(claw_bin())
        .arg("--home")
        .arg(&d)
        .args(["tunnel", "up", "--listen", "127.0.0.1:0", "--json"])
        .args(["--forward", &format!("127.0.0.1:{local}=nope")])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(up.id());
    let mut lines = std::io::BufReader::new(up.stdout.take().unwrap()).lines();
    let mut connected = false;
    for _ in 0..2 {
        let l = lines.next().unwrap().unwrap();
        connected |= l.contains("\"event\":\"connected\"");
    }
    assert!(connected, "the tunnel never connected");
    let mut app = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    app.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    app.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let n = app.read_to_end(&mut got).expect("closed, not left hanging");
    assert_eq!(
        n,
        0,
        "the application got {:?}",
        String::from_utf8_lossy(&got)
    );
    let t0 = Instant::now();
    loop {
        let (_, out, _) = claw_in(&d, &["tunnel", "status", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let e = v["lastError"].as_str().unwrap_or("");
        if e.contains("\"nope\"") && e.contains("exposes nothing") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "status: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = up.kill();
    let _ = up.wait();
}

/// `claw tunnel up --json` reports a re-pair to the same gateway at a new address with a
/// `repaired` line (same `gatewayId`), then `connected` again, with no restart.
#[test]
fn tunnel_up_json_reports_a_repair_to_the_same_gateway_at_a_new_address() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gw");
    let mut g = Gateway::start_in(&gw_home, &["--tunnel", "127.0.0.1:0"]);
    let d = tmp.path().join("dev");
    std::fs::create_dir_all(&d).unwrap();
    pair(&g, &d);
    let mut child = std::process::Command::new(claw_bin())
        .arg("--home")
        .arg(&d)
        .args(["tunnel", "up", "--json", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    // The next line with event `want` within `limit`; every line seen on the way is returned.
    let next = |want: &str, limit: Duration| -> (Value, Vec<String>) {
        let end = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(v) => {
                    let e = v["event"].as_str().unwrap_or("").to_string();
                    if e == want {
                        return (v, seen);
                    }
                    seen.push(e);
                }
                Err(_) => break,
            }
        }
        panic!("no `{want}` line within {limit:?}; saw {seen:?}");
    };
    let (up, _) = next("up", Duration::from_secs(30));
    let gateway_id = up["gatewayId"].as_str().unwrap().to_string();
    next("connected", Duration::from_secs(30));

    // Same gateway (same home, same key), new tunnel port; the device home is re-paired.
    let old = tunnel_addr(&g);
    g.terminate();
    drop(g);
    let g = Gateway::start_in(&gw_home, &["--tunnel", "127.0.0.1:0"]);
    assert_ne!(tunnel_addr(&g), old, "the gateway kept its port");
    pair(&g, &d);
    let (repaired, _) = next("repaired", Duration::from_secs(30));
    assert_eq!(repaired["gatewayId"], gateway_id.as_str(), "{repaired}");
    assert_eq!(repaired["pid"], child.id(), "{repaired}");
    next("connected", Duration::from_secs(60));
    assert!(alive(child.id()), "the tunnel was restarted");
    let _ = child.kill();
    let _ = child.wait();
}
