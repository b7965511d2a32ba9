//! The device key's file (`identity.key`, 0600): loading it, creating it when absent. The key
//! type itself is `claw_proto::device_key::DeviceKey` (re-exported here).

use std::path::Path;

pub use claw_proto::device_key::{random_bytes, DeviceKey, KeyTextError};

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

/// Loads the key at `path`, creating it (0600, atomically) when absent.
pub fn load_or_create(path: &Path) -> Result<DeviceKey, DeviceKeyError> {
    let io = |source| DeviceKeyError::Io {
        path: path.display().to_string(),
        source,
    };
    match crate::read_secret(path) {
        Ok(text) => DeviceKey::from_text(&text)
            .map_err(|_| DeviceKeyError::Corrupt(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = DeviceKey::generate();
            if let Some(dir) = path.parent() {
                crate::create_private_dir(dir).map_err(io)?;
            }
            crate::write_secret_atomic(path, key.to_text().as_bytes()).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_key_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("keys/device.key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.device_id(), b.device_id());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(DeviceKeyError::Corrupt(_))
        ));
    }
}
