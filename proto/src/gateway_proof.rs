//! The gateway proves who it is before a client hands it a secret.
//!
//! A client that knows the gateway's key (its home's `identity.key`, or the fingerprint pinned
//! at pairing) sends a fresh random nonce in the upgrade request (header [`NONCE_HEADER`]). The
//! gateway answers with `gatewayProof` in `connect.challenge`: its Ed25519 public key and a
//! signature over [`CONTEXT`], the client's nonce, the challenge nonce, the challenge `ts` and the
//! socket address the connection arrived on (`bound`, loopback only). The client checks, before
//! it sends `connect`, that the key has the expected fingerprint, that the signature verifies and
//! that `bound` is the address its own socket is connected to — so a squatter on a freed port
//! cannot replay an old proof (the client's nonce is new) nor relay a fresh one from the real
//! gateway (that proof names the real gateway's address, not the squatter's).
//!
//! Clients that send no nonce (the real `openclaw` CLI) get no proof, and a field they do not
//! know in the challenge is ignored by them. Pure functions; the IO lives in the session and in
//! relay-client.

use std::net::SocketAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ED25519};
use serde_json::{json, Value};

use super::device_key::DeviceKey;
use crate::device_id::device_id_for_key;

/// Domain separation: these signatures can never be mistaken for a device's connect signature.
pub const CONTEXT: &str = "claw-gateway-proof/v1";

/// The upgrade request header carrying the client's nonce.
pub const NONCE_HEADER: &str = "x-claw-proof-nonce";

/// Longest client nonce the gateway signs (a UUID is 36 characters).
pub const MAX_NONCE: usize = 128;

/// Why a proof does not prove the expected gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The challenge carries no `gatewayProof` (not a claw gateway, or an impostor).
    #[error("the server sent no gateway proof")]
    Missing,
    /// The proof is not shaped as expected.
    #[error("the gateway proof is malformed")]
    Malformed,
    /// The key is not the one the client expects.
    #[error("the server's key {got} is not the expected gateway {expected}")]
    WrongKey {
        /// Fingerprint expected.
        expected: String,
        /// Fingerprint presented.
        got: String,
    },
    /// The signature does not verify (a replayed or forged proof).
    #[error("the gateway proof's signature does not verify")]
    BadSignature,
    /// The proof names another address than the one the client is connected to (a relay).
    #[error("the gateway proof names {signed}, but this connection goes to {actual}")]
    WrongAddress {
        /// What the gateway signed.
        signed: String,
        /// Where the client's socket is connected.
        actual: String,
    },
}

/// A valid client nonce: 1..=[`MAX_NONCE`] printable ASCII characters without spaces.
pub fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.len() <= MAX_NONCE && n.bytes().all(|b| b.is_ascii_graphic())
}

fn message(client_nonce: &str, nonce: &str, ts: u64, bound: Option<&str>) -> Vec<u8> {
    format!(
        "{CONTEXT}\n{client_nonce}\n{nonce}\n{ts}\n{}",
        bound.unwrap_or("-")
    )
    .into_bytes()
}

/// The `gatewayProof` object for a challenge: `bound` is the local address of the connection
/// (`None` for connections carried by the tunnel or SSH, whose transport already authenticated
/// the gateway).
pub fn sign(
    key: &DeviceKey,
    client_nonce: &str,
    nonce: &str,
    ts: u64,
    bound: Option<SocketAddr>,
) -> Value {
    let bound = bound.map(|a| a.to_string());
    let sig = key.sign(&message(client_nonce, nonce, ts, bound.as_deref()));
    json!({
        "v": 1,
        "publicKey": key.public_key_b64(),
        "signature": URL_SAFE_NO_PAD.encode(sig),
        "bound": bound,
    })
}

