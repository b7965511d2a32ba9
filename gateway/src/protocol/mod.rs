//! The OpenClaw gateway protocol v4 as claw speaks it: pure types and functions, no IO.
//!
//! - [`frames`]: request/response/event JSON frames and their size limits.
//! - [`connect`]: the `connect` request's parameters and their validation.
//! - [`errors`]: every handshake rejection with its error object and WebSocket close.
//! - [`hello`]: the `hello-ok` payload.

pub mod connect;
pub mod errors;
pub mod frames;
pub mod hello;

/// The protocol version claw speaks.
pub const PROTOCOL_VERSION: u32 = 4;
/// The lowest version accepted from probe clients (`client.mode == "probe"`).
pub const MIN_PROBE_PROTOCOL: u32 = 3;
