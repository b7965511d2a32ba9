//! The device-token root: a 32-byte secret and its generation. Only explicit rotation changes it.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{Result, Store};
use crate::auth::secrets::random_bytes;
use crate::now_ms;

pub(super) fn ensure(tx: &Transaction<'_>) -> Result<()> {
    let exists: Option<i64> = tx
        .query_row("SELECT generation FROM root WHERE id = 1", [], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        tx.execute(
            "INSERT INTO root(id, generation, secret, rotated_at_ms) VALUES (1, 1, ?1, ?2)",
            params![random_bytes().to_vec(), now_ms() as i64],
        )?;
    }
    Ok(())
}

/// What a root rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The new generation.
    pub generation: u64,
    /// Devices removed (`revoke_devices`).
    pub devices_removed: usize,
}

impl Store {
    /// The current root generation and secret.
    pub fn root(&self) -> Result<(u64, Vec<u8>)> {
        // Cached statements on the connect path: parsing SQL on every handshake showed up in
        // the churn profile (docs/reliability.md).
        Ok(self
            .conn
            .prepare_cached("SELECT generation, secret FROM root WHERE id = 1")?
            .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?)
    }

    /// When the root was last rotated (its creation, if never), ms since the epoch.
    pub fn root_rotated_at_ms(&self) -> Result<u64> {
        Ok(self
            .conn
            .prepare_cached("SELECT rotated_at_ms FROM root WHERE id = 1")?
            .query_row([], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Replaces the root (new secret, generation + 1) in one transaction with its audit entry.
    /// Every device token of older generations stops working. With `remove_devices`, every
    /// paired device is forgotten too and must pair again.
    pub fn rotate_root(&mut self, remove_devices: bool, actor: &str) -> Result<Rotation> {
        let tx = self.write_tx()?;
        tx.execute(
            "UPDATE root SET generation = generation + 1, secret = ?1, rotated_at_ms = ?2 WHERE id = 1",
            params![random_bytes().to_vec(), now_ms() as i64],
        )?;
        let generation: i64 =
            tx.query_row("SELECT generation FROM root WHERE id = 1", [], |r| r.get(0))?;
        let mut devices_removed = 0;
        if remove_devices {
            devices_removed = tx.execute("DELETE FROM devices", [])?;
            tx.execute("DELETE FROM pairing_requests", [])?;
            tx.execute("DELETE FROM sub_identities", [])?;
        }
        super::audit::insert(
            &tx,
            "root.rotated",
            None,
            Some(actor),
            &format!("generation={generation} devices_removed={devices_removed}"),
        )?;
        tx.commit()?;
        Ok(Rotation {
            generation: generation as u64,
            devices_removed,
        })
    }
}
