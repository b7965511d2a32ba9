//! The OpenClaw gateway protocol v4 as claw speaks it. The types live in the wire-contract
//! crate `claw-proto` (shared with the clients); these re-exports keep the gateway's paths.
//!
//! - [`frames`]: request/response/event JSON frames and their size limits.
//! - [`connect`]: the `connect` request's parameters and their validation.
//! - [`errors`]: every handshake rejection with its error object and WebSocket close.
//! - [`close`]: close codes and the `CloseReason` enum.
//! - [`hello`]: the `hello-ok` payload.

pub use claw_proto::{close, codes, connect, errors, frames, hello};
pub use claw_proto::{MIN_PROBE_PROTOCOL, PROTOCOL_VERSION};
