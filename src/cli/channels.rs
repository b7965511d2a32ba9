//! `claw channels status [--probe] [--json]`: the gateway's listeners (WebSocket on loopback, the
//! admin socket, the QUIC tunnel, the SSH forward) and the clients connected on each; `--probe`
//! makes a real round trip on each listener and reports its latency. In upstream mode
//! (`--upstream`) the OpenClaw gateway behind claw is one more line, `upstream`: its URL, claw's
//! view of it (serving, refused, unreachable; sessions, last error) and with `--probe` a
//! WebSocket round trip to it (upgrade to `connect.challenge`) plus whether claw's credential
//! is accepted there (claw's last connect).
//!
//! Exit 0 when the gateway runs (and every probe succeeded), 1 when a probe failed, 3 when no
//! gateway runs on this home.

use std::time::Instant;

use claw_gateway::doctor::facts::{CredentialProbe, RuntimeFacts};
use claw_gateway::doctor::gather::runtime_facts;
use claw_gateway::home::Home;
use serde::Serialize;
use serde_json::{json, Value};

use super::admin_client::{live_call, running_pid};
use super::doctor::shared_token_probe;
use super::{exit, fail};

/// `claw channels` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum ChannelsCmd {
    /// The gateway's listeners and the clients connected on each (exit 3 when not running).
    Status(StatusArgs),
}

/// `claw channels status` options.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Make a real round trip on each listener (shared-token connect + `health` on the
    /// WebSocket, a call on the admin socket) and report the latency.
    #[arg(long)]
    probe: bool,
    /// One JSON document.
    #[arg(long)]
    json: bool,
}

/// Runs a `claw channels` verb.
pub async fn run(home: &Home, cmd: ChannelsCmd) -> anyhow::Result<u8> {
    match cmd {
        ChannelsCmd::Status(a) => status(home, a).await,
    }
}

/// The result of a round trip.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Probe {
    fn ok(ms: f64) -> Self {
        Self {
            ok: true,
            latency_ms: Some(ms),
            error: None,
        }
    }
    fn failed(e: impl Into<String>) -> Self {
        Self {
            ok: false,
            latency_ms: None,
            error: Some(e.into()),
        }
    }
}

/// One listener and its clients.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Channel {
    /// `ws`, `admin`, `tunnel`, `ssh`, `upstream`.
    name: &'static str,
    /// `listening` or `not configured`; the upstream's `serving`, `refused`, `unreachable` or
    /// `connecting` ([`upstream_state`]).
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    /// Sessions on this channel (`None`: the channel does not track its clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    clients: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl Channel {
    fn new(name: &'static str, state: &'static str) -> Self {
        Self {
            name,
            state,
            address: None,
            fingerprint: None,
            clients: None,
            probe: None,
            note: None,
        }
    }
}

/// The channels of a running gateway, from its runtime file and its `gateway.status` payload
/// (pure).
fn channels(rt: &RuntimeFacts, status: &Value, admin_socket: &str) -> Vec<Channel> {
    let clients = status["clients"].as_array().cloned().unwrap_or_default();
    let on = |name: &str| -> Vec<Value> {
        clients
            .iter()
            .filter(|c| c["channel"] == name)
            .cloned()
            .collect()
    };
    let mut ws = Channel::new("ws", "listening");
    ws.address = Some(if rt.addrs.is_empty() {
        rt.url.clone().unwrap_or_default()
    } else {
        rt.addrs.join(", ")
    });
    ws.clients = Some(on("ws"));
    let mut admin = Channel::new("admin", "listening");
    admin.address = Some(admin_socket.to_string());
    admin.note = Some("local operator (peer uid checked); connections are not tracked".into());
    let tunnel = match &rt.tunnel_addr {
        Some(addr) => {
            let mut c = Channel::new("tunnel", "listening");
            c.address = Some(format!("udp://{addr}"));
            c.fingerprint = rt
                .tunnel_id
                .as_deref()
                .map(|id| id.get(..16).unwrap_or(id).to_string());
            c.clients = Some(on("tunnel"));
            c
        }
        None => Channel::new("tunnel", "not configured"),
    };
    let ssh = match &rt.ssh_addr {
        Some(addr) => {
            let mut c = Channel::new("ssh", "listening");
            c.address = Some(format!("tcp://{addr}"));
            c.fingerprint = rt.ssh_fingerprint.clone();
            c.clients = Some(on("ssh"));
            c
        }
        None => Channel::new("ssh", "not configured"),
    };
    let mut list = vec![ws, admin, tunnel, ssh];
    list.extend(upstream_channel(&status["upstream"]));
    list
}

