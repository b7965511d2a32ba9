//! The device key and its file (`identity.key`, 0600): the type is
//! `claw_proto::device_key::DeviceKey`, the file is kept by `claw_home::device_key`.

pub use claw_home::device_key::{load_or_create, DeviceKeyError};
pub use claw_proto::device_key::{random_bytes, DeviceKey, KeyTextError};
