//! claw's gateway: a loopback-only WebSocket server that speaks the OpenClaw gateway protocol v4
//! (handshake, auth, device identity and pairing subset).
//!
//! Layout (pure logic first, IO shells last):
//! - [`protocol`]: frames, the `connect` request, error shapes and close codes (no IO).
//! - [`auth`]: secrets, device signatures, the connect decision, failure delays (no IO).
//! - [`limits`]: per-key concurrency caps (pre-auth sockets per source; no IO).
//! - [`origin`]: the browser-origin allow-list checked before a WebSocket upgrade (pure).
//! - [`bind_guard`]: the loopback-only rule for the listen address (no IO besides name resolution).
//! - [`doctor`]: `claw doctor`'s checks (pure) between fact gathering and safe repairs (IO).
//! - [`fault`]: store faults (disk full, read-only, locked, IO, corrupt) and their messages (no IO).
//! - [`store`]: the only code that touches the SQLite database.
//! - [`methods`]: one file per method family and the dispatch table that also yields `features.methods`.
//! - [`text`]: refusing control/format characters in operator-visible strings and escaping them
//!   for terminals and logs (no IO).
//! - [`presence`]: who is connected, by which transport, since when (pure table + a thin link guard).
//! - [`web`]: the control page on the loopback port (hyper; Host check, CSP, login codes and page sessions pure).
//! - [`service`]: the answers every transport shares (is this key paired and not revoked?).
//! - [`upstream`]: upstream mode, claw in front of a real OpenClaw gateway (pure routing,
//!   scopes and handshake logic; one upstream WebSocket per downstream session).
//! - [`server`]: the TCP listener, HTTP/WS upgrade, session loop and the Unix admin socket.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod bind_guard;
pub mod doctor;
/// The home directory and its private files (the `claw-home` crate).
pub use claw_home as home;
pub mod limits;
pub mod lock;
pub mod methods;
pub mod origin;
pub mod peer_uid;
pub mod presence;
pub mod protocol;
pub mod rotation;
pub mod runtime_file;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod upstream;
pub mod web;

pub use claw_proto::{fault, text};

/// The version string claw reports as `server.version`.
pub use claw_proto::VERSION;

/// Milliseconds since the Unix epoch, the clock unit of the OpenClaw protocol.
pub use claw_home::now_ms;
