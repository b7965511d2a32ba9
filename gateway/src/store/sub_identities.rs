//! Sub-identities: client keys seen through a device's tunnel or SSH forward that are not the
//! device's own key (`openclaw node run`, a CLI with its own identity on the device). They act
//! as that device (see `auth::decide`); the store only remembers them under it, so an operator
//! sees which clients used a device's transport. They go when the device is re-paired or
//! forgotten; a revoked device's sub-identities are refused with it.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{Result, Store};
use crate::now_ms;

/// Sub-identities remembered per device; a new one beyond this replaces the least recently
/// seen (a local user minting keys in a loop cannot grow the store).
pub const MAX_SUB_IDENTITIES: i64 = 16;

/// `last_seen_ms` of a known sub-identity is rewritten at most this often.
const TOUCH_RESOLUTION_MS: u64 = 60_000;

/// A sub-identity to record.
#[derive(Debug, Clone)]
pub struct SubIdentity {
    /// The device whose transport it came through.
    pub device_id: String,
    /// The id of the client's own key.
    pub key_id: String,
    /// `client.id/client.mode` of its connect.
    pub client: String,
    /// `client.displayName`, if any.
    pub display_name: Option<String>,
    /// The role it connected with.
    pub role: String,
}

/// A recorded sub-identity, as `device.pair.list` shows it under its device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubIdentityInfo {
    /// The id of the client's key.
    pub key_id: String,
    /// `client.id/client.mode`.
    pub client: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Role.
    pub role: String,
    /// First connect.
    pub first_seen_at_ms: u64,
    /// Latest connect (minute resolution).
    pub last_seen_at_ms: u64,
}

impl Store {
    /// Records a connect of a sub-identity; `Ok(true)` when the key is new under the device.
    pub fn record_sub_identity(&mut self, s: &SubIdentity) -> Result<bool> {
        let now = now_ms() as i64;
        let tx = self.write_tx()?;
        let seen: Option<i64> = tx
            .query_row(
                "SELECT last_seen_ms FROM sub_identities WHERE device_id = ?1 AND key_id = ?2",
                params![s.device_id, s.key_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(last) = seen {
            if now.saturating_sub(last) >= TOUCH_RESOLUTION_MS as i64 {
                tx.execute(
                    "UPDATE sub_identities SET last_seen_ms = ?3, client = ?4, display_name = ?5, role = ?6 WHERE device_id = ?1 AND key_id = ?2",
                    params![s.device_id, s.key_id, now, s.client, s.display_name, s.role],
                )?;
                tx.commit()?;
            }
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM sub_identities WHERE device_id = ?1 AND key_id IN (SELECT key_id FROM sub_identities WHERE device_id = ?1 ORDER BY last_seen_ms DESC, key_id LIMIT -1 OFFSET ?2)",
            params![s.device_id, MAX_SUB_IDENTITIES - 1],
        )?;
        tx.execute(
            "INSERT INTO sub_identities(device_id, key_id, client, display_name, role, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![s.device_id, s.key_id, s.client, s.display_name, s.role, now],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The sub-identities recorded under a device, most recently seen first.
    pub fn sub_identities(&self, device_id: &str) -> Result<Vec<SubIdentityInfo>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key_id, client, display_name, role, first_seen_ms, last_seen_ms FROM sub_identities WHERE device_id = ?1 ORDER BY last_seen_ms DESC, key_id",
        )?;
        let rows = stmt
            .query_map([device_id], |r| {
                Ok(SubIdentityInfo {
                    key_id: r.get(0)?,
                    client: r.get(1)?,
                    display_name: r.get(2)?,
                    role: r.get(3)?,
                    first_seen_at_ms: r.get::<_, i64>(4)?.max(0) as u64,
                    last_seen_at_ms: r.get::<_, i64>(5)?.max(0) as u64,
                })
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// Forgets a device's sub-identities inside a caller's transaction (re-pair, removal).
pub(super) fn forget(tx: &rusqlite::Transaction<'_>, device_id: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM sub_identities WHERE device_id = ?1",
        [device_id],
    )?;
    Ok(())
}
