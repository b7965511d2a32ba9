//! Test harness: runs the real `claw` binary on an ephemeral loopback port in a temporary home
//! and talks to it with a real WebSocket client.
#![allow(dead_code)]

pub mod netns;
pub mod temp_user;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use claw_gateway::auth::device_key::DeviceKey;
use claw_gateway::protocol::connect::parse_connect;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The claw binary under test.
pub fn claw_bin() -> &'static str {
    env!("CARGO_BIN_EXE_claw")
}

/// A running gateway; killed on drop.
pub struct Gateway {
    pub child: Child,
    pub url: String,
    pub port: u16,
    pub home: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Starts a gateway in a fresh home with fast test timings and no failure delay.
    pub fn start(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let mut g = Self::start_in(&home, extra);
        g._tmp = Some(tmp);
        g
    }

    /// Starts a gateway on an existing home.
    pub fn start_in(home: &Path, extra: &[&str]) -> Self {
        Self::start_in_env(home, extra, &[])
    }

    /// Starts a gateway on an existing home with extra environment variables.
    pub fn start_in_env(home: &Path, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Self {
        Self::start_in_cmd(home, extra, |c| {
            c.envs(env.iter().copied());
        })
    }

    /// Starts a gateway on an existing home, `customize` adjusting the command first.
    pub fn start_in_cmd(home: &Path, extra: &[&str], customize: impl FnOnce(&mut Command)) -> Self {
        let mut args: Vec<String> = vec![
            "--home".into(),
            home.display().to_string(),
            "gateway".into(),
            "run".into(),
            "--port".into(),
            "0".into(),
        ];
        if !extra.contains(&"--auth-fail-delay-ms") {
            args.extend(["--auth-fail-delay-ms".into(), "0".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(claw_bin());
        cmd.args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        customize(&mut cmd);
        let mut child = cmd.spawn().expect("spawn claw");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .unwrap_or_else(|| panic!("no ready line, got {line:?}"))
            .to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Self {
            child,
            url,
            port,
            home: home.to_path_buf(),
            _tmp: None,
        }
    }

    /// The generated shared token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.home.join("gateway.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Runs `claw --home H args…` and returns (status, stdout, stderr).
    pub fn claw(&self, args: &[&str]) -> (i32, String, String) {
        claw_in(&self.home, args)
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `claw --home H args…`.
pub fn claw_in(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(claw_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket and returns it with the challenge payload.
pub async fn open(url: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    let ch = recv(&mut ws).await.expect("challenge");
    assert_eq!(ch["event"], "connect.challenge");
    (ws, ch["payload"].clone())
}

/// Next JSON text frame (skipping pings), or the close as `Err((code, reason))`.
pub async fn recv(ws: &mut Ws) -> Result<Value, (u16, String)> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a frame");
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(Some(f)))) => return Err((f.code.into(), f.reason.to_string())),
            Some(Ok(Message::Close(None))) | None => return Err((1005, String::new())),
            Some(Ok(_)) => continue,
            Some(Err(_)) => return Err((1006, String::new())),
        }
    }
}

/// Sends a JSON frame.
pub async fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// What a client presents.
#[derive(Clone, Default)]
pub struct Creds<'a> {
    pub token: Option<&'a str>,
    pub device: Option<&'a DeviceKey>,
    pub scopes: &'a [&'a str],
}

/// The connect params a client sends (signed when a device is given).
pub fn connect_params(c: &Creds<'_>, challenge: &Value) -> Value {
    let mut p = json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id":"cli","version":"test","platform":"linux","deviceFamily":"Linux","mode":"cli"},
        "caps": [], "role": "operator", "scopes": c.scopes,
    });
    if let Some(t) = c.token {
        p["auth"] = json!({"token": t});
    }
    if let Some(k) = c.device {
        let parsed = parse_connect(&p).unwrap();
        let d = k.prove(
            &parsed,
            challenge["nonce"].as_str().unwrap(),
            challenge["ts"].as_u64().unwrap(),
        );
        p["device"] = json!({"id": d.id, "publicKey": d.public_key, "signature": d.signature, "signedAt": d.signed_at, "nonce": d.nonce});
    }
    p
}

/// The outcome of a handshake: hello-ok payload and the open socket, or the error and the close.
pub enum Outcome {
    Ok(Value, Box<Ws>),
    Refused { error: Value, close: (u16, String) },
}

impl Outcome {
    pub fn hello(self) -> (Value, Ws) {
        match self {
            Outcome::Ok(h, ws) => (h, *ws),
            Outcome::Refused { error, close } => panic!("refused: {error} {close:?}"),
        }
    }
    pub fn refused(self) -> (Value, (u16, String)) {
        match self {
            Outcome::Refused { error, close } => (error, close),
            Outcome::Ok(h, _) => panic!("accepted: {h}"),
        }
    }
}

/// Connects and sends `connect`.
pub async fn handshake(url: &str, c: &Creds<'_>) -> Outcome {
    let (mut ws, ch) = open(url).await;
    send(
        &mut ws,
        &json!({"type":"req","id":"c1","method":"connect","params": connect_params(c, &ch)}),
    )
    .await;
    let res = recv(&mut ws).await.expect("connect response");
    assert_eq!(res["id"], "c1");
    if res["ok"] == true {
        return Outcome::Ok(res["payload"].clone(), Box::new(ws));
    }
    let close = recv(&mut ws).await.expect_err("close after a refusal");
    Outcome::Refused {
        error: res["error"].clone(),
        close,
    }
}