/// The upstream's state from `gateway.status`'s `upstream` object (pure).
fn upstream_state(up: &Value) -> &'static str {
    match (
        up["authenticated"].as_bool(),
        up["reachable"].as_bool(),
        up["lastError"].is_string(),
    ) {
        (Some(true), _, _) => "serving",
        (_, Some(true), _) => "refused",
        (_, _, true) => "unreachable",
        _ => "connecting",
    }
}

/// The `upstream` line (pure); `None` when the gateway runs without `--upstream`.
fn upstream_channel(up: &Value) -> Option<Channel> {
    let url = up["url"].as_str()?;
    let mut c = Channel::new("upstream", upstream_state(up));
    c.address = Some(claw_gateway::text::escape(url).into_owned());
    let sessions = up["sessions"].as_u64().unwrap_or(0);
    let mut note = format!(
        "{sessions} upstream session{}",
        if sessions == 1 { "" } else { "s" }
    );
    if let Some(e) = up["lastError"].as_str() {
        note.push_str(&format!("; last error: {}", claw_gateway::text::escape(e)));
    }
    c.note = Some(note);
    Some(c)
}

fn ago(now_ms: u64, then_ms: u64) -> String {
    claw_gateway::doctor::checks::human_duration(now_ms.saturating_sub(then_ms))
}

