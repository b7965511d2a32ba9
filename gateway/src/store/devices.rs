//! Paired devices.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{audit, scopes_from_json, scopes_to_json, Result, Store, StoreError};
use crate::auth::decide::DeviceRecord;
use crate::now_ms;

/// A device to pair (from a signed connect or an approved request).
#[derive(Debug, Clone, Default)]
pub struct NewDevice {
    /// Device id.
    pub device_id: String,
    /// Base64url raw public key.
    pub public_key: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Client platform.
    pub platform: String,
    /// Client device family.
    pub device_family: String,
    /// Client id.
    pub client_id: String,
    /// Client mode.
    pub client_mode: String,
    /// Role.
    pub role: String,
    /// Approved scopes.
    pub scopes: Vec<String>,
}

/// A paired device, as `device.pair.list` and `claw devices list` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// Device id.
    pub device_id: String,
    /// Base64url public key.
    pub public_key: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Platform.
    pub platform: String,
    /// Device family.
    pub device_family: String,
    /// Client id.
    pub client_id: String,
    /// Client mode.
    pub client_mode: String,
    /// Role.
    pub role: String,
    /// Approved scopes.
    pub scopes: Vec<String>,
    /// How it was approved (`silent`, `operator`, `pairing-code`, `ssh-key`).
    pub approved_via: String,
    /// First paired.
    pub created_at_ms: u64,
    /// Approved.
    pub approved_at_ms: u64,
    /// Last successful connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at_ms: Option<u64>,
    /// Revoked at, if revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
    /// The transport of its last connection (`ws`, `tunnel`, `ssh`; see `presence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transport: Option<String>,
}

/// How stale `last_seen_at_ms` may get before a connect rewrites it (one minute).
pub(super) const LAST_SEEN_RESOLUTION_MS: u64 = 60_000;

const COLS: &str = "device_id, public_key, display_name, platform, device_family, client_id, client_mode, role, scopes, approved_via, created_at_ms, approved_at_ms, last_seen_at_ms, revoked_at_ms, last_transport";

fn from_row(r: &Row<'_>) -> rusqlite::Result<DeviceInfo> {
    Ok(DeviceInfo {
        device_id: r.get(0)?,
        public_key: r.get(1)?,
        display_name: r.get(2)?,
        platform: r.get(3)?,
        device_family: r.get(4)?,
        client_id: r.get(5)?,
        client_mode: r.get(6)?,
        role: r.get(7)?,
        scopes: scopes_from_json(&r.get::<_, String>(8)?),
        approved_via: r.get(9)?,
        created_at_ms: r.get::<_, i64>(10)? as u64,
        approved_at_ms: r.get::<_, i64>(11)? as u64,
        last_seen_at_ms: r.get::<_, Option<i64>>(12)?.map(|v| v as u64),
        revoked_at_ms: r.get::<_, Option<i64>>(13)?.map(|v| v as u64),
        last_transport: r.get(14)?,
    })
}

impl DeviceInfo {
    /// The slice the auth decision needs.
    pub fn record(&self) -> DeviceRecord {
        DeviceRecord {
            device_id: self.device_id.clone(),
            scopes: self.scopes.clone(),
            revoked: self.revoked_at_ms.is_some(),
        }
    }
}

