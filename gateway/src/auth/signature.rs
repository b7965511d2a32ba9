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

/// Properties (proptest): a device signature verifies for exactly what was signed. Change any
/// signed field of the connect, the nonce, the timestamp, the id, the key or the signature and
/// it no longer verifies.
///
/// The signed fields are OpenClaw's v3 payload: device id, `client.id`, `client.mode`, role,
/// scopes, `signedAt`, the signed token, nonce, platform and device family (the last two
/// lowercased, so a change of case alone is not a change). `client.version`, instance id,
/// display name, `auth.password` and the protocol range are not signed by OpenClaw clients, so
/// they are not mutated here.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::auth::device_key::DeviceKey;
    use crate::protocol::connect::{AuthParams, ClientInfo};
    use proptest::prelude::*;
    use proptest::sample::Index;

    fn params() -> impl Strategy<Value = ConnectParams> {
        (
            ("[a-z-]{1,12}", "[a-z]{1,8}", "[a-z]{1,8}", "[A-Za-z]{1,8}"),
            "[a-z]{1,10}",
            prop::collection::vec("[a-z.]{1,20}", 0..4),
            prop::option::of("[A-Za-z0-9_-]{1,43}"),
        )
            .prop_map(|((id, mode, platform, family), role, scopes, token)| {
                ConnectParams {
                    min_protocol: 4,
                    max_protocol: 4,
                    client: ClientInfo {
                        id,
                        mode,
                        platform,
                        device_family: family,
                        ..ClientInfo::default()
                    },
                    role,
                    scopes,
                    auth: AuthParams {
                        token,
                        ..AuthParams::default()
                    },
                    device: None,
                }
            })
    }

    /// One change to a signed connect.
    #[derive(Debug, Clone)]
    enum Change {
        ClientId(String),
        Mode(String),
        Role(String),
        ReplaceScope(Index, String),
        AddScope(String),
        DropScope(Index),
        Token(String),
        Platform(String),
        DeviceFamily(String),
        /// The attacker rewrites the proof's nonce to the new challenge.
        Replay(String),
        /// The proof is presented on a connection with another challenge.
        Challenge(String),
        SignedAt(u64),
        DeviceId(Index),
        OtherKey([u8; 32]),
        SignatureBit(Index, u8),
    }

    fn change() -> impl Strategy<Value = Change> {
        let s = || ".{0,24}";
        prop_oneof![
            s().prop_map(Change::ClientId),
            s().prop_map(Change::Mode),
            s().prop_map(Change::Role),
            (any::<Index>(), s()).prop_map(|(i, v)| Change::ReplaceScope(i, v)),
            ".{1,24}".prop_map(Change::AddScope),
            any::<Index>().prop_map(Change::DropScope),
            ".{1,43}".prop_map(Change::Token),
            s().prop_map(Change::Platform),
            s().prop_map(Change::DeviceFamily),
            s().prop_map(Change::Replay),
            s().prop_map(Change::Challenge),
            any::<u64>().prop_map(Change::SignedAt),
            any::<Index>().prop_map(Change::DeviceId),
            any::<[u8; 32]>().prop_map(Change::OtherKey),
            (any::<Index>(), 0u8..8).prop_map(|(i, b)| Change::SignatureBit(i, b)),
        ]
    }

    /// Applies `c`; returns the challenge the proof is then checked against, or `None` when the
    /// change happens to be no change (a value equal to the old one).
    fn apply(
        c: &Change,
        p: &mut ConnectParams,
        d: &mut DeviceProof,
        challenge: &str,
    ) -> Option<String> {
        fn set(field: &mut String, v: &str) -> Option<()> {
            (field != v).then(|| *field = v.to_string())
        }
        match c {
            Change::ClientId(v) => set(&mut p.client.id, v)?,
            Change::Mode(v) => set(&mut p.client.mode, v)?,
            Change::Role(v) => set(&mut p.role, v)?,
            Change::ReplaceScope(i, v) => {
                if p.scopes.is_empty() {
                    return None;
                }
                let i = i.index(p.scopes.len());
                set(&mut p.scopes[i], v)?
            }
            Change::AddScope(v) => p.scopes.push(v.clone()),
            Change::DropScope(i) => {
                if p.scopes.is_empty() {
                    return None;
                }
                p.scopes.remove(i.index(p.scopes.len()));
            }
            Change::Token(v) => {
                if p.signed_token() == v {
                    return None;
                }
                p.auth.token = Some(v.clone());
            }
            Change::Platform(v) => {
                if p.client.platform.to_lowercase() == v.to_lowercase() {
                    return None;
                }
                p.client.platform = v.clone();
            }
            Change::DeviceFamily(v) => {
                if p.client.device_family.to_lowercase() == v.to_lowercase() {
                    return None;
                }
                p.client.device_family = v.clone();
            }
            Change::Replay(v) => {
                set(&mut d.nonce, v)?;
                return Some(v.clone());
            }
            Change::Challenge(v) => {
                if v == challenge {
                    return None;
                }
                return Some(v.clone());
            }
            Change::SignedAt(v) => {
                if d.signed_at == *v {
                    return None;
                }
                d.signed_at = *v;
            }
            Change::DeviceId(i) => {
                let mut id = d.id.clone().into_bytes();
                let i = i.index(id.len());
                id[i] = if id[i] == b'0' { b'1' } else { b'0' };
                d.id = String::from_utf8(id).expect("hex");
            }
            Change::OtherKey(seed) => {
                // Another key, with its own matching id: the signature is not that key's.
                let other = DeviceKey::from_seed(*seed);
                if other.public_key_b64() == d.public_key {
                    return None;
                }
                d.public_key = other.public_key_b64();
                d.id = other.device_id();
            }
            Change::SignatureBit(i, bit) => {
                let mut sig = b64url(&d.signature).expect("signature is base64url");
                let i = i.index(sig.len());
                sig[i] ^= 1 << bit;
                d.signature = URL_SAFE_NO_PAD.encode(sig);
            }
        }
        Some(challenge.to_string())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_signature_over_any_other_payload_never_verifies(
            seed in any::<[u8; 32]>(),
            p in params(),
            nonce in "[0-9a-f-]{36}",
            ts in any::<u64>(),
            c in change(),
        ) {
            let key = DeviceKey::from_seed(seed);
            let proof = key.prove(&p, &nonce, ts);
            prop_assert_eq!(verify_device(&p, &proof, &nonce), Ok(key.public_key().to_vec()));
            let (mut p2, mut d2) = (p.clone(), proof.clone());
            let Some(challenge) = apply(&c, &mut p2, &mut d2, &nonce) else {
                return Ok(());
            };
            let what_was_signed = signature_payload(&p, &proof);
            prop_assert!(
                signature_payload(&p2, &d2) != what_was_signed || d2 != proof || challenge != nonce,
                "the change left everything as signed"
            );
            let r = verify_device(&p2, &d2, &challenge);
            prop_assert!(r.is_err(), "{:?} verified after {:?}", r, c);
        }

        /// Hostile proofs (any strings) are refused with an error, never a panic.
        #[test]
        fn hostile_proofs_never_verify(
            p in params(),
            id in ".{0,70}",
            public_key in ".{0,50}|[A-Za-z0-9_-]{43}",
            signature in ".{0,90}|[A-Za-z0-9_-]{86}",
            nonce in ".{0,40}",
        ) {
            let d = DeviceProof { id, public_key, signature, signed_at: 1, nonce: nonce.clone() };
            prop_assert!(verify_device(&p, &d, &nonce).is_err());
        }
    }
}
