//! Connecting to a relay as a gateway or a device: iroh-relay's client with claw's key and,
//! for a self-signed relay, the pinned certificate.

use std::sync::Arc;

use iroh_base::{RelayUrl, SecretKey};
use iroh_relay::client::{Client, ClientBuilder};

use crate::pin::PinnedRelayVerifier;

/// Relay client errors.
#[derive(Debug, thiserror::Error)]
pub enum RelayClientError {
    /// The URL is not an `http(s)://` URL.
    #[error("not a relay URL (https://HOST:PORT): {0}")]
    BadUrl(String),
    /// TLS configuration failed.
    #[error("relay TLS configuration: {0}")]
    Tls(String),
    /// The relay could not be reached, refused us, or failed the handshake.
    #[error("relay {url}: {reason}")]
    Connect {
        /// The relay.
        url: String,
        /// What happened.
        reason: String,
    },
}

/// Where a relay is and how to recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTarget {
    /// `https://host:port/` (or `http://` for a relay behind a TLS-terminating proxy, or tests).
    pub url: String,
    /// SHA-256 of its self-signed certificate; `None`: a CA-issued certificate.
    pub pin: Option<String>,
}

/// Parses and normalises a relay URL.
pub fn parse_url(s: &str) -> Result<RelayUrl, RelayClientError> {
    let u: url::Url = s.parse().map_err(|_| RelayClientError::BadUrl(s.into()))?;
    if !matches!(u.scheme(), "https" | "http") || u.host_str().is_none() {
        return Err(RelayClientError::BadUrl(s.into()));
    }
    Ok(RelayUrl::from(u))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls settings for talking to `target`: its pin, or the embedded web roots.
pub fn tls_config(target: &RelayTarget) -> Result<rustls::ClientConfig, RelayClientError> {
    let tls_err = |e: String| RelayClientError::Tls(e);
    match &target.pin {
        Some(pin) => {
            let verifier = Arc::new(PinnedRelayVerifier::new(pin.clone(), provider()));
            Ok(rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| tls_err(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth())
        }
        None => iroh_relay::tls::CaTlsConfig::default()
            .client_config(provider())
            .map_err(|e| tls_err(e.to_string())),
    }
}

/// Connects to the relay with the Ed25519 `seed` (claw's identity key: the relay address of a
/// gateway or device is its own public key) and, for a device, its ticket.
pub async fn connect(
    target: &RelayTarget,
    seed: &[u8; 32],
    ticket: Option<&str>,
) -> Result<Client, RelayClientError> {
    let url = parse_url(&target.url)?;
    let mut b = ClientBuilder::new(
        url,
        SecretKey::from_bytes(seed),
        iroh_dns::dns::DnsResolver::new(),
    )
    .tls_client_config(tls_config(target)?);
    if let Some(t) = ticket {
        b = b.auth_token(t);
    }
    b.connect().await.map_err(|e| RelayClientError::Connect {
        url: target.url.clone(),
        reason: error_chain(&e),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
