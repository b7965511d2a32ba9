//! claw's upstream identities: one Ed25519 key per downstream device (and a small pool for
//! clients that connect without a device, `operator`, `operator-1` … `operator-15`), kept 0600
//! in `<home>/upstream/` and never shown to the device; and the upstream device token OpenClaw
//! issued to each.
//!
//! Device-less clients (the shared token, no device key) have nothing stable to key an identity
//! on: the real `openclaw` CLI sends a fresh random `client.instanceId` on every call, so an
//! identity per instance id would pair a new device upstream on every CLI call and grow
//! OpenClaw's device records without bound. They share the [`OPERATOR_POOL`] instead: a session
//! takes the first pool identity with a free upstream-session slot ([`pick`]), so the pool
//! serves `OPERATOR_POOL × MAX_SESSIONS_PER_DEVICE` device-less sessions at once, with at most
//! [`OPERATOR_POOL`] device records on the OpenClaw side (created only as concurrency needs
//! them, kept across restarts).

use std::io;
use std::path::{Path, PathBuf};

use claw_proto::DeviceKey;
use serde::{Deserialize, Serialize};

/// The identity name of clients that reach claw without a device (the shared token on loopback):
/// the first of the pool ([`operator_name`]).
pub const OPERATOR: &str = "operator";

/// Upstream identities device-less clients share (see the module doc).
pub const OPERATOR_POOL: usize = 16;

/// The name of pool identity `i` (`operator`, then `operator-1` …).
pub fn operator_name(i: usize) -> String {
    match i {
        0 => OPERATOR.to_string(),
        i => format!("{OPERATOR}-{i}"),
    }
}

/// The identity a new upstream session uses, with what `take` gave for it (a session slot):
/// the device's own name, or for a device-less client the first pool name `take` accepts.
/// `None`: no slot (the device, or the whole pool, holds its share) or a device id claw's
/// auth never produces.
pub fn pick<T>(
    device_id: Option<&str>,
    mut take: impl FnMut(&str) -> Option<T>,
) -> Option<(String, T)> {
    match device_id {
        Some(_) => {
            let name = name_for(device_id)?;
            take(&name).map(|t| (name, t))
        }
        None => (0..OPERATOR_POOL).find_map(|i| {
            let name = operator_name(i);
            take(&name).map(|t| (name, t))
        }),
    }
}

/// The upstream device token OpenClaw issued, as kept on disk.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredToken {
    /// The token (a secret).
    pub device_token: String,
    /// The role it was issued for.
    pub role: String,
    /// The scopes it covers.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When (ms since the epoch).
    pub issued_at_ms: u64,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StoredToken(role={}, issued={})",
            self.role, self.issued_at_ms
        )
    }
}

/// `<home>/upstream/`: the key and token files.
#[derive(Debug, Clone)]
pub struct Identities {
    dir: PathBuf,
}

/// The file-name stem of a downstream device (`None` = no device): a 64-hex device id, else
/// [`OPERATOR`]. Anything else (never produced by claw's auth) is refused, so no id can
/// name a path outside the directory.
pub fn name_for(device_id: Option<&str>) -> Option<String> {
    match device_id {
        None => Some(OPERATOR.to_string()),
        Some(d) if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(d.to_ascii_lowercase())
        }
        Some(_) => None,
    }
}

/// The identity name for `role` of identity `name`: `name` itself for an operator, `<name>-node`
/// for a node. OpenClaw pairs a device for the roles it asked for; a device already paired as
/// an operator that asks for `node` is a role upgrade OpenClaw never approves silently, so a
/// downstream device whose CLI (operator) and node host (node) both come through claw (its
/// sub-identities over the tunnel or the SSH forward) gets one upstream identity per role.
pub fn for_role(name: &str, role: &str) -> String {
    match role {
        "node" => format!("{name}-node"),
        _ => name.to_string(),
    }
}

impl Identities {
    /// The identities under `home_root/upstream`.
    pub fn new(home_root: &Path) -> Self {
        Self {
            dir: home_root.join("upstream"),
        }
    }

    fn ensure(&self) -> io::Result<()> {
        crate::home::create_private_dir(&self.dir)
    }

