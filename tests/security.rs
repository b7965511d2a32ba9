//! Security properties of the real binary, each with a test:
//! - only the tunnel (UDP) and SSH (TCP) listeners ever face anything but loopback, under every
//!   flag combination (read from the gateway process's own sockets in /proc);
//! - no secret (shared token, device tokens, pairing code, private keys, the device-token root)
//!   appears in any process's output, with `RUST_LOG=trace` everywhere;
//! - every file claw creates in a gateway home and a device home is created 0600 and every
//!   directory 0700 — checked at the system call (`strace`), so there is no window where one is
//!   wider — and is still so afterwards;
//! - the admin socket refuses a different uid (a throwaway user; needs root).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use claw_gateway::auth::device_key::DeviceKey;
use common::temp_user::TempUser;
use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Listeners

/// One socket of a process, from /proc/PID/net/*.
#[derive(Debug, Clone)]
struct Sock {
    proto: &'static str,
    local: SocketAddr,
    listening: bool,
}

/// The inodes of the sockets `pid` holds open.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(l) = std::fs::read_link(e.path()) {
            let l = l.to_string_lossy().into_owned();
            if let Some(n) = l.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                out.insert(n.parse().unwrap());
            }
        }
    }
    out
}

fn parse_addr(hex: &str) -> SocketAddr {
    let (ip, port) = hex.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let ip = if ip.len() == 8 {
        // One little-endian u32.
        IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).unwrap().swap_bytes(),
        ))
    } else {
        // Four little-endian u32 words.
        let mut b = [0u8; 16];
        for w in 0..4 {
            let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16).unwrap();
            b[w * 4..w * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(b))
    };
    SocketAddr::new(ip, port)
}

/// Every TCP/UDP socket (v4 and v6) the process `pid` has open.
fn sockets_of(pid: u32) -> Vec<Sock> {
    let inodes = socket_inodes(pid);
    let mut out = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !inodes.contains(&f[9].parse::<u64>().unwrap_or(0)) {
                continue;
            }
            out.push(Sock {
                proto,
                local: parse_addr(f[1]),
                // TCP_LISTEN is 0A; a bound UDP socket is "listening" for our purpose.
                listening: proto.starts_with("udp") || f[3] == "0A",
            });
        }
    }
    out
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn runtime(home: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(home.join("gateway.json")).unwrap()).unwrap()
}

fn runtime_addr(rt: &Value, which: &str) -> Option<SocketAddr> {
    rt[which]["addr"].as_str().map(|a| a.parse().unwrap())
}

