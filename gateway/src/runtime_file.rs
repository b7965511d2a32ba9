//! `gateway.json`: the runtime facts a running gateway writes into its home (0600, atomically)
//! and removes on exit — its pid, WebSocket URL and addresses, the admin socket, and the tunnel
//! and SSH forward when they run. One type, written by [`RuntimeFile::write`] and read by
//! [`RuntimeFile::read`]; `claw call`, `claw pair`, `claw gateway start|status`, `claw channels`
//! and `claw doctor` all read it through here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::home::Home;

/// The file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeFile {
    /// The gateway's pid.
    pub pid: u32,
    /// The WebSocket URL clients use (`ws://127.0.0.1:<port>`).
    pub url: String,
    /// The WebSocket port.
    #[serde(default)]
    pub port: u16,
    /// Every WebSocket listen address.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// The admin socket.
    #[serde(default)]
    pub admin_socket: PathBuf,
    /// When the gateway became ready (ms since the epoch).
    #[serde(default)]
    pub started_at_ms: u64,
    /// The QUIC tunnel, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<RuntimeTunnel>,
    /// The SSH forward, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<RuntimeSsh>,
    /// The relays the gateway dials out to (`--relay`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<RuntimeRelay>,
    /// The gateway's identity fingerprint, when it serves through a relay without `--tunnel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
}

/// `gateway.json.relays[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeRelay {
    /// The relay's URL.
    pub url: String,
    /// Its certificate pin, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// `gateway.json.tunnel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeTunnel {
    /// The UDP address.
    pub addr: String,
    /// The gateway's identity fingerprint (what pairing URIs pin).
    pub gateway_id: String,
}

/// `gateway.json.ssh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSsh {
    /// The TCP address.
    pub addr: String,
    /// The host key's fingerprint (`SHA256:…`).
    pub fingerprint: String,
    /// The host key (OpenSSH public key line).
    #[serde(default)]
    pub host_key: String,
    /// `known_hosts` lines for every advertised host.
    #[serde(default)]
    pub known_hosts: Vec<String>,
}

/// Why `gateway.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeFileError {
    /// Opening or reading it failed (not a regular file of ours, unreadable…).
    #[error("gateway.json: {0}")]
    Io(#[from] std::io::Error),
    /// It is not the format above.
    #[error("gateway.json: {0}")]
    Format(#[from] serde_json::Error),
}

impl RuntimeFile {
    /// Writes it to `home` (0600, atomic).
    pub fn write(&self, home: &Home) -> std::io::Result<()> {
        let text = serde_json::to_string(self).expect("the runtime file serializes");
        crate::home::write_secret_atomic(&home.runtime_path(), text.as_bytes())
    }

    /// Reads `home`'s file: `Ok(None)` when there is none (no gateway runs).
    pub fn read(home: &Home) -> Result<Option<Self>, RuntimeFileError> {
        Self::read_path(&home.runtime_path())
    }

    /// [`RuntimeFile::read`] for a path (doctor's fact gathering).
    pub fn read_path(path: &std::path::Path) -> Result<Option<Self>, RuntimeFileError> {
        let read = crate::home::open_private(path, std::fs::OpenOptions::new().read(true))
            .and_then(|mut f| {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut f, &mut s).map(|_| s)
            });
        match read {
            Ok(text) => Ok(Some(Self::parse(&text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The file of the gateway running as `pid`, if `home` holds that one (a file left by a
    /// crashed gateway names another pid).
    pub fn of_running(home: &Home, pid: u32) -> Option<Self> {
        Self::read(home).ok().flatten().filter(|r| r.pid == pid)
    }

    /// Removes `home`'s file (on exit).
    pub fn remove(home: &Home) {
        let _ = std::fs::remove_file(home.runtime_path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RuntimeFile {
        RuntimeFile {
            pid: 42,
            url: "ws://127.0.0.1:18789".into(),
            port: 18789,
            addrs: vec!["127.0.0.1:18789".into()],
            admin_socket: "/h/admin.sock".into(),
            started_at_ms: 7,
            tunnel: Some(RuntimeTunnel {
                addr: "0.0.0.0:18790".into(),
                gateway_id: "ab".repeat(32),
            }),
            ssh: None,
            relays: vec![RuntimeRelay {
                url: "https://relay.example:8443".into(),
                pin: Some("cd".repeat(32)),
            }],
            gateway_id: None,
        }
    }

    #[test]
    fn written_file_reads_back_with_the_old_keys() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path().join("h"));
        home.ensure().unwrap();
        assert!(RuntimeFile::read(&home).unwrap().is_none());
        let rt = sample();
        rt.write(&home).unwrap();
        assert_eq!(RuntimeFile::read(&home).unwrap(), Some(rt.clone()));
        assert_eq!(RuntimeFile::of_running(&home, 42), Some(rt));
        assert_eq!(RuntimeFile::of_running(&home, 43), None);
        // The keys the JSON had before it was typed (other tools and older claws read them).
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(home.runtime_path()).unwrap()).unwrap();
        for k in ["pid", "url", "port", "addrs", "adminSocket", "startedAtMs"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["tunnel"]["gatewayId"], "ab".repeat(32));
        assert!(v.get("ssh").is_none());
        RuntimeFile::remove(&home);
        assert!(RuntimeFile::read(&home).unwrap().is_none());
    }

    #[test]
    fn hostile_files_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            "[]",
            "null",
            r#"{"pid":"1","url":"x"}"#,
            r#"{"url":"x"}"#,
        ] {
            assert!(RuntimeFile::parse(bad).is_err(), "{bad}");
        }
        let minimal = RuntimeFile::parse(r#"{"pid":1,"url":"ws://127.0.0.1:1"}"#).unwrap();
        assert_eq!((minimal.pid, minimal.port), (1, 0));
    }
}