    /// The key of `name`, created (0600, atomically) on first use.
    pub fn key(&self, name: &str) -> io::Result<DeviceKey> {
        let path = self.dir.join(format!("{name}.key"));
        match crate::home::read_secret(&path) {
            Ok(text) => DeviceKey::from_text(text.trim()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a device key", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.ensure()?;
                let key = DeviceKey::generate();
                crate::home::write_secret_atomic(&path, key.to_text().as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// The upstream device token stored for `name`, if any (an unreadable file counts as none:
    /// the shared token re-pairs).
    pub fn token(&self, name: &str) -> Option<StoredToken> {
        let path = self.dir.join(format!("{name}.token"));
        let text = crate::home::read_secret(&path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Stores the upstream device token for `name` (0600, atomically).
    pub fn set_token(&self, name: &str, t: &StoredToken) -> io::Result<()> {
        self.ensure()?;
        let path = self.dir.join(format!("{name}.token"));
        let text = serde_json::to_vec(t).map_err(io::Error::other)?;
        crate::home::write_secret_atomic(&path, &text)
    }

    /// Forgets the upstream device token for `name` (the upstream refused it).
    pub fn clear_token(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(format!("{name}.token")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn device_less_clients_spread_over_the_pool() {
        let limit = crate::limits::PerKeyLimit::new(2);
        let take = |n: &str| limit.try_take(n.to_string());
        let mut held = Vec::new();
        for _ in 0..2 * OPERATOR_POOL {
            held.push(pick(None, take).expect("the pool has room"));
        }
        assert!(pick(None, take).is_none(), "the whole pool is full");
        assert_eq!(held[0].0, "operator");
        assert_eq!(held[2].0, "operator-1");
        assert_eq!(
            held.last().unwrap().0,
            format!("operator-{}", OPERATOR_POOL - 1)
        );
        // A freed slot in the middle of the pool is the next one taken.
        let freed = held.remove(7);
        let name = freed.0.clone();
        drop(freed);
        assert_eq!(pick(None, take).unwrap().0, name);
        // A device keeps its own identity and share.
        let id = "b".repeat(64);
        let (n1, _s1) = pick(Some(&id), take).unwrap();
        let (_, _s2) = pick(Some(&id), take).unwrap();
        assert_eq!(n1, id);
        assert!(pick(Some(&id), take).is_none());
        assert!(pick(Some("../x"), take).is_none());
        for i in 0..OPERATOR_POOL {
            let n = operator_name(i);
            assert!(!n.contains('/') && !n.contains('.'), "{n}");
        }
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        assert_eq!(name_for(None).as_deref(), Some(OPERATOR));
        let id = "a".repeat(64);
        assert_eq!(name_for(Some(&id)), Some(id.clone()));
        for bad in [
            "../x",
            "",
            "operator",
            &"g".repeat(64),
            &format!("{}/", "a".repeat(63)),
        ] {
            assert_eq!(name_for(Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn keys_are_private_stable_and_tokens_round_trip() {
        let home = tempfile::tempdir().unwrap();
        let ids = Identities::new(home.path());
        let k1 = ids.key("operator").unwrap();
        let k2 = ids.key("operator").unwrap();
        assert_eq!(k1.device_id(), k2.device_id());
        let mode = |p: &str| {
            std::fs::metadata(home.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("upstream"), 0o700);
        assert_eq!(mode("upstream/operator.key"), 0o600);
        assert!(ids.token("operator").is_none());
        let t = StoredToken {
            device_token: "secret-dt".into(),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            issued_at_ms: 5,
        };
        ids.set_token("operator", &t).unwrap();
        assert_eq!(mode("upstream/operator.token"), 0o600);
        assert_eq!(ids.token("operator"), Some(t.clone()));
        assert!(!format!("{t:?}").contains("secret-dt"));
        ids.clear_token("operator");
        assert!(ids.token("operator").is_none());
    }

    #[test]
    fn a_node_gets_an_identity_of_its_own() {
        let id = "c".repeat(64);
        assert_eq!(for_role(&id, "operator"), id);
        assert_eq!(for_role(&id, "node"), format!("{id}-node"));
        assert_eq!(for_role(OPERATOR, "node"), "operator-node");
        let home = tempfile::tempdir().unwrap();
        let ids = Identities::new(home.path());
        let op = ids.key(&for_role(&id, "operator")).unwrap();
        let node = ids.key(&for_role(&id, "node")).unwrap();
        assert_ne!(op.device_id(), node.device_id(), "two devices upstream");
    }
}