#[test]
fn only_the_tunnel_and_ssh_listeners_face_beyond_loopback_under_every_flag_combination() {
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|s| !s.is_empty());
    let mut binds: Vec<Option<&str>> = vec![None, Some("localhost")];
    if v6 {
        binds.push(Some("::1"));
    } else {
        eprintln!("no IPv6 on this machine: --bind ::1 is not tried");
    }
    // Wildcard addresses on purpose: the two remote listeners are the only sockets allowed off
    // loopback. (Nothing is ever sent to a non-loopback address.)
    let remotes: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--tunnel", "0.0.0.0:0"],
        vec!["--ssh", "0.0.0.0:0"],
        vec!["--tunnel", "0.0.0.0:0", "--ssh", "0.0.0.0:0"],
        vec!["--tunnel", "127.0.0.1:0", "--ssh", "127.0.0.1:0"],
    ];
    let mut tried = 0;
    for bind in &binds {
        for remote in &remotes {
            let mut args: Vec<&str> = remote.clone();
            if let Some(b) = bind {
                args.extend(["--bind", b]);
            }
            // (`Gateway::start` always passes --port 0.)
            let g = Gateway::start(&args);
            let pid = g.child.id();
            let rt = runtime(&g.home);
            let tunnel = runtime_addr(&rt, "tunnel");
            let ssh = runtime_addr(&rt, "ssh");
            assert_eq!(tunnel.is_some(), args.contains(&"--tunnel"), "{rt}");
            assert_eq!(ssh.is_some(), args.contains(&"--ssh"), "{rt}");
            let socks = sockets_of(pid);
            let mut ws_listeners = 0;
            for s in &socks {
                if !s.listening {
                    continue;
                }
                let is_ssh = s.proto.starts_with("tcp") && Some(s.local) == ssh;
                let is_tunnel = s.proto.starts_with("udp") && Some(s.local) == tunnel;
                if s.proto.starts_with("tcp") && !is_ssh {
                    ws_listeners += 1;
                }
                assert!(
                    is_loopback(s.local.ip()) || is_ssh || is_tunnel,
                    "{args:?}: {} socket on {} faces beyond loopback and is neither the SSH \
                     ({ssh:?}) nor the tunnel ({tunnel:?}) listener; all sockets: {socks:?}",
                    s.proto,
                    s.local
                );
            }
            assert!(
                ws_listeners >= 1,
                "{args:?}: no WebSocket listener: {socks:?}"
            );
            // The remote listeners exist exactly when asked for, and nothing else is on UDP.
            assert_eq!(
                socks.iter().filter(|s| s.proto.starts_with("udp")).count(),
                usize::from(tunnel.is_some()),
                "{args:?}: {socks:?}"
            );
            if let Some(t) = tunnel {
                assert!(
                    socks
                        .iter()
                        .any(|s| s.proto.starts_with("udp") && s.local == t),
                    "{args:?}: tunnel {t} not among {socks:?}"
                );
            }
            if let Some(a) = ssh {
                assert!(
                    socks
                        .iter()
                        .any(|s| s.listening && s.proto.starts_with("tcp") && s.local == a),
                    "{args:?}: ssh {a} not among {socks:?}"
                );
            }
            tried += 1;
        }
    }
    // And a non-loopback --bind never opens anything (exit 78 before any socket).
    for bad in ["0.0.0.0", "::"] {
        let tmp = tempfile::tempdir().unwrap();
        let (code, _, err) = claw_in(
            &tmp.path().join("h"),
            &["gateway", "run", "--port", "0", "--bind", bad],
        );
        assert_eq!(code, 78, "--bind {bad}: {err}");
    }
    eprintln!("{tried} flag combinations checked");
}

// ---------------------------------------------------------------------------------------------
// Secrets in logs

/// A process whose stdout and stderr go to files.
struct Logged {
    child: Child,
    out: PathBuf,
}

fn spawn_logged(logs: &Path, name: &str, home: &Path, args: &[&str]) -> Logged {
    let out = logs.join(format!("{name}.out"));
    let err = logs.join(format!("{name}.err"));
    let child = Command::new(claw_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(err).unwrap())
        .spawn()
        .unwrap();
    Logged { child, out }
}