/// The human form (pure).
fn render(pid: u32, home: &Home, list: &[Channel], now_ms: u64) -> String {
    let mut out = format!(
        "claw gateway: running (pid {pid}, home {})\n",
        home.root().display()
    );
    for c in list {
        let mut line = format!("{:<7} {:<15}", c.name, c.state);
        if let Some(a) = &c.address {
            line.push_str(&format!(" {a}"));
        }
        if let Some(f) = &c.fingerprint {
            line.push_str(&format!("  fingerprint {f}"));
        }
        if let Some(cl) = &c.clients {
            line.push_str(&format!(
                "  {} client{}",
                cl.len(),
                if cl.len() == 1 { "" } else { "s" }
            ));
        }
        match &c.probe {
            Some(Probe {
                ok: true,
                latency_ms: Some(ms),
                ..
            }) => line.push_str(&format!("  probe ok {ms:.1} ms")),
            Some(Probe { error: Some(e), .. }) => line.push_str(&format!("  probe FAILED: {e}")),
            _ => {}
        }
        if c.name == "upstream" {
            if let Some(n) = &c.note {
                line.push_str(&format!("  {n}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        for s in c.clients.iter().flatten() {
            let device = s["deviceId"]
                .as_str()
                .map(|d| format!("  device {}", d.get(..12).unwrap_or(d)))
                .unwrap_or_default();
            out.push_str(&format!(
                "          conn {}  {}  {}  {}{device}  connected {} ago\n",
                s["connId"],
                s["method"].as_str().unwrap_or("?"),
                s["origin"].as_str().unwrap_or("?"),
                s["client"].as_str().unwrap_or("?"),
                ago(now_ms, s["connectedAtMs"].as_u64().unwrap_or(now_ms)),
            ));
        }
    }
    out
}

async fn status(home: &Home, a: StatusArgs) -> anyhow::Result<u8> {
    let Some(pid) = running_pid(home) else {
        if a.json {
            println!(
                "{}",
                json!({"running": false, "home": home.root(), "channels": []})
            );
        } else {
            println!("claw gateway: not running (home {})", home.root().display());
        }
        return Ok(exit::NOT_RUNNING);
    };
    let status = match live_call(home, "gateway.status", json!({})).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(fail(exit::FAILURE, format!("{}: {}", e.code, e.message))),
        Err(e) => {
            return Err(fail(
                exit::FAILURE,
                format!("gateway pid {pid} holds the lock but its admin socket does not answer: {e:#} (run `claw doctor`)"),
            ))
        }
    };
    let rt = runtime_facts(&home.runtime_path()).unwrap_or_default();
    let admin_path = home.admin_socket_path().display().to_string();
    let mut list = channels(&rt, &status, &admin_path);
    let relays = claw_gateway::runtime_file::RuntimeFile::read(home)
        .ok()
        .flatten()
        .map(|f| f.relays)
        .unwrap_or_default();
    list.extend(relay_channels(&relays));
    if a.probe {
        for c in &mut list {
            c.probe = match c.name {
                "ws" => Some(probe_ws(home, &rt).await),
                "admin" => Some(probe_admin(home).await),
                "ssh" if c.state == "listening" => {
                    Some(probe_ssh_banner(c.address.as_deref()).await)
                }
                "tunnel" if c.state == "listening" => {
                    Some(probe_quic(home, c.address.as_deref()).await)
                }
                "upstream" => Some(probe_upstream(&status["upstream"]).await),
                "relay" => Some(probe_relay(home, &relays, c.address.as_deref()).await),
                _ => None,
            };
        }
    }
    let failed = list.iter().any(|c| c.probe.as_ref().is_some_and(|p| !p.ok));
    if a.json {
        println!(
            "{}",
            json!({"running": true, "pid": pid, "home": home.root(), "channels": list})
        );
    } else {
        print!("{}", render(pid, home, &list, claw_gateway::now_ms()));
    }
    Ok(if failed { exit::FAILURE } else { 0 })
}

/// A shared-token connect + `health` on the WebSocket listener, with the token the gateway
/// serves (from the admin socket, so a pinned token works too).
async fn probe_ws(home: &Home, rt: &RuntimeFacts) -> Probe {
    let Some(url) = rt.url.clone() else {
        return Probe::failed("no URL in gateway.json");
    };
    let token = match live_call(home, "gateway.token.show", json!({})).await {
        Ok(Ok(v)) => v["token"].as_str().unwrap_or_default().to_string(),
        Ok(Err(e)) => return Probe::failed(format!("{}: {}", e.code, e.message)),
        Err(e) => return Probe::failed(format!("{e:#}")),
    };
    let fingerprint = match super::call::home_gateway_fingerprint(home) {
        Ok(Some(fp)) => fp,
        Ok(None) => return Probe::failed("no identity.key to verify the gateway against"),
        Err(e) => return Probe::failed(format!("{e:#}")),
    };
    match shared_token_probe(&url, token, &fingerprint).await {
        CredentialProbe::Accepted { latency_ms } => Probe::ok(latency_ms),
        CredentialProbe::Refused { code, reason } => Probe::failed(format!("{reason} ({code})")),
        CredentialProbe::Failed { error } => Probe::failed(error),
        CredentialProbe::NotChecked { why } => Probe::failed(why),
    }
}

/// The socket address a listener advertised as `scheme://ADDR` is reached at from this host (a
/// wildcard listener on loopback), or the failed probe saying why not.
fn probe_target(address: Option<&str>, scheme: &str) -> Result<std::net::SocketAddr, Probe> {
    let Some(addr) = address.and_then(|a| a.strip_prefix(scheme)) else {
        return Err(Probe::failed("no address"));
    };
    let Ok(mut sa) = addr.parse::<std::net::SocketAddr>() else {
        return Err(Probe::failed(format!("unparsable address {addr}")));
    };
    if sa.ip().is_unspecified() {
        sa.set_ip(if sa.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(sa)
}

/// A real QUIC + TLS 1.3 handshake with the tunnel, pinning the gateway's own key, from a
/// throwaway client key (unpaired keys may complete the handshake; they reach nothing).
async fn probe_quic(home: &Home, address: Option<&str>) -> Probe {
    let sa = match probe_target(address, "udp://") {
        Ok(sa) => sa,
        Err(p) => return p,
    };
    let gateway =
        match claw_tunnel::identity::Identity::load_or_create(&home.root().join("identity.key")) {
            Ok(i) => i.id(),
            Err(e) => return Probe::failed(e.to_string()),
        };
    let client = match claw_tunnel::identity::Identity::generate() {
        Ok(i) => i,
        Err(e) => return Probe::failed(e.to_string()),
    };
    let target = sa.to_string();
    let t = Instant::now();
    let dialer = match claw_tunnel::quic::client::Dialer::new(&client, &gateway, &target) {
        Ok(d) => d,
        Err(e) => return Probe::failed(e.to_string()),
    };
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        dialer.connect(std::slice::from_ref(&target)),
    )
    .await
    {
        Ok(Ok(conn)) => {
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            conn.close(0u32.into(), b"probe");
            Probe::ok(ms)
        }
        Ok(Err(e)) => Probe::failed(e.to_string()),
        Err(_) => Probe::failed(format!("{target}: no QUIC handshake within 5 s")),
    }
}

/// One `relay` channel per relay the gateway dials out to, in `--relay` order (pure): its URL
/// and the start of its certificate pin.
fn relay_channels(relays: &[claw_gateway::runtime_file::RuntimeRelay]) -> Vec<Channel> {
    relays
        .iter()
        .map(|r| {
            let mut c = Channel::new("relay", "dialing out");
            c.address = Some(r.url.clone());
            c.fingerprint = r
                .pin
                .as_deref()
                .map(|p| p.get(..16).unwrap_or(p).to_string());
            c.note = Some("the gateway's outbound link; devices reach it through the relay".into());
            c
        })
        .collect()
}

/// A QUIC handshake with this gateway through the relay at `url`, as a device makes it
/// ([`super::channels_relay`]).
async fn probe_relay(
    home: &Home,
    relays: &[claw_gateway::runtime_file::RuntimeRelay],
    url: Option<&str>,
) -> Probe {
    let Some(r) = relays.iter().find(|r| Some(r.url.as_str()) == url) else {
        return Probe::failed("no such relay");
    };
    match super::channels_relay::probe(home, &r.url, r.pin.as_deref()).await {
        Ok(ms) => Probe::ok(ms),
        Err(e) => Probe::failed(e),
    }
}

/// Connects to the SSH forward and reads its identification banner (`SSH-2.0-…`).
async fn probe_ssh_banner(address: Option<&str>) -> Probe {
    use tokio::io::AsyncBufReadExt;
    let sa = match probe_target(address, "tcp://") {
        Ok(sa) => sa,
        Err(p) => return p,
    };
    let t = Instant::now();
    let banner = async {
        let s = tokio::net::TcpStream::connect(sa).await?;
        let mut line = String::new();
        tokio::io::BufReader::new(s).read_line(&mut line).await?;
        Ok::<_, std::io::Error>(line)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), banner).await {
        Ok(Ok(l)) if l.starts_with("SSH-") => Probe::ok(t.elapsed().as_secs_f64() * 1000.0),
        Ok(Ok(l)) => Probe::failed(format!("not an SSH banner: {:?}", l.trim_end())),
        Ok(Err(e)) => Probe::failed(format!("{sa}: {e}")),
        Err(_) => Probe::failed(format!("{sa}: no banner within 5 s")),
    }
}

/// A WebSocket round trip to the upstream (TCP, upgrade, its `connect.challenge`), then claw's
/// own verdict on its credential there: a reachable upstream that refuses claw fails the probe
/// with claw's last error.
async fn probe_upstream(up: &Value) -> Probe {
    let Some(url) = up["url"].as_str() else {
        return Probe::failed("no upstream URL");
    };
    // `--upstream` is loopback only; a status naming anything else is not probed.
    let Ok(parsed) = claw_gateway::upstream::parse_upstream_url(url) else {
        return Probe::failed("the upstream URL is not a loopback ws:// URL");
    };
    let limit = std::time::Duration::from_secs(5);
    let ms = match claw_gateway::upstream::link::challenge_rtt(&parsed, limit).await {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => return Probe::failed(claw_gateway::text::escape(&e).into_owned()),
    };
    if up["authenticated"] == true {
        Probe::ok(ms)
    } else {
        let why = up["lastError"]
            .as_str()
            .unwrap_or("claw has not connected to it yet");
        Probe::failed(format!(
            "reachable ({ms:.1} ms) but claw is not authenticated: {}",
            claw_gateway::text::escape(why)
        ))
    }
}

/// A `health` call on the admin socket.
async fn probe_admin(home: &Home) -> Probe {
    let t = Instant::now();
    match live_call(home, "health", json!({})).await {
        Ok(Ok(_)) => Probe::ok(t.elapsed().as_secs_f64() * 1000.0),
        Ok(Err(e)) => Probe::failed(format!("{}: {}", e.code, e.message)),
        Err(e) => Probe::failed(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_split_clients_and_mark_missing_listeners() {
        let rt = RuntimeFacts {
            url: Some("ws://127.0.0.1:4000".into()),
            addrs: vec!["127.0.0.1:4000".into()],
            ..RuntimeFacts::default()
        };
        let status = json!({"clients": [
            {"connId": 1, "channel": "ws", "origin": "loopback", "method": "token", "client": "cli/cli", "connectedAtMs": 1000},
            {"connId": 2, "channel": "tunnel", "origin": "tunnel", "method": "device-token", "client": "cli/cli", "deviceId": "abcdef0123456789", "connectedAtMs": 2000},
        ]});
        let list = channels(&rt, &status, "/h/admin.sock");
        let names: Vec<_> = list.iter().map(|c| (c.name, c.state)).collect();
        assert_eq!(
            names,
            vec![
                ("ws", "listening"),
                ("admin", "listening"),
                ("tunnel", "not configured"),
                ("ssh", "not configured")
            ]
        );
        assert_eq!(list[0].clients.as_ref().unwrap().len(), 1);
        assert_eq!(list[0].address.as_deref(), Some("127.0.0.1:4000"));
        let out = render(7, &Home::new("/h"), &list, 61_000);
        assert!(
            out.starts_with("claw gateway: running (pid 7, home /h)\n"),
            "{out}"
        );
        assert!(
            out.contains("ws      listening       127.0.0.1:4000  1 client"),
            "{out}"
        );
        assert!(
            out.contains("conn 1  token  loopback  cli/cli  connected 60 s ago"),
            "{out}"
        );
        assert!(out.contains("tunnel  not configured"), "{out}");

        let with_tunnel = RuntimeFacts {
            tunnel_addr: Some("0.0.0.0:18790".into()),
            tunnel_id: Some("0123456789abcdef0123".into()),
            ..rt
        };
        let list = channels(&with_tunnel, &status, "/h/admin.sock");
        assert_eq!(list[2].state, "listening");
        assert_eq!(list[2].fingerprint.as_deref(), Some("0123456789abcdef"));
        assert_eq!(list[2].clients.as_ref().unwrap()[0]["connId"], 2);
        assert_eq!(list.len(), 4, "no upstream line without --upstream");
    }

    #[test]
    fn the_upstream_line_says_how_claw_sees_it() {
        let rt = RuntimeFacts::default();
        let status = |up: Value| json!({"clients": [], "upstream": up});
        let list = channels(
            &rt,
            &status(json!({"url": "ws://127.0.0.1:18789/", "reachable": true,
                "authenticated": true, "sessions": 3, "lastError": null})),
            "/h/admin.sock",
        );
        let up = list.last().unwrap();
        assert_eq!((up.name, up.state), ("upstream", "serving"));
        assert_eq!(up.address.as_deref(), Some("ws://127.0.0.1:18789/"));
        let out = render(7, &Home::new("/h"), &list, 0);
        assert!(
            out.contains("upstream serving         ws://127.0.0.1:18789/  3 upstream sessions"),
            "{out}"
        );
        for (up, state) in [
            (
                json!({"url": "ws://127.0.0.1:1/", "reachable": true, "authenticated": false,
                "lastError": "upstream refused claw: shared token refused"}),
                "refused",
            ),
            (
                json!({"url": "ws://127.0.0.1:1/", "reachable": false, "authenticated": false,
                "lastError": "cannot connect"}),
                "unreachable",
            ),
            (
                json!({"url": "ws://127.0.0.1:1/", "reachable": false, "authenticated": false,
                "lastError": null}),
                "connecting",
            ),
        ] {
            let list = channels(&rt, &status(up.clone()), "/h/admin.sock");
            assert_eq!(list.last().unwrap().state, state, "{up}");
        }
        // The upstream's strings are escaped before they reach a terminal.
        let list = channels(
            &rt,
            &status(json!({"url": "ws://127.0.0.1:1/", "reachable": true,
                "authenticated": false, "lastError": "bad\u{1b}[2Jthing"})),
            "/h/admin.sock",
        );
        let note = list.last().unwrap().note.clone().unwrap();
        assert!(!note.contains('\u{1b}'), "{note}");
        assert!(note.contains("last error: bad"), "{note}");
    }
}
