//! Device identity checks: `device.id` is the SHA-256 of the public key, and the Ed25519 signature
//! over the v3 payload verifies.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ED25519};

use super::secrets::hex;
use crate::protocol::connect::{signature_payload, ConnectParams, DeviceProof};
use crate::protocol::errors::Rejection;

/// Device id for a raw Ed25519 public key: lowercase hex SHA-256.
pub fn device_id_for_key(raw_public_key: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, raw_public_key).as_ref())
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    let t = s.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .or_else(|| URL_SAFE.decode(s).ok())
}

/// Verifies a device proof against this connection's challenge nonce. Returns the raw public key.
pub fn verify_device(
    params: &ConnectParams,
    device: &DeviceProof,
    challenge_nonce: &str,
) -> Result<Vec<u8>, Rejection> {
    let key = b64url(&device.public_key)
        .filter(|k| k.len() == 32)
        .ok_or(Rejection::IdentityMismatch)?;
    if device_id_for_key(&key) != device.id {
        return Err(Rejection::IdentityMismatch);
    }
    if device.nonce != challenge_nonce {
        return Err(Rejection::NonceMismatch);
    }
    let sig = b64url(&device.signature)
        .filter(|s| s.len() == 64)
        .ok_or(Rejection::SignatureInvalid)?;
    let msg = signature_payload(params, device);
    UnparsedPublicKey::new(&ED25519, &key)
        .verify(msg.as_bytes(), &sig)
        .map_err(|_| Rejection::SignatureInvalid)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::connect::parse_connect;

    /// A signed connect captured from the real OpenClaw exchange (device1, scenario `device`).
    const REAL: &str = r#"{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"0.0.1-probe","platform":"linux","deviceFamily":"Linux","mode":"cli"},"caps":[],"role":"operator","scopes":["operator.read","operator.admin","operator.pairing"],"auth":{"token":"tok-A-123456"},"device":{"id":"0b86ae56826c65c8e50f8dfcfdd3cf6deff41e77f06e7c80838c52aa3d59e1c9","publicKey":"yBixz1XxfNTSsDyS5wFtXftdMf_oaFSNrSySb_6OBmw","signature":"3_T_N07lGoWXxUGb0nBquGgmOe96iccAaPFSs14IChMu2cS394AZxLGHahb6OTDm3LEek-ckeurFKh-eJtQ-DA","signedAt":1795560005454,"nonce":"84a3b6c4-a85c-439f-9de1-ddac63a9f12c"}}"#;

    #[test]
    fn real_openclaw_signature_verifies() {
        let p = parse_connect(&serde_json::from_str(REAL).unwrap()).unwrap();
        let d = p.device.clone().unwrap();
        verify_device(&p, &d, "84a3b6c4-a85c-439f-9de1-ddac63a9f12c").unwrap();
    }

    #[test]
    fn any_change_breaks_it() {
        let p = parse_connect(&serde_json::from_str(REAL).unwrap()).unwrap();
        let d = p.device.clone().unwrap();
        assert_eq!(
            verify_device(&p, &d, "other-nonce"),
            Err(Rejection::NonceMismatch)
        );
        let mut p2 = p.clone();
        p2.scopes.pop();
        assert_eq!(
            verify_device(&p2, &d, &d.nonce),
            Err(Rejection::SignatureInvalid)
        );
        let mut p3 = p.clone();
        p3.auth.token = Some("tok-B".into());
        assert_eq!(
            verify_device(&p3, &d, &d.nonce),
            Err(Rejection::SignatureInvalid)
        );
        let mut d2 = d.clone();
        d2.id = format!("00{}", &d.id[2..]);
        assert_eq!(
            verify_device(&p, &d2, &d.nonce),
            Err(Rejection::IdentityMismatch)
        );
        let mut d3 = d.clone();
        d3.signature = "A3mQdh1x4QZqtMtjhRnf8cA8CcQy7KH-UKi44PFVgGFT6G-Rz0eSSZMXk-GGsolHt9bjW1JwtF48L9u2v0oSBg".into();
        assert_eq!(
            verify_device(&p, &d3, &d.nonce),
            Err(Rejection::SignatureInvalid)
        );
        let mut d4 = d.clone();
        d4.public_key = "!!!".into();
        assert_eq!(
            verify_device(&p, &d4, &d.nonce),
            Err(Rejection::IdentityMismatch)
        );
        let mut d5 = d.clone();
        d5.signature = "short".into();
        assert_eq!(
            verify_device(&p, &d5, &d.nonce),
            Err(Rejection::SignatureInvalid)
        );
    }
}
