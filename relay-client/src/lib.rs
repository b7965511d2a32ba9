//! `relay-client`: the OpenClaw gateway protocol v4 client that claw's own tools embed.
//!
//! This first increment is the connect handshake (shared token, device token, signed device
//! identity over the challenge nonce) and request/response calls on one session. The resilient
//! layer (single-flight re-pair, backoff with jitter, `auth_failed`) builds on it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), relay_client::ClientError> {
//! use relay_client::{ConnectOptions, Session};
//! let mut s = Session::connect(ConnectOptions::new("ws://127.0.0.1:18789").token("T")).await?;
//! let health = s.call("health", serde_json::json!({})).await?;
//! println!("{health}");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod session;

pub use session::{ClientError, ConnectOptions, Session};
