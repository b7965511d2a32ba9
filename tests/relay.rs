//! `claw relay serve`: the real binary's relay (iroh-relay's server with claw admission) on
//! loopback, reached with iroh-relay's real client as a gateway and as devices.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use claw_mesh::client::{connect, RelayTarget};
use claw_mesh::iroh_base::PublicKey;
use claw_mesh::iroh_relay::protos::relay::{ClientToRelayMsg, Datagrams, RelayToClientMsg};
use claw_mesh::ticket::DeviceTicket;
use common::netns::non_loopback_listeners;
use common::{claw_bin, Gateway};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

/// A running relay; killed on drop.
struct Relay {
    child: Child,
    url: String,
    pin: String,
    ready: Value,
}

impl Relay {
    fn start(home: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(claw_bin())
            .arg("--home")
            .arg(home)
            .args(["relay", "serve", "--listen", "127.0.0.1:0", "--json"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn claw relay serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        Self {
            child,
            url: ready["url"].as_str().unwrap().to_string(),
            pin: ready["pin"].as_str().unwrap_or_default().to_string(),
            ready,
        }
    }

    fn target(&self) -> RelayTarget {
        RelayTarget {
            url: self.url.clone(),
            pin: Some(self.pin.clone()),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway home, its `gatewayId` as `claw pair --json` prints it, and its identity seed.
fn gateway_identity(g: &Gateway) -> (String, [u8; 32]) {
    let (code, out, err) = g.claw(&["pair", "--json", "--no-qr", "--addr", "127.0.0.1:9"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let id = v["gatewayId"].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(g.home.join("identity.key")).unwrap();
    let seed: [u8; 32] = URL_SAFE_NO_PAD
        .decode(text.trim())
        .unwrap()
        .try_into()
        .unwrap();
    (id, seed)
}

fn public(seed: &[u8; 32]) -> [u8; 32] {
    *claw_mesh::iroh_base::SecretKey::from_bytes(seed)
        .public()
        .as_bytes()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn refused(target: &RelayTarget, seed: &[u8; 32], ticket: Option<&str>) -> String {
    match connect(target, seed, ticket).await {
        Ok(_) => panic!("the relay admitted a client it must refuse"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_admits_its_gateway_and_ticketed_devices_and_nobody_else() {
    let g = Gateway::start(&[]);
    let (gateway_id, gateway_seed) = gateway_identity(&g);
    let tmp = tempfile::tempdir().unwrap();
    let relay_home = tmp.path().join("relay-home");
    let relay = Relay::start(&relay_home, &["--allow-gateway", &gateway_id]);
    assert!(
        relay.url.starts_with("https://127.0.0.1:"),
        "{}",
        relay.ready
    );
    assert_eq!(relay.pin.len(), 64);
    assert_eq!(relay.ready["gateways"][0], gateway_id.as_str());
    let target = relay.target();

    // The gateway, by the key behind its gatewayId.
    let mut gateway = tokio::time::timeout(
        Duration::from_secs(20),
        connect(&target, &gateway_seed, None),
    )
    .await
    .unwrap()
    .expect("the listed gateway is admitted");

    // A device with a ticket the gateway signed reaches it through the relay, both ways.
    let device_seed = [42u8; 32];
    let device_key = public(&device_seed);
    let ticket = DeviceTicket::issue(&gateway_seed, device_key, now() + 600).encode();
    let mut device = connect(&target, &device_seed, Some(&ticket))
        .await
        .expect("a ticketed device is admitted");
    let gw_pub = PublicKey::from_bytes(&public(&gateway_seed)).unwrap();
    device
        .send(ClientToRelayMsg::Datagrams {
            dst_endpoint_id: gw_pub,
            datagrams: Datagrams::from(b"hello gateway"),
        })
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match gateway.next().await.expect("relay stream ended").unwrap() {
                RelayToClientMsg::Datagrams {
                    remote_endpoint_id,
                    datagrams,
                } => return (remote_endpoint_id, datagrams.contents),
                _ => continue,
            }
        }
    })
    .await
    .expect("the datagram crossed the relay");
    assert_eq!(got.0.as_bytes(), &device_key);
    assert_eq!(&got.1[..], b"hello gateway");

    // Refused by the relay: a key that is not listed, with or without a ticket of its own.
    let stranger = [5u8; 32];
    let e = refused(&target, &stranger, None).await;
    assert!(e.contains("denied"), "{e}");
    let own = DeviceTicket::issue(&stranger, device_key, now() + 600).encode();
    let e = refused(&target, &device_seed, Some(&own)).await;
    assert!(e.contains("does not serve"), "{e}");
    // A forged ticket: the gateway's key with a signature by another key.
    let mut raw = URL_SAFE_NO_PAD.decode(&own["claw1.".len()..]).unwrap();
    raw[1..33].copy_from_slice(&public(&gateway_seed));
    let forged = format!("claw1.{}", URL_SAFE_NO_PAD.encode(&raw));
    let e = refused(&target, &device_seed, Some(&forged)).await;
    assert!(e.contains("signature"), "{e}");
    // An expired ticket of the real gateway.
    let old = DeviceTicket::issue(&gateway_seed, device_key, now() - 1).encode();
    let e = refused(&target, &device_seed, Some(&old)).await;
    assert!(e.contains("expired"), "{e}");
    // The device's ticket presented by another key.
    let e = refused(&target, &stranger, Some(&ticket)).await;
    assert!(e.contains("another device"), "{e}");
    // A relay certificate that is not the pinned one.
    let wrong_pin = RelayTarget {
        url: relay.url.clone(),
        pin: Some("00".repeat(32)),
    };
    let e = refused(&wrong_pin, &gateway_seed, None).await;
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("tls"),
        "{e}"
    );
    // Without a pin the self-signed certificate is not trusted either.
    let no_pin = RelayTarget {
        url: relay.url.clone(),
        pin: None,
    };
    refused(&no_pin, &gateway_seed, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_no_allowed_gateway_admits_none_and_keeps_its_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("relay-home");
    let pin = {
        let relay = Relay::start(&home, &[]);
        let seed = [1u8; 32];
        let e = refused(&relay.target(), &seed, None).await;
        assert!(e.contains("denied"), "{e}");
        // Even a ticket signed by the key itself gets nothing.
        let t = DeviceTicket::issue(&seed, public(&[2u8; 32]), now() + 60).encode();
        refused(&relay.target(), &[2u8; 32], Some(&t)).await;
        relay.pin.clone()
    };
    // The certificate is kept in the home (key 0600): the pin in pairing URIs survives restarts.
    let relay = Relay::start(&home, &[]);
    assert_eq!(relay.pin, pin);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.join("relay/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn bad_gateway_ids_are_a_configuration_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(claw_bin())
        .arg("--home")
        .arg(tmp.path().join("h"))
        .args([
            "relay",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-gateway",
            "nothex",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a gateway id"));
    // Nothing was created for a refused configuration.
    assert!(!tmp.path().join("h").exists());
}

async fn read_msg(recv: &mut quinn::RecvStream) -> claw_tunnel::control::ServerMsg {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while tokio::time::timeout(Duration::from_secs(20), recv.read_exact(&mut b))
        .await
        .expect("an answer in time")
        .is_ok()
    {
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    claw_tunnel::control::decode(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

async fn control(
    conn: &quinn::Connection,
    msg: &claw_tunnel::control::ClientMsg,
) -> claw_tunnel::control::ServerMsg {
    use claw_tunnel::control::{encode, StreamHeader};
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode(&StreamHeader::Control))
        .await
        .unwrap();
    send.write_all(&encode(msg)).await.unwrap();
    read_msg(&mut recv).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_behind_a_relay_has_no_listener_pairs_devices_and_still_refuses_revoked_ones() {
    use claw_tunnel::control::{ClientMsg, ServerMsg};
    use claw_tunnel::identity::Identity;
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gateway");
    std::fs::create_dir_all(&gw_home).unwrap();
    std::fs::set_permissions(
        &gw_home,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let gw_identity = Identity::load_or_create(&gw_home.join("identity.key")).unwrap();
    let gateway_seed = *gw_identity.key().seed();
    let gateway_key = public(&gateway_seed);
    let relay = Relay::start(
        &tmp.path().join("relay"),
        &["--allow-gateway", &gw_identity.id()],
    );
    // A loopback echo service the gateway exposes to paired devices.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let expose = format!("echo={echo_addr}");
    let g = Gateway::start_in(
        &gw_home,
        &[
            "--relay",
            &relay.url,
            "--relay-pin",
            &relay.pin,
            "--expose",
            &expose,
        ],
    );

    // Nothing of the gateway's accepts from the network: the relay link is dialled out.
    let open = non_loopback_listeners(g.child.id());
    assert!(open.is_empty(), "non-loopback sockets: {open:?}");
    // The check sees a listener when there is one: a gateway with the direct tunnel.
    let direct = Gateway::start(&["--tunnel", "0.0.0.0:0"]);
    assert!(!non_loopback_listeners(direct.child.id()).is_empty());
    drop(direct);
    let runtime: Value =
        serde_json::from_str(&std::fs::read_to_string(gw_home.join("gateway.json")).unwrap())
            .unwrap();
    assert_eq!(runtime["relays"][0]["url"], relay.url.as_str());

    // A pairing code, redeemed through the relay.
    let (code, out, err) = g.claw(&["pair", "--json", "--no-qr", "--addr", "127.0.0.1:9"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let uri = claw_tunnel::pairing::PairingUri::parse(v["uriLong"].as_str().unwrap()).unwrap();
    let device = Identity::load_or_create(&tmp.path().join("device/identity.key")).unwrap();
    let device_key = public(device.key().seed());
    let ticket = DeviceTicket::issue(&gateway_seed, device_key, now() + 600).encode();
    let dial = || {
        claw_tunnel::quic::client::Dialer::over_relay(
            &device,
            &gw_identity.id(),
            gateway_key,
            relay.target(),
            *device.key().seed(),
            tokio::sync::watch::channel(Some(ticket.clone())).1,
        )
        .unwrap()
    };
    let dialer = dial();
    let conn = dialer.connect(&[]).await.expect("QUIC through the relay");
    // Unpaired: the TLS verifier let the key in to redeem a code, nothing more.
    assert!(matches!(
        control(&conn, &ClientMsg::Probe).await,
        ServerMsg::Error {
            code: claw_tunnel::control::TunnelCode::NotPaired,
            ..
        }
    ));
    let paired = control(
        &conn,
        &ClientMsg::Pair {
            code: uri.code.clone(),
            name: Some("relayed".into()),
            platform: "linux".into(),
        },
    )
    .await;
    assert!(
        matches!(&paired, ServerMsg::Paired { device_id, .. } if *device_id == device.id()),
        "{paired:?}"
    );
    assert!(matches!(
        control(&conn, &ClientMsg::Probe).await,
        ServerMsg::Probe { .. }
    ));
    assert!(dialer.relay_status().unwrap().connected);

    // The gateway's WebSocket through the relay: the OpenClaw challenge arrives.
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&claw_tunnel::control::encode(
        &claw_tunnel::control::StreamHeader::Gateway,
    ))
    .await
    .unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async("ws://127.0.0.1:18789/", tokio::io::join(recv, send))
            .await
            .expect("WebSocket upgrade through the relay");
    let first = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ev: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(ev["event"], "connect.challenge", "{ev}");

    // 32 MiB through the relay to the exposed service and back, byte-checked: the relay
    // socket paces quinn instead of dropping packets.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&claw_tunnel::control::encode(
        &claw_tunnel::control::StreamHeader::Expose {
            name: "echo".into(),
        },
    ))
    .await
    .unwrap();
    const TOTAL: usize = 32 << 20;
    let pattern = |i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    let writer = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        let mut off = 0;
        while off < TOTAL {
            for (j, b) in buf.iter_mut().enumerate() {
                *b = pattern(off + j);
            }
            send.write_all(&buf).await.unwrap();
            off += buf.len();
        }
        send.finish().unwrap();
        send
    });
    let started = std::time::Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    while got < TOTAL {
        let n = tokio::time::timeout(Duration::from_secs(60), recv.read(&mut buf))
            .await
            .expect("echo data keeps coming")
            .unwrap()
            .expect("echo stream ended early");
        for (j, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                *b,
                pattern(got + j),
                "byte {} differs: {:?}",
                got + j,
                String::from_utf8_lossy(&buf[..n.min(300)])
            );
        }
        got += n;
    }
    let _send = writer.await.unwrap();
    eprintln!(
        "32 MiB echoed through the relay in {:?} (debug build, loopback)",
        started.elapsed()
    );

    // Revoked: the connection is cut, and a new one is refused by the gateway's TLS verifier
    // although the relay still admits the device's ticket.
    let (code, _, err) = g.claw(&["devices", "revoke", &device.id(), "--yes"]);
    assert_eq!(code, 0, "{err}");
    let closed = tokio::time::timeout(Duration::from_secs(20), conn.closed())
        .await
        .expect("the revoked device's connection is closed");
    assert!(closed.to_string().contains("revoked"), "{closed}");
    let again = dial();
    let refused = match again.connect(&[]).await {
        Err(e) => e.to_string(),
        Ok(c) => match tokio::time::timeout(Duration::from_secs(20), c.open_bi()).await {
            Ok(Ok((mut s, mut r))) => {
                let _ = s
                    .write_all(&claw_tunnel::control::encode(
                        &claw_tunnel::control::StreamHeader::Control,
                    ))
                    .await;
                let _ = r.read_to_end(1024).await;
                c.close_reason().map(|r| r.to_string()).unwrap_or_default()
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".into(),
        },
    };
    assert!(
        refused.contains("revoked") || refused.contains("44"),
        "{refused}"
    );
    assert!(
        again.relay_status().unwrap().connected,
        "the relay admitted the ticket"
    );
}

/// `claw tunnel up` as a real process; returns it and its `ws://` URL.
fn spawn_tunnel_up(home: &Path) -> (Child, String) {
    let mut child = Command::new(claw_bin())
        .arg("--home")
        .arg(home)
        .args(["tunnel", "up", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no ready line from tunnel up: {line:?}"))
        .to_string();
    (child, url)
}

/// The device's side of the mesh from the CLI: `claw pair` with no `--addr` names the relay,
/// `claw tunnel pair` redeems the code through it with the URI's pairing ticket and stores the
/// relay ticket the gateway hands over, `claw tunnel up` reaches the gateway through the relay
/// with it, and `claw tunnel status --json` says `"via": "relay"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_pair_and_up_over_a_relay_only_uri() {
    use claw_tunnel::device::DeviceHome;
    use claw_tunnel::identity::Identity;
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gateway");
    std::fs::create_dir_all(&gw_home).unwrap();
    std::fs::set_permissions(
        &gw_home,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let gw_identity = Identity::load_or_create(&gw_home.join("identity.key")).unwrap();
    let relay = Relay::start(
        &tmp.path().join("relay"),
        &["--allow-gateway", &gw_identity.id()],
    );
    let g = Gateway::start_in(
        &gw_home,
        &["--relay", &relay.url, "--relay-pin", &relay.pin],
    );

    // No `--addr` and no tunnel: the URI names the relay only.
    let (code, out, err) = g.claw(&["pair", "--json", "--no-qr", "--name", "phone"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["addrs"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["relays"][0]["url"], relay.url.as_str());
    assert_eq!(v["relays"][0]["pin"], relay.pin.as_str());
    let uri = v["uri"].as_str().unwrap();
    assert!(uri.starts_with("CLAW://P/"), "{uri}");
    assert!(v["uriLong"].as_str().unwrap().contains("&relay="));

    let d = tmp.path().join("device");
    std::fs::create_dir_all(&d).unwrap();
    let (code, out, err) = common::claw_in(&d, &["tunnel", "pair", uri]);
    assert_eq!(code, 0, "{out}{err}");
    let dh = DeviceHome::new(&d);
    let p = dh.pairing().unwrap();
    assert!(p.addrs.is_empty());
    assert_eq!(p.relays[0].url, relay.url);
    assert_eq!(p.gateway_id, gw_identity.id());
    // The relay ticket the gateway handed over names this device's own key.
    let device = Identity::load_or_create(&d.join("identity.key")).unwrap();
    let stored = dh.relay_ticket().unwrap().expect("a relay ticket");
    let t = DeviceTicket::parse(&stored.ticket).unwrap();
    t.verify(&public(device.key().seed()), now()).unwrap();
    assert_eq!(t.gateway_key, public(gw_identity.key().seed()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dh.relay_ticket_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // `claw tunnel up` through the relay: a device-token WebSocket session and `health`.
    let (mut child, url) = spawn_tunnel_up(&d);
    let token = dh.token().unwrap().unwrap().token;
    let key = claw_gateway::auth::device_key::load_or_create(&d.join("identity.key")).unwrap();
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
    assert_eq!(
        common::call(&mut ws, "health", serde_json::json!({})).await["payload"]["ok"],
        true
    );
    let mut status = Value::Null;
    for _ in 0..100 {
        let (code, out, _) = common::claw_in(&d, &["tunnel", "status", "--json"]);
        status = serde_json::from_str(&out).unwrap_or(Value::Null);
        if code == 0 && status["via"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["via"], "relay", "{status}");
    assert_eq!(status["relay"], relay.url.as_str(), "{status}");
    assert!(status["viaSinceMs"].as_u64().is_some(), "{status}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `claw tunnel status --json` until the tunnel is connected (bounded: 2 minutes).
async fn connected_status(d: &Path) -> Value {
    let mut status = Value::Null;
    for _ in 0..1200 {
        let (code, out, _) = common::claw_in(d, &["tunnel", "status", "--json"]);
        status = serde_json::from_str(&out).unwrap_or(Value::Null);
        if code == 0 && status["connected"] == true && status["via"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}

/// A pairing URI with a tunnel address and two relays, where the address is a closed loopback
/// port and the first relay is gone: `claw tunnel pair` and `claw tunnel up` try the address
/// first, then the first relay, and reach the gateway through the second relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_address_and_a_dead_relay_fall_back_to_the_next_relay() {
    use claw_tunnel::device::DeviceHome;
    use claw_tunnel::identity::Identity;
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gateway");
    std::fs::create_dir_all(&gw_home).unwrap();
    std::fs::set_permissions(
        &gw_home,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let gw_identity = Identity::load_or_create(&gw_home.join("identity.key")).unwrap();
    let gone = Relay::start(
        &tmp.path().join("relay-a"),
        &["--allow-gateway", &gw_identity.id()],
    );
    let relay = Relay::start(
        &tmp.path().join("relay-b"),
        &["--allow-gateway", &gw_identity.id()],
    );
    let g = Gateway::start_in(
        &gw_home,
        &[
            "--relay",
            &gone.url,
            "--relay-pin",
            &gone.pin,
            "--relay",
            &relay.url,
            "--relay-pin",
            &relay.pin,
        ],
    );
    // A loopback UDP port nobody listens on.
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let (code, out, err) = g.claw(&["pair", "--json", "--no-qr", "--addr", &dead]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["addrs"][0], dead.as_str(), "{v}");
    assert_eq!(v["relays"][0]["url"], gone.url.as_str(), "{v}");
    assert_eq!(v["relays"][1]["url"], relay.url.as_str(), "{v}");
    let uri = v["uri"].as_str().unwrap().to_string();
    let gone_url = gone.url.clone();
    drop(gone);

    let d = tmp.path().join("device");
    std::fs::create_dir_all(&d).unwrap();
    let (code, out, err) = common::claw_in(&d, &["tunnel", "pair", &uri]);
    assert_eq!(
        code, 0,
        "pairing falls back to the second relay: {out}{err}"
    );
    let dh = DeviceHome::new(&d);
    let p = dh.pairing().unwrap();
    assert_eq!(p.addrs, std::slice::from_ref(&dead));
    assert_eq!(p.relays.len(), 2);
    assert!(dh.relay_ticket().unwrap().is_some(), "a relay ticket");

    let (mut child, url) = spawn_tunnel_up(&d);
    let status = connected_status(&d).await;
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["via"], "relay", "{status}");
    assert_eq!(status["relay"], relay.url.as_str(), "{status}");
    assert_ne!(status["relay"], gone_url.as_str(), "{status}");
    let token = dh.token().unwrap().unwrap().token;
    let key = claw_gateway::auth::device_key::load_or_create(&d.join("identity.key")).unwrap();
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
    assert_eq!(
        common::call(&mut ws, "health", serde_json::json!({})).await["payload"]["ok"],
        true
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `ssh -N -L` through `claw tunnel proxy ssh` as the ProxyCommand: waits (bounded) until the
/// local port accepts; returns the child and the local port.
fn ssh_via_proxy(
    device: &Path,
    ssh_port: u16,
    key: &Path,
    known_hosts: &Path,
    target: u16,
) -> (Child, u16) {
    let proxy = format!(
        "{} --home {} tunnel proxy ssh",
        claw_bin(),
        device.display()
    );
    let local = common::free_port();
    let spec = format!("127.0.0.1:{local}:127.0.0.1:{target}");
    let mut child = common::ssh_client(
        ssh_port,
        key,
        known_hosts,
        &[
            "-o",
            &format!("ProxyCommand={proxy}"),
            "-N",
            "-L",
            &spec,
            "claw@claw-gateway",
        ],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", local)).is_ok() {
            return (child, local);
        }
        if let Ok(Some(st)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!("ssh exited {st}: {}", String::from_utf8_lossy(&out.stderr));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ssh -L never listened: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stock OpenSSH into a gateway that has no reachable port: `gateway run --relay … --ssh
/// 127.0.0.1:0` (SSH on loopback only, no tunnel), `ssh -o ProxyCommand='claw tunnel proxy ssh'
/// -N -L` with strict host-key checking carries the OpenClaw handshake through the relay; a home
/// that is not paired gets exit 78 and nothing on stdout; a gateway without an SSH forward is
/// refused (exit 1) with a message, not bytes that would confuse ssh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_ssh_through_the_proxy_command_reaches_a_relay_only_gateway() {
    use claw_tunnel::identity::Identity;
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gateway");
    std::fs::create_dir_all(&gw_home).unwrap();
    std::fs::set_permissions(
        &gw_home,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let gw_identity = Identity::load_or_create(&gw_home.join("identity.key")).unwrap();
    let relay = Relay::start(
        &tmp.path().join("relay"),
        &["--allow-gateway", &gw_identity.id()],
    );
    let g = Gateway::start_in(
        &gw_home,
        &[
            "--relay",
            &relay.url,
            "--relay-pin",
            &relay.pin,
            "--ssh",
            "127.0.0.1:0",
        ],
    );
    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(g.home.join("gateway.json")).unwrap())
            .unwrap();
    let ssh_addr: std::net::SocketAddr = rt["ssh"]["addr"].as_str().unwrap().parse().unwrap();
    assert!(ssh_addr.ip().is_loopback());
    let host_key = rt["ssh"]["hostKey"].as_str().unwrap().to_string();

    // Not paired yet: a clear error, exit 78, and stdout (the SSH client's input) stays empty.
    let d = tmp.path().join("device");
    std::fs::create_dir_all(&d).unwrap();
    let (code, out, err) = common::claw_in(&d, &["tunnel", "proxy", "ssh"]);
    assert_eq!(code, 78, "{err}");
    assert!(out.is_empty(), "{out:?}");
    assert!(err.contains("not paired"), "{err}");

    let (code, out, err) = g.claw(&["pair", "--json", "--no-qr", "--name", "laptop"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["addrs"].as_array().unwrap().len(), 0, "{v}");
    let (code, out, err) = common::claw_in(&d, &["tunnel", "pair", v["uri"].as_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let key = d.join("id_ed25519");
    let (code, _, err) = common::claw_in(&d, &["tunnel", "export-ssh-key", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // The host key is pinned under the name ssh is given (ssh never resolves it: the
    // ProxyCommand carries the connection).
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[claw-gateway]:{} {host_key}\n", ssh_addr.port()),
    )
    .unwrap();

    let (mut child, local) = {
        let (d, key, kh) = (d.clone(), key.clone(), known_hosts.clone());
        let (port, target) = (ssh_addr.port(), g.port);
        tokio::task::spawn_blocking(move || ssh_via_proxy(&d, port, &key, &kh, target))
            .await
            .unwrap()
    };
    let dk = claw_gateway::auth::device_key::load_or_create(&d.join("identity.key")).unwrap();
    let (hello, mut ws) = common::handshake(
        &format!("ws://127.0.0.1:{local}"),
        &common::Creds {
            token: None,
            device: Some(&dk),
            scopes: &["operator.read"],
        },
    )
    .await
    .hello();
    assert_eq!(hello["auth"]["method"], "device-token");
    assert_eq!(
        common::call(&mut ws, "health", serde_json::json!({})).await["payload"]["ok"],
        true
    );
    // The operator sees an SSH session of this device.
    let (code, out, err) = g.claw(&["gateway", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert!(
        status["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["channel"] == "ssh" && c["deviceId"].is_string()),
        "{status}"
    );
    drop(ws);
    let _ = child.kill();
    let _ = child.wait();
    drop(g);

    // A relay-only gateway without `--ssh`: the proxy is refused with a message, exit 1.
    let g = Gateway::start_in(
        &gw_home,
        &["--relay", &relay.url, "--relay-pin", &relay.pin],
    );
    let (code, out, err) = common::claw_in(&d, &["tunnel", "proxy", "ssh"]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out:?}");
    assert!(err.contains("no SSH forward"), "{err}");
    drop(g);
}

/// `claw channels status --probe` on a gateway behind a relay lists the relay and makes a real
/// QUIC handshake with the gateway through it; with the relay gone the probe fails (exit 1)
/// and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_status_probes_the_gateway_through_its_relay() {
    use claw_tunnel::identity::Identity;
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gateway");
    std::fs::create_dir_all(&gw_home).unwrap();
    std::fs::set_permissions(
        &gw_home,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let gw_identity = Identity::load_or_create(&gw_home.join("identity.key")).unwrap();
    let relay = Relay::start(
        &tmp.path().join("relay"),
        &["--allow-gateway", &gw_identity.id()],
    );
    let g = Gateway::start_in(
        &gw_home,
        &["--relay", &relay.url, "--relay-pin", &relay.pin],
    );
    let relay_channel = |out: &str| -> Value {
        let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{out}: {e}"));
        v["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "relay")
            .cloned()
            .unwrap_or_else(|| panic!("no relay channel: {v}"))
    };
    // The gateway's link to the relay may still be coming up: bounded retries.
    let mut last = Value::Null;
    for _ in 0..30 {
        let (code, out, _) = g.claw(&["channels", "status", "--probe", "--json"]);
        last = relay_channel(&out);
        if code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(last["address"], relay.url.as_str(), "{last}");
    assert_eq!(last["probe"]["ok"], true, "{last}");
    assert!(last["probe"]["latencyMs"].as_f64().is_some(), "{last}");
    let (code, out, _) = g.claw(&["channels", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("relay") && out.contains(&relay.url), "{out}");

    drop(relay);
    let (code, out, _) = g.claw(&["channels", "status", "--probe", "--json"]);
    assert_eq!(code, 1, "{out}");
    let c = relay_channel(&out);
    assert_eq!(c["probe"]["ok"], false, "{c}");
    assert!(
        c["probe"]["error"].as_str().unwrap().contains("relay"),
        "{c}"
    );
}

/// The findings of `claw doctor --json` on `home`, by id: every (severity, message) per id.
fn doctor_findings(home: &Path) -> Vec<(String, String, String)> {
    let (_, out, err) = common::claw_in(home, &["doctor", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}{err}: {e}"));
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn severity_of(findings: &[(String, String, String)], id: &str, url: &str) -> String {
    findings
        .iter()
        .find(|(i, _, m)| i == id && m.contains(url))
        .map(|(_, s, _)| s.clone())
        .unwrap_or_else(|| panic!("no {id} finding for {url}: {findings:?}"))
}

/// `claw doctor` on a gateway behind two relays probes each end to end: the one that lists the
/// gateway is reachable, pinned and admitting; the one that does not list it is reachable but
/// refuses it (`relay.admitted` error). On the device paired through the relay, `relay.ticket`
/// is ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_each_relay_end_to_end_and_the_device_ticket() {
    use claw_tunnel::identity::Identity;
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gateway");
    std::fs::create_dir_all(&gw_home).unwrap();
    std::fs::set_permissions(
        &gw_home,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let gw_identity = Identity::load_or_create(&gw_home.join("identity.key")).unwrap();
    let good = Relay::start(
        &tmp.path().join("relay-good"),
        &["--allow-gateway", &gw_identity.id()],
    );
    let stranger = Identity::generate().unwrap();
    let other = Relay::start(
        &tmp.path().join("relay-other"),
        &["--allow-gateway", &stranger.id()],
    );
    let g = Gateway::start_in(
        &gw_home,
        &[
            "--relay",
            &good.url,
            "--relay-pin",
            &good.pin,
            "--relay",
            &other.url,
            "--relay-pin",
            &other.pin,
        ],
    );
    // The gateway's own link to the good relay may still be coming up: bounded retries.
    let mut f = Vec::new();
    for _ in 0..30 {
        f = doctor_findings(&g.home);
        if severity_of(&f, "relay.reachable", &good.url) == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(severity_of(&f, "relay.reachable", &good.url), "ok", "{f:?}");
    assert_eq!(severity_of(&f, "relay.pin", &good.url), "ok", "{f:?}");
    assert_eq!(severity_of(&f, "relay.admitted", &good.url), "ok", "{f:?}");
    assert_eq!(
        severity_of(&f, "relay.reachable", &other.url),
        "ok",
        "{f:?}"
    );
    assert_eq!(
        severity_of(&f, "relay.admitted", &other.url),
        "error",
        "{f:?}"
    );

    let (code, out, err) = g.claw(&["pair", "--json", "--no-qr"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let d = tmp.path().join("device");
    std::fs::create_dir_all(&d).unwrap();
    let (code, out, err) = common::claw_in(&d, &["tunnel", "pair", v["uri"].as_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let f = doctor_findings(&d);
    let t: Vec<_> = f.iter().filter(|(i, _, _)| i == "relay.ticket").collect();
    assert_eq!(t.len(), 1, "{f:?}");
    assert_eq!(t[0].1, "ok", "{t:?}");
    // The device's own credential probe goes through the relay (no address in the pairing).
    let drift = f
        .iter()
        .find(|(i, _, _)| i == "token.drift.device")
        .unwrap_or_else(|| panic!("{f:?}"));
    assert_eq!(drift.1, "ok", "{drift:?}");
}
