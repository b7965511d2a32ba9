//! One-time pairing codes minted by `claw pair` and redeemed over the tunnel.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{audit, NewDevice, Result, Store, StoreError};
use crate::auth::pairing_code::{self, CodeRecord, Verdict};
use crate::now_ms;

/// A code as `claw pair` reports it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeInfo {
    /// Public id part.
    pub code_id: String,
    /// Name given to the device that redeems it.
    pub name: Option<String>,
    /// Redeeming leaves the device pending until approved.
    pub require_approval: bool,
    /// Expiry.
    pub expires_at_ms: u64,
}

/// A code row as stored.
struct StoredCode {
    record: CodeRecord,
    require_approval: bool,
    name: Option<String>,
}

/// What redeeming a code did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The device is paired.
    Paired,
    /// The device waits for `claw devices approve`.
    Pending {
        /// The pending request.
        request_id: String,
    },
}

impl Store {
    /// Mints a pairing code valid for `ttl_ms`, audited (by id only). Returns the full code.
    pub fn create_pairing_code(
        &mut self,
        name: Option<&str>,
        ttl_ms: u64,
        require_approval: bool,
        actor: &str,
    ) -> Result<(String, CodeInfo)> {
        let code = pairing_code::mint();
        let now = now_ms();
        let tx = self.write_tx()?;
        tx.execute(
            "DELETE FROM pairing_codes WHERE expires_at_ms <= ?1 AND used_at_ms IS NOT NULL",
            [now as i64],
        )?;
        tx.execute(
            "INSERT INTO pairing_codes(code_id, secret_hash, name, require_approval, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![code.id, code.secret_hash.to_vec(), name, require_approval, now as i64, (now + ttl_ms) as i64],
        )?;
        audit::insert(
            &tx,
            "pairing.code.created",
            None,
            Some(actor),
            &format!(
                "code={} ttl_ms={ttl_ms} approval={require_approval}",
                code.id
            ),
        )?;
        tx.commit()?;
        let info = CodeInfo {
            code_id: code.id.clone(),
            name: name.map(str::to_string),
            require_approval,
            expires_at_ms: now + ttl_ms,
        };
        Ok((code.code.clone(), info))
    }

    /// Redeems `code` for device `d` in one transaction: a wrong secret counts an attempt (the
    /// third burns the code); a good one marks it used and pairs the device, or records a pending
    /// request when the code requires approval. Every outcome is audited.
    pub fn redeem_pairing_code(
        &mut self,
        code: &str,
        d: &NewDevice,
        origin: &str,
    ) -> Result<std::result::Result<Redeemed, Verdict>> {
        let now = now_ms();
        let Some((id, secret)) = pairing_code::split(code) else {
            self.audit(
                "pairing.code.refused",
                Some(&d.device_id),
                Some(origin),
                "malformed code",
            )?;
            return Ok(Err(Verdict::Unknown));
        };
        let tx = self.write_tx()?;
        let row: Option<StoredCode> = tx
            .query_row(
                "SELECT secret_hash, expires_at_ms, attempts, used_at_ms, require_approval, name, created_at_ms FROM pairing_codes WHERE code_id = ?1",
                [id],
                |r| {
                    let hash: Vec<u8> = r.get(0)?;
                    Ok(StoredCode {
                        record: CodeRecord {
                            secret_hash: hash.as_slice().try_into().unwrap_or([0u8; 32]),
                            minted_at_ms: r.get::<_, i64>(6)? as u64,
                            expires_at_ms: r.get::<_, i64>(1)? as u64,
                            attempts: r.get::<_, i64>(2)? as u32,
                            used: r.get::<_, Option<i64>>(3)?.is_some(),
                        },
                        require_approval: r.get(4)?,
                        name: r.get(5)?,
                    })
                },
            )
            .optional()?;
        let rec = row.as_ref().map(|c| &c.record);
        let verdict = pairing_code::judge(rec, secret, now);
        match verdict {
            Verdict::Accept => {}
            Verdict::Wrong { burned } => {
                tx.execute(
                    "UPDATE pairing_codes SET attempts = attempts + 1 WHERE code_id = ?1",
                    [id],
                )?;
                if burned {
                    tx.execute(
                        "UPDATE pairing_codes SET used_at_ms = ?2 WHERE code_id = ?1",
                        params![id, now as i64],
                    )?;
                }
                audit::insert(
                    &tx,
                    "pairing.code.refused",
                    Some(&d.device_id),
                    Some(origin),
                    &format!("code={id} wrong burned={burned}"),
                )?;
                tx.commit()?;
                return Ok(Err(verdict));
            }
            other => {
                audit::insert(
                    &tx,
                    "pairing.code.refused",
                    Some(&d.device_id),
                    Some(origin),
                    &format!("code={id} {other:?}"),
                )?;
                tx.commit()?;
                return Ok(Err(other));
            }
        }
        let StoredCode {
            require_approval,
            name,
            ..
        } = row.ok_or_else(|| StoreError::NotFound("code vanished".into()))?;
        tx.execute(
            "UPDATE pairing_codes SET used_at_ms = ?2, device_id = ?3 WHERE code_id = ?1",
            params![id, now as i64, d.device_id],
        )?;
        audit::insert(
            &tx,
            "pairing.code.redeemed",
            Some(&d.device_id),
            Some(origin),
            &format!("code={id}"),
        )?;
        tx.commit()?;
        let mut d = d.clone();
        if d.display_name.is_none() {
            d.display_name = name;
        }
        if require_approval {
            let req = self.request_pairing(&d, origin, 24 * 3600 * 1000)?;
            Ok(Ok(Redeemed::Pending {
                request_id: req.request_id,
            }))
        } else {
            self.pair_device(&d, "pairing-code", origin)?;
            Ok(Ok(Redeemed::Paired))
        }
    }

    /// Codes that expired unused.
    pub fn expired_code_count(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM pairing_codes WHERE expires_at_ms <= ?1 AND used_at_ms IS NULL",
            [now_ms() as i64],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Deletes expired and used codes; returns how many.
    pub fn prune_codes(&mut self) -> Result<u64> {
        Ok(self.conn.execute(
            "DELETE FROM pairing_codes WHERE expires_at_ms <= ?1 OR used_at_ms IS NOT NULL",
            [now_ms() as i64],
        )? as u64)
    }
}
