//! Device and gateway identity: one Ed25519 key, generated with rcgen on first use, stored 0600.
//!
//! The same key signs the WebSocket `connect` (as [`DeviceKey`]), authenticates the QUIC tunnel
//! (a self-signed certificate made with rcgen) and SSH. The device id — and the gateway's
//! fingerprint in pairing URIs — is the lowercase hex SHA-256 of the raw public key.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use claw_home::device_key::DeviceKey;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Identity errors.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Key generation or certificate creation failed.
    #[error("identity: {0}")]
    Crypto(String),
    /// Reading or writing the key failed.
    #[error(transparent)]
    Key(#[from] claw_home::device_key::DeviceKeyError),
}

/// A device's (or the gateway's) identity.
#[derive(Debug, Clone)]
pub struct Identity {
    key: DeviceKey,
}

impl Identity {
    /// Generates a new key with rcgen.
    pub fn generate() -> Result<Self, IdentityError> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| IdentityError::Crypto(e.to_string()))?;
        let der = kp.serialize_der();
        Ok(Self {
            key: DeviceKey::from_seed(seed_from_pkcs8(&der)?),
        })
    }

    /// Loads the key at `path` or creates it (0600, atomic) with rcgen.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        if !path.exists() {
            let id = Self::generate()?;
            if let Some(dir) = path.parent() {
                claw_home::create_private_dir(dir)
                    .map_err(|e| IdentityError::Crypto(e.to_string()))?;
            }
            claw_home::write_secret_atomic(path, URL_SAFE_NO_PAD.encode(id.key.seed()).as_bytes())
                .map_err(|e| IdentityError::Crypto(format!("{}: {e}", path.display())))?;
        }
        Ok(Self {
            key: claw_home::device_key::load_or_create(path)?,
        })
    }

    /// Wraps an existing key.
    pub fn from_key(key: DeviceKey) -> Self {
        Self { key }
    }

    /// The signing key (for the WebSocket `connect`).
    pub fn key(&self) -> &DeviceKey {
        &self.key
    }

    /// Device id / fingerprint: hex SHA-256 of the raw public key.
    pub fn id(&self) -> String {
        self.key.device_id()
    }

    /// The private key as PKCS#8 v1 DER.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(self.key.seed());
        der
    }

    /// A self-signed certificate for this key (made with rcgen) and the key, for rustls.
    pub fn tls_credentials(
        &self,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), IdentityError> {
        let pkcs8 = PrivatePkcs8KeyDer::from(self.pkcs8_der());
        let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
            .map_err(|e| IdentityError::Crypto(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec!["claw".to_string()])
            .map_err(|e| IdentityError::Crypto(e.to_string()))?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("claw {}", &self.id()[..16]),
        );
        let cert = params
            .self_signed(&kp)
            .map_err(|e| IdentityError::Crypto(e.to_string()))?;
        Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
    }
}

impl Identity {
    /// The key as an SSH private key (host key of the SSH forward, or a device's client key).
    pub fn ssh_private_key(&self) -> russh::keys::PrivateKey {
        let kp = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(self.key.seed());
        let mut k = russh::keys::PrivateKey::from(kp);
        k.set_comment(format!("claw {}", &self.id()[..16]));
        k
    }

    /// The key in OpenSSH private-key format (a secret).
    pub fn ssh_private_openssh(&self) -> Result<String, IdentityError> {
        self.ssh_private_key()
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map(|z| z.to_string())
            .map_err(|e| IdentityError::Crypto(e.to_string()))
    }

    /// The public key as an OpenSSH line (`ssh-ed25519 AAAA… comment`).
    pub fn ssh_public_openssh(&self) -> String {
        self.ssh_private_key()
            .public_key()
            .to_openssh()
            .unwrap_or_default()
    }

    /// The SSH fingerprint as `ssh-keygen -lf` prints it (`SHA256:…`).
    pub fn ssh_fingerprint(&self) -> String {
        self.ssh_private_key()
            .public_key()
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string()
    }
}

/// The device id of an SSH public key (Ed25519 only): hex SHA-256 of the raw key, the same id
/// the tunnel and the WebSocket handshake use.
pub fn device_id_of_ssh_key(key: &russh::keys::PublicKey) -> Option<String> {
    key.key_data()
        .ed25519()
        .map(|k| claw_proto::signature::device_id_for_key(&k.0))
}

/// Extracts the 32-byte seed from an Ed25519 PKCS#8 (v1 or v2) document.
pub fn seed_from_pkcs8(der: &[u8]) -> Result<[u8; 32], IdentityError> {
    if der.len() < 48 || der[5..16] != PKCS8_ED25519_PREFIX[5..16] {
        return Err(IdentityError::Crypto("not an Ed25519 PKCS#8 key".into()));
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&der[16..48]);
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcgen_key_round_trips_and_certificate_carries_it() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("identity.key");
        let a = Identity::load_or_create(&p).unwrap();
        let b = Identity::load_or_create(&p).unwrap();
        assert_eq!(a.id(), b.id());
        let (cert, _) = a.tls_credentials().unwrap();
        assert_eq!(crate::verify::key_id_of_cert(&cert).unwrap(), a.id());
        // The rcgen-generated PKCS#8 and ours describe the same key.
        let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(a.pkcs8_der()),
            &rcgen::PKCS_ED25519,
        )
        .unwrap();
        assert_eq!(kp.public_key_raw(), a.key().public_key());
        assert!(seed_from_pkcs8(b"short").is_err());
        // The SSH view of the same key has the same device id.
        let ssh_pub = russh::keys::PublicKey::from_openssh(&a.ssh_public_openssh()).unwrap();
        assert_eq!(device_id_of_ssh_key(&ssh_pub).unwrap(), a.id());
        assert!(a.ssh_fingerprint().starts_with("SHA256:"));
        assert!(a
            .ssh_private_openssh()
            .unwrap()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    }
}
