//! Key pinning with rustls' verifier traits — no CA, and no "accept anything".
//!
//! A peer is identified by the SHA-256 of its Ed25519 public key (its device id). The device pins
//! the gateway's id from the pairing URI ([`PinnedServerVerifier`]); the gateway accepts only keys
//! that are paired or are pairing, and refuses revoked keys during the handshake
//! ([`DeviceClientVerifier`]). Handshake signatures are checked by rustls' own
//! `verify_tls13_signature`; TLS 1.2 is refused.

use std::fmt;
use std::sync::{Arc, Mutex};

use claw_proto::signature::device_id_for_key;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The raw Ed25519 public key of a certificate.
pub fn key_of_cert(cert: &CertificateDer<'_>) -> Result<[u8; 32], Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    let spki = spki.as_ref();
    if spki.len() != 44 || spki[..12] != ED25519_SPKI_PREFIX {
        return Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ));
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&spki[12..]);
    Ok(k)
}

/// The device id (hex SHA-256 of the raw Ed25519 key) of a certificate.
pub fn key_id_of_cert(cert: &CertificateDer<'_>) -> Result<String, Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    let spki = spki.as_ref();
    if spki.len() != 44 || spki[..12] != ED25519_SPKI_PREFIX {
        return Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ));
    }
    Ok(device_id_for_key(&spki[12..]))
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// Device side: accepts only the gateway whose key id was pinned from the pairing URI.
pub struct PinnedServerVerifier {
    expected: String,
    /// The key id the server actually presented (for a clear mismatch message).
    pub seen: Arc<Mutex<Option<String>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedServerVerifier")
            .field("expected", &self.expected)
            .finish()
    }
}

impl PinnedServerVerifier {
    /// Pins `expected_id` (64 hex chars).
    pub fn new(expected_id: &str) -> Self {
        Self {
            expected: expected_id.to_ascii_lowercase(),
            seen: Arc::new(Mutex::new(None)),
            algs: algorithms(),
        }
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let id = key_id_of_cert(end_entity)?;
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        if id == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(feature = "gateway")]
mod device_client;
#[cfg(feature = "gateway")]
pub use device_client::{DeviceClientVerifier, KeyLookup, KeyStatus};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn pins_by_key() {
        let gw = Identity::generate().unwrap();
        let other = Identity::generate().unwrap();
        let (cert, _) = gw.tls_credentials().unwrap();
        let name = ServerName::try_from("claw").unwrap();
        let v = PinnedServerVerifier::new(&gw.id());
        assert!(v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_ok());
        let v = PinnedServerVerifier::new(&other.id());
        assert!(v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_err());
        assert_eq!(v.seen.lock().unwrap().as_deref(), Some(gw.id().as_str()));
        // A re-issued certificate for the same key keeps the identity.
        let (cert2, _) = gw.tls_credentials().unwrap();
        assert_eq!(key_id_of_cert(&cert2).unwrap(), gw.id());
        // Garbage is a clean error.
        assert!(key_id_of_cert(&CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff])).is_err());
    }
}
