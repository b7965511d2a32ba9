//! `claw doctor [--fix] [--json] [--port N]`: gathers the facts (claw_gateway::doctor::gather),
//! adds the network probe that needs the client library (this home's shared token against the
//! running gateway), runs the checks, applies the safe repairs when asked, prints the report.
//!
//! Exit 0 when nothing needs the human, 1 otherwise (docs/cli.md, docs/doctor.md).

use std::time::{Duration, Instant};

use claw_gateway::doctor::facts::{CredentialProbe, DeviceCredentialFacts, Facts};
use claw_gateway::doctor::gather::{gather, GatherOptions};
use claw_gateway::doctor::{checks, fix, Report};
use claw_gateway::home::Home;
use relay_client::{ClientError, ConnectOptions, Session};
use serde_json::{json, Value};

use super::admin_client::live_call;

/// `claw doctor` options.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Apply the safe repairs (remove stale locks, orphan sockets, temporary files; prune expired
    /// pairing state; tighten permissions). Credentials are never minted, rotated or revoked.
    #[arg(long)]
    fix: bool,
    /// Print one JSON document `{home, findings, summary}`.
    #[arg(long)]
    json: bool,
    /// Check this WebSocket port (default: the running gateway's, else 18789).
    #[arg(long)]
    port: Option<u16>,
}

/// Runs `claw doctor`.
pub async fn run(home: &Home, a: DoctorArgs) -> anyhow::Result<u8> {
    let opts = GatherOptions { port: a.port };
    let gather_home = home.clone();
    let mut facts = tokio::task::spawn_blocking(move || gather(&gather_home, &opts)).await?;
    if facts.lock.holder().is_some() {
        probe_token(home, &mut facts).await;
    }
    facts.device = probe_device(home).await;
    relay_facts(home, &mut facts).await;
    let findings = checks::evaluate(&facts);
    let outcomes = if a.fix {
        let fix_home = home.clone();
        let to_fix = findings.clone();
        tokio::task::spawn_blocking(move || fix::apply(&fix_home, &to_fix)).await?
    } else {
        Vec::new()
    };
    let report = Report::new(home.root().to_path_buf(), findings, outcomes);
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(report.exit_code())
}

/// The relays: on a running gateway, each one it dials out to, probed end to end through it
/// (reachable, pin, admitted); on a device paired through relays, its ticket's expiry.
async fn relay_facts(home: &Home, facts: &mut Facts) {
    if facts.lock.holder().is_some() {
        let relays = claw_gateway::runtime_file::RuntimeFile::read(home)
            .ok()
            .flatten()
            .map(|f| f.relays)
            .unwrap_or_default();
        for r in relays {
            let probe = super::channels_relay::probe(home, &r.url, r.pin.as_deref()).await;
            facts.relays.push(claw_gateway::doctor::facts::RelayFacts {
                pinned: r.pin.is_some(),
                url: r.url,
                probe,
            });
        }
    }
    let dh = claw_tunnel::device::DeviceHome::new(home.root());
    if let Ok(p) = dh.pairing() {
        if !p.relays.is_empty() {
            facts.device_relay = Some(claw_gateway::doctor::facts::DeviceRelayFacts {
                relays: p.relays.len(),
                ticket_expires_at: dh.relay_ticket().ok().flatten().map(|t| t.expires_at),
            });
        }
    }
}

/// A read-only probe of this home's device credentials over the tunnel (nothing is issued or
/// stored): which generation the gateway is at, against the stored token's.
async fn probe_device(home: &Home) -> DeviceCredentialFacts {
    let dh = claw_tunnel::device::DeviceHome::new(home.root());
    if dh.pairing().is_err() {
        return DeviceCredentialFacts::NotPaired;
    }
    let stored_generation = dh.token().ok().flatten().map(|t| t.generation).unwrap_or(0);
    // The probe dials addresses, then relays (claw_tunnel::quic::paths): allow all of them.
    let limit = pairing_dial_limit(&dh);
    match tokio::time::timeout(limit, claw_tunnel::quic::client::probe(&dh)).await {
        Ok(Ok(gateway_generation)) => DeviceCredentialFacts::Checked {
            stored_generation,
            gateway_generation,
        },
        Ok(Err(claw_tunnel::quic::TunnelError::Refused { code, message })) => {
            DeviceCredentialFacts::Refused {
                code: code.to_string(),
                reason: message,
            }
        }
        Ok(Err(e)) => DeviceCredentialFacts::Unreachable {
            error: e.to_string(),
        },
        Err(_) => DeviceCredentialFacts::Unreachable {
            error: "timed out".into(),
        },
    }
}

