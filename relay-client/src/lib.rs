//! `relay-client`: the resilient OpenClaw gateway protocol v4 client that claw's tools (and
//! yours — a browser relay host, a remote CLI, a phone app) embed.
//!
//! - [`Client`]: the long-lived, resilient client. One socket carries many concurrent calls
//!   (correlated by id, each with a deadline); gateway events arrive on a broadcast channel;
//!   liveness is checked against the gateway's `tick`; a `shutdown`/1012, a lost network or a
//!   silent gateway lead to reconnects with capped exponential backoff and full jitter. When the
//!   gateway says the credentials went stale (device token rotated, token mismatch), exactly one
//!   re-pair runs however many calls were waiting, through the configured
//!   [`CredentialSource`]s; when it says they are dead (revoked, bad signature, pairing
//!   required) or the re-pair fails, the client goes to `auth_failed` and stays there — no
//!   reconnect loop — until the host supplies new credentials.
//! - [`state`]: that behaviour as a pure state machine (no IO, no tokio), tested directly.
//! - [`backoff`]: capped exponential backoff with full jitter.
//! - [`refresh`]: the single-flight refresher, reusable for any credential with a refresh step
//!   (e.g. an OAuth access token).
//! - [`Session`]: a plain one-request-at-a-time session for one-shot tools.
//!
//! ```no_run
//! # async fn demo() -> Result<(), relay_client::ClientError> {
//! use relay_client::{Client, ClientConfig, ConnectOptions, DeviceKey, SharedTokenRepair, Status};
//!
//! // The key's file form is its base64url seed (`DeviceKey::to_text`); keep it 0600.
//! let text = std::fs::read_to_string("/home/me/.claw/device.key").unwrap();
//! let key = DeviceKey::from_text(&text).unwrap();
//! let base = ConnectOptions::new("ws://127.0.0.1:18789")
//!     .device(key)
//!     .scopes(&["operator.read"]);
//! let cfg = ClientConfig::new(base.clone().token("<device token>"))
//!     // When the device token is rotated: re-pair with the shared token and the device key.
//!     .refresh_source(SharedTokenRepair::new(base.token("<shared token>")))
//!     .on_new_token(|t| std::fs::write("/home/me/.claw/device.token", t).map_err(|e| e.to_string()));
//! let client = Client::start(cfg);
//! let mut status = client.status();
//! tokio::spawn(async move {
//!     while status.changed().await.is_ok() {
//!         if let Status::AuthFailed(why) = &*status.borrow() {
//!             eprintln!("gateway refused us: {why}");
//!         }
//!     }
//! });
//! client.wait_connected(std::time::Duration::from_secs(10)).await?;
//! let health = client.call_idempotent("health", serde_json::json!({})).await?;
//! println!("{health}");
//! # Ok(()) }
//! ```
//!
//! The state machine runs without any IO, so its behaviour can be shown here for real:
//!
//! ```
//! use std::time::Instant;
//! use relay_client::state::{Action, Config, Input, Machine, Status};
//!
//! // A client with only a static token: rotation is terminal, with a clear message.
//! let mut m = Machine::new(Config::default(), 7);
//! let now = Instant::now();
//! m.handle(now, Input::Start);
//! m.handle(now, Input::Connected { tick_interval: None });
//! let actions = m.handle(now, Input::Closed {
//!     code: 1008,
//!     reason: relay_client::claw_proto::CloseReason::SharedTokenRotated,
//! });
//! let Status::AuthFailed(why) = m.status() else { panic!() };
//! assert!(why.to_string().contains("supply a new token"));
//! assert!(!actions.contains(&Action::Connect));
//! assert_eq!(m.poll_timeout(), None); // nothing scheduled: no reconnect loop
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod backoff;
mod client;
mod credentials;
mod error;
pub mod refresh;
mod session;
pub mod state;
pub mod url_policy;
pub mod wire;

pub use client::{CallOptions, Client, ClientConfig, Event};
pub use credentials::{
    CredentialChain, CredentialSource, SharedTokenRepair, TokenFile, TunnelRepair,
};
pub use error::{AuthFailure, ClientError, RefreshError, RefreshErrorKind};
pub use session::{ConnectOptions, Session};
pub use state::Status;

/// The wire contract this client speaks (frames, connect, close reasons, the device key).
pub use claw_proto;
pub use claw_proto::DeviceKey;
