//! End-to-end: the gateway process lifecycle against the real binary — restarts after `kill -9`,
//! one gateway per home, graceful SIGTERM, background start/status/stop, the loopback-only bind
//! rule, pinned shared tokens, file modes, and the plain-HTTP endpoints on the gateway port.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use claw_gateway::auth::device_key::DeviceKey;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `claw --home H args…` with extra environment, killing it if it outlives `limit`.
/// Returns (exit status — `None` when it had to be killed, stdout, stderr).
fn run_bounded(
    home: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    limit: Duration,
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(claw_bin());
    cmd.arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CLAW_GATEWAY_TOKEN")
        .env_remove("CLAW_GATEWAY_TOKEN_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn claw");
    let deadline = Instant::now() + limit;
    let mut killed = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
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

/// A foreground gateway started with extra environment (the shared harness cannot set env).
/// Killed on drop.
struct EnvGateway {
    child: Child,
    url: String,
}

impl EnvGateway {
    fn start(home: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(claw_bin());
        cmd.arg("--home")
            .arg(home)
            .args(["gateway", "run", "--port", "0", "--auth-fail-delay-ms", "0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("CLAW_GATEWAY_TOKEN")
            .env_remove("CLAW_GATEWAY_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn claw");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .unwrap_or_else(|| panic!("no ready line, got {line:?}"))
            .to_string();
        Self { child, url }
    }
}

impl Drop for EnvGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Is `pid` a live (non-zombie) process?
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised command) is the state; Z = zombie, X = dead.
        Ok(s) => s
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

/// The background gateway of `claw gateway start`; stopped (then killed if need be) on drop.
struct Background {
    home: PathBuf,
    pid: Option<u32>,
}

impl Drop for Background {
    fn drop(&mut self) {
        let Some(pid) = self.pid else { return };
        if alive(pid) {
            let _ = run_bounded(
                &self.home,
                &["gateway", "stop"],
                &[],
                Duration::from_secs(20),
            );
        }
        // Still there: kill it, but only if it is our gateway (pids get reused).
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&*self.home.to_string_lossy()))
            .unwrap_or(false);
        if alive(pid) && ours {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Pairs `key` silently over loopback with the shared token; returns its device token.
async fn pair(url: &str, shared: &str, key: &DeviceKey) -> String {
    let (hello, _ws) = handshake(
        url,
        &Creds {
            token: Some(shared),
            device: Some(key),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    hello["auth"]["deviceToken"]
        .as_str()
        .expect("silent pairing issues a device token")
        .to_string()
}

/// A device-token connect succeeds as `device-token`.
async fn device_token_works(url: &str, dt: &str, key: &DeviceKey) {
    let (hello, mut ws) = handshake(
        url,
        &Creds {
            token: Some(dt),
            device: Some(key),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert_eq!(hello["auth"]["method"], "device-token", "{hello}");
    if let Some(t) = hello["auth"]["deviceToken"].as_str() {
        assert_eq!(t, dt, "a restart must not change the device token");
    }
    let r = call(&mut ws, "health", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
}

async fn shared_token_works(url: &str, token: &str) {
    let (hello, mut ws) = handshake(
        url,
        &Creds {
            token: Some(token),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    assert_eq!(hello["auth"]["method"], "token");
    let r = call(&mut ws, "health", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
}

/// Reads frames until the close; returns the events seen before it and the close.
async fn events_until_close(ws: &mut Ws) -> (Vec<Value>, (u16, String)) {
    let mut events = Vec::new();
    for _ in 0..1000 {
        match recv(ws).await {
            Ok(v) => events.push(v),
            Err(c) => return (events, c),
        }
    }
    panic!("no close after 1000 frames: {events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_tokens_and_the_shared_token_survive_kill9_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let key = DeviceKey::generate();

    let mut g = Gateway::start_in(&home, &[]);
    let shared = g.token();
    let dt = pair(&g.url, &shared, &key).await;
    device_token_works(&g.url, &dt, &key).await;
    g.kill9();

    // Restart on the same home after kill -9: the device token still works, the shared token is
    // the same file content (generated once, never per boot).
    let mut g = Gateway::start_in(&home, &[]);
    assert_eq!(
        g.token(),
        shared,
        "the shared token changed across a kill -9 restart"
    );
    device_token_works(&g.url, &dt, &key).await;
    shared_token_works(&g.url, &shared).await;

    // And once more after a graceful stop.
    assert_eq!(g.terminate(), Some(0));
    let g = Gateway::start_in(&home, &[]);
    assert_eq!(
        g.token(),
        shared,
        "the shared token changed across a graceful restart"
    );
    device_token_works(&g.url, &dt, &key).await;
    shared_token_works(&g.url, &shared).await;
    // The device is still listed as paired (one device, not a re-pair per boot).
    let (code, out, err) = g.claw(&["devices", "list", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["paired"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["paired"][0]["deviceId"], key.device_id().as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_gateway_per_home_and_a_stale_lock_is_no_obstacle() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut g = Gateway::start_in(&home, &[]);
    let pid = g.child.id();

    let (code, out, err) = run_bounded(
        &home,
        &["gateway", "run", "--port", "0"],
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(
        code,
        Some(75),
        "second gateway on the same home: {out}{err}"
    );
    assert!(
        err.contains(&pid.to_string()),
        "stderr names the running pid {pid}: {err}"
    );
    // The first one is unaffected.
    shared_token_works(&g.url, &g.token()).await;

    g.kill9();
    assert!(
        home.join("gateway.lock").exists(),
        "kill -9 leaves the lock file behind"
    );
    let (code, out, err) = g.claw(&["gateway", "status"]);
    assert_eq!(
        code, 3,
        "a dead gateway's stale lock reads as not running: {out}{err}"
    );

    // The stale lock does not stop a restart.
    let g2 = Gateway::start_in(&home, &[]);
    let pid2 = g2.child.id();
    shared_token_works(&g2.url, &g2.token()).await;
    let (code, out, err) = run_bounded(
        &home,
        &["gateway", "run", "--port", "0"],
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(75), "{out}{err}");
    assert!(
        err.contains(&pid2.to_string()),
        "stderr names the new pid {pid2}: {err}"
    );
    let (code, out, err) = g2.claw(&["gateway", "status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["running"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_sends_shutdown_closes_1012_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let g = Gateway::start_in(&home, &[]);
    let shared = g.token();
    let key = DeviceKey::generate();
    let dt = pair(&g.url, &shared, &key).await;
    let (_, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&shared),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    let (_, mut wd) = handshake(
        &g.url,
        &Creds {
            token: Some(&dt),
            device: Some(&key),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert!(home.join("admin.sock").exists());
    assert!(home.join("gateway.json").exists());

    // SIGTERM and wait for the exit on a blocking thread while the clients read.
    let stopper = tokio::task::spawn_blocking(move || {
        let mut g = g;
        let code = g.terminate();
        (code, g)
    });
    for w in [&mut ws, &mut wd] {
        let (events, close) = events_until_close(w).await;
        let shutdown: Vec<&Value> = events.iter().filter(|e| e["event"] == "shutdown").collect();
        assert_eq!(
            shutdown.len(),
            1,
            "exactly one shutdown event before the close: {events:?}"
        );
        assert_eq!(shutdown[0]["type"], "event");
        assert_eq!(
            shutdown[0]["payload"],
            json!({"reason": "gateway stopping"})
        );
        assert_eq!(
            close,
            (1012, claw_proto::CloseReason::ServiceRestart.to_string())
        );
    }
    let (code, _g) = tokio::time::timeout(Duration::from_secs(30), stopper)
        .await
        .expect("the gateway did not exit within 30 s of SIGTERM")
        .unwrap();
    assert_eq!(code, Some(0), "graceful stop exits 0");
    assert!(
        !home.join("admin.sock").exists(),
        "admin.sock removed on a graceful stop"
    );
    assert!(
        !home.join("gateway.json").exists(),
        "gateway.json removed on a graceful stop"
    );
    let (code, out, err) = claw_in(&home, &["gateway", "status"]);
    assert_eq!(code, 3, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn background_start_status_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut bg = Background {
        home: home.clone(),
        pid: None,
    };

    let (code, out, err) = run_bounded(
        &home,
        &[
            "gateway",
            "start",
            "--port",
            "0",
            "--auth-fail-delay-ms",
            "0",
        ],
        &[],
        Duration::from_secs(30),
    );
    // Record the pid first so the guard stops it even if an assertion below fails.
    let pid: Option<u32> = out
        .split("pid ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok());
    bg.pid = pid;
    assert_eq!(code, Some(0), "{out}{err}");
    let pid = pid.unwrap_or_else(|| panic!("no pid in {out:?}"));
    let url = out
        .split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .find(|w| w.starts_with("ws://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {out:?}"))
        .to_string();
    assert!(
        alive(pid),
        "the background gateway runs after `start` returned"
    );

    // It serves.
    let token = std::fs::read_to_string(home.join("gateway.token"))
        .unwrap()
        .trim()
        .to_string();
    shared_token_works(&url, &token).await;

    let (code, out, err) = claw_in(&home, &["gateway", "status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["running"], true, "{v}");

    // A second start refuses (75) and does not disturb it.
    let (code, out, err) = run_bounded(
        &home,
        &["gateway", "start", "--port", "0"],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(75), "{out}{err}");
    assert!(err.contains(&pid.to_string()), "{err}");

    let (code, out, err) = run_bounded(&home, &["gateway", "stop"], &[], Duration::from_secs(30));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&pid.to_string()), "{out}");
    let (code, out, err) = claw_in(&home, &["gateway", "status", "--json"]);
    assert_eq!(code, 3, "status after stop: {out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["running"], false, "{v}");
    // The process is gone (eventually: it is reaped by whoever adopted it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "pid {pid} still running after `gateway stop`");
    assert!(!home.join("gateway.json").exists());
    // Stopping again is harmless.
    let (code, out, err) = run_bounded(&home, &["gateway", "stop"], &[], Duration::from_secs(30));
    assert_eq!(code, Some(0), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn non_loopback_binds_are_refused_with_exit_78() {
    for addr in ["0.0.0.0", "::", "192.168.1.10"] {
        for verb in ["run", "start"] {
            let tmp = tempfile::tempdir().unwrap();
            let home = tmp.path().join("home");
            let (code, out, err) = run_bounded(
                &home,
                &["gateway", verb, "--port", "0", "--bind", addr],
                &[],
                Duration::from_secs(20),
            );
            assert_eq!(code, Some(78), "gateway {verb} --bind {addr}: {out}{err}");
            assert!(err.contains(addr), "the message names {addr}: {err}");
            assert!(
                err.contains("tunnel"),
                "the message points to the tunnel: {err}"
            );
            assert!(
                !home.join("gateway.json").exists(),
                "no listener for {addr}"
            );
            assert!(
                !home.join("admin.sock").exists(),
                "no admin socket for {addr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_token_is_used_and_cannot_be_rotated() {
    const PINNED: &str = "pinned-e2e-token-0123456789";
    let g = Gateway::start(&["--token", PINNED]);
    shared_token_works(&g.url, PINNED).await;
    assert!(
        !g.home.join("gateway.token").exists(),
        "a pinned token generates no gateway.token"
    );
    let (e, close) = handshake(
        &g.url,
        &Creds {
            token: Some("some-other-token"),
            ..Default::default()
        },
    )
    .await
    .refused();
    assert_eq!(
        e["details"]["code"],
        claw_proto::codes::AUTH_TOKEN_MISMATCH,
        "{e}"
    );
    assert_eq!(close.0, 1008);

    let (code, out, err) = g.claw(&["devices", "rotate-token", "--force", "--shared"]);
    assert_ne!(
        code, 0,
        "rotating a pinned shared token must fail: {out}{err}"
    );
    assert!(
        err.contains("pinned"),
        "the message says the token is pinned: {err}"
    );
    // Nothing was rotated: the pinned token works and the device-token root is unchanged.
    let (_, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(PINNED),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    let r = call(&mut ws, "status", json!({})).await;
    assert_eq!(r["payload"]["deviceTokenGeneration"], 1, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_file_env_var_pins_the_shared_token() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "file-pinned-token-abcdef\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let g = EnvGateway::start(
        &home,
        &[],
        &[("CLAW_GATEWAY_TOKEN_FILE", secret.to_str().unwrap())],
    );
    shared_token_works(&g.url, "file-pinned-token-abcdef").await;
    assert!(
        !home.join("gateway.token").exists(),
        "a pinned token generates no gateway.token"
    );
    let (e, _) = handshake(
        &g.url,
        &Creds {
            token: Some("file-pinned-token-WRONG"),
            ..Default::default()
        },
    )
    .await
    .refused();
    assert_eq!(
        e["details"]["code"],
        claw_proto::codes::AUTH_TOKEN_MISMATCH,
        "{e}"
    );
    let (code, out, err) = claw_in(&home, &["devices", "rotate-token", "--force", "--shared"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("pinned"), "{err}");
    shared_token_works(&g.url, "file-pinned-token-abcdef").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn home_and_secret_files_are_private() {
    let g = Gateway::start(&[]);
    // Make sure the store has been written to (WAL files exist when they exist).
    let key = DeviceKey::generate();
    let _ = pair(&g.url, &g.token(), &key).await;
    assert_eq!(mode(&g.home), 0o700, "home dir");
    for f in [
        "gateway.token",
        "state.db",
        "gateway.lock",
        "admin.sock",
        "gateway.json",
    ] {
        assert_eq!(mode(&g.home.join(f)), 0o600, "{f}");
    }
    for f in ["state.db-wal", "state.db-shm"] {
        let p = g.home.join(f);
        if p.exists() {
            assert_eq!(
                mode(&p) & 0o077,
                0,
                "{f} is readable by others: {:o}",
                mode(&p)
            );
        }
    }
}

/// Sends a raw HTTP request and reads the whole answer: (status, headers, body).
async fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the server did not finish its answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(head.starts_with("HTTP/1.1 "), "{head}");
    (status, head.to_string(), body.to_string())
}

#[tokio::test]
async fn http_endpoints_on_the_gateway_port() {
    let g = Gateway::start(&[]);
    let (status, head, body) =
        http(g.port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["ok"], true, "{v}");

    let (status, head, body) = http(g.port, "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(status, 200, "{head}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["ready"], true, "{v}");

    // A query string does not matter.
    let (status, _, _) = http(
        g.port,
        "GET /health?probe=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);

    let (status, head, _) = http(g.port, "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(status, 404, "{head}");
    let (status, head, _) = http(
        g.port,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404, "{head}");
    // A plain GET / without the upgrade headers is not a WebSocket: it is the control page,
    // which answers only a Host naming the loopback listener with its port (421 otherwise).
    let (status, head, _) = http(g.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(status, 421, "{head}");

    // The same port still speaks WebSocket.
    shared_token_works(&g.url, &g.token()).await;
}

/// A reader that goes away (`claw gateway status | head -1`) ends claw quietly with 141, as
/// SIGPIPE would, not with a panic and exit 101 — for plain prints (`gateway status`) and for
/// generated output (`completions`). The pipe's read end is closed before claw starts, so every
/// write fails whatever the scheduler does.
#[test]
fn a_closed_stdout_pipe_ends_claw_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [&["gateway", "status"][..], &["completions", "bash"][..]] {
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        drop(read_end);
        let out = Command::new(claw_bin())
            .arg("--home")
            .arg(tmp.path())
            .args(args)
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `claw completions SHELL` and `claw man` are generated from the real command definitions: the
/// bash script parses, every shell's script names the verbs, the man page is roff for `claw`.
#[test]
fn completions_and_man_page_are_generated() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let (rc, out, err) = claw_in(tmp.path(), &["completions", shell]);
        assert_eq!(rc, 0, "{shell}: {err}");
        for verb in ["gateway", "devices", "tunnel", "doctor", "rotate-token"] {
            assert!(out.contains(verb), "{shell} completions lack {verb}");
        }
        if shell == "bash" && Command::new("bash").arg("--version").output().is_ok() {
            let path = tmp.path().join("claw.bash");
            std::fs::write(&path, &out).unwrap();
            let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
            assert!(check.status.success(), "bash -n: {check:?}");
        }
    }
    let (rc, out, _) = claw_in(tmp.path(), &["completions", "tcsh"]);
    assert_ne!(rc, 0, "an unknown shell is refused: {out}");
    let (rc, man, err) = claw_in(tmp.path(), &["man"]);
    assert_eq!(rc, 0, "{err}");
    assert!(man.starts_with(".ie") || man.contains(".TH claw"), "{man}");
    assert!(man.contains("gateway"), "{man}");
}

/// Logs written to a file or a pipe carry no ANSI colour escapes (`gateway.log` of
/// `claw gateway start`, a piped `gateway run`).
#[test]
fn logs_to_a_pipe_or_file_have_no_ansi_escapes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut child = Command::new(claw_bin())
        .args(["--home", &home.display().to_string(), "gateway", "run"])
        .args(["--port", "0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.contains("ws://"), "{ready}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO"), "no log lines: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in piped logs: {stderr:?}"
    );
}

/// `claw gateway install --print` writes a unit that runs this binary on this home with the
/// given flags, holds no secret (neither the home's token nor one from the environment), is
/// accepted by `systemd-analyze verify` where it exists, and refuses `--token` and bad flags.
#[test]
fn the_service_unit_runs_the_gateway_and_holds_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    // A home with a generated token, and a token in the environment, neither of which may leak.
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (rc, _, err) = claw_in(&home, &["gateway", "token"]);
    assert!(rc == 0 || rc == 1, "{err}");
    let mut cmd = Command::new(claw_bin());
    cmd.arg("--home")
        .arg(&home)
        .args([
            "gateway",
            "install",
            "--print",
            "--tunnel",
            "--ssh",
            "127.0.0.1:18722",
        ])
        .env("CLAW_GATEWAY_TOKEN", "env-secret-must-not-leak");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let unit = String::from_utf8(out.stdout).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    assert_eq!(
        exec,
        format!(
            "{} --home {} gateway run --tunnel --ssh 127.0.0.1:18722",
            claw_bin(),
            home.display()
        )
    );
    assert!(!unit.contains("env-secret-must-not-leak"), "{unit}");
    if let Ok(t) = std::fs::read_to_string(home.join("gateway.token")) {
        assert!(!unit.contains(t.trim()), "the home's token is in the unit");
    }
    assert!(!unit.contains("Environment"), "{unit}");
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let path = tmp.path().join("claw-gateway.service");
        std::fs::write(&path, &unit).unwrap();
        let v = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        assert!(v.status.success(), "systemd-analyze verify: {v:?}\n{unit}");
    }
    let (rc, _, err) = claw_in(&home, &["gateway", "install", "--print", "--token", "abc"]);
    assert_eq!(rc, 78, "{err}");
    assert!(err.contains("--token-file"), "{err}");
    let (rc, _, err) = claw_in(&home, &["gateway", "install", "--print", "--bogus"]);
    assert_eq!(rc, 78, "{err}");
    assert!(err.contains("--bogus"), "{err}");
    let (rc, plist, _) = claw_in(
        &home,
        &[
            "gateway", "install", "--print", "--format", "launchd", "--tunnel",
        ],
    );
    assert_eq!(rc, 0);
    assert!(plist.contains("<string>--tunnel</string>"), "{plist}");
}

/// A mistyped `--home` is refused with exit 66 and creates nothing, where it used to make a new,
/// empty store (and `pair` a new gateway identity); the verbs that make a home still do.
#[test]
fn a_home_that_does_not_exist_is_refused_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("typo");
    for args in [
        &["devices", "list"][..],
        &["devices", "revoke", "0123456789abcdef"][..],
        &["pair"][..],
        &["doctor"][..],
        &["health"][..],
        &["gateway", "audit"][..],
        &["tunnel", "up"][..],
    ] {
        let (rc, _, err) = claw_in(&typo, args);
        assert_eq!(rc, 66, "{args:?}: {err}");
        assert!(err.contains("no claw home at"), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    let (rc, _, _) = claw_in(&typo, &["gateway", "status"]);
    assert_eq!(rc, 3, "status of a never-used home: not running");
    let (rc, _, _) = claw_in(&typo, &["completions", "fish"]);
    assert_eq!(rc, 0);
}

/// `Daemon::start` runs the gateway in-process: it writes the runtime file with its own
/// addresses, holds the home (a second daemon is refused as locked, and so is the binary with
/// exit 75), serves the admin socket to the CLI, and `shutdown` + `join` remove the runtime file
/// and free the home for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_daemon_holds_the_home_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let g = InProcess::start_in(&home, |_| {}).await;
    let rt = claw_gateway::runtime_file::RuntimeFile::read(&claw_gateway::home::Home::new(&home))
        .unwrap()
        .expect("runtime file written");
    assert_eq!(rt.url, g.url);
    assert_eq!(rt.pid, std::process::id());
    let again = claw::daemon::Daemon::start(claw::daemon::DaemonConfig::loopback(
        claw_gateway::home::Home::new(&home),
    ))
    .await;
    assert!(
        matches!(again, Err(claw::daemon::DaemonError::Locked { .. })),
        "{again:?}"
    );
    let (code, _, err) = g.claw(&["gateway", "run", "--port", "0"]);
    assert_eq!(code, 75, "{err}");
    let (code, out, err) = g.claw(&["gateway", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["running"], true, "{out}");
    g.stop().await;
    assert!(!home.join("gateway.json").exists(), "runtime file removed");
    let g = InProcess::start_in(&home, |_| {}).await;
    g.stop().await;
}
