//! claw's wire contract: everything both ends of a claw connection must agree on, as plain types
//! and functions. No tokio, no filesystem, no sockets — the gateway (`claw-gateway`) parses with
//! it, the client library (`relay-client`) builds and signs with it, and neither writes the wire
//! format a second time.
//!
//! - [`frames`]: request/response/event JSON frames, their size limits and [`ErrorShape`].
//! - [`connect`]: the `connect` parameters (parsed by the gateway, built by clients) and the v3/v2
//!   device-signature payloads.
//! - [`hello`]: the `hello-ok` payload ([`HelloOk`]).
//! - [`errors`]: every handshake rejection ([`Rejection`]) with its error object and close.
//! - [`close`]: WebSocket close codes and [`CloseReason`], the close texts as one enum;
//!   [`codes`]: the error codes (`error.code`, `details.code`).
//! - [`fault`]: store faults ([`FaultKind`]): why a gateway answers a retryable `UNAVAILABLE`.
//! - [`device_key`] / [`device_id`]: the one Ed25519 device key type and the [`DeviceId`] it names.
//! - [`signature`]: checking a device's signed `connect`; [`gateway_proof`]: the gateway's
//!   proof of identity to local clients.
//! - [`scopes`], [`text`] (printable-text rule and escaping), [`loopback`] (the loopback rule),
//!   [`ports`] (default ports).
//! - [`tunnel`]: the QUIC tunnel's stream headers, control messages and [`tunnel::TunnelCode`].
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod close;
pub mod codes;
pub mod connect;
pub mod device_id;
pub mod device_key;
pub mod errors;
pub mod fault;
pub mod frames;
pub mod gateway_proof;
pub mod hello;
pub mod loopback;
pub mod pairing_code;
pub mod ports;
pub mod scopes;
pub mod signature;
pub mod text;
pub mod tunnel;

pub use close::CloseReason;
pub use connect::ConnectParams;
pub use device_id::DeviceId;
pub use device_key::DeviceKey;
pub use errors::Rejection;
pub use fault::FaultKind;
pub use frames::ErrorShape;
pub use hello::HelloOk;
pub use loopback::is_loopback;

/// The protocol version claw speaks.
pub const PROTOCOL_VERSION: u32 = 4;
/// The lowest version accepted from probe clients (`client.mode == "probe"`).
pub const MIN_PROBE_PROTOCOL: u32 = 3;
/// claw's version (`server.version`, `client.version`); the workspace shares one version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
