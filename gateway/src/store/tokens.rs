//! Device tokens: minted from the root secret, stored only as SHA-256 hashes.
//!
//! The current token of (device, role) is the row with the current generation and no
//! `superseded_at_ms`; its value is re-derived from the root secret and its serial, so the store
//! never holds a usable token.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{audit, scopes_from_json, scopes_to_json, Result, Store, StoreError};
use crate::auth::decide::TokenRecord;
use crate::auth::secrets::{mint_device_token, token_hash};
use crate::now_ms;

/// A token handed to a device.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token (a secret: never log it).
    pub token: String,
    /// Issue time.
    pub issued_at_ms: u64,
    /// Generation.
    pub generation: u64,
    /// True when this call minted it (false: an existing current token was handed back).
    pub fresh: bool,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("issued_at_ms", &self.issued_at_ms)
            .field("generation", &self.generation)
            .field("fresh", &self.fresh)
            .finish()
    }
}

fn root(tx: &Transaction<'_>) -> Result<(u64, Vec<u8>)> {
    Ok(tx.query_row(
        "SELECT generation, secret FROM root WHERE id = 1",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
    )?)
}

fn issue_in(
    tx: &Transaction<'_>,
    device_id: &str,
    role: &str,
    (scopes, salt): &(Vec<String>, Vec<u8>),
    force_new: bool,
    origin: &str,
) -> Result<IssuedToken> {
    let (generation, secret) = root(tx)?;
    let current: Option<(i64, i64)> = tx
        .query_row(
            "SELECT serial, issued_at_ms FROM device_tokens WHERE device_id = ?1 AND role = ?2 AND generation = ?3 AND superseded_at_ms IS NULL ORDER BY serial DESC LIMIT 1",
            params![device_id, role, generation as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let now = now_ms() as i64;
    if let Some((serial, issued)) = current {
        if !force_new {
            // Keep the token's grant in step with the device's approved scopes.
            let token = mint_device_token(&secret, device_id, role, serial as u64, salt);
            tx.execute(
                "UPDATE device_tokens SET scopes = ?2 WHERE token_hash = ?1",
                params![token_hash(&token).to_vec(), scopes_to_json(scopes)],
            )?;
            return Ok(IssuedToken {
                token,
                issued_at_ms: issued as u64,
                generation,
                fresh: false,
            });
        }
        tx.execute(
            "UPDATE device_tokens SET superseded_at_ms = ?3 WHERE device_id = ?1 AND role = ?2 AND superseded_at_ms IS NULL",
            params![device_id, role, now],
        )?;
    }
    let max_serial: i64 = tx.query_row(
        "SELECT COALESCE(MAX(serial), 0) FROM device_tokens WHERE device_id = ?1 AND role = ?2",
        params![device_id, role],
        |r| r.get(0),
    )?;
    let serial = max_serial + 1;
    let token = mint_device_token(&secret, device_id, role, serial as u64, salt);
    tx.execute(
        "INSERT INTO device_tokens(token_hash, device_id, role, scopes, generation, serial, issued_at_ms, superseded_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
        params![
            token_hash(&token).to_vec(),
            device_id,
            role,
            scopes_to_json(scopes),
            generation as i64,
            serial,
            now
        ],
    )?;
    // Dead rows go, but slowly: a device that was offline through several rotations still
    // holds an old token and must be told "rotated" (re-pair), never "wrong" — the hash row is
    // what tells them apart. So the newest KEPT_TOKEN_ROWS of this device and role stay. Rows
    // cannot be minted at will (a device keeps its recorded role), so this bounds the table.
    tx.execute(
        "DELETE FROM device_tokens WHERE device_id = ?1 AND role = ?2 AND serial <= ?3",
        params![device_id, role, serial - KEPT_TOKEN_ROWS as i64],
    )?;
    audit::insert(
        tx,
        "device.token.issued",
        Some(device_id),
        Some(origin),
        &format!("role={role} generation={generation} serial={serial}"),
    )?;
    Ok(IssuedToken {
        token,
        issued_at_ms: now as u64,
        generation,
        fresh: true,
    })
}

impl Store {
    /// The record for a presented secret, found by its hash.
    pub fn token_record(&self, token: &str) -> Result<Option<TokenRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT device_id, role, scopes, generation, serial, superseded_at_ms, issued_at_ms FROM device_tokens WHERE token_hash = ?1",
            )?
            .query_row(
                [token_hash(token).to_vec()],
                |r| {
                    Ok(TokenRecord {
                        device_id: r.get(0)?,
                        role: r.get(1)?,
                        scopes: scopes_from_json(&r.get::<_, String>(2)?),
                        generation: r.get::<_, i64>(3)? as u64,
                        serial: r.get::<_, i64>(4)? as u64,
                        superseded: r.get::<_, Option<i64>>(5)?.is_some(),
                        issued_at_ms: r.get::<_, i64>(6)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// The device's current token for `role` (minting one for the current generation when it has
    /// none), granting the device's approved scopes.
    pub fn current_token(
        &mut self,
        device_id: &str,
        role: &str,
        origin: &str,
    ) -> Result<IssuedToken> {
        match self.issue_current(device_id, role, origin) {
            // A store that cannot write (full, read-only, locked) still hands a device the token
            // it already has: re-deriving it needs only reads.
            Err(e) if e.fault().is_some() => match self.existing_token(device_id, role) {
                Ok(Some(t)) => Ok(t),
                _ => Err(e),
            },
            other => other,
        }
    }

    fn issue_current(&mut self, device_id: &str, role: &str, origin: &str) -> Result<IssuedToken> {
        let tx = self.write_tx()?;
        let grant = device_grant(&tx, device_id)?;
        let t = issue_in(&tx, device_id, role, &grant, false, origin)?;
        tx.commit()?;
        Ok(t)
    }

    /// The device's current token for `role` of the current generation, if it has one, by reads
    /// alone (a deferred transaction that never writes).
    fn existing_token(&mut self, device_id: &str, role: &str) -> Result<Option<IssuedToken>> {
        let tx = self.conn.transaction()?;
        let (_, salt) = device_grant(&tx, device_id)?;
        let (generation, secret) = root(&tx)?;
        let current: Option<(i64, i64)> = tx
            .query_row(
                "SELECT serial, issued_at_ms FROM device_tokens WHERE device_id = ?1 AND role = ?2 AND generation = ?3 AND superseded_at_ms IS NULL ORDER BY serial DESC LIMIT 1",
                params![device_id, role, generation as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(current.map(|(serial, issued)| IssuedToken {
            token: mint_device_token(&secret, device_id, role, serial as u64, &salt),
            issued_at_ms: issued as u64,
            generation,
            fresh: false,
        }))
    }

    /// Replaces the device's token for `role` with a new one (per-device rotation), audited.
    pub fn rotate_device_token(
        &mut self,
        device_id: &str,
        role: &str,
        origin: &str,
    ) -> Result<IssuedToken> {
        let tx = self.write_tx()?;
        let grant = device_grant(&tx, device_id)?;
        let t = issue_in(&tx, device_id, role, &grant, true, origin)?;
        audit::insert(
            &tx,
            "device.token.rotated",
            Some(device_id),
            Some(origin),
            &format!("role={role}"),
        )?;
        tx.commit()?;
        Ok(t)
    }

    /// Number of device tokens valid right now (current generation, not superseded, device not revoked).
    pub fn live_token_count(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM device_tokens t JOIN devices d ON d.device_id = t.device_id JOIN root r ON r.id = 1 WHERE t.generation = r.generation AND t.superseded_at_ms IS NULL AND d.revoked_at_ms IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

/// The device's approved scopes and token salt; refuses unknown and revoked devices.
fn device_grant(tx: &Transaction<'_>, device_id: &str) -> Result<(Vec<String>, Vec<u8>)> {
    let row: Option<(String, Option<i64>, Vec<u8>)> = tx
        .query_row(
            "SELECT scopes, revoked_at_ms, token_salt FROM devices WHERE device_id = ?1",
            [device_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match row {
        None => Err(StoreError::NotFound(format!(
            "no paired device {device_id}"
        ))),
        Some((_, Some(_), _)) => Err(StoreError::Conflict(format!(
            "device {device_id} is revoked"
        ))),
        Some((s, None, salt)) => Ok((scopes_from_json(&s), salt)),
    }
}

/// Token rows kept per device and role: a device offline through this many issues (root
/// rotations, per-device rotations, re-pairs) is still told its token was rotated.
pub(super) const KEPT_TOKEN_ROWS: u64 = 64;

#[cfg(test)]
mod tests {
    use super::KEPT_TOKEN_ROWS;
    use crate::store::{NewDevice, Store};

    #[test]
    fn only_the_newest_token_rows_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(&t.path().join("state.db")).unwrap();
        let d = NewDevice {
            device_id: "d1".into(),
            public_key: "pk".into(),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            ..Default::default()
        };
        s.pair_device(&d, "silent", "loopback").unwrap();
        let mut tokens = Vec::new();
        for _ in 0..80 {
            tokens.push(
                s.rotate_device_token("d1", "operator", "admin")
                    .unwrap()
                    .token,
            );
        }
        let rows: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM device_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            rows as u64, KEPT_TOKEN_ROWS,
            "80 rotations leave the newest {KEPT_TOKEN_ROWS} rows"
        );
        let oldest_kept = 80 - KEPT_TOKEN_ROWS as usize;
        let old = s.token_record(&tokens[oldest_kept]).unwrap().expect("kept");
        assert!(old.superseded, "so it is told apart as rotated");
        assert!(s.token_record(&tokens[oldest_kept - 1]).unwrap().is_none());
        assert!(!s.token_record(&tokens[79]).unwrap().unwrap().superseded);
    }
}
