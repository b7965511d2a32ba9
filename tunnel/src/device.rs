//! What a paired device keeps under its home (all 0600, written atomically):
//! `identity.key` (its Ed25519 key), `tunnel.json` (the gateway it paired with) and
//! `device-token.json` (its current device token, rewritten by `claw tunnel up` after a rotation
//! so local clients always read a fresh one).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading or writing device files.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFileError {
    /// Not paired yet.
    #[error("this home is not paired with a gateway (run `claw tunnel pair URI`)")]
    NotPaired,
    /// IO.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Corrupt JSON.
    #[error("{0} is corrupt; run `claw doctor`")]
    Corrupt(String),
}

/// The gateway this device is paired with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pairing {
    /// The gateway's key id (pinned).
    pub gateway_id: String,
    /// Tunnel addresses to try, in order.
    pub addrs: Vec<String>,
    /// This device's id.
    pub device_id: String,
    /// When it paired.
    pub paired_at_ms: u64,
    /// The gateway's SSH forward, when it ran one at pairing (host key checked against
    /// `gateway_id`); `known_hosts` holds the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<crate::control::SshHint>,
    /// Relays the gateway is reached through (from the pairing URI), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<crate::pairing::RelayRef>,
    /// The gateway's raw Ed25519 public key, base64url (its relay address; its SHA-256 is
    /// `gateway_id`), when it is reached through relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_key: Option<String>,
}

impl Pairing {
    /// The gateway's raw public key, when it is known and matches the pinned id.
    pub fn gateway_key(&self) -> Option<[u8; 32]> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(self.gateway_key.as_deref()?)
            .ok()?;
        let k: [u8; 32] = raw.try_into().ok()?;
        (claw_proto::signature::device_id_for_key(&k) == self.gateway_id).then_some(k)
    }
}

/// The device's relay ticket, as the gateway last handed it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRelayTicket {
    /// `claw1.…` (bound to this device's key).
    pub ticket: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
}

impl std::fmt::Debug for StoredRelayTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRelayTicket")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The device token and its generation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredToken {
    /// The token (a secret).
    pub token: String,
    /// Root generation it belongs to.
    pub generation: u64,
    /// When it was written.
    pub updated_at_ms: u64,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("generation", &self.generation)
            .field("updated_at_ms", &self.updated_at_ms)
            .finish_non_exhaustive()
    }
}

/// The host part of a `HOST:PORT` tunnel address (`[v6]:port` unbracketed).
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(addr)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// `known_hosts` text pinning `host_key` (`ssh-ed25519 AAAA…`) for the SSH forward on `port` of
/// every host in `addrs` (OpenSSH's `[host]:port` form unless the port is 22). Pure.
pub fn known_hosts_text(addrs: &[String], port: u16, host_key: &str) -> String {
    let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
    let mut hosts: Vec<&str> = addrs.iter().map(|a| host_of(a)).collect();
    hosts.dedup();
    hosts
        .into_iter()
        .map(|h| {
            if port == 22 {
                format!("{h} {}\n", key.join(" "))
            } else {
                format!("[{h}]:{port} {}\n", key.join(" "))
            }
        })
        .collect()
}

/// Paths of a device home.
#[derive(Debug, Clone)]
pub struct DeviceHome {
    root: PathBuf,
}

fn read_json<T: for<'a> Deserialize<'a>>(p: &Path) -> Result<Option<T>, DeviceFileError> {
    match claw_home::read_secret(p) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|_| DeviceFileError::Corrupt(p.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DeviceFileError::Io {
            path: p.display().to_string(),
            source,
        }),
    }
}

fn write_json<T: Serialize>(p: &Path, v: &T) -> Result<(), DeviceFileError> {
    let data = serde_json::to_vec_pretty(v).expect("serializable");
    claw_home::write_secret_atomic(p, &data).map_err(|source| DeviceFileError::Io {
        path: p.display().to_string(),
        source,
    })
}

