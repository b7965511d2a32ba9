//! `claw pair`: mint a one-time pairing code and print the pairing URI (and a QR code).

use std::net::{IpAddr, SocketAddr};

use claw_gateway::home::Home;
use claw_tunnel::identity::Identity;
use claw_tunnel::pairing::{PairingUri, RelayRef};
use serde_json::json;

use super::admin_client::admin_call;
use super::{exit, fail};

/// `claw pair` options.
#[derive(Debug, clap::Args)]
pub struct PairArgs {
    /// Name for the device that redeems the code.
    #[arg(long)]
    name: Option<String>,
    /// How long the code stays valid (e.g. 10m, 1h).
    #[arg(long, default_value = "10m")]
    ttl: humantime::Duration,
    /// Leave the device pending until `claw devices approve <id>`.
    #[arg(long)]
    require_approval: bool,
    /// Tunnel address(es) to put in the URI (default: the running tunnel's; none is needed when
    /// the gateway runs with `--relay`, whose relays the URI always names).
    #[arg(long = "addr", value_name = "HOST:PORT")]
    addrs: Vec<String>,
    /// One JSON document.
    #[arg(long)]
    json: bool,
    /// Do not print the QR code.
    #[arg(long)]
    no_qr: bool,
}

pub use claw::hosts::advertised_hosts;

fn runtime(home: &Home) -> Option<claw_gateway::runtime_file::RuntimeFile> {
    claw_gateway::runtime_file::RuntimeFile::read(home)
        .ok()
        .flatten()
}

/// The tunnel addresses from the running gateway's runtime file.
fn tunnel_addrs(home: &Home) -> Option<Vec<String>> {
    let addr: SocketAddr = runtime(home)?.tunnel?.addr.parse().ok()?;
    Some(advertised_addrs(addr))
}

/// What the control page's `dashboard.pair` uses to turn a fresh code into the URI `claw pair`
/// prints (the same compact form, with the same tunnel addresses and relay fields) and its QR
/// code as SVG.
pub fn page_pair_uri(p: claw::daemon::PagePair) -> claw_gateway::web::PairUriFn {
    let addrs: Vec<String> = p
        .tunnel
        .map(advertised_addrs)
        .unwrap_or_default()
        .into_iter()
        .take(claw_tunnel::pairing::MAX_ADDRS)
        .collect();
    let relays: Vec<RelayRef> = p
        .relays
        .iter()
        .take(claw_tunnel::pairing::MAX_RELAYS)
        .map(|r| RelayRef {
            url: r.url.to_string(),
            pin: r.pin.as_ref().map(|p| p.to_string()),
        })
        .collect();
    Box::new(move |code, expires_ms, name| {
        let uri = build_uri(
            &p.gateway_id,
            addrs.clone(),
            relays.clone(),
            &p.seed,
            code,
            expires_ms,
            name,
        );
        let text = uri.to_display_uri();
        PairingUri::parse(&text).ok()?;
        let svg = super::qr::svg(&text).ok()?;
        Some((text, svg))
    })
}

/// The addresses a device is told for a tunnel bound at `addr` (`advertised_hosts`, with the port).
fn advertised_addrs(addr: SocketAddr) -> Vec<String> {
    advertised_hosts(addr)
        .into_iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, addr.port()).to_string(),
            Err(_) => format!("{h}:{}", addr.port()),
        })
        .collect()
}

/// The pairing URI for `code`: with relays it carries the gateway's key (its relay address) and
/// the signature of a relay ticket for the code's pairing key, valid until the code expires.
fn build_uri(
    gateway_id: &str,
    addrs: Vec<String>,
    relays: Vec<RelayRef>,
    seed: &[u8; 32],
    code: &str,
    expires_ms: u64,
    name: Option<&str>,
) -> PairingUri {
    let (gateway_key, relay_sig) = if relays.is_empty() {
        (None, None)
    } else {
        (
            Some(claw_mesh::ticket::public_key(seed)),
            Some(claw_mesh::ticket::pairing_ticket(seed, code, expires_ms / 1000).signature()),
        )
    };
    PairingUri {
        gateway_id: gateway_id.to_string(),
        addrs: addrs
            .into_iter()
            .take(claw_tunnel::pairing::MAX_ADDRS)
            .collect(),
        code: code.to_string(),
        expires_at: expires_ms / 1000,
        name: name.map(str::to_string),
        relays,
        gateway_key,
        relay_sig,
    }
}

