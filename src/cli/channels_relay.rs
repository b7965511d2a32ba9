//! `claw channels status --probe` for the relays a gateway dials out to (`--relay`): a real
//! QUIC + TLS 1.3 handshake with the gateway *through* the relay, as a device would make it —
//! admission by a short ticket this gateway signs for a throwaway key, the relay's certificate
//! pinned, the gateway's key pinned at the far end. (The throwaway key is unpaired: it completes
//! the handshake and reaches nothing, as with the direct tunnel's probe.)

use std::time::{Duration, Instant};

use claw_gateway::home::Home;
use claw_tunnel::identity::Identity;

/// How long the relay probe may take (the relay's TLS/WebSocket connection comes first).
pub const RELAY_PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the probe's ticket lives.
const PROBE_TICKET_SECS: u64 = 300;

/// Probes the gateway of `home` through the relay at `url` (pinned to `pin` when self-signed);
/// the handshake's latency in ms, or why it failed.
pub async fn probe(home: &Home, url: &str, pin: Option<&str>) -> Result<f64, String> {
    let gateway =
        Identity::load_or_create(&home.root().join("identity.key")).map_err(|e| e.to_string())?;
    let client = Identity::generate().map_err(|e| e.to_string())?;
    let gateway_key = claw_mesh::ticket::public_key(gateway.key().seed());
    let client_key = claw_mesh::ticket::public_key(client.key().seed());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let ticket = claw_mesh::ticket::DeviceTicket::issue(
        gateway.key().seed(),
        client_key,
        now + PROBE_TICKET_SECS,
    )
    .encode();
    let target = claw_mesh::client::RelayTarget {
        url: url.to_string(),
        pin: pin.map(str::to_string),
    };
    let t = Instant::now();
    let dialer = claw_tunnel::quic::client::Dialer::over_relay(
        &client,
        &gateway.id(),
        gateway_key,
        target,
        *client.key().seed(),
        tokio::sync::watch::channel(Some(ticket)).1,
    )
    .map_err(|e| e.to_string())?;
    let to = dialer.relay_target().unwrap_or_default();
    // A relay that refuses the connection (down, or refusing the ticket) fails the probe at
    // once instead of after the timeout.
    let mut link = dialer.relay_status_watch();
    let refused = async {
        match link.as_mut() {
            Some(l) => l
                .wait_for(|s| s.connects == 0 && s.last_error.is_some())
                .await
                .map(|s| s.last_error.clone().unwrap_or_default())
                .unwrap_or_default(),
            None => std::future::pending().await,
        }
    };
    let attempt = tokio::select! {
        r = dialer.connect_one(&to, RELAY_PROBE_TIMEOUT) => r,
        why = refused => return Err(format!("relay {url}: {why}")),
    };
    let result = match attempt {
        Ok(conn) => {
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            conn.close(0u32.into(), b"probe");
            Ok(ms)
        }
        Err(e) => {
            let link = dialer
                .relay_status()
                .and_then(|s| s.last_error)
                .map(|l| format!(" (relay: {l})"))
                .unwrap_or_default();
            Err(format!("{e}{link}"))
        }
    };
    dialer.close_endpoint(Duration::from_millis(200)).await;
    result
}
