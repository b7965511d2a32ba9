//! Authentication logic with no IO: secrets, device signatures, the connect decision and the
//! failure delay. The parts a client shares (the device key, signatures, the gateway proof,
//! scopes) live in `claw-proto` and are re-exported here.

pub mod decide;
pub mod delay;
pub mod device_key;
pub mod pairing_code;
pub mod secrets;

pub use claw_proto::{gateway_proof, scopes, signature};