/// Runs `claw pair`.
pub async fn run(home: &Home, a: PairArgs) -> anyhow::Result<u8> {
    let relays: Vec<RelayRef> = runtime(home)
        .map(|r| r.relays)
        .unwrap_or_default()
        .into_iter()
        .take(claw_tunnel::pairing::MAX_RELAYS)
        .map(|r| RelayRef {
            url: r.url,
            pin: r.pin,
        })
        .collect();
    let addrs = if !a.addrs.is_empty() {
        a.addrs.clone()
    } else {
        match tunnel_addrs(home) {
            Some(addrs) => addrs,
            None if !relays.is_empty() => Vec::new(),
            None => return Err(fail(exit::UNAVAILABLE, "no tunnel or relay is running on this home: start the gateway with `claw gateway run --tunnel` or `--relay URL` (or pass --addr HOST:PORT)")),
        }
    };
    let ttl_ms = a.ttl.as_millis() as u64;
    // Checked here, so the user reads about `--ttl`, not the method's `ttlMs` parameter.
    if ttl_ms == 0 || ttl_ms > 7 * 24 * 3600 * 1000 {
        return Err(fail(
            2,
            format!(
                "--ttl {}: a pairing code lives between 1 ms and 7 days",
                a.ttl
            ),
        ));
    }
    home.ensure()?;
    let identity = Identity::load_or_create(&home.root().join("identity.key"))?;
    let v = admin_call(
        home,
        "pair.create",
        json!({"name": a.name, "ttlMs": ttl_ms, "requireApproval": a.require_approval}),
    )
    .await?;
    let expires_ms = v["expiresAtMs"].as_u64().unwrap_or(0);
    let code = v["code"].as_str().unwrap_or_default().to_string();
    let uri = build_uri(
        &identity.id(),
        addrs,
        relays,
        identity.key().seed(),
        &code,
        expires_ms,
        a.name.as_deref(),
    );
    // Our own output must parse: fail loudly rather than print a URI a device would reject.
    let long = uri.to_uri();
    let text = uri.to_display_uri();
    for t in [&long, &text] {
        PairingUri::parse(t).map_err(|e| {
            fail(
                exit::FAILURE,
                format!("claw pair made a URI it cannot read back ({e}); please report this"),
            )
        })?;
    }
    if a.json {
        let ssh = runtime(home).and_then(|r| r.ssh);
        println!(
            "{}",
            json!({
                "uri": text, "uriLong": long, "gatewayId": uri.gateway_id, "addrs": uri.addrs,
                "relays": uri.relays,
                "expiresAtMs": expires_ms, "codeId": v["codeId"], "requireApproval": a.require_approval,
                "ssh": ssh,
            })
        );
        return Ok(0);
    }
    let ssh = runtime(home).and_then(|r| r.ssh);
    if !a.no_qr {
        match super::qr::render(&text, colour_on_stdout()) {
            Ok(rows) => {
                print_qr_page(
                    &rows,
                    &qr_side_text(&a, &uri.gateway_id, ssh.as_ref()),
                    &text,
                );
                return Ok(0);
            }
            Err(e) => eprintln!("(no QR code: {e})"),
        }
    }
    println!(
        "Pair a device with this gateway. The code works once and expires in {}.",
        a.ttl
    );
    println!();
    println!("  claw tunnel pair '{text}'");
    println!();
    println!("gateway fingerprint: {}", uri.gateway_id);
    if let Some(rt) = ssh {
        println!("ssh forward: tcp://{} host key {}", rt.addr, rt.fingerprint);
        for line in &rt.known_hosts {
            println!("  known_hosts: {line}");
        }
    }
    if a.require_approval {
        println!("the device will wait for `claw devices approve <id>` after redeeming the code");
    }
    Ok(0)
}

/// Colour escapes on stdout: only on a terminal, and never with `NO_COLOR` set.
fn colour_on_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// The lines printed beside the QR code (each at most 36 characters, so code and text fit 80
/// columns).
fn qr_side_text(
    a: &PairArgs,
    gateway_id: &str,
    ssh: Option<&claw_gateway::runtime_file::RuntimeSsh>,
) -> Vec<String> {
    let mut side = vec![
        "Pair a device with this gateway.".to_string(),
        format!("The code works once; expires in {}.", a.ttl),
        String::new(),
        "Scan this code on the device, or".to_string(),
        "run the command below there.".to_string(),
        String::new(),
        "gateway fingerprint:".to_string(),
        format!("  {}", &gateway_id[..32.min(gateway_id.len())]),
        format!("  {}", gateway_id.get(32..).unwrap_or("")),
    ];
    if let Some(rt) = ssh {
        side.push(String::new());
        side.push(format!("ssh forward: {}", rt.addr));
        let fp = rt.fingerprint.as_str();
        side.push("ssh host key:".to_string());
        let (head, tail) = fp.split_at(fp.len().min(30));
        side.push(format!("  {head}"));
        if !tail.is_empty() {
            side.push(format!("  {tail}"));
        }
    }
    if a.require_approval {
        side.push(String::new());
        side.push("The device then waits for".to_string());
        side.push("`claw devices approve <id>`.".to_string());
    }
    side
}

/// The QR code with its text beside it, then the command (the URI) last, so code and URI stay on
/// screen together.
fn print_qr_page(rows: &[String], side: &[String], uri: &str) {
    for (i, row) in rows.iter().enumerate() {
        match side.get(i) {
            Some(t) if !t.is_empty() => println!("{row}  {t}"),
            _ => println!("{row}"),
        }
    }
    for t in side.iter().skip(rows.len()) {
        println!("{t}");
    }
    println!("claw tunnel pair '{uri}'");
}
