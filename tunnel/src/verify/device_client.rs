//! The gateway side of the pinning: every client must present a certificate; a revoked key is
//! refused in the TLS handshake, anything else goes on to the tunnel's own checks.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::{algorithms, key_id_of_cert};

/// What the gateway knows about a client key (the gateway's service layer answers): a revoked
/// key is refused during the TLS handshake; while the store cannot answer the handshake
/// proceeds and every stream is refused with the retryable `unavailable`.
pub use claw_gateway::service::KeyStatus;

/// Looks a device id up.
pub type KeyLookup = Arc<dyn Fn(&str) -> KeyStatus + Send + Sync>;

/// Gateway side: requires a client certificate, refuses revoked keys in the handshake.
pub struct DeviceClientVerifier {
    lookup: KeyLookup,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for DeviceClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceClientVerifier")
            .finish_non_exhaustive()
    }
}

impl DeviceClientVerifier {
    /// A verifier consulting `lookup` for every presented key.
    pub fn new(lookup: KeyLookup) -> Self {
        Self {
            lookup,
            algs: algorithms(),
        }
    }
}

impl ClientCertVerifier for DeviceClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let id = key_id_of_cert(end_entity)?;
        match (self.lookup)(&id) {
            KeyStatus::Revoked => {
                tracing::info!(device = %id, "tunnel: refused a revoked key in the TLS handshake");
                Err(Error::InvalidCertificate(CertificateError::Revoked))
            }
            KeyStatus::Paired | KeyStatus::Unpaired | KeyStatus::Unavailable => {
                Ok(ClientCertVerified::assertion())
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn revoked_keys_fail_verification() {
        let dev = Identity::generate().unwrap();
        let (cert, _) = dev.tls_credentials().unwrap();
        let revoked = dev.id();
        let v = DeviceClientVerifier::new(Arc::new(move |id: &str| {
            if id == revoked {
                KeyStatus::Revoked
            } else {
                KeyStatus::Unpaired
            }
        }));
        assert!(v.verify_client_cert(&cert, &[], UnixTime::now()).is_err());
        let v = DeviceClientVerifier::new(Arc::new(|_: &str| KeyStatus::Unpaired));
        assert!(v.verify_client_cert(&cert, &[], UnixTime::now()).is_ok());
    }
}
