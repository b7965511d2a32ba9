//! Attacks by another local user, reproduced as the attack review ran them: a throwaway uid
//! (created with `useradd`, removed on drop; the tests need root and say SKIPPED otherwise)
//! runs this test binary again as a helper — a squatter on the gateway's freed port — or plants
//! files in a home it prepared, and root's `claw` must neither hand it a secret nor write
//! through its symlinks.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::temp_user::TempUser;
use common::{claw_bin, claw_in, Gateway};

// ---------------------------------------------------------------------------------------------
// Port squatting

/// Run as the throwaway user by `a_squatter_on_the_gateway_port_receives_no_token`: listens on
/// `CLAW_TEST_SQUAT_PORT` and plays gateway — sends a `connect.challenge` without any proof and
/// prints every frame a client sends (a `connect` would carry the token). Bounded: 90 s.
#[test]
#[ignore = "helper: run as another uid by a_squatter_on_the_gateway_port_receives_no_token"]
fn squatter_helper() {
    use tokio_tungstenite::tungstenite::{accept, Message};
    let Ok(port) = std::env::var("CLAW_TEST_SQUAT_PORT") else {
        return;
    };
    let listener = match std::net::TcpListener::bind(format!("127.0.0.1:{port}")) {
        Ok(l) => l,
        Err(e) => {
            println!("SQUAT bind failed: {e}");
            return;
        }
    };
    println!("SQUAT listening uid={}", nix::unistd::getuid());
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        println!("SQUAT accepted");
        let Ok(mut ws) = accept(stream) else {
            println!("SQUAT not a websocket");
            continue;
        };
        let challenge =
            r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"squat","ts":1}}"#;
        if ws.send(Message::Text(challenge.into())).is_err() {
            continue;
        }
        match ws.read() {
            Ok(Message::Text(t)) => println!("SQUAT got: {}", t.replace('\n', " ")),
            Ok(other) => println!("SQUAT got a non-text frame: {other:?}"),
            Err(e) => println!("SQUAT got nothing: {e}"),
        }
    }
}

