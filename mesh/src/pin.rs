//! The relay's TLS identity: a self-signed certificate (made with rcgen) whose SHA-256
//! fingerprint — the **pin** — travels in pairing URIs, and the client-side rustls verifier
//! that accepts exactly that certificate.
//!
//! A relay with a CA-issued certificate (`--cert/--key`) needs no pin: clients verify it
//! against the Mozilla roots iroh-relay embeds. Either way the relay only carries ciphertext:
//! the tunnel's own TLS pins the gateway and device keys end to end.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Pin errors.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// Not 64 hex characters.
    #[error("not a relay pin (64 hex characters, the SHA-256 of the relay's certificate): {0:?}")]
    Malformed(String),
    /// Certificate generation failed.
    #[error("relay certificate: {0}")]
    Generate(String),
}

/// Lowercase hex SHA-256 of a certificate (DER): the pin.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, cert_der);
    data_encoding::HEXLOWER.encode(d.as_ref())
}

/// Parses a pin (case folded; an optional `sha256:` prefix accepted).
pub fn parse_pin(s: &str) -> Result<String, PinError> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_prefix("sha256:").unwrap_or(&t);
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t.to_string())
    } else {
        Err(PinError::Malformed(s.chars().take(80).collect()))
    }
}

/// A freshly generated self-signed certificate and its key, PEM-encoded.
#[derive(Debug)]
pub struct SelfSigned {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key (PKCS#8), PEM: a secret.
    pub key_pem: String,
    /// The pin of the certificate.
    pub pin: String,
}

/// Generates an ECDSA P-256 certificate for `names` (DNS names or IP addresses), valid for
/// ten years: the relay keeps it in its home, so the pin in every pairing URI stays valid.
pub fn generate_self_signed(names: Vec<String>) -> Result<SelfSigned, PinError> {
    let err = |e: rcgen::Error| PinError::Generate(e.to_string());
    let kp = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(names).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "claw relay");
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.self_signed(&kp).map_err(err)?;
    Ok(SelfSigned {
        pin: fingerprint(cert.der()),
        cert_pem: cert.pem(),
        key_pem: kp.serialize_pem(),
    })
}

/// Accepts exactly the certificate whose SHA-256 is the pin (its name is not checked: the pin
/// is the identity), and checks the handshake signature with it.
#[derive(Debug)]
pub struct PinnedRelayVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl PinnedRelayVerifier {
    /// A verifier for `pin` (as [`parse_pin`] returns it).
    pub fn new(pin: String, provider: Arc<CryptoProvider>) -> Self {
        Self { pin, provider }
    }
}

impl ServerCertVerifier for PinnedRelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity);
        // The pin is public: a plain comparison leaks nothing.
        if seen == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::warn!(expected = %self.pin, %seen, "relay certificate does not match its pin");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_has_a_stable_pin() {
        let s = generate_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        assert_eq!(s.pin.len(), 64);
        assert!(s.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(s.key_pem.contains("PRIVATE KEY"));
        assert_eq!(
            parse_pin(&format!("SHA256:{}", s.pin.to_uppercase())).unwrap(),
            s.pin
        );
    }

    #[test]
    fn bad_pins_are_refused() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65), "sha256:"] {
            assert!(parse_pin(bad).is_err(), "{bad}");
        }
    }
}