impl Store {
    /// A device by id.
    pub fn device(&self, device_id: &str) -> Result<Option<DeviceInfo>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {COLS} FROM devices WHERE device_id = ?1"))?
            .query_row([device_id], from_row)
            .optional()?)
    }

    /// Every paired device (revoked ones included), oldest first.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLS} FROM devices ORDER BY created_at_ms, device_id"
        ))?;
        let rows = stmt
            .query_map([], from_row)?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Pairs a device (or refreshes an existing record, widening its scopes), audited. A pairing
    /// other than the silent refresh on loopback (a code, an approval, an SSH key) starts the
    /// device's sub-identities afresh.
    pub fn pair_device(&mut self, d: &NewDevice, via: &str, origin: &str) -> Result<()> {
        let now = now_ms() as i64;
        let tx = self.write_tx()?;
        if via != "silent" {
            super::sub_identities::forget(&tx, &d.device_id)?;
        }
        let existing: Option<String> = tx
            .query_row(
                "SELECT scopes FROM devices WHERE device_id = ?1",
                [&d.device_id],
                |r| r.get(0),
            )
            .optional()?;
        match existing {
            Some(old) => {
                let scopes = crate::auth::scopes::union(&scopes_from_json(&old), &d.scopes);
                tx.execute(
                    "UPDATE devices SET scopes = ?2, last_seen_at_ms = ?3 WHERE device_id = ?1",
                    params![d.device_id, scopes_to_json(&scopes), now],
                )?;
            }
            None => {
                let mut scopes = d.scopes.clone();
                scopes.sort();
                scopes.dedup();
                // A fresh salt per pairing: a device that is removed and pairs again never gets
                // a token it held before.
                tx.execute(
                    &format!("INSERT INTO devices({COLS}, token_salt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?11, NULL, NULL, ?12)"),
                    params![
                        d.device_id,
                        d.public_key,
                        d.display_name,
                        d.platform,
                        d.device_family,
                        d.client_id,
                        d.client_mode,
                        d.role,
                        scopes_to_json(&scopes),
                        via,
                        now,
                        crate::auth::secrets::random_bytes().to_vec()
                    ],
                )?;
                audit::insert(
                    &tx,
                    "device.paired",
                    Some(&d.device_id),
                    Some(origin),
                    &format!("via={via}"),
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks a device revoked and supersedes its tokens, audited. Revoked devices are refused by
    /// every channel until removed.
    pub fn revoke_device(&mut self, device_id: &str, actor: &str) -> Result<()> {
        let now = now_ms() as i64;
        let tx = self.write_tx()?;
        let n = tx.execute(
            "UPDATE devices SET revoked_at_ms = COALESCE(revoked_at_ms, ?2) WHERE device_id = ?1",
            params![device_id, now],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "no paired device {device_id}"
            )));
        }
        tx.execute(
            "UPDATE device_tokens SET superseded_at_ms = ?2 WHERE device_id = ?1 AND superseded_at_ms IS NULL",
            params![device_id, now],
        )?;
        audit::insert(&tx, "device.revoked", Some(device_id), Some(actor), "")?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces a paired, unrevoked device's approved scopes, audited (`device.scopes.set`,
    /// `old -> new`). Returns the scopes it had.
    pub fn set_device_scopes(
        &mut self,
        device_id: &str,
        scopes: &[String],
        actor: &str,
    ) -> Result<Vec<String>> {
        let tx = self.write_tx()?;
        let old: Option<(String, Option<i64>)> = tx
            .query_row(
                "SELECT scopes, revoked_at_ms FROM devices WHERE device_id = ?1",
                [device_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let old = match old {
            None => {
                return Err(StoreError::NotFound(format!(
                    "no paired device {device_id}"
                )))
            }
            Some((_, Some(_))) => {
                return Err(StoreError::Conflict(format!(
                    "device {device_id} is revoked"
                )))
            }
            Some((old, None)) => scopes_from_json(&old),
        };
        tx.execute(
            "UPDATE devices SET scopes = ?2 WHERE device_id = ?1",
            params![device_id, scopes_to_json(scopes)],
        )?;
        let detail = format!("{} -> {}", old.join(","), scopes.join(","));
        audit::insert(
            &tx,
            "device.scopes.set",
            Some(device_id),
            Some(actor),
            &detail,
        )?;
        tx.commit()?;
        Ok(old)
    }

    /// Forgets a device and its tokens (it may pair again), audited.
    pub fn remove_device(&mut self, device_id: &str, actor: &str) -> Result<()> {
        let tx = self.write_tx()?;
        let n = tx.execute("DELETE FROM devices WHERE device_id = ?1", [device_id])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "no paired device {device_id}"
            )));
        }
        tx.execute(
            "DELETE FROM device_tokens WHERE device_id = ?1",
            [device_id],
        )?;
        super::sub_identities::forget(&tx, device_id)?;
        audit::insert(&tx, "device.removed", Some(device_id), Some(actor), "")?;
        tx.commit()?;
        Ok(())
    }

    /// Records a successful connect. `last_seen_at_ms` has minute resolution: a device that
    /// reconnects within `LAST_SEEN_RESOLUTION_MS` of its last write costs no write.
    pub fn touch_device(&mut self, device_id: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE devices SET last_seen_at_ms = ?2 WHERE device_id = ?1 \
                 AND (last_seen_at_ms IS NULL OR last_seen_at_ms <= ?2 - ?3)",
            )?
            .execute(params![
                device_id,
                now_ms() as i64,
                LAST_SEEN_RESOLUTION_MS as i64
            ])?;
        Ok(())
    }

    /// Records that `device_id` was seen at `at_ms` over `transport` (a link opened or closed):
    /// what `claw devices list` shows as "last seen" after the device goes away, and across
    /// restarts. Never moves the time backwards.
    pub fn record_seen(&mut self, device_id: &str, transport: &str, at_ms: u64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE devices SET last_seen_at_ms = MAX(COALESCE(last_seen_at_ms, 0), ?2), \
                 last_transport = ?3 WHERE device_id = ?1",
            )?
            .execute(params![device_id, at_ms as i64, transport])?;
        Ok(())
    }
}