/// The squatter process and everything it printed so far.
struct Squatter {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Squatter {
    fn start(user: &TempUser, port: u16) -> Self {
        let mut child = user
            .command(std::env::current_exe().unwrap())
            .args(["--exact", "squatter_helper", "--ignored", "--nocapture"])
            .env("CLAW_TEST_SQUAT_PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let s = Self { child, out };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = s.output();
            if text.contains("SQUAT listening") {
                assert!(text.contains(&format!("uid={}", user.uid)), "{text}");
                return s;
            }
            assert!(!text.contains("SQUAT bind failed"), "{text}");
            assert!(
                Instant::now() < deadline,
                "the squatter never listened: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every way root's CLI reaches "the gateway on this home" or an explicit URL, against the
/// squatter on `port`: none may send a frame (so no token) to it.
fn clients_against_the_squatter(home: &Path, port: u16, token: &str) -> Vec<String> {
    let url = format!("ws://127.0.0.1:{port}");
    let mut seen = Vec::new();
    for args in [
        vec!["health"],
        vec!["call", "status"],
        vec!["call", "health", "--url", &url],
        vec!["call", "health", "--url", &url, "--token", token],
    ] {
        let (code, out, err) = claw_in(home, &args);
        assert_ne!(
            code, 0,
            "claw {args:?} succeeded against a squatter: {out}{err}"
        );
        seen.push(format!("claw {args:?} -> {code}: {}", err.trim()));
    }
    seen
}

#[test]
fn a_squatter_on_the_gateway_port_receives_no_token() {
    let Some(user) = TempUser::create("a_squatter_on_the_gateway_port_receives_no_token") else {
        return;
    };
    let mut g = Gateway::start(&[]);
    let (home, port, token) = (g.home.clone(), g.port, g.token());
    // kill -9: `gateway.json` (and the lock file) stay behind, naming the freed port.
    g.kill9();
    assert!(home.join("gateway.json").exists());
    let squat = Squatter::start(&user, port);
    let seen = clients_against_the_squatter(&home, port, &token);
    let report = squat.output();
    assert!(
        !report.contains(&token),
        "the squatter on a stale gateway.json's port received the shared token:\n{report}\n{}",
        seen.join("\n")
    );
    let (code, _, err) = claw_in(&home, &["health"]);
    assert_eq!(code, 69, "no gateway runs on the home: exit 69 ({err})");
    assert!(err.contains("no claw gateway runs"), "{err}");
    let (_, _, err) = claw_in(
        &home,
        &["call", "health", "--url", &format!("ws://127.0.0.1:{port}")],
    );
    assert!(
        err.contains("did not prove it is the expected gateway"),
        "{err}"
    );
    drop(squat);

    // A clean stop: the gateway comes back on the same home and port, stops, and the squatter
    // takes the port again.
    let mut child = Command::new(claw_bin())
        .arg("--home")
        .arg(&home)
        .args(["gateway", "run", "--port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.contains(&format!("127.0.0.1:{port}")), "{ready}");
    let url = format!("ws://127.0.0.1:{port}");
    let (code, _, err) = claw_in(&home, &["health"]);
    assert_eq!(
        code, 0,
        "the real gateway is served over the admin socket: {err}"
    );
    let (code, _, err) = claw_in(&home, &["call", "health", "--url", &url]);
    assert_eq!(code, 0, "the real gateway proves itself: {err}");
    let (code, _, err) = claw_in(&home, &["gateway", "stop"]);
    assert_eq!(code, 0, "{err}");
    let _ = child.wait();
    let squat = Squatter::start(&user, port);
    let mut seen2 = clients_against_the_squatter(&home, port, &token);
    seen2.extend(seen);
    let report = squat.output();
    assert!(
        report.contains("SQUAT accepted"),
        "the clients given --url did reach the squatter: {report}"
    );
    assert!(
        !report.contains(&token),
        "the squatter received the shared token:\n{report}\n{}",
        seen2.join("\n")
    );
    assert!(
        !report.contains("SQUAT got: "),
        "a client sent the squatter a frame:\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile homes

/// Runs `claw --home H args` as root with a deadline; returns (code, stderr).
fn claw_bounded(home: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(claw_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("claw {args:?} on a hostile home is still running: it accepted the home");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_home_prepared_by_another_user_is_refused_and_nothing_is_written_through_it() {
    let Some(user) = TempUser::create(
        "a_home_prepared_by_another_user_is_refused_and_nothing_is_written_through_it",
    ) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = t.path().join("root-only");
    std::fs::write(&victim, "root-only secret\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log_target = t.path().join("root-log");
    let home = t.path().join("home");
    let link = t.path().join("link");
    // The attacker prepares the home the way the review did.
    user.sh(&format!(
        "mkdir -m 700 {h} && ln -s {v} {h}/gateway.lock && ln -s {l} {h}/gateway.log && \
         printf planted-token > {h}/gateway.token && chmod 600 {h}/gateway.token && \
         ln -s {h} {link}",
        h = home.display(),
        v = victim.display(),
        l = log_target.display(),
        link = link.display()
    ));
    for args in [
        &["gateway", "run", "--port", "0"][..],
        &["gateway", "start", "--port", "0"][..],
        &["devices", "list"][..],
    ] {
        let (code, err) = claw_bounded(&home, args);
        assert_ne!(code, 0, "claw {args:?} accepted the hostile home");
        assert!(
            err.contains(&format!("owned by uid {}", user.uid)),
            "claw {args:?}: the refusal names the owner: {err}"
        );
        let (code, err) = claw_bounded(&link, args);
        assert_ne!(code, 0, "claw {args:?} accepted a symlinked home");
        assert!(err.contains("symlink"), "claw {args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root-only secret\n",
        "the lock symlink's target was written"
    );
    assert!(!log_target.exists(), "the log symlink's target was created");

    // A token file another user owns, or one others can read, is refused.
    let planted = t.path().join("planted-token");
    user.sh(&format!(
        "printf planted > {p} && chmod 600 {p}",
        p = planted.display()
    ));
    let mine = tempfile::tempdir().unwrap();
    let my_home = mine.path().join("home");
    let (code, err) = claw_bounded(
        &my_home,
        &[
            "gateway",
            "run",
            "--port",
            "0",
            "--token-file",
            planted.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains(&format!("owned by uid {}", user.uid)), "{err}");
    let loose = mine.path().join("loose-token");
    std::fs::write(&loose, "loose-token-value\n").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = claw_bounded(
        &my_home,
        &[
            "gateway",
            "run",
            "--port",
            "0",
            "--token-file",
            loose.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("other users can read it"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Secrets in argv, the background log

#[test]
fn a_token_in_argv_is_warned_about_and_stdin_and_the_log_are_private() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    // `--token-file -` reads the pinned token from stdin.
    let mut child = Command::new(claw_bin())
        .arg("--home")
        .arg(&home)
        .args(["gateway", "start", "--port", "0", "--token-file", "-"])
        .env("RUST_LOG", "warn")
        .env_remove("CLAW_GATEWAY_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"stdin-pinned-token-0123456789\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = home.join("gateway.log");
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600,
        "gateway.log is private"
    );
    let rt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("gateway.json")).unwrap()).unwrap();
    let url = rt["url"].as_str().unwrap().to_string();
    // The stdin token is the one served; the argv one warns (once).
    let (code, out, err) = claw_in(
        &home,
        &[
            "call",
            "health",
            "--url",
            &url,
            "--token",
            "stdin-pinned-token-0123456789",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        err.matches("warning: --token on the command line").count(),
        1,
        "{err}"
    );
    let (code, _, err) = claw_in(&home, &["gateway", "stop"]);
    assert_eq!(code, 0, "{err}");
}

// ---------------------------------------------------------------------------------------------
// Half-open request heads

/// EOF, or a reset (the gateway closed a socket with our unread head in its buffer).
fn closed_by_peer(r: std::io::Result<usize>) -> bool {
    match r {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Any local user can open sockets and never finish the HTTP head. They count against
/// `--max-connections` from accept: past the cap a new socket is closed at once (not held until
/// the handshake timeout), and the gateway's descriptors stay bounded.
#[test]
fn half_open_heads_count_against_the_connection_cap() {
    const CAP: usize = 40;
    const OPENED: usize = 70;
    let g = Gateway::start(&[
        "--max-connections",
        &CAP.to_string(),
        "--handshake-timeout",
        "120",
        "--max-preauth",
        "1000",
    ]);
    let pid = g.child.id();
    let base = fd_count(pid);
    let addr = format!("127.0.0.1:{}", g.port);
    let mut held = Vec::new();
    for _ in 0..OPENED {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
        held.push(s);
    }
    // The gateway accepts them (or closes them) as fast as it runs: wait until every socket is
    // either closed by it or counted in its descriptors.
    let deadline = Instant::now() + Duration::from_secs(60);
    let closed = |held: &mut Vec<std::net::TcpStream>| {
        let mut n = 0;
        for s in held.iter_mut() {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            if closed_by_peer(s.read(&mut b)) {
                n += 1;
            }
        }
        n
    };
    let mut n_closed = closed(&mut held);
    while n_closed < OPENED - CAP && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        n_closed = closed(&mut held);
    }
    assert!(
        n_closed >= OPENED - CAP,
        "only {n_closed} of {OPENED} half-open sockets were closed with a cap of {CAP}"
    );
    let fds = fd_count(pid);
    assert!(
        fds <= base + CAP + 5,
        "the gateway holds {fds} descriptors (from {base}) with a cap of {CAP}"
    );
    // One more is closed at once, not kept until the 120 s handshake timeout.
    let mut extra = std::net::TcpStream::connect(&addr).unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\n");
    extra
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut b = [0u8; 64];
    let r = extra.read(&mut b);
    assert!(
        closed_by_peer(
            r.as_ref()
                .map(|n| *n)
                .map_err(|e| std::io::Error::from(e.kind()))
        ),
        "a socket past the cap must be closed by the gateway: {r:?}"
    );
    // Once the half-open sockets go, clients are served again.
    drop(held);
    drop(extra);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, _, err) = g.claw(&["call", "health", "--url", &g.url.clone()]);
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// Terminal escapes and forged log lines

/// A device name is what the operator reads in `claw devices list` before approving. Names with
/// ESC sequences, newlines or bidi overrides are refused by the gateway — from the tunnel's
/// `pair` message and from a WebSocket `connect`'s `client.displayName` — and what is shown is
/// escaped.
#[tokio::test(flavor = "multi_thread")]
async fn device_names_with_escapes_newlines_or_bidi_are_refused() {
    use claw_tunnel::device::DeviceHome;
    use claw_tunnel::pairing::PairingUri;
    use claw_tunnel::quic::client;
    let g = Gateway::start(&["--tunnel", "127.0.0.1:0"]);
    let tmp = tempfile::tempdir().unwrap();
    let hostile = [
        "phone\u{1b}[2J\u{1b}[1;1Happroved",
        "phone\nINFO claw: device approved",
        "\u{202e}enohp-ym",
        "zero\u{200b}width",
    ];
    for (i, name) in hostile.iter().enumerate() {
        let (code, out, err) = g.claw(&["pair", "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let uri = PairingUri::parse(v["uri"].as_str().unwrap()).unwrap();
        let home = tmp.path().join(format!("d{i}"));
        std::fs::create_dir_all(&home).unwrap();
        let r = client::pair(
            &DeviceHome::new(&home),
            &uri,
            Some(name.to_string()),
            |_| {},
        )
        .await;
        let e = r.expect_err(&format!("the gateway paired a device named {name:?}"));
        assert!(
            e.to_string().contains("control or format character"),
            "{name:?}: {e}"
        );
    }
    let (code, out, err) = g.claw(&["devices", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("paired devices: 0"), "{out}");
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{202e}'),
        "{out:?}"
    );

    // The same names as a WebSocket client's displayName: refused before any auth.
    for name in hostile {
        let (mut ws, _) = common::open(&g.url).await;
        let mut p = common::connect_params(&common::Creds::default(), &serde_json::json!({}));
        p["client"]["displayName"] = serde_json::json!(name);
        common::send(
            &mut ws,
            &serde_json::json!({"type":"req","id":"c1","method":"connect","params":p}),
        )
        .await;
        let r = common::recv(&mut ws).await.unwrap();
        assert_eq!(r["ok"], false, "{name:?}: {r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("control or format character"),
            "{name:?}: {r}"
        );
    }
    // Every audit line stays one escaped line.
    let (code, out, err) = g.claw(&["gateway", "audit", "--limit", "200"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{202e}') && !out.contains("\nINFO"),
        "{out:?}"
    );
}

/// A refused SSH forward destination is client-chosen text: a newline in it must not forge a log
/// line (`… approved`) nor an audit row. Real OpenSSH client, `ssh -W` to a hostile host name.
#[test]
fn a_refused_ssh_destination_with_a_newline_is_logged_and_audited_escaped() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let out = Command::new(claw_bin())
        .arg("--home")
        .arg(&home)
        .args(["gateway", "start", "--port", "0", "--ssh", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("gateway.json")).unwrap()).unwrap();
    let ssh_port: u16 = rt["ssh"]["addr"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let known_hosts = t.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("{}\n", rt["ssh"]["knownHosts"][0].as_str().unwrap()),
    )
    .unwrap();
    let dev = t.path().join("dev");
    let key = dev.join("id_ed25519");
    let (code, out, err) = claw_in(
        &dev,
        &[
            "tunnel",
            "export-ssh-key",
            key.to_str().unwrap(),
            "--port",
            &ssh_port.to_string(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let public = out
        .lines()
        .next()
        .unwrap()
        .split("public key: ")
        .nth(1)
        .unwrap()
        .to_string();
    let (code, _, err) = claw_in(&home, &["devices", "add-ssh-key", "laptop", &public]);
    assert_eq!(code, 0, "{err}");

    let forged = "INFO claw_tunnel::ssh: approved everything";
    // Brackets: OpenSSH takes any byte inside them as the host.
    let target = format!("[evil\n{forged}]:80");
    let out = common::ssh_client(
        ssh_port,
        &key,
        &known_hosts,
        &["-W", &target, "claw@127.0.0.1"],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(!out.status.success(), "the forward was allowed");
    let (code, audit, err) = claw_in(&home, &["gateway", "audit", "--limit", "50", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let refused: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "ssh.refused")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        refused.iter().any(|d| d.contains("evil\\u{000a}INFO")),
        "the refusal is audited, escaped: {refused:?} ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(refused.iter().all(|d| !d.contains('\n')), "{refused:?}");
    let (_, text, _) = claw_in(&home, &["gateway", "audit", "--limit", "50"]);
    assert!(!text.lines().any(|l| l.starts_with(forged)), "{text}");
    let (code, _, err) = claw_in(&home, &["gateway", "stop"]);
    assert_eq!(code, 0, "{err}");
    let log = std::fs::read_to_string(home.join("gateway.log")).unwrap();
    assert!(log.contains("ssh: refused"), "the refusal is logged: {log}");
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "a forged log line:\n{log}"
    );
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Out of descriptors (EMFILE), the admin socket's accept loop backs off instead of spinning: a
/// local process that fills the gateway's descriptor table must not also pin a core. The
/// gateway's limit is lowered with `prlimit` so one admin connection exhausts it.
#[test]
fn the_admin_accept_loop_backs_off_when_out_of_descriptors() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let g = Gateway::start(&[]);
    let pid = g.child.id();
    let sock = g.home.join("admin.sock");
    // Room for exactly one more descriptor: the first admin connection takes it, the second
    // waits in the backlog and every accept of it fails with EMFILE.
    let limit = fd_count(pid) + 1;
    let st = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let first = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fd_count(pid) < limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(pid);
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    let wall = window.elapsed().as_secs_f64() * 100.0;
    drop((first, second));
    // A spinning loop burns what it gets of a core (157 of 300 ticks in a run of the old code
    // on a loaded 2-core machine); the back-off leaves it near zero.
    eprintln!("cpu ticks while out of descriptors: {used} of {wall:.0}");
    assert!(
        (used as f64) < wall / 6.0,
        "the gateway burned {used} of {wall:.0} CPU ticks while out of descriptors"
    );
}
