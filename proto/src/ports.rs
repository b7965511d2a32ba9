//! Default ports, in one place (the CLI's flags and `claw doctor` read them from here).

/// The gateway's WebSocket listener (loopback only): OpenClaw's default port.
pub const GATEWAY: u16 = 18789;
/// The QUIC tunnel for paired devices (UDP).
pub const TUNNEL: u16 = 18790;
/// The built-in SSH forward (TCP).
pub const SSH: u16 = 18722;
