//! Device tickets: a gateway's signed permission for one device key to use a relay for a while.
//!
//! A relay admits gateways by their allow-listed id and devices by a ticket one of those
//! gateways signed. The ticket names the gateway's and the device's Ed25519 public keys and an
//! expiry; the relay checks the signature, the expiry, that the gateway is on its list and that
//! the device key is the one the relay handshake proved (so a ticket is useless to anyone
//! else). A ticket grants relaying only: the gateway's TLS verifier still decides who gets in.
//!
//! Wire form (the bearer token of the relay's WebSocket upgrade):
//! `claw1.` + base64url (no padding) of
//! `version (1) ‖ gateway key (32) ‖ device key (32) ‖ expiry, unix seconds, big-endian (8) ‖
//! Ed25519 signature (64)`, where the signature covers [`SIGNING_CONTEXT`] followed by the first
//! 73 bytes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// Prefix of the text form; the digit is the format version.
pub const PREFIX: &str = "claw1.";
/// Format version byte.
pub const VERSION: u8 = 1;
/// Domain separation for the signature: a ticket signature can never be mistaken for a
/// signature the same key makes elsewhere (the WebSocket `connect`, TLS, SSH).
pub const SIGNING_CONTEXT: &[u8] = b"claw relay device ticket v1\0";
/// Longest life a relay accepts: a ticket claiming more is refused, so a gateway with a wrong
/// clock cannot grant relaying for long.
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;
/// Life of the tickets a gateway issues; a connected device gets a fresh one long before. The
/// ticket is bound to the device's key, so it is worth nothing without that key, and trust is
/// the gateway's TLS verifier's decision, not the relay's: the expiry only bounds how long a
/// device the gateway forgot can keep using the relay's bandwidth, and how long a device may
/// stay offline and still come back through the relay (docs/mesh.md).
pub const DEFAULT_TTL_SECS: u64 = 7 * 24 * 3600;
/// Bytes of the signed body.
const BODY_LEN: usize = 1 + 32 + 32 + 8;
/// Bytes of a whole ticket.
const TICKET_LEN: usize = BODY_LEN + 64;
/// Longest text form (base64 of the 137 ticket bytes plus the prefix); longer input is refused
/// before decoding.
pub const MAX_TEXT_LEN: usize = PREFIX.len() + (TICKET_LEN * 4).div_ceil(3);

/// A parsed (not yet verified) ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTicket {
    /// The issuing gateway's raw Ed25519 public key.
    pub gateway_key: [u8; 32],
    /// The device's raw Ed25519 public key.
    pub device_key: [u8; 32],
    /// Expiry, unix seconds.
    pub expires_at: u64,
    signature: [u8; 64],
}

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket at all (prefix, length, encoding, version).
    #[error("malformed relay ticket: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the gateway key it names.
    #[error("relay ticket signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("relay ticket expired")]
    Expired,
    /// Claims a life longer than [`MAX_TTL_SECS`] from now.
    #[error("relay ticket lives too long")]
    TooLong,
    /// Issued for another device key than the one that connected.
    #[error("relay ticket was issued for another device")]
    WrongDevice,
    /// The issuing gateway is not on the relay's list.
    #[error("relay ticket issued by a gateway this relay does not serve")]
    UnknownGateway,
}

impl DeviceTicket {
    /// Signs a ticket for `device_key` with the gateway's Ed25519 seed, valid until `expires_at`.
    pub fn issue(gateway_seed: &[u8; 32], device_key: [u8; 32], expires_at: u64) -> Self {
        let kp = Ed25519KeyPair::from_seed_unchecked(gateway_seed).expect("a 32-byte seed");
        let mut gateway_key = [0u8; 32];
        gateway_key.copy_from_slice(kp.public_key().as_ref());
        let mut t = Self {
            gateway_key,
            device_key,
            expires_at,
            signature: [0u8; 64],
        };
        let sig = kp.sign(&t.signed_message());
        t.signature.copy_from_slice(sig.as_ref());
        t
    }

    /// A ticket from its parts (as a pairing URI carries them: the gateway key, the expiry and
    /// the signature; the device key derived from the pairing code). Unverified.
    pub fn from_parts(
        gateway_key: [u8; 32],
        device_key: [u8; 32],
        expires_at: u64,
        signature: [u8; 64],
    ) -> Self {
        Self {
            gateway_key,
            device_key,
            expires_at,
            signature,
        }
    }

    /// The signature (what a pairing URI carries of its ticket).
    pub fn signature(&self) -> [u8; 64] {
        self.signature
    }

