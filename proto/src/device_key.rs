//! A device's Ed25519 identity: generate, its file form, sign the v3 connect payload.
//!
//! One key serves the signed WebSocket `connect`, the QUIC tunnel's mutual TLS and SSH.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::connect::{signature_payload, ConnectParams, DeviceProof};
use crate::device_id::DeviceId;
use ring::rand::{SecureRandom, SystemRandom};

/// The text is not a device key ([`DeviceKey::from_text`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a device key (expected a base64url 32-byte Ed25519 seed)")]
pub struct KeyTextError;

/// 32 random bytes from the OS.
pub fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the OS random source failed");
    b
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

    /// The key's file form: its seed in base64url without padding (what `identity.key` holds;
    /// a secret — never log it). Storing it is the host's business (the gateway's home module
    /// writes it 0600, atomically).
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.seed)
    }

    /// Reads [`DeviceKey::to_text`]'s form (surrounding white space ignored).
    pub fn from_text(text: &str) -> Result<Self, KeyTextError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| KeyTextError)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyTextError)?;
        Ok(Self::from_seed(seed))
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
        self.id().into_string()
    }

    /// [`DeviceKey::device_id`] as a [`DeviceId`].
    pub fn id(&self) -> DeviceId {
        DeviceId::for_key(&self.public_key())
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
    use crate::connect::parse_connect;
    use crate::signature::verify_device;

    #[test]
    fn key_text_round_trips_and_signs() {
        let a = DeviceKey::generate();
        let b = DeviceKey::from_text(&format!(" {}\n", a.to_text())).unwrap();
        assert_eq!(a.device_id(), b.device_id());
        assert_eq!(a.device_id().len(), 64);
        assert_eq!(a.id().as_str(), a.device_id());
        let p = parse_connect(&serde_json::json!({"minProtocol":4,"maxProtocol":4,"auth":{"token":"t"},"scopes":["operator.read"]})).unwrap();
        let proof = b.prove(&p, "n1", 5);
        verify_device(&p, &proof, "n1", 5).unwrap();
        for bad in ["garbage", "", "AAAA", &"A".repeat(44)] {
            assert_eq!(
                DeviceKey::from_text(bad).unwrap_err(),
                KeyTextError,
                "{bad}"
            );
        }
    }
}
