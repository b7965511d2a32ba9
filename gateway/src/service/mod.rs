//! The service layer: what the transports (WebSocket methods, the session's connect, the QUIC
//! tunnel, the SSH forward) ask of the gateway's state, each question answered in one place.
//!
//! - [`key_status`]: is this device key paired, revoked, unknown — or can the store not say?
//!   The one answer the tunnel's TLS verifier, every tunnel stream, SSH login, every SSH
//!   channel and an SSH session's revocation watch all use.
//! - [`connect`]: the device side of an accepted connect (silent pairing, token issue, re-pair,
//!   sub-identities) and pairing requests — what a WebSocket session changes.
//! - [`devices`]: approve, reject, rotate a token, revoke, remove — each with its audit entry,
//!   credential event and session closes.
//! - [`pairing`]: redeeming a one-time code and handing a device its current token (the
//!   tunnel's control stream).

pub mod connect;
pub mod devices;
pub mod pairing;

use crate::state::GatewayState;

/// What the store says about a device key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// A paired, non-revoked device: full access.
    Paired,
    /// Unknown: may only pair.
    Unpaired,
    /// Revoked: refused.
    Revoked,
    /// The store could not be read (a fault): never treated as revoked or unpaired — the
    /// transport refuses retryably (or drops the connection) and the device keeps its
    /// credentials.
    Unavailable,
}

impl KeyStatus {
    /// Paired and not revoked.
    pub fn is_trusted(self) -> bool {
        self == KeyStatus::Paired
    }
}

/// The status of `device_id`'s key. A store fault is logged here and answered
/// [`KeyStatus::Unavailable`].
pub fn key_status(state: &GatewayState, device_id: &str) -> KeyStatus {
    let found = state.store().device(device_id);
    match found {
        Ok(Some(d)) if d.revoked_at_ms.is_some() => KeyStatus::Revoked,
        Ok(Some(_)) => KeyStatus::Paired,
        Ok(None) => KeyStatus::Unpaired,
        Err(e) => {
            tracing::error!(error = %e, device = %crate::text::escape(device_id), "store failure looking up a device key");
            KeyStatus::Unavailable
        }
    }
}

#[cfg(test)]
mod tests;