    /// True when the signature verifies with the gateway key the ticket names (expiry and
    /// device are not judged: see [`Self::verify`]).
    pub fn signature_is_valid(&self) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.gateway_key)
            .verify(&self.signed_message(), &self.signature)
            .is_ok()
    }

    fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        b[0] = VERSION;
        b[1..33].copy_from_slice(&self.gateway_key);
        b[33..65].copy_from_slice(&self.device_key);
        b[65..73].copy_from_slice(&self.expires_at.to_be_bytes());
        b
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = SIGNING_CONTEXT.to_vec();
        m.extend_from_slice(&self.body());
        m
    }

    /// The text form (a valid HTTP header value).
    pub fn encode(&self) -> String {
        let mut raw = self.body().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// Parses the text form; checks structure only (see [`Self::verify`]).
    pub fn parse(text: &str) -> Result<Self, TicketError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(TicketError::Malformed("too long"));
        }
        let b64 = text
            .strip_prefix(PREFIX)
            .ok_or(TicketError::Malformed("not a claw ticket"))?;
        let raw = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| TicketError::Malformed("not base64url"))?;
        if raw.len() != TICKET_LEN {
            return Err(TicketError::Malformed("wrong length"));
        }
        if raw[0] != VERSION {
            return Err(TicketError::Malformed("unknown version"));
        }
        let mut t = Self {
            gateway_key: [0u8; 32],
            device_key: [0u8; 32],
            expires_at: u64::from_be_bytes(raw[65..73].try_into().expect("8 bytes")),
            signature: [0u8; 64],
        };
        t.gateway_key.copy_from_slice(&raw[1..33]);
        t.device_key.copy_from_slice(&raw[33..65]);
        t.signature.copy_from_slice(&raw[73..]);
        Ok(t)
    }

    /// Checks the signature, the expiry against `now` (unix seconds) and that the device that
    /// presents it is `device_key`. Whether the gateway is trusted is the caller's decision
    /// ([`crate::admission`]).
    pub fn verify(&self, device_key: &[u8; 32], now: u64) -> Result<(), TicketError> {
        if !self.signature_is_valid() {
            return Err(TicketError::BadSignature);
        }
        if self.expires_at <= now {
            return Err(TicketError::Expired);
        }
        if self.expires_at - now > MAX_TTL_SECS {
            return Err(TicketError::TooLong);
        }
        if &self.device_key != device_key {
            return Err(TicketError::WrongDevice);
        }
        Ok(())
    }
}

/// Domain separation for the pairing relay key: SHA-256 of this and the pairing code is the
/// Ed25519 seed of the key an unpaired device uses on the relay while it redeems its code.
pub const PAIRING_KEY_CONTEXT: &[u8] = b"claw pairing relay key v1\0";

/// The relay key (Ed25519 seed) of a device redeeming `code`: an unpaired device is not known to
/// the gateway, so `claw pair` signs a ticket for this key, valid until the code expires, and the
/// pairing URI carries its signature. Whoever holds the URI may use the relay that long — and
/// could redeem the code anyway; the relay sees only the derived public key.
pub fn pairing_seed(code: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(PAIRING_KEY_CONTEXT);
    ctx.update(code.as_bytes());
    let mut seed = [0u8; 32];
    seed.copy_from_slice(ctx.finish().as_ref());
    seed
}

/// The raw Ed25519 public key of `seed`.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    let kp = Ed25519KeyPair::from_seed_unchecked(seed).expect("a 32-byte seed");
    let mut k = [0u8; 32];
    k.copy_from_slice(kp.public_key().as_ref());
    k
}

/// The pairing ticket for `code`: issued by the gateway seed for the code's relay key, expiring
/// with the code.
pub fn pairing_ticket(gateway_seed: &[u8; 32], code: &str, expires_at: u64) -> DeviceTicket {
    DeviceTicket::issue(gateway_seed, public_key(&pairing_seed(code)), expires_at)
}

/// A gateway's ticket signer: its identity seed, kept out of `Debug` output.
#[derive(Clone)]
pub struct TicketSigner {
    seed: [u8; 32],
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSigner").finish_non_exhaustive()
    }
}