/// Calls a method on an open session.
pub async fn call(ws: &mut Ws, method: &str, params: Value) -> Value {
    let id = format!("r-{method}-{}", uuid_like());
    send(
        ws,
        &json!({"type":"req","id":id,"method":method,"params":params}),
    )
    .await;
    loop {
        let v = recv(ws)
            .await
            .unwrap_or_else(|c| panic!("closed during {method}: {c:?}"));
        if v["type"] == "res" && v["id"] == id.as_str() {
            return v;
        }
    }
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident set size of a process, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A TCP connection to `127.0.0.1:port` from the loopback source address `src` (so per-source
/// limits and ephemeral ports are spread over many addresses of 127.0.0.0/8).
pub async fn tcp_from(src: std::net::Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(std::net::SocketAddr::from((src, 0)))?;
    s.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// The `p` quantile (0.0–1.0, nearest rank) of `v`; sorts `v`.
pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

/// Raises this process's soft open-file limit towards `want` (capped by the hard limit), so that
/// many client sockets fit; children (the gateway) inherit it. Returns the new soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= want {
        return soft;
    }
    let new = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard).unwrap();
    new
}

/// `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:target` through claw's SSH server on 127.0.0.1:`port`,
/// waiting (up to 30 s) until LOCAL accepts; returns the running `ssh` and LOCAL.
///
/// The local address is explicit: with a bare `-L LOCAL:…` OpenSSH binds both 127.0.0.1 and
/// ::1 and keeps running when only one bind fails, so a LOCAL taken between `free_port` and
/// ssh's bind (by any other socket on a busy machine) left a forward on ::1 that a 127.0.0.1
/// probe never reached. With the address given, a taken port makes ssh exit
/// (`ExitOnForwardFailure`), and another port is tried.
pub fn ssh_local_forward(port: u16, key: &Path, known_hosts: &Path, target: u16) -> (Child, u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for _ in 0..5 {
        let local = free_port();
        let spec = format!("127.0.0.1:{local}:127.0.0.1:{target}");
        let mut child = ssh_client(
            port,
            key,
            known_hosts,
            &["-N", "-L", &spec, "claw@127.0.0.1"],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", local)).is_ok() {
                return (child, local);
            }
            if let Ok(Some(st)) = child.try_wait() {
                let out = child.wait_with_output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                if err.contains("Address already in use") {
                    break; // another socket took LOCAL first: try another port
                }
                panic!("ssh exited {st}: {err}");
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "ssh -L never listened: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    panic!("ssh -L: five local ports in a row were taken");
}

/// The stock OpenSSH client for claw's SSH server on 127.0.0.1:`port`: identity `key` only,
/// strict host-key checking against `known_hosts`, batch mode, no config file; `extra` follows
/// (e.g. `-N -L L:127.0.0.1:G claw@127.0.0.1`). stdin null, stdout and stderr piped (callers
/// may redirect them).
pub fn ssh_client(port: u16, key: &Path, known_hosts: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-p", &port.to_string(), "-i", key.to_str().unwrap()])
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("UserKnownHostsFile={}", known_hosts.display()),
        ])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ExitOnForwardFailure=yes",
        ])
        .args(["-o", "ConnectTimeout=10", "-F", "/dev/null"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A gateway started in this process with [`claw::daemon::Daemon::start`]: no child process,
/// no ready line to scrape; fast test timings (no wrong-secret delay). Stopped on drop. Tests
/// that also run the `claw` binary against it use a multi-thread runtime (the subprocess's
/// admin-socket call needs the daemon to keep running while the test thread waits).
pub struct InProcess {
    pub daemon: Option<claw::daemon::Daemon>,
    pub url: String,
    pub port: u16,
    pub home: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl InProcess {
    /// Starts a loopback gateway in a fresh home.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts one in a fresh home, `customize` adjusting the configuration first.
    pub async fn start_with(customize: impl FnOnce(&mut claw::daemon::DaemonConfig)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut g = Self::start_in(&tmp.path().join("home"), customize).await;
        g._tmp = Some(tmp);
        g
    }

    /// Starts one on `home`.
    pub async fn start_in(
        home: &Path,
        customize: impl FnOnce(&mut claw::daemon::DaemonConfig),
    ) -> Self {
        let mut cfg = claw::daemon::DaemonConfig::loopback(claw_gateway::home::Home::new(home));
        cfg.gateway.auth_fail_delay = Duration::ZERO;
        customize(&mut cfg);
        let daemon = claw::daemon::Daemon::start(cfg)
            .await
            .expect("daemon starts");
        Self {
            url: daemon.url.clone(),
            port: daemon.addrs[0].port(),
            home: home.to_path_buf(),
            daemon: Some(daemon),
            _tmp: None,
        }
    }

    /// The generated shared token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.home.join("gateway.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Runs `claw --home H args…` (the binary, against this gateway's admin socket).
    pub fn claw(&self, args: &[&str]) -> (i32, String, String) {
        claw_in(&self.home, args)
    }

    /// The shared state.
    pub fn state(&self) -> &std::sync::Arc<claw_gateway::state::GatewayState> {
        self.daemon.as_ref().unwrap().state()
    }

    /// Stops it and waits until it stopped (runtime file removed, lock released).
    pub async fn stop(mut self) {
        let d = self.daemon.take().unwrap();
        d.shutdown();
        tokio::time::timeout(Duration::from_secs(30), d.join())
            .await
            .expect("the daemon stops")
            .expect("the daemon stops cleanly");
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(d) = &self.daemon {
            d.shutdown();
        }
    }
}
