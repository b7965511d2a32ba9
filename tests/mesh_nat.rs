//! The mesh across real NATs: the relay in a public network namespace, the gateway behind NAT A
//! and the device behind NAT B, each a masquerading router namespace (tests/common/netns.rs
//! [`NatLab`]). Real binaries on both sides (`claw relay serve`, `claw gateway run --relay`,
//! `claw tunnel pair` / `claw tunnel up`), iroh-relay's real client for the relay's refusals.
//!
//! Needs root (network namespaces) and `ip` + `nft`; without them each test says why and passes
//! vacuously, as tests/real_paths.rs does.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use claw_mesh::client::{connect, RelayTarget};
use claw_mesh::ticket::DeviceTicket;
use claw_tunnel::identity::Identity;
use common::claw_bin;
use common::netns::{
    non_loopback_listeners, unavailable, Host, NatKind, NatLab, NAT_A_WAN, PUB_ADDR,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A child process; killed on drop (before the lab that holds its namespace is deleted, as
/// long as it is declared after the lab).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `claw --home HOME args…` in `host`'s namespace and returns it with its first stdout
/// line (the ready line).
fn spawn_claw(lab: &NatLab, host: Host, home: &Path, args: &[&str]) -> (Proc, String) {
    let mut child = lab
        .command(host, claw_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn claw in a namespace");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Proc(child), line)
}

/// Runs `claw --home HOME args…` to completion in `host`'s namespace: (status, stdout, stderr).
fn claw_at(lab: &NatLab, host: Host, home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = lab
        .command(host, claw_bin())
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

/// Runs `fut` on a runtime whose thread is inside `host`'s namespace.
fn block_on_in<T: Send>(
    lab: &NatLab,
    host: Host,
    fut: impl std::future::Future<Output = T> + Send,
) -> T {
    lab.run_in(host, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    })
    .expect("run in the namespace")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn public(seed: &[u8; 32]) -> [u8; 32] {
    *claw_mesh::iroh_base::SecretKey::from_bytes(seed)
        .public()
        .as_bytes()
}

fn private_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
}

/// From the public namespace, a datagram to every UDP port and a connection attempt to every
/// TCP port of `addr`: returns what answered (a datagram, an accepted connection, a reset).
async fn answers_from(addr: std::net::Ipv4Addr) -> Vec<String> {
    let mut answered = Vec::new();
    let udp = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
    for port in 1..=u16::MAX {
        // A full send buffer just waits; the datagrams themselves are dropped by NAT A.
        udp.send_to(b"anyone?", (addr, port)).await.unwrap();
    }
    let mut buf = [0u8; 64];
    if let Ok(Ok((_, from))) =
        tokio::time::timeout(Duration::from_secs(2), udp.recv_from(&mut buf)).await
    {
        answered.push(format!("udp answer from {from}"));
    }
    // TCP in batches: a dropped SYN never completes, so each batch ends at its deadline.
    let ports: Vec<u16> = (1..=u16::MAX).collect();
    for batch in ports.chunks(4096) {
        let mut set = tokio::task::JoinSet::new();
        for &port in batch {
            set.spawn(async move {
                let sock = tokio::net::TcpSocket::new_v4().ok()?;
                match tokio::time::timeout(
                    Duration::from_millis(1500),
                    sock.connect((addr, port).into()),
                )
                .await
                {
                    Ok(Ok(_)) => Some(format!("tcp {port} accepted")),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        Some(format!("tcp {port} reset"))
                    }
                    _ => None,
                }
            });
        }
        while let Some(r) = set.join_next().await {
            if let Some(a) = r.unwrap() {
                answered.push(a);
            }
        }
    }
    answered
}

/// The relay's port in the public namespace.
const RELAY_PORT: u16 = 8443;

/// `claw relay serve` in the public namespace admitting `gateway`: (process, URL, pin).
fn start_relay(lab: &NatLab, home: &Path, gateway: &Identity) -> (Proc, String, String) {
    let listen = format!("{PUB_ADDR}:{RELAY_PORT}");
    let (relay, ready) = spawn_claw(
        lab,
        Host::Pub,
        home,
        &[
            "relay",
            "serve",
            "--listen",
            &listen,
            "--allow-gateway",
            &gateway.id(),
            "--json",
        ],
    );
    let ready: Value = serde_json::from_str(&ready).unwrap_or_else(|e| panic!("{ready:?}: {e}"));
    let url = ready["url"].as_str().unwrap().to_string();
    let pin = ready["pin"].as_str().unwrap().to_string();
    (relay, url, pin)
}

/// `claw gateway run --relay URL --relay-pin PIN extra…` behind NAT A (no `--tunnel`).
fn start_gateway(lab: &NatLab, home: &Path, url: &str, pin: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "gateway",
        "run",
        "--port",
        "0",
        "--auth-fail-delay-ms",
        "0",
        "--relay",
        url,
        "--relay-pin",
        pin,
    ];
    args.extend_from_slice(extra);
    let (gateway, line) = spawn_claw(lab, Host::PrivA, home, &args);
    assert!(line.contains("ws://"), "no ready line: {line:?}");
    gateway
}

/// Behind NAT B: `claw tunnel pair` with the relay-only URI of a fresh `claw pair`, then `claw
/// tunnel up --listen 127.0.0.1:0 extra…`; returns the tunnel and its `ws://` URL.
fn pair_and_up(lab: &NatLab, gw_home: &Path, d: &Path, extra: &[&str]) -> (Proc, String) {
    let (code, out, err) = claw_at(
        lab,
        Host::PrivA,
        gw_home,
        &["pair", "--json", "--no-qr", "--name", "phone"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["addrs"].as_array().unwrap().len(), 0, "{v}");
    let uri = v["uri"].as_str().unwrap().to_string();
    private_dir(d);
    let (code, out, err) = claw_at(lab, Host::PrivB, d, &["tunnel", "pair", &uri]);
    assert_eq!(code, 0, "{out}{err}");
    let mut args = vec!["tunnel", "up", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (up, line) = spawn_claw(lab, Host::PrivB, d, &args);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no ready line from tunnel up: {line:?}"))
        .to_string();
    (up, url)
}

/// `claw tunnel status --json` of the device home `d`, once it names a path (the running tunnel
/// publishes its status shortly after it connects; waits up to 20 s).
fn tunnel_status(lab: &NatLab, d: &Path) -> Value {
    let mut last = String::new();
    for _ in 0..200 {
        let (code, out, err) = claw_at(lab, Host::PrivB, d, &["tunnel", "status", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        if code == 0 && v["via"].is_string() {
            return v;
        }
        last = format!("exit {code}: {out}{err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no tunnel status naming a path: {last}");
}

/// The ISSUE's first topology: nothing reaches the gateway from outside, yet a device behind
/// another NAT pairs and works through the relay, and the relay and the gateway each refuse
/// what they must.
#[test]
fn a_gateway_behind_nat_is_reached_only_through_the_relay() {
    if let Some(why) = unavailable(true) {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = NatLab::create("mesh", NatKind::Cone, NatKind::Cone).expect("the NAT lab");
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gateway");
    private_dir(&gw_home);
    let gw_identity = Identity::load_or_create(&gw_home.join("identity.key")).unwrap();
    let gateway_seed = *gw_identity.key().seed();

    // The relay, the only thing with a public address.
    let (relay, relay_url, relay_pin) = start_relay(&lab, &tmp.path().join("relay"), &gw_identity);
    let listen = format!("{PUB_ADDR}:{RELAY_PORT}");
    assert_eq!(relay_url, format!("https://{listen}"));

    // The gateway behind NAT A, with a loopback echo service it exposes.
    let echo = lab
        .run_in(Host::PrivA, || {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap()
        })
        .unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
    });
    let expose = format!("echo={echo_addr}");
    let gateway = start_gateway(
        &lab,
        &gw_home,
        &relay_url,
        &relay_pin,
        &["--expose", &expose],
    );

    // The gateway process holds no socket that accepts from the network…
    let open = non_loopback_listeners(gateway.0.id());
    assert!(open.is_empty(), "non-loopback sockets: {open:?}");
    // …and nothing answers on NAT A's WAN address from the public side.
    let answered = block_on_in(&lab, Host::Pub, answers_from(NAT_A_WAN));
    assert!(answered.is_empty(), "answers from NAT A: {answered:?}");
    // Both checks see what is there: the relay listens, and its port answers the same probe.
    assert!(!non_loopback_listeners(relay.0.id()).is_empty());
    let answered = block_on_in(&lab, Host::PrivB, answers_from(PUB_ADDR));
    assert!(
        answered
            .iter()
            .any(|a| *a == format!("tcp {RELAY_PORT} accepted")),
        "{answered:?}"
    );

    // Pairing with a relay-only URI from behind NAT B, and `claw tunnel up` there with a
    // forward to the exposed echo service.
    let d = tmp.path().join("device");
    let forward = "127.0.0.1:47001";
    let (mut up, url) = pair_and_up(
        &lab,
        &gw_home,
        &d,
        &["--forward", &format!("{forward}=echo")],
    );
    let dh = claw_tunnel::device::DeviceHome::new(&d);
    let device = Identity::load_or_create(&d.join("identity.key")).unwrap();
    let token = dh.token().unwrap().unwrap().token;
    let key = claw_gateway::auth::device_key::load_or_create(&d.join("identity.key")).unwrap();
    block_on_in(&lab, Host::PrivB, async {
        // A real OpenClaw-protocol handshake with the claw gateway, through both NATs.
        let (hello, mut ws) = common::handshake(
            &url,
            &common::Creds {
                token: Some(&token),
                device: Some(&key),
                scopes: &["operator.read"],
            },
        )
        .await
        .hello();
        assert_eq!(hello["auth"]["method"], "device-token");
        let health = common::call(&mut ws, "health", serde_json::json!({})).await;
        assert_eq!(health["payload"]["ok"], true, "{health}");

        // 32 MiB through the forward to the echo service and back, byte-checked.
        let s = tokio::net::TcpStream::connect(forward).await.unwrap();
        let (mut r, mut w) = s.into_split();
        const TOTAL: usize = 32 << 20;
        let pattern = |i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8;
        let writer = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            let mut off = 0;
            while off < TOTAL {
                for (j, b) in buf.iter_mut().enumerate() {
                    *b = pattern(off + j);
                }
                w.write_all(&buf).await.unwrap();
                off += buf.len();
            }
            w
        });
        let started = std::time::Instant::now();
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 << 10];
        while got < TOTAL {
            let n = tokio::time::timeout(Duration::from_secs(60), r.read(&mut buf))
                .await
                .expect("echo data keeps coming")
                .unwrap();
            assert!(n > 0, "the forward closed after {got} bytes");
            for (j, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, pattern(got + j), "byte {} differs", got + j);
            }
            got += n;
        }
        let _w = writer.await.unwrap();
        eprintln!(
            "32 MiB echoed across two NATs through the relay in {:?} (debug build)",
            started.elapsed()
        );
    });
    let status = tunnel_status(&lab, &d);
    assert_eq!(status["via"], "relay", "{status}");

    // The relay refuses a gateway key it does not list and forged or expired tickets, seen
    // from behind NAT B.
    let target = RelayTarget {
        url: relay_url.clone(),
        pin: Some(relay_pin.clone()),
    };
    let device_seed = *device.key().seed();
    let device_key = public(&device_seed);
    block_on_in(&lab, Host::PrivB, async {
        let refused = |seed: [u8; 32], ticket: Option<String>| {
            let target = target.clone();
            async move {
                match connect(&target, &seed, ticket.as_deref()).await {
                    Ok(_) => panic!("the relay admitted a client it must refuse"),
                    Err(e) => e.to_string(),
                }
            }
        };
        let stranger = [5u8; 32];
        let e = refused(stranger, None).await;
        assert!(e.contains("denied"), "unlisted gateway: {e}");
        let own = DeviceTicket::issue(&stranger, device_key, now() + 600).encode();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut raw = b64.decode(&own["claw1.".len()..]).unwrap();
        raw[1..33].copy_from_slice(&public(&gateway_seed));
        let forged = format!("claw1.{}", b64.encode(&raw));
        let e = refused(device_seed, Some(forged)).await;
        assert!(e.contains("signature"), "forged ticket: {e}");
        let old = DeviceTicket::issue(&gateway_seed, device_key, now() - 1).encode();
        let e = refused(device_seed, Some(old)).await;
        assert!(e.contains("expired"), "expired ticket: {e}");
    });

    // Revoked: the running tunnel stops for good (exit 77), and a new one is refused.
    let (code, _, err) = claw_at(
        &lab,
        Host::PrivA,
        &gw_home,
        &["devices", "revoke", &device.id(), "--yes"],
    );
    assert_eq!(code, 0, "{err}");
    let mut exit = None;
    for _ in 0..600 {
        if let Some(s) = up.0.try_wait().unwrap() {
            exit = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let exit = exit.expect("tunnel up stops after the device is revoked");
    assert_eq!(exit.code(), Some(77), "{exit:?}");
    let (code, out, err) = claw_at(
        &lab,
        Host::PrivB,
        &d,
        &["tunnel", "up", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, 77, "a revoked device's tunnel: {out}{err}");
    drop(up);
    drop(gateway);
    drop(relay);
}

/// A device behind a symmetric NAT (`masquerade fully-random`) whose network also drops every
/// UDP packet still reaches the NATed gateway: the relay's TCP connection carries the session.
#[test]
fn a_device_behind_a_symmetric_nat_with_udp_blocked_works_over_the_relay() {
    if let Some(why) = unavailable(true) {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = NatLab::create("mesh", NatKind::Cone, NatKind::Symmetric).expect("the NAT lab");
    lab.block_udp(Host::NatB, true).expect("block UDP at NAT B");
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gateway");
    private_dir(&gw_home);
    let gw_identity = Identity::load_or_create(&gw_home.join("identity.key")).unwrap();
    let (relay, relay_url, relay_pin) = start_relay(&lab, &tmp.path().join("relay"), &gw_identity);
    let gateway = start_gateway(&lab, &gw_home, &relay_url, &relay_pin, &[]);
    // The block is real: a UDP echo in the public namespace hears nothing from behind NAT B.
    let echo = lab
        .run_in(Host::Pub, || {
            std::net::UdpSocket::bind((PUB_ADDR, 9999)).unwrap()
        })
        .unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    lab.run_in(Host::PrivB, || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..5 {
            s.send_to(b"through?", (PUB_ADDR, 9999)).unwrap();
        }
    })
    .unwrap();
    let mut buf = [0u8; 16];
    assert!(echo.recv_from(&mut buf).is_err(), "UDP crossed NAT B");

    let d = tmp.path().join("device");
    let (up, url) = pair_and_up(&lab, &gw_home, &d, &[]);
    let dh = claw_tunnel::device::DeviceHome::new(&d);
    let token = dh.token().unwrap().unwrap().token;
    let key = claw_gateway::auth::device_key::load_or_create(&d.join("identity.key")).unwrap();
    block_on_in(&lab, Host::PrivB, async {
        let (hello, mut ws) = common::handshake(
            &url,
            &common::Creds {
                token: Some(&token),
                device: Some(&key),
                scopes: &["operator.read"],
            },
        )
        .await
        .hello();
        assert_eq!(hello["auth"]["method"], "device-token");
        let health = common::call(&mut ws, "health", serde_json::json!({})).await;
        assert_eq!(health["payload"]["ok"], true, "{health}");
    });
    let status = tunnel_status(&lab, &d);
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["via"], "relay", "{status}");
    drop(up);
    drop(gateway);
    drop(relay);
}
