//! A device's id: the lowercase hex SHA-256 of its raw Ed25519 public key (OpenClaw's rule; also
//! the gateway's fingerprint in pairing URIs).

use serde::{Deserialize, Serialize};

/// A device id (64 lowercase hex digits). Made from a key ([`DeviceId::for_key`]) or checked
/// from text ([`DeviceId::parse`]), so holding one means the text has the right shape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

/// The text is not a device id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a device id (expected 64 lowercase hex digits)")]
pub struct DeviceIdError;

impl DeviceId {
    /// The id of a raw Ed25519 public key.
    pub fn for_key(raw_public_key: &[u8]) -> Self {
        Self(hex(ring::digest::digest(
            &ring::digest::SHA256,
            raw_public_key,
        )
        .as_ref()))
    }

    /// Checks `s` is 64 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, DeviceIdError> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_string()))
        } else {
            Err(DeviceIdError)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = DeviceIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> Self {
        id.0
    }
}

impl PartialEq<str> for DeviceId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for DeviceId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Device id for a raw Ed25519 public key, as text ([`DeviceId::for_key`]).
pub fn device_id_for_key(raw_public_key: &[u8]) -> String {
    DeviceId::for_key(raw_public_key).into_string()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_round_trip() {
        let id = DeviceId::for_key(&[7u8; 32]);
        assert_eq!(id.as_str().len(), 64);
        assert_eq!(DeviceId::parse(id.as_str()), Ok(id.clone()));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), id);
        for bad in [
            "",
            "abc",
            &"A".repeat(64),
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            &format!("{}\u{e9}", "a".repeat(62)),
        ] {
            assert_eq!(DeviceId::parse(bad), Err(DeviceIdError), "{bad:?}");
            assert!(serde_json::from_value::<DeviceId>(serde_json::json!(bad)).is_err());
        }
    }
}
