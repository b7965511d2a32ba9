//! claw's remote paths into the loopback-only gateway.
//!
//! - [`identity`]: one Ed25519 key per device (and per gateway), made with rcgen, serving mutual
//!   TLS, the signed WebSocket `connect` and SSH.
//! - [`verify`]: rustls verifiers that pin keys instead of trusting a CA.
//! - [`pairing`]: the `claw://pair?…` URI (pure), and [`pairing_compact`] its QR-friendly
//!   `CLAW://P/…` form.
//! - [`control`]: the tunnel's control messages and stream headers (pure).
//! - [`quic`]: the QUIC tunnel: gateway-side listener and device-side `tunnel up`.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod control;
pub mod device;
pub mod identity;
pub mod pairing;
pub mod pairing_compact;
pub mod quic;
#[cfg(feature = "gateway")]
pub mod ssh;
pub mod verify;

/// The russh version claw builds on (for OpenSSH key parsing in the CLI).
pub use quinn;
pub use russh;