impl DeviceHome {
    /// A device home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The identity key file (shared with a gateway's identity when the home is a gateway's).
    pub fn identity_path(&self) -> PathBuf {
        self.root.join("identity.key")
    }
    /// `tunnel.json`.
    pub fn pairing_path(&self) -> PathBuf {
        self.root.join("tunnel.json")
    }
    /// `device-token.json`.
    pub fn token_path(&self) -> PathBuf {
        self.root.join("device-token.json")
    }
    /// `known_hosts`: the gateway's SSH host key, pinned at pairing, for `ssh -o
    /// UserKnownHostsFile=…`.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.root.join("known_hosts")
    }
    /// `relay-ticket.json`: the relay ticket the gateway last handed this device.
    pub fn relay_ticket_path(&self) -> PathBuf {
        self.root.join("relay-ticket.json")
    }
    /// The stored relay ticket, if any.
    pub fn relay_ticket(&self) -> Result<Option<StoredRelayTicket>, DeviceFileError> {
        read_json(&self.relay_ticket_path())
    }
    /// Saves a relay ticket (atomically, 0600).
    pub fn save_relay_ticket(&self, t: &StoredRelayTicket) -> Result<(), DeviceFileError> {
        write_json(&self.relay_ticket_path(), t)
    }
    /// `tunnel-status.json`, written by a running `claw tunnel up`.
    pub fn status_path(&self) -> PathBuf {
        self.root.join("tunnel-status.json")
    }
    /// The pairing, if any.
    pub fn pairing(&self) -> Result<Pairing, DeviceFileError> {
        read_json(&self.pairing_path())?.ok_or(DeviceFileError::NotPaired)
    }
    /// Saves the pairing.
    pub fn save_pairing(&self, p: &Pairing) -> Result<(), DeviceFileError> {
        write_json(&self.pairing_path(), p)
    }
    /// The stored token, if any.
    pub fn token(&self) -> Result<Option<StoredToken>, DeviceFileError> {
        read_json(&self.token_path())
    }
    /// Saves a token (atomically; readers see the old or the new one).
    pub fn save_token(&self, token: &str, generation: u64) -> Result<(), DeviceFileError> {
        write_json(
            &self.token_path(),
            &StoredToken {
                token: token.to_string(),
                generation,
                updated_at_ms: claw_home::now_ms(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_pin_every_host_with_the_real_port() {
        let addrs = vec![
            "192.0.2.7:18790".to_string(),
            "[2001:db8::1]:18790".to_string(),
        ];
        assert_eq!(
            known_hosts_text(&addrs, 2222, "ssh-ed25519 AAAAC3Nz claw 0123"),
            "[192.0.2.7]:2222 ssh-ed25519 AAAAC3Nz\n[2001:db8::1]:2222 ssh-ed25519 AAAAC3Nz\n"
        );
        assert_eq!(
            known_hosts_text(&addrs[..1], 22, "ssh-ed25519 K"),
            "192.0.2.7 ssh-ed25519 K\n"
        );
        assert_eq!(host_of("gw.example:1"), "gw.example");
    }

    #[test]
    fn files_round_trip_private() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let h = DeviceHome::new(t.path());
        assert!(matches!(h.pairing(), Err(DeviceFileError::NotPaired)));
        assert_eq!(h.token().unwrap(), None);
        let p = Pairing {
            gateway_id: "g".into(),
            addrs: vec!["127.0.0.1:1".into()],
            device_id: "d".into(),
            paired_at_ms: 1,
            ssh: None,
            relays: Vec::new(),
            gateway_key: None,
        };
        h.save_pairing(&p).unwrap();
        h.save_token("tok", 3).unwrap();
        let t = StoredRelayTicket {
            ticket: "claw1.x".into(),
            expires_at: 9,
        };
        h.save_relay_ticket(&t).unwrap();
        assert_eq!(h.pairing().unwrap(), p);
        assert_eq!(h.token().unwrap().unwrap().generation, 3);
        assert_eq!(h.relay_ticket().unwrap(), Some(t));
        assert!(!format!("{:?}", h.relay_ticket().unwrap()).contains("claw1"));
        // An older tunnel.json (no relay fields) still reads.
        std::fs::write(
            h.pairing_path(),
            r#"{"gatewayId":"g","addrs":[],"deviceId":"d","pairedAtMs":1}"#,
        )
        .unwrap();
        assert!(h.pairing().unwrap().relays.is_empty());
        for f in [h.pairing_path(), h.token_path(), h.relay_ticket_path()] {
            assert_eq!(
                std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(h.token_path(), "{").unwrap();
        assert!(matches!(h.token(), Err(DeviceFileError::Corrupt(_))));
    }
}