impl TicketSigner {
    /// A signer for the gateway whose Ed25519 seed is `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        Self { seed }
    }

    /// A fresh ticket for `device_key`, valid [`DEFAULT_TTL_SECS`] from `now`.
    pub fn issue(&self, device_key: [u8; 32], now: u64) -> DeviceTicket {
        DeviceTicket::issue(&self.seed, device_key, now + DEFAULT_TTL_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GW_SEED: [u8; 32] = [7u8; 32];
    const DEV: [u8; 32] = [9u8; 32];
    const NOW: u64 = 1_800_000_000;

    fn ticket() -> DeviceTicket {
        DeviceTicket::issue(&GW_SEED, DEV, NOW + 3600)
    }

    #[test]
    fn a_ticket_round_trips_and_verifies_for_its_device_only() {
        let t = ticket();
        let text = t.encode();
        assert!(text.starts_with(PREFIX));
        assert!(text.len() <= MAX_TEXT_LEN);
        let back = DeviceTicket::parse(&text).unwrap();
        assert_eq!(back, t);
        back.verify(&DEV, NOW).unwrap();
        assert_eq!(back.verify(&[1u8; 32], NOW), Err(TicketError::WrongDevice));
    }

    /// Known answer, made with an independent Ed25519 implementation (Python `cryptography`)
    /// from the format in the module docs: seed 7s, device key 9s, expiry 1,800,000,060. Also
    /// the fuzz corpus's `genuine` seed.
    #[test]
    fn the_wire_form_matches_an_independent_implementation() {
        let t = DeviceTicket::issue(&GW_SEED, DEV, NOW + 60);
        assert_eq!(t.encode(), "claw1.AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIsCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkAAAAAa0nSPCwPTE_8JlJ5XI0NZ8jn9qb6OSFfh-vxSQcGU0IiZpvCdwpyxd3A5ZkGftu5WnDozA-k9HCd1KvSiHmOmT5WOQ0");
    }

    #[test]
    fn a_pairing_ticket_is_rebuilt_from_the_code_and_its_signature() {
        let code = "abcdefgh.0123456789abcdefghijkl";
        let t = pairing_ticket(&GW_SEED, code, NOW + 600);
        let gk = public_key(&GW_SEED);
        assert_eq!(t.gateway_key, gk);
        let rebuilt = DeviceTicket::from_parts(
            gk,
            public_key(&pairing_seed(code)),
            NOW + 600,
            t.signature(),
        );
        assert_eq!(rebuilt, t);
        rebuilt
            .verify(&public_key(&pairing_seed(code)), NOW)
            .unwrap();
        // Another code derives another key: the signature does not carry over.
        let other =
            DeviceTicket::from_parts(gk, public_key(&pairing_seed("x")), NOW + 600, t.signature());
        assert!(!other.signature_is_valid());
        assert_ne!(
            pairing_seed(code),
            pairing_seed("abcdefgh.0123456789abcdefghijkm")
        );
        // The seed is the same one iroh's key type takes.
        assert_eq!(
            *iroh_base::SecretKey::from_bytes(&pairing_seed(code))
                .public()
                .as_bytes(),
            public_key(&pairing_seed(code))
        );
        assert!(!format!("{:?}", TicketSigner::new(GW_SEED)).contains('7'));
    }

    #[test]
    fn expired_and_overlong_tickets_are_refused() {
        let t = ticket();
        assert_eq!(t.verify(&DEV, NOW + 3600), Err(TicketError::Expired));
        assert_eq!(t.verify(&DEV, u64::MAX), Err(TicketError::Expired));
        let long = DeviceTicket::issue(&GW_SEED, DEV, NOW + MAX_TTL_SECS + 1);
        assert_eq!(long.verify(&DEV, NOW), Err(TicketError::TooLong));
    }

    #[test]
    fn any_changed_byte_breaks_the_signature() {
        let text = ticket().encode();
        let raw = URL_SAFE_NO_PAD.decode(&text[PREFIX.len()..]).unwrap();
        for i in 1..raw.len() {
            let mut r = raw.clone();
            r[i] ^= 0x01;
            let forged = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&r));
            let t = DeviceTicket::parse(&forged).unwrap();
            // A flipped device-key byte is caught as the wrong device or a bad signature,
            // a flipped expiry byte as a bad signature or an expiry: never accepted.
            assert!(t.verify(&t.device_key.clone(), NOW).is_err(), "byte {i}");
        }
    }

    #[test]
    fn a_ticket_signed_by_another_key_does_not_verify_as_the_named_gateway() {
        let real = ticket();
        let other = DeviceTicket::issue(&[8u8; 32], DEV, NOW + 60);
        // Put the real gateway's key in a ticket signed by another key.
        let mut forged = other.clone();
        forged.gateway_key = real.gateway_key;
        let parsed = DeviceTicket::parse(&forged.encode()).unwrap();
        assert_eq!(parsed.verify(&DEV, NOW), Err(TicketError::BadSignature));
    }

    #[test]
    fn hostile_text_is_refused_with_a_reason() {
        let good = ticket().encode();
        for bad in [
            String::new(),
            "claw1.".into(),
            "claw2.".to_string() + &good[PREFIX.len()..],
            good[..good.len() - 1].to_string(),
            good.clone() + "A",
            good.clone() + "=",
            good.replace('A', "+"),
            "x".repeat(100_000),
            format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode([2u8; TICKET_LEN])),
            format!("{PREFIX}{}", "é".repeat(10)),
        ] {
            assert!(
                matches!(DeviceTicket::parse(&bad), Err(TicketError::Malformed(_))),
                "{bad:.40}"
            );
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = DeviceTicket::parse(&s);
        }

        #[test]
        fn random_bytes_never_verify(raw in proptest::collection::vec(any::<u8>(), TICKET_LEN)) {
            let mut raw = raw;
            raw[0] = VERSION;
            let text = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&raw));
            let t = DeviceTicket::parse(&text).unwrap();
            prop_assert!(t.verify(&t.device_key.clone(), NOW).is_err());
        }
    }
}