/// Checks `challenge_payload.gatewayProof` against the gateway fingerprint the client expects
/// (lowercase hex SHA-256 of the raw public key), its own nonce, and the address its socket is
/// connected to (`None` when unknown: then a `bound` proof is still accepted only if it is
/// signed, which a relay cannot change — pass the address whenever there is one).
pub fn verify(
    challenge_payload: &Value,
    expected_fingerprint: &str,
    client_nonce: &str,
    connected_to: Option<SocketAddr>,
) -> Result<(), ProofError> {
    let proof = challenge_payload
        .get("gatewayProof")
        .ok_or(ProofError::Missing)?;
    let nonce = challenge_payload
        .get("nonce")
        .and_then(Value::as_str)
        .ok_or(ProofError::Malformed)?;
    let ts = challenge_payload
        .get("ts")
        .and_then(Value::as_u64)
        .ok_or(ProofError::Malformed)?;
    if proof.get("v").and_then(Value::as_u64) != Some(1) {
        return Err(ProofError::Malformed);
    }
    let key = proof
        .get("publicKey")
        .and_then(Value::as_str)
        .and_then(|k| URL_SAFE_NO_PAD.decode(k).ok())
        .filter(|k| k.len() == 32)
        .ok_or(ProofError::Malformed)?;
    let sig = proof
        .get("signature")
        .and_then(Value::as_str)
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .filter(|s| s.len() == 64)
        .ok_or(ProofError::Malformed)?;
    let bound = match proof.get("bound") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ProofError::Malformed),
    };
    let got = device_id_for_key(&key);
    if got != expected_fingerprint.to_ascii_lowercase() {
        return Err(ProofError::WrongKey {
            expected: expected_fingerprint.to_string(),
            got,
        });
    }
    UnparsedPublicKey::new(&ED25519, &key)
        .verify(&message(client_nonce, nonce, ts, bound), &sig)
        .map_err(|_| ProofError::BadSignature)?;
    if let (Some(signed), Some(actual)) = (bound, connected_to) {
        if signed.parse::<SocketAddr>().ok() != Some(actual) {
            return Err(ProofError::WrongAddress {
                signed: signed.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(proof: Value) -> Value {
        json!({"nonce": "server-nonce", "ts": 42, "gatewayProof": proof})
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_fresh_proof_verifies_and_every_change_is_caught() {
        let k = DeviceKey::generate();
        let fp = k.device_id();
        let at = addr("127.0.0.1:4000");
        let p = sign(&k, "client-nonce", "server-nonce", 42, Some(at));
        assert_eq!(
            verify(&challenge(p.clone()), &fp, "client-nonce", Some(at)),
            Ok(())
        );
        // Replayed to another client (another client nonce).
        assert_eq!(
            verify(&challenge(p.clone()), &fp, "other-nonce", Some(at)),
            Err(ProofError::BadSignature)
        );
        // Relayed from the real gateway by a squatter on another port.
        assert!(matches!(
            verify(
                &challenge(p.clone()),
                &fp,
                "client-nonce",
                Some(addr("127.0.0.1:4001"))
            ),
            Err(ProofError::WrongAddress { .. })
        ));
        // The squatter rewrites `bound` to its own address: the signature breaks.
        let mut forged = p.clone();
        forged["bound"] = json!("127.0.0.1:4001");
        assert_eq!(
            verify(
                &challenge(forged),
                &fp,
                "client-nonce",
                Some(addr("127.0.0.1:4001"))
            ),
            Err(ProofError::BadSignature)
        );
        // Another challenge nonce or ts.
        let mut c = challenge(p.clone());
        c["nonce"] = json!("other");
        assert_eq!(
            verify(&c, &fp, "client-nonce", Some(at)),
            Err(ProofError::BadSignature)
        );
        let mut c = challenge(p.clone());
        c["ts"] = json!(43);
        assert_eq!(
            verify(&c, &fp, "client-nonce", Some(at)),
            Err(ProofError::BadSignature)
        );
        // A valid proof by another key.
        let other = DeviceKey::generate();
        let p2 = sign(&other, "client-nonce", "server-nonce", 42, Some(at));
        assert!(matches!(
            verify(&challenge(p2), &fp, "client-nonce", Some(at)),
            Err(ProofError::WrongKey { .. })
        ));
        // No proof at all (an impostor, or a gateway of an older claw).
        assert_eq!(
            verify(
                &json!({"nonce": "n", "ts": 1}),
                &fp,
                "client-nonce",
                Some(at)
            ),
            Err(ProofError::Missing)
        );
    }

    #[test]
    fn unbound_proofs_serve_the_tunnel_and_malformed_ones_are_refused() {
        let k = DeviceKey::generate();
        let fp = k.device_id();
        let p = sign(&k, "c", "server-nonce", 42, None);
        assert_eq!(
            verify(&challenge(p.clone()), &fp, "c", Some(addr("127.0.0.1:9"))),
            Ok(())
        );
        for bad in [
            json!(null),
            json!({"v": 2}),
            json!({"v": 1, "publicKey": "x", "signature": "y"}),
            json!({"v": 1, "publicKey": p["publicKey"], "signature": "AAAA"}),
            json!({"v": 1, "publicKey": p["publicKey"], "signature": p["signature"], "bound": 7}),
        ] {
            assert!(
                verify(&challenge(bad.clone()), &fp, "c", None).is_err(),
                "{bad}"
            );
        }
        assert!(valid_nonce("0b1c-uuid"));
        assert!(!valid_nonce(""));
        assert!(!valid_nonce("has space"));
        assert!(!valid_nonce(&"a".repeat(MAX_NONCE + 1)));
    }
}
