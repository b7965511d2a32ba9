//! Tunnel control messages: the wire types live in claw-proto ([`claw_proto::tunnel`]) with the
//! rest of claw's wire contract; re-exported here for the tunnel's own code.

pub use claw_proto::tunnel::*;
