//! claw's mesh reachability: a gateway with no inbound port, reached through a relay users
//! host themselves.
//!
//! - [`ticket`]: the device tickets a gateway signs so its devices may use the relay.
//! - [`admission`]: who a relay serves (pure decisions).
//! - [`client`]: connecting to a relay as a gateway or device.
//! - [`pin`]: the relay's self-signed certificate and its SHA-256 pin; the client-side verifier.
//! - [`peers`]: fake socket addresses for relay peers (pure).
//! - [`punch`]: hole punching — probes authenticated with QUIC session keys, path state (pure).
//! - [`socket`]: the `quinn::AsyncUdpSocket` that carries QUIC over a relay.
//! - `server` (feature `server`): `claw relay serve`, iroh-relay's server with claw admission.
//!
//! The relay protocol is iroh-relay's (HTTP(S) + WebSocket); nothing here invents one.
#![warn(unreachable_pub)]

pub mod admission;
pub mod client;
pub mod peers;
pub mod pin;
pub mod punch;
#[cfg(feature = "server")]
pub mod server;
pub mod socket;
pub mod ticket;

/// iroh's key types (a relay address is an Ed25519 public key).
pub use iroh_base;
/// iroh-relay's client and protocol types, for callers that move datagrams over a connection
/// from [`client::connect`].
pub use iroh_relay;