impl Logged {
    /// Waits for the `ws://` URL in the ready line.
    fn ready_url(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = std::fs::read_to_string(&self.out).unwrap_or_default();
            if let Some(url) = s.split_whitespace().find(|w| w.starts_with("ws://")) {
                if s.contains('\n') {
                    return url.to_string();
                }
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "exited before ready: {s}"
            );
            assert!(Instant::now() < deadline, "no ready line: {s}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs a claw command with `RUST_LOG=trace`, its output captured into `logs` (stdout too unless
/// `stdout_is_the_secret`: `gateway token --show` and `pair` print a secret by design).
fn run_logged(
    logs: &Path,
    name: &str,
    home: &Path,
    args: &[&str],
    stdout_is_the_secret: bool,
) -> (i32, String) {
    let out = Command::new(claw_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    std::fs::write(logs.join(format!("{name}.err")), &out.stderr).unwrap();
    if !stdout_is_the_secret {
        std::fs::write(logs.join(format!("{name}.out")), &out.stdout).unwrap();
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The ways a secret of raw bytes may be printed.
fn encodings(label: &str, raw: &[u8], out: &mut Vec<(String, String)>) {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    out.push((format!("{label} (hex)"), hex));
    out.push((format!("{label} (base64url)"), URL_SAFE_NO_PAD.encode(raw)));
    out.push((format!("{label} (base64)"), STANDARD_NO_PAD.encode(raw)));
}

/// A token (base64url text) and its raw bytes in other encodings.
fn token_secret(label: &str, token: &str, out: &mut Vec<(String, String)>) {
    out.push((label.to_string(), token.to_string()));
    if let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) {
        encodings(label, &raw, out);
    }
}

fn key_seed(path: &Path) -> Vec<u8> {
    let s = std::fs::read_to_string(path).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim())
        .unwrap()
}

fn device_token(home: &Path) -> (String, u64) {
    let t = claw_tunnel::device::DeviceHome::new(home)
        .token()
        .unwrap()
        .expect("a stored device token");
    (t.token, t.generation)
}

fn roots(home: &Path) -> (u64, Vec<u8>) {
    claw_gateway::store::Store::open_existing(&home.join("state.db"))
        .unwrap()
        .root()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_any_log_even_at_trace_level() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let gw = tmp.path().join("gateway");
    let dev = tmp.path().join("device");
    let mut secrets: Vec<(String, String)> = Vec::new();

    // The gateway, with the tunnel and the SSH forward, tracing everything.
    let mut gateway = spawn_logged(
        &logs,
        "gateway-run",
        &gw,
        &[
            "gateway",
            "run",
            "--port",
            "0",
            "--tunnel",
            "127.0.0.1:0",
            "--ssh",
            "127.0.0.1:0",
            "--auth-fail-delay-ms",
            "0",
        ],
    );
    let url = gateway.ready_url();
    let shared = std::fs::read_to_string(gw.join("gateway.token"))
        .unwrap()
        .trim()
        .to_string();
    token_secret("shared token", &shared, &mut secrets);
    encodings(
        "gateway identity key seed",
        &key_seed(&gw.join("identity.key")),
        &mut secrets,
    );
    let (g1, root1) = roots(&gw);
    assert_eq!(g1, 1);
    encodings("device-token root (generation 1)", &root1, &mut secrets);

    // The shared token and a pairing code, printed on stdout by design (only stderr checked).
    let (code, shown) = run_logged(
        &logs,
        "gateway-token-show",
        &gw,
        &["gateway", "token", "--show"],
        true,
    );
    assert_eq!((code, shown.trim()), (0, shared.as_str()));
    let (code, out) = run_logged(&logs, "pair", &gw, &["pair", "--json", "--no-qr"], true);
    assert_eq!(code, 0, "{out}");
    let uri = serde_json::from_str::<Value>(&out).unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let pairing_code = claw_tunnel::pairing::PairingUri::parse(&uri).unwrap().code;
    let (_, code_secret) = pairing_code.split_once('.').unwrap();
    assert!(code_secret.len() >= 20, "{pairing_code}");
    secrets.push(("pairing code".into(), pairing_code.clone()));
    token_secret("pairing code secret", code_secret, &mut secrets);

    // A device pairs through the tunnel and brings it up.
    let (code, out) = run_logged(&logs, "tunnel-pair", &dev, &["tunnel", "pair", &uri], false);
    assert_eq!(code, 0, "{out}");
    encodings(
        "device identity key seed",
        &key_seed(&dev.join("identity.key")),
        &mut secrets,
    );
    let (t1, _) = device_token(&dev);
    token_secret("device token (tunnel, generation 1)", &t1, &mut secrets);
    let mut up = spawn_logged(
        &logs,
        "tunnel-up",
        &dev,
        &["tunnel", "up", "--listen", "127.0.0.1:0"],
    );
    let tunnel_url = up.ready_url();
    let dev_key =
        claw_gateway::auth::device_key::load_or_create(&dev.join("identity.key")).unwrap();
    let read = ["operator.read"];
    let (_, mut ws) = handshake(
        &tunnel_url,
        &Creds {
            token: Some(&t1),
            device: Some(&dev_key),
            scopes: &read,
        },
    )
    .await
    .hello();
    assert_eq!(call(&mut ws, "health", json!({})).await["ok"], true);

    // Silent pairing on loopback, then device-token connects.
    let k2 = DeviceKey::generate();
    let (hello, _) = handshake(
        &url,
        &Creds {
            token: Some(&shared),
            device: Some(&k2),
            scopes: &read,
        },
    )
    .await
    .hello();
    let t2 = hello["auth"]["deviceToken"].as_str().unwrap().to_string();
    token_secret("device token (silent pairing)", &t2, &mut secrets);
    let _ = handshake(
        &url,
        &Creds {
            token: Some(&t2),
            device: Some(&k2),
            scopes: &read,
        },
    )
    .await
    .hello();

    // Wrong tokens (a typo of a real one is as secret as the real one).
    let mut typo = shared.clone();
    typo.replace_range(0..1, if shared.starts_with('A') { "B" } else { "A" });
    token_secret("mistyped shared token", &typo, &mut secrets);
    let _ = handshake(
        &url,
        &Creds {
            token: Some(&typo),
            scopes: &read,
            ..Default::default()
        },
    )
    .await
    .refused();
    let mut wrong_dev = t2.clone();
    wrong_dev.replace_range(0..1, if t2.starts_with('A') { "B" } else { "A" });
    token_secret("mistyped device token", &wrong_dev, &mut secrets);
    let _ = handshake(
        &url,
        &Creds {
            token: Some(&wrong_dev),
            device: Some(&k2),
            scopes: &read,
        },
    )
    .await
    .refused();

    // Rotation: the tunnel pushes a fresh token to the device; the loopback device re-pairs.
    let (code, out) = run_logged(
        &logs,
        "rotate-token",
        &gw,
        &["devices", "rotate-token", "--force"],
        false,
    );
    assert_eq!(code, 0, "{out}");
    let (g2, root2) = roots(&gw);
    assert_eq!(g2, 2);
    encodings("device-token root (generation 2)", &root2, &mut secrets);
    let deadline = Instant::now() + Duration::from_secs(15);
    let t1b = loop {
        let (t, g) = device_token(&dev);
        if g == 2 {
            break t;
        }
        assert!(Instant::now() < deadline, "no fresh token pushed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    token_secret("device token (pushed after rotation)", &t1b, &mut secrets);
    let (hello, _) = handshake(
        &url,
        &Creds {
            token: Some(&shared),
            device: Some(&k2),
            scopes: &read,
        },
    )
    .await
    .hello();
    let t2b = hello["auth"]["deviceToken"].as_str().unwrap().to_string();
    token_secret(
        "device token (re-paired after rotation)",
        &t2b,
        &mut secrets,
    );
    // The old tunnel token through the tunnel: re-paired with a fresh one in hello-ok.
    let (hello, _) = handshake(
        &tunnel_url,
        &Creds {
            token: Some(&t1),
            device: Some(&dev_key),
            scopes: &read,
        },
    )
    .await
    .hello();
    if let Some(t) = hello["auth"]["deviceToken"].as_str() {
        token_secret(
            "device token (re-paired through the tunnel)",
            t,
            &mut secrets,
        );
    }

    // `claw call` with the home's shared token, and on the device with its own key and token.
    let (code, out) = run_logged(&logs, "call-health", &gw, &["call", "health"], false);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run_logged(
        &logs,
        "call-status-device",
        &dev,
        &["call", "status", "--url", &tunnel_url],
        false,
    );
    assert_eq!(code, 0, "{out}");

    // The SSH forward with the device key exported for OpenSSH.
    let rt = runtime(&gw);
    let ssh_addr: SocketAddr = rt["ssh"]["addr"].as_str().unwrap().parse().unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("{}\n", rt["ssh"]["knownHosts"][0].as_str().unwrap()),
    )
    .unwrap();
    let id_file = dev.join("id_ed25519");
    let (code, out) = run_logged(
        &logs,
        "export-ssh-key",
        &dev,
        &["tunnel", "export-ssh-key", id_file.to_str().unwrap()],
        false,
    );
    assert_eq!(code, 0, "{out}");
    let pem = std::fs::read_to_string(&id_file).unwrap();
    let body: Vec<&str> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    secrets.push(("OpenSSH private key body".into(), body.concat()));
    // The first line is the format header and the public key; every other line is private.
    for (i, l) in body.iter().enumerate().skip(1) {
        if l.len() >= 16 {
            secrets.push((format!("OpenSSH private key line {}", i + 1), l.to_string()));
        }
    }
    if which("ssh") {
        let gw_port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let (mut ssh, local) = ssh_local_forward(ssh_addr.port(), &id_file, &known_hosts, gw_port);
        let fwd = format!("ws://127.0.0.1:{local}");
        let (hello, mut ws) = handshake(
            &fwd,
            &Creds {
                token: None,
                device: Some(&dev_key),
                scopes: &read,
            },
        )
        .await
        .hello();
        if let Some(t) = hello["auth"]["deviceToken"].as_str() {
            token_secret("device token (through SSH)", t, &mut secrets);
        }
        assert_eq!(call(&mut ws, "health", json!({})).await["ok"], true);
        let _ = ssh.kill();
        let _ = ssh.wait();
    } else {
        eprintln!("no `ssh` client: the SSH forward's logs are covered without a session");
    }

    // Revocation, the operator's views, the doctor on both homes.
    let (code, out) = run_logged(
        &logs,
        "revoke",
        &gw,
        &["devices", "revoke", &k2.device_id()],
        false,
    );
    assert_eq!(code, 0, "{out}");
    let _ = handshake(
        &url,
        &Creds {
            token: Some(&t2b),
            device: Some(&k2),
            scopes: &read,
        },
    )
    .await
    .refused();
    for (name, home, args) in [
        ("devices-list", &gw, vec!["devices", "list", "--json"]),
        ("gateway-status", &gw, vec!["gateway", "status", "--json"]),
        (
            "gateway-audit",
            &gw,
            vec!["gateway", "audit", "--limit", "1000", "--json"],
        ),
        (
            "channels-status",
            &gw,
            vec!["channels", "status", "--probe", "--json"],
        ),
        ("doctor-gateway", &gw, vec!["doctor", "--json"]),
        ("doctor-device", &dev, vec!["doctor", "--json"]),
        ("tunnel-status", &dev, vec!["tunnel", "status", "--json"]),
    ] {
        let (code, out) = run_logged(&logs, name, home, &args, false);
        // (The doctor's verdict depends on the machine, e.g. another gateway on port 18789, and
        // the tunnel's status file is refreshed once a second; only their output matters here.)
        let strict = !name.starts_with("doctor") && name != "tunnel-status";
        assert!(code == 0 || !strict, "{name}: exit {code}: {out}");
    }

    // Stop everything; the gateway's and the tunnel's full output is in the logs.
    let _ = up.child.kill();
    let _ = up.child.wait();
    let (code, out) = run_logged(&logs, "gateway-stop", &gw, &["gateway", "stop"], false);
    assert_eq!(code, 0, "{out}");
    let _ = gateway.child.wait();

    // The logs are real trace output, and no secret is in them.
    let gw_err = std::fs::read_to_string(logs.join("gateway-run.err")).unwrap();
    assert!(
        gw_err.contains("TRACE") && gw_err.contains("DEBUG"),
        "RUST_LOG=trace took no effect: {} bytes",
        gw_err.len()
    );
    for (label, s) in &secrets {
        assert!(s.len() >= 16, "{label} is too short to search for");
    }
    let mut leaks = Vec::new();
    let mut scanned = 0usize;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        scanned += text.len();
        for (label, s) in &secrets {
            if let Some(line) = text.lines().find(|l| l.contains(s.as_str())) {
                // Say where, without repeating the secret.
                let line: String = line
                    .replace(s.as_str(), "<SECRET>")
                    .chars()
                    .take(400)
                    .collect();
                leaks.push(format!(
                    "{label} in {}: {line}",
                    f.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    eprintln!(
        "scanned {} log files ({scanned} bytes) for {} secret forms",
        files.len(),
        secrets.len()
    );
    assert!(leaks.is_empty(), "secrets in logs:\n{}", leaks.join("\n"));
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------------------------
// File modes from creation

/// What an strace log says happened to a path.
#[derive(Debug)]
enum Event {
    /// A file, directory or socket created (or an `O_CREAT` open, which creates only when the
    /// file does not exist yet), with the mode it gets.
    Create {
        call: String,
        path: String,
        mode: u32,
    },
    /// `unlink`.
    Remove { path: String },
    /// `rename`.
    Rename { from: String, to: String },
}

/// Parses `strace -f` output: `open`/`openat`/`creat` with `O_CREAT`, `mkdir`, `bind` of a Unix
/// socket path, `unlink` and `rename`. The mode is the one asked for minus the umask; for `bind`
/// it is the socket's own mode (set by an `fchmod` on its fd before `bind`, else 0777) minus the
/// umask.
fn events(trace: &str) -> Vec<Event> {
    fn quoted(s: &str) -> Vec<String> {
        s.split('"')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, p)| p.to_string())
            .collect()
    }
    fn octal(p: &str) -> Option<u32> {
        let digits: String = p.trim().chars().take_while(|c| c.is_digit(8)).collect();
        (digits.starts_with('0') && digits.len() > 1)
            .then(|| u32::from_str_radix(&digits, 8).ok())
            .flatten()
    }
    /// The mode argument: the first octal number after the last quoted string.
    fn mode_arg(args: &str) -> Option<u32> {
        let tail = args.rsplit('"').next()?;
        tail.split(',').find_map(octal)
    }
    let mut umask = 0o022u32;
    // Modes set with fchmod, by fd (threads share the fd table).
    let mut fd_mode: HashMap<String, u32> = HashMap::new();
    let mut out = Vec::new();
    for line in trace.lines() {
        // "<tid> <call>(args) = ret"
        let Some((_, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some((call, args)) = rest.split_once('(') else {
            continue;
        };
        let failed = rest.contains(" = -1 ");
        if failed {
            continue;
        }
        match call {
            "umask" => {
                if let Some(m) = octal(args) {
                    umask = m;
                }
            }
            "fchmod" => {
                let mut p = args.split(',');
                let fd = p.next().unwrap_or("").trim().to_string();
                if let Some(m) = p.next().and_then(octal) {
                    fd_mode.insert(fd, m);
                }
            }
            "open" | "openat" | "creat" if call == "creat" || args.contains("O_CREAT") => {
                if let (Some(path), Some(mode)) = (quoted(args).into_iter().next(), mode_arg(args))
                {
                    out.push(Event::Create {
                        call: call.into(),
                        path,
                        mode: mode & !umask,
                    });
                }
            }
            "mkdir" | "mkdirat" => {
                if let (Some(path), Some(mode)) = (quoted(args).into_iter().next(), mode_arg(args))
                {
                    out.push(Event::Create {
                        call: call.into(),
                        path,
                        mode: mode & !umask,
                    });
                }
            }
            "bind" if args.contains("AF_UNIX") => {
                let fd = args.split(',').next().unwrap_or("").trim().to_string();
                if let Some(path) = quoted(args).into_iter().next() {
                    let base = fd_mode.get(&fd).copied().unwrap_or(0o777);
                    out.push(Event::Create {
                        call: call.into(),
                        path,
                        mode: base & !umask,
                    });
                }
            }
            "unlink" | "unlinkat" | "rmdir" => {
                if let Some(path) = quoted(args).into_iter().next() {
                    out.push(Event::Remove { path });
                }
            }
            "rename" | "renameat" | "renameat2" => {
                let q = quoted(args);
                if q.len() >= 2 {
                    out.push(Event::Rename {
                        from: q[0].clone(),
                        to: q[1].clone(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Runs `claw args…` under strace, appending its trace to `trace`; returns the child (running).
fn straced(trace: &Path, home: &Path, args: &[&str], stdout: Stdio) -> Child {
    Command::new("strace")
        .args(["-f", "-qq", "-s", "4096", "-o"])
        .arg(trace)
        .args([
            "-e",
            "trace=open,openat,creat,mkdir,mkdirat,bind,fchmod,umask,unlink,unlinkat,rmdir,rename,renameat,renameat2",
            claw_bin(),
            "--home",
        ])
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn straced_run(trace: &Path, home: &Path, args: &[&str]) -> String {
    let out = straced(trace, home, args, Stdio::piped())
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "claw {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_file_is_created_0600_and_every_directory_0700_with_no_wider_window() {
    if !which("strace") {
        let msg = "strace is not installed (apt-get install strace; .ci/run installs it): \
                   the creation modes cannot be checked at the system call";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let gw = tmp.path().join("gateway");
    let dev = tmp.path().join("device");
    let traces = tmp.path().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    let mut n = 0;
    let mut next = || {
        n += 1;
        traces.join(format!("{n}.strace"))
    };

    // The gateway home: everything `gateway run --tunnel --ssh` creates, under strace.
    let t = next();
    let mut child = straced(
        &t,
        &gw,
        &[
            "gateway",
            "run",
            "--port",
            "0",
            "--tunnel",
            "127.0.0.1:0",
            "--ssh",
            "127.0.0.1:0",
        ],
        Stdio::piped(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("ws://"), "no ready line: {line}");
    let uri = straced_run(&next(), &gw, &["pair", "--json", "--no-qr"]);
    let uri = serde_json::from_str::<Value>(&uri).unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string();

    // The device home: pair, bring the tunnel up (tunnel-status.json), export the SSH key.
    straced_run(&next(), &dev, &["tunnel", "pair", &uri]);
    let t_up = next();
    let mut up = straced(
        &t_up,
        &dev,
        &["tunnel", "up", "--listen", "127.0.0.1:0"],
        Stdio::null(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dev.join("tunnel-status.json").exists() {
        assert!(Instant::now() < deadline, "tunnel up wrote no status");
        std::thread::sleep(Duration::from_millis(25));
    }
    // A rotation makes the tunnel rewrite device-token.json.
    straced_run(&next(), &gw, &["devices", "rotate-token", "--force"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while device_token(&dev).1 != 2 {
        assert!(Instant::now() < deadline, "no fresh token pushed");
        std::thread::sleep(Duration::from_millis(25));
    }
    straced_run(
        &next(),
        &dev,
        &[
            "tunnel",
            "export-ssh-key",
            dev.join("id_ed25519").to_str().unwrap(),
        ],
    );
    // Stop the tunnel and the gateway (SIGTERM to claw itself, so it cleans up normally).
    for (c, pidfile) in [(&mut up, None), (&mut child, Some(gw.join("gateway.json")))] {
        let pid = match pidfile {
            Some(p) => runtime(p.parent().unwrap())["pid"].as_u64().unwrap() as i32,
            None => {
                let v: Value = serde_json::from_str(
                    &std::fs::read_to_string(dev.join("tunnel-status.json")).unwrap(),
                )
                .unwrap();
                v["pid"].as_u64().unwrap() as i32
            }
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The gateway again, as it is most often started: on an existing home.
    let t = next();
    let mut again = straced(&t, &gw, &["gateway", "run", "--port", "0"], Stdio::piped());
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(again.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("ws://"), "no ready line: {line}");
    // Check the running gateway's files before it removes them on exit.
    let mut after: BTreeMap<String, u32> = BTreeMap::new();
    for home in [&gw, &dev] {
        after.insert(home.display().to_string(), mode_of(home));
        for e in std::fs::read_dir(home).unwrap() {
            let p = e.unwrap().path();
            after.insert(p.display().to_string(), mode_of(&p));
        }
    }
    let pid = runtime(&gw)["pid"].as_u64().unwrap() as i32;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = again.wait();

    // Every object created inside the homes (or the homes themselves), by any claw process, in
    // the order the processes ran.
    let ours = |p: &str| {
        [&gw, &dev]
            .iter()
            .any(|h| Path::new(p).starts_with(h.as_path()))
    };
    let mut exists: BTreeSet<String> = BTreeSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut wide = Vec::new();
    for i in 1..=n {
        let text = std::fs::read_to_string(traces.join(format!("{i}.strace"))).unwrap();
        for e in events(&text) {
            match e {
                Event::Create { call, path, mode } if ours(&path) => {
                    // An O_CREAT open of a file that exists creates nothing (SQLite reopens
                    // state.db asking 0644 after claw created it 0600).
                    if !exists.insert(path.clone()) {
                        continue;
                    }
                    let limit = if call.starts_with("mkdir") {
                        0o700
                    } else {
                        0o600
                    };
                    if mode & !limit != 0 {
                        wide.push(format!("{call} {path} with mode {mode:04o}"));
                    }
                    let name = Path::new(&path)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    // NAME.PID.claw-tmp: the temporary file of an atomic write of NAME.
                    let name = match name.strip_suffix(".claw-tmp") {
                        Some(s) => s
                            .rsplit_once('.')
                            .map(|(n, _)| n.to_string())
                            .unwrap_or(name),
                        None => name,
                    };
                    names.insert(name);
                }
                Event::Remove { path } => {
                    exists.remove(&path);
                }
                Event::Rename { from, to } => {
                    exists.remove(&from);
                    exists.insert(to);
                }
                _ => {}
            }
        }
    }
    eprintln!("created under strace: {names:?}");
    for want in [
        "gateway",
        "device",
        "identity.key",
        "gateway.token",
        "gateway.json",
        "gateway.lock",
        "state.db",
        "state.db-wal",
        "state.db-shm",
        "admin.sock",
        "tunnel.json",
        "device-token.json",
        "tunnel-status.json",
        "id_ed25519",
    ] {
        assert!(
            names.contains(want),
            "{want} was not seen being created: {names:?}"
        );
    }
    assert!(
        wide.is_empty(),
        "created wider than 0600/0700:\n{}",
        wide.join("\n")
    );
    // And afterwards: every file 0600, every directory 0700.
    for (p, m) in &after {
        let is_dir = Path::new(p).is_dir();
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{p} is {m:04o}");
    }
    assert!(after.keys().any(|p| p.ends_with("admin.sock")), "{after:?}");
}

// ---------------------------------------------------------------------------------------------
// Admin socket and other uids

/// Run by `the_admin_socket_refuses_another_uid` as the throwaway user (this test binary,
/// re-executed): connects to the socket in `CLAW_TEST_ADMIN_SOCK`, sends a request and reports
/// what happened on stdout.
#[test]
#[ignore = "helper: run as another uid by the_admin_socket_refuses_another_uid"]
fn admin_socket_client_helper() {
    use std::io::{Read, Write};
    let Some(path) = std::env::var_os("CLAW_TEST_ADMIN_SOCK") else {
        return;
    };
    println!("HELPER uid={}", nix::unistd::getuid());
    let mut s = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            println!("HELPER connect failed: {e}");
            return;
        }
    };
    println!("HELPER connected");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(
        b"{\"type\":\"req\",\"id\":\"1\",\"method\":\"gateway.token.show\",\"params\":{}}\n",
    );
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) if buf.is_empty() => println!("HELPER closed without an answer"),
        Ok(_) => println!("HELPER answered: {}", String::from_utf8_lossy(&buf)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            println!("HELPER closed without an answer (reset)")
        }
        Err(e) => println!("HELPER read failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_socket_refuses_another_uid() {
    use std::os::unix::process::CommandExt;
    let Some(user) = TempUser::create("the_admin_socket_refuses_another_uid") else {
        return;
    };
    let (name, uid, gid) = (user.name.clone(), user.uid, user.gid);

    let g = Gateway::start(&[]);
    let sock = g.home.join("admin.sock");
    // Let the other user reach the socket for this test only: traverse (not list) the home and
    // its parent, and a socket anyone may connect to. Restored below.
    let parent = g.home.parent().unwrap().to_path_buf();
    let saved: Vec<(PathBuf, u32)> = [&parent, &g.home, &sock]
        .iter()
        .map(|p| (p.to_path_buf(), mode_of(p)))
        .collect();
    let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    set(&parent, 0o711).unwrap();
    set(&g.home, 0o711).unwrap();
    set(&sock, 0o666).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "admin_socket_client_helper",
            "--ignored",
            "--nocapture",
        ])
        .env("CLAW_TEST_ADMIN_SOCK", &sock)
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .output()
        .unwrap();
    for (p, m) in &saved {
        set(p, *m).unwrap();
    }
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains(&format!("HELPER uid={uid}")),
        "the helper did not run as {name}: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("HELPER connected"),
        "the other uid must reach the socket (so the refusal is the gateway's uid check): {report}"
    );
    assert!(
        report.contains("HELPER closed without an answer"),
        "the gateway answered another uid: {report}"
    );
    // The same uid is served, on the same socket.
    {
        use std::io::{BufRead, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"{\"type\":\"req\",\"id\":\"1\",\"method\":\"health\",\"params\":{}}\n")
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], true, "{line}");
    }
    let (code, shown, err) = g.claw(&["gateway", "token", "--show"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(shown.trim(), g.token());
    let (code, _, err) = g.claw(&["gateway", "status"]);
    assert_eq!(code, 0, "{err}");
}
