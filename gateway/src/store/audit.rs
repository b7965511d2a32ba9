//! The audit log of auth events: failures, pairing, issuance, rotation, revocation.

use rusqlite::{params, Transaction};

use super::{Result, Store};
use crate::now_ms;

/// Rows kept; older entries are pruned so a flood of failures cannot grow the file without bound.
pub const MAX_ROWS: i64 = 50_000;

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// When.
    pub ts_ms: u64,
    /// What (`auth.failed`, `device.paired`, `root.rotated`, …).
    pub event: String,
    /// Device concerned.
    pub device_id: Option<String>,
    /// Where it came from (`loopback`, `tunnel`, `admin`, …).
    pub origin: Option<String>,
    /// Free text, never a secret.
    pub detail: Option<String>,
}

pub(super) fn insert(
    tx: &Transaction<'_>,
    event: &str,
    device_id: Option<&str>,
    origin: Option<&str>,
    detail: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit(ts_ms, event, device_id, origin, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms() as i64, event, device_id, origin, detail],
    )?;
    let last = tx.last_insert_rowid();
    if last % 1000 == 0 {
        tx.execute("DELETE FROM audit WHERE id <= ?1", [last - MAX_ROWS])?;
    }
    Ok(())
}

impl Store {
    /// Appends an audit entry in its own transaction.
    pub fn audit(
        &mut self,
        event: &str,
        device_id: Option<&str>,
        origin: Option<&str>,
        detail: &str,
    ) -> Result<()> {
        let tx = self.write_tx()?;
        insert(&tx, event, device_id, origin, detail)?;
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` entries, newest first.
    pub fn audit_tail(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, ts_ms, event, device_id, origin, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    ts_ms: r.get::<_, i64>(1)? as u64,
                    event: r.get(2)?,
                    device_id: r.get(3)?,
                    origin: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
