//! A device's Ed25519 identity: generate, persist (0600), sign the v3 connect payload.
//!
//! One key serves the signed WebSocket `connect`, the QUIC tunnel's mutual TLS and SSH.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::secrets::random_bytes;
use super::signature::device_id_for_key;
use crate::protocol::connect::{signature_payload, ConnectParams, DeviceProof};

/// Errors loading a device key.
#[derive(Debug, thiserror::Error)]
pub enum DeviceKeyError {
    /// Reading or writing the key file failed.
    #[error("device key {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a 32-byte seed.
    #[error("device key {0} is corrupt (expected a base64url 32-byte Ed25519 seed)")]
    Corrupt(String),
}

/// An Ed25519 device key.
pub struct DeviceKey {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey")
            .field("device_id", &self.device_id())
            .finish_non_exhaustive()
    }
}

impl Clone for DeviceKey {
    fn clone(&self) -> Self {
        Self::from_seed(self.seed)
    }
}

impl DeviceKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self::from_seed(random_bytes())
    }

    /// The key with this 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are a seed");
        Self { seed, pair }
    }

    /// The 32-byte private seed (for TLS/SSH key export; never log it).
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// Loads the key at `path`, creating it (0600, atomically) when absent.
    pub fn load_or_create(path: &Path) -> Result<Self, DeviceKeyError> {
        let io = |source| DeviceKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match crate::home::read_secret(path) {
            Ok(text) => {
                let bytes = URL_SAFE_NO_PAD
                    .decode(text.trim())
                    .map_err(|_| DeviceKeyError::Corrupt(path.display().to_string()))?;
                let seed: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| DeviceKeyError::Corrupt(path.display().to_string()))?;
                Ok(Self::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                if let Some(dir) = path.parent() {
                    crate::home::create_private_dir(dir).map_err(io)?;
                }
                crate::home::write_secret_atomic(path, URL_SAFE_NO_PAD.encode(key.seed).as_bytes())
                    .map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Base64url public key, as sent in `device.publicKey`.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    /// Device id: lowercase hex SHA-256 of the public key.
    pub fn device_id(&self) -> String {
        device_id_for_key(&self.public_key())
    }

    /// Signs raw bytes.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }

    /// Builds the signed `device` block for `params` over the challenge (`nonce`, `ts`).
    pub fn prove(&self, params: &ConnectParams, nonce: &str, ts: u64) -> DeviceProof {
        let mut proof = DeviceProof {
            id: self.device_id(),
            public_key: self.public_key_b64(),
            signature: String::new(),
            signed_at: ts,
            nonce: nonce.to_string(),
        };
        let payload = signature_payload(params, &proof);
        proof.signature = URL_SAFE_NO_PAD.encode(self.sign(payload.as_bytes()));
        proof
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::signature::verify_device;
    use crate::protocol::connect::parse_connect;

    #[test]
    fn persisted_key_round_trips_and_signs() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("keys/device.key");
        let a = DeviceKey::load_or_create(&path).unwrap();
        let b = DeviceKey::load_or_create(&path).unwrap();
        assert_eq!(a.device_id(), b.device_id());
        assert_eq!(a.device_id().len(), 64);
        let p = parse_connect(&serde_json::json!({"minProtocol":4,"maxProtocol":4,"auth":{"token":"t"},"scopes":["operator.read"]})).unwrap();
        let proof = a.prove(&p, "n1", 5);
        verify_device(&p, &proof, "n1", 5).unwrap();
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            DeviceKey::load_or_create(&path),
            Err(DeviceKeyError::Corrupt(_))
        ));
    }
}
