//! The QUIC tunnel: quinn over rustls with pinned Ed25519 keys in both directions.
//!
//! - [`config`]: TLS and transport settings shared by both ends.
//! - [`server`]: the gateway's listener (`claw gateway run --tunnel`).
//! - [`client`]: the device side (`claw tunnel pair`, `claw tunnel up`).
//! - [`lines`]: bounded line reading on QUIC streams.
//! - [`copy`]: a forwarded TCP connection ↔ its QUIC stream (the data path).
//! - [`paths`]: which addresses and relays a device tries, in which order.
//! - [`proxy`]: `claw tunnel proxy ssh`, an SSH `ProxyCommand` over the tunnel.

pub mod client;
pub mod config;
pub mod copy;
pub mod lines;
pub mod liveness;
pub mod paths;
pub mod proxy;
#[cfg(feature = "gateway")]
pub mod server;

/// Tunnel errors.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// TLS or QUIC configuration failed.
    #[error("tunnel configuration: {0}")]
    Config(String),
    /// Binding the UDP socket failed.
    #[error("cannot bind the tunnel on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The gateway presented another key than the one pinned (a man in the middle, or the wrong
    /// gateway).
    #[error("gateway fingerprint mismatch: expected {expected}, the server presented {seen}; refusing to talk to it (possible man in the middle)")]
    FingerprintMismatch {
        /// Pinned id.
        expected: String,
        /// Presented id.
        seen: String,
    },
    /// No address answered.
    #[error("cannot reach the gateway at {addrs}: {reason}")]
    Unreachable {
        /// Addresses tried.
        addrs: String,
        /// Last error.
        reason: String,
    },
    /// The gateway refused (pairing or access).
    #[error("gateway refused: {message} ({code})")]
    Refused {
        /// Stable code from [`crate::control::ServerMsg::Error`].
        code: crate::control::TunnelCode,
        /// Message.
        message: String,
    },
    /// The connection or a stream failed.
    #[error("tunnel connection: {0}")]
    Connection(String),
    /// Device files.
    #[error(transparent)]
    Device(#[from] crate::device::DeviceFileError),
    /// Identity.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
}

/// Application error codes used when closing QUIC connections.
pub mod close_code {
    /// Normal shutdown.
    pub const DONE: u32 = 0;
    /// The device was revoked or removed.
    pub const REVOKED: u32 = 1;
    /// The peer broke the protocol.
    pub const PROTOCOL: u32 = 2;
    /// The gateway is stopping.
    pub const SHUTDOWN: u32 = 3;
}
