//! `claw relay serve`: iroh-relay's server (its HTTP(S)/WebSocket relay protocol, unchanged)
//! with claw's [`Admission`] as its access control and a per-client receive rate limit.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use iroh_relay::server::{
    Access, AccessControl, CertConfig, ClientRateLimit, ClientRequest, RelayConfig, Server,
    ServerConfig, TlsConfig,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::admission::{Admission, Admitted};

/// Relay server errors.
#[derive(Debug, thiserror::Error)]
pub enum RelayServeError {
    /// TLS settings refused (certificate/key mismatch, unsupported key).
    #[error("relay TLS: {0}")]
    Tls(String),
    /// Binding or starting failed.
    #[error("relay cannot start on {addr}: {reason}")]
    Spawn {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        reason: String,
    },
}

/// What the relay serves and how.
#[derive(Debug)]
pub struct RelayServeConfig {
    /// TCP address of the relay (HTTPS with TLS, plain HTTP without).
    pub listen: SocketAddr,
    /// Who is admitted.
    pub admission: Admission,
    /// Certificate chain and key; `None`: plain HTTP (behind a TLS-terminating proxy, or tests).
    pub tls: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Bytes per second the relay reads from one client (iroh-relay's `Limits::client_rx`).
    pub client_rx_bytes_per_sec: Option<NonZeroU32>,
}

/// The access hook: claw's rules, each decision logged.
#[derive(Debug)]
struct ClawAccess(Admission);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AccessControl for ClawAccess {
    async fn on_connect(&self, request: &ClientRequest) -> Access {
        let key = *request.endpoint_id().as_bytes();
        let bearer = request.auth_token();
        match self.0.decide(&key, bearer.as_deref(), unix_now()) {
            Ok(Admitted::Gateway { id }) => {
                tracing::info!(gateway = %id, "relay: gateway admitted");
                Access::Allow
            }
            Ok(Admitted::Device { id, gateway_id }) => {
                tracing::info!(device = %id, gateway = %gateway_id, "relay: device admitted");
                Access::Allow
            }
            Err(e) => {
                tracing::info!(key = %crate::admission::key_id(&key), reason = %e, "relay: refused");
                Access::Deny {
                    reason: Some(e.to_string()),
                }
            }
        }
    }
}

/// A running relay.
#[derive(Debug)]
pub struct RunningRelay {
    server: Server,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
}

impl RunningRelay {
    /// Stops it.
    pub async fn shutdown(self) {
        let _ = self.server.shutdown().await;
    }
}

/// Starts the relay.
pub async fn spawn(cfg: RelayServeConfig) -> Result<RunningRelay, RelayServeError> {
    let listen = cfg.listen;
    let spawn_err = |reason: String| RelayServeError::Spawn {
        addr: listen,
        reason,
    };
    let tls = cfg.tls.is_some();
    // With TLS iroh-relay also serves a plain-HTTP captive-portal probe on `http_bind_addr`:
    // keep that on loopback, so the relay's only public socket is the one asked for.
    let mut relay = RelayConfig::new(if tls {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        listen
    });
    if let Some((chain, key)) = cfg.tls {
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| RelayServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| RelayServeError::Tls(e.to_string()))?;
        relay.tls = Some(TlsConfig::new(listen, CertConfig::Manual { server_config }));
    }
    relay.access = Arc::new(ClawAccess(cfg.admission));
    if let Some(rate) = cfg.client_rx_bytes_per_sec {
        let mut limit = ClientRateLimit::new(rate);
        // One second's worth may arrive at once.
        limit.max_burst_bytes = Some(rate);
        relay.limits.client_rx = Some(limit);
    }
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    let server = Server::spawn(config)
        .await
        .map_err(|e| spawn_err(e.to_string()))?;
    let addr = if tls {
        server.https_addr()
    } else {
        server.http_addr()
    }
    .ok_or_else(|| spawn_err("no address".into()))?;
    Ok(RunningRelay { server, addr, tls })
}
