//! Authentication logic with no IO: secrets, device signatures, the connect decision and the
//! failure delay.

pub mod decide;
pub mod delay;
pub mod device_key;
pub mod gateway_proof;
pub mod pairing_code;
pub mod scopes;
pub mod secrets;
pub mod signature;