/// The longest a dial of this home's pairing can take (its addresses, then its relays), plus
/// the probe's own round trip.
fn pairing_dial_limit(dh: &claw_tunnel::device::DeviceHome) -> Duration {
    let (addrs, relays) = dh
        .pairing()
        .map(|p| (p.addrs.len(), p.relays.len()))
        .unwrap_or((1, 0));
    claw_tunnel::quic::paths::worst_case(addrs, relays) + PROBE_TIMEOUT
}

/// Time allowed for the shared-token probe (a refused secret is answered after the gateway's
/// failure delay, at most 5 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// Presents this home's shared token to the running gateway (connect + `health`) and records the
/// gateway's token source (from the admin socket; never the token itself).
async fn probe_token(home: &Home, facts: &mut Facts) {
    if let Ok(Ok(v)) = live_call(home, "gateway.status", json!({})).await {
        facts.token.gateway_source = v["gateway"]["tokenSource"].as_str().map(str::to_string);
        let u = &v["upstream"];
        if u.is_object() {
            facts.upstream = Some(claw_gateway::doctor::facts::UpstreamFacts {
                url: u["url"].as_str().unwrap_or_default().to_string(),
                credential: u["credential"].as_str().unwrap_or_default().to_string(),
                reachable: u["reachable"] == true,
                authenticated: u["authenticated"] == true,
                last_error: u["lastError"].as_str().map(str::to_string),
            });
        }
    }
    // Read without the mode check (loose permissions are a finding of their own), but never
    // through a symlink nor from a file another uid owns.
    let token = match claw_gateway::home::open_private(
        &home.shared_token_path(),
        std::fs::OpenOptions::new().read(true),
    )
    .and_then(|mut f| {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).map(|_| s)
    }) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        Ok(_) => {
            facts.token.probe = CredentialProbe::NotChecked {
                why: "gateway.token is empty".into(),
            };
            return;
        }
        Err(e) => {
            facts.token.home_token_present = e.kind() != std::io::ErrorKind::NotFound;
            facts.token.probe = CredentialProbe::NotChecked {
                why: format!("cannot read gateway.token: {e}"),
            };
            return;
        }
    };
    let Some(url) = facts.runtime.as_ref().and_then(|r| r.url.clone()) else {
        facts.token.probe = CredentialProbe::NotChecked {
            why: "the gateway wrote no URL in gateway.json".into(),
        };
        return;
    };
    let fingerprint = match super::call::home_gateway_fingerprint(home) {
        Ok(Some(fp)) => fp,
        Ok(None) => {
            facts.token.probe = CredentialProbe::NotChecked {
                why: "no identity.key to verify the gateway against; the token is not sent to an unproven server".into(),
            };
            return;
        }
        Err(e) => {
            facts.token.probe = CredentialProbe::NotChecked {
                why: format!("cannot read identity.key: {e:#}"),
            };
            return;
        }
    };
    facts.token.probe = shared_token_probe(&url, token, &fingerprint).await;
}

/// A real round trip with the shared token: the handshake, then `health`. The token goes only
/// to a server that proves it holds the gateway key with `fingerprint`.
pub async fn shared_token_probe(url: &str, token: String, fingerprint: &str) -> CredentialProbe {
    let mut o = ConnectOptions::new(url)
        .token(token)
        .scopes(&["operator.read"])
        .expect_gateway(fingerprint);
    o.timeout = PROBE_TIMEOUT;
    let t = Instant::now();
    let result = async {
        let mut s = Session::connect(o).await?;
        let r = s.call("health", json!({})).await;
        s.close().await;
        r
    }
    .await;
    match result {
        Ok(_) => CredentialProbe::Accepted {
            latency_ms: t.elapsed().as_secs_f64() * 1000.0,
        },
        Err(ClientError::Rejected {
            code,
            message,
            details,
        }) => CredentialProbe::Refused {
            code: details
                .as_ref()
                .and_then(|d| d.get("code"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or(code),
            reason: message,
        },
        Err(ClientError::Closed { code, reason }) if code == 1008 => CredentialProbe::Refused {
            code: format!("CLOSE_{code}"),
            reason,
        },
        Err(e) => CredentialProbe::Failed {
            error: e.to_string(),
        },
    }
}
