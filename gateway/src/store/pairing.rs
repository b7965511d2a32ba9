//! Pending pairing requests: devices that asked to pair and wait for `claw devices approve`.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{audit, scopes_from_json, scopes_to_json, NewDevice, Result, Store, StoreError};
use crate::now_ms;

/// A request waiting for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequest {
    /// Request id.
    pub request_id: String,
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
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Where it came from.
    pub origin: String,
    /// Created.
    pub created_at_ms: u64,
    /// Expires.
    pub expires_at_ms: u64,
}

const COLS: &str = "request_id, device_id, public_key, display_name, platform, device_family, client_id, client_mode, role, scopes, origin, created_at_ms, expires_at_ms";

fn from_row(r: &Row<'_>) -> rusqlite::Result<PendingRequest> {
    Ok(PendingRequest {
        request_id: r.get(0)?,
        device_id: r.get(1)?,
        public_key: r.get(2)?,
        display_name: r.get(3)?,
        platform: r.get(4)?,
        device_family: r.get(5)?,
        client_id: r.get(6)?,
        client_mode: r.get(7)?,
        role: r.get(8)?,
        scopes: scopes_from_json(&r.get::<_, String>(9)?),
        origin: r.get(10)?,
        created_at_ms: r.get::<_, i64>(11)? as u64,
        expires_at_ms: r.get::<_, i64>(12)? as u64,
    })
}

impl PendingRequest {
    fn device(&self) -> NewDevice {
        NewDevice {
            device_id: self.device_id.clone(),
            public_key: self.public_key.clone(),
            display_name: self.display_name.clone(),
            platform: self.platform.clone(),
            device_family: self.device_family.clone(),
            client_id: self.client_id.clone(),
            client_mode: self.client_mode.clone(),
            role: self.role.clone(),
            scopes: self.scopes.clone(),
        }
    }
}

/// A request is live from its creation (minus the clock slack) until its expiry: a clock set
/// back days neither keeps it waiting that much longer nor lets it be approved then (the device
/// asks again). Placeholders: `?1` now, `?2` now plus the slack.
const LIVE: &str = "expires_at_ms > ?1 AND created_at_ms <= ?2";

/// `(now, now + slack)` for [`LIVE`].
fn live_params() -> (i64, i64) {
    let now = now_ms();
    (
        now as i64,
        now.saturating_add(crate::auth::pairing_code::CLOCK_BACK_SLACK_MS) as i64,
    )
}

/// Most pending requests kept; beyond it new requests are refused (a flood cannot fill the disk).
pub(super) const MAX_PENDING: i64 = 256;

impl Store {
    /// Records (or returns the existing) pending request of a device, audited.
    pub fn request_pairing(
        &mut self,
        d: &NewDevice,
        origin: &str,
        ttl_ms: u64,
    ) -> Result<PendingRequest> {
        let now = now_ms();
        let tx = self.write_tx()?;
        let (at, slack) = live_params();
        tx.execute(
            &format!("DELETE FROM pairing_requests WHERE NOT ({LIVE})"),
            params![at, slack],
        )?;
        let existing = tx
            .query_row(
                &format!("SELECT {COLS} FROM pairing_requests WHERE device_id = ?1"),
                [&d.device_id],
                from_row,
            )
            .optional()?;
        if let Some(r) = existing {
            tx.commit()?;
            return Ok(r);
        }
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM pairing_requests", [], |r| r.get(0))?;
        if count >= MAX_PENDING {
            return Err(StoreError::Conflict(
                "too many pending pairing requests".into(),
            ));
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        tx.execute(
            &format!("INSERT INTO pairing_requests({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
            params![
                request_id,
                d.device_id,
                d.public_key,
                d.display_name,
                d.platform,
                d.device_family,
                d.client_id,
                d.client_mode,
                d.role,
                scopes_to_json(&d.scopes),
                origin,
                now as i64,
                (now + ttl_ms) as i64
            ],
        )?;
        audit::insert(
            &tx,
            "pairing.requested",
            Some(&d.device_id),
            Some(origin),
            &format!("request={request_id}"),
        )?;
        let r = tx.query_row(
            &format!("SELECT {COLS} FROM pairing_requests WHERE request_id = ?1"),
            [&request_id],
            from_row,
        )?;
        tx.commit()?;
        Ok(r)
    }

    /// Notes the network address a pending request came from (a tunnel client's UDP address, a
    /// loopback client's address), for the operator deciding on it.
    pub fn set_request_remote(&mut self, request_id: &str, addr: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE pairing_requests SET remote_addr = ?2 WHERE request_id = ?1",
            params![request_id, addr],
        )?;
        Ok(())
    }

    /// The addresses noted by [`Store::set_request_remote`], by request id.
    pub fn request_remotes(&self) -> Result<std::collections::HashMap<String, String>> {
        let mut stmt = self.conn.prepare(
            "SELECT request_id, remote_addr FROM pairing_requests WHERE remote_addr IS NOT NULL",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    /// Unexpired pending requests, oldest first.
    pub fn pending(&self) -> Result<Vec<PendingRequest>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLS} FROM pairing_requests WHERE {LIVE} ORDER BY created_at_ms, request_id"
        ))?;
        let (at, slack) = live_params();
        let rows = stmt
            .query_map(params![at, slack], from_row)?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Number of expired requests still stored.
    pub fn expired_request_count(&self) -> Result<u64> {
        let (at, slack) = live_params();
        let n: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM pairing_requests WHERE NOT ({LIVE})"),
            params![at, slack],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Deletes expired requests; returns how many.
    pub fn prune_expired_requests(&mut self) -> Result<u64> {
        let (at, slack) = live_params();
        Ok(self.conn.execute(
            &format!("DELETE FROM pairing_requests WHERE NOT ({LIVE})"),
            params![at, slack],
        )? as u64)
    }

    /// Approves a pending request: the device is paired; returns it.
    pub fn approve_request(&mut self, request_id: &str, actor: &str) -> Result<PendingRequest> {
        let req = self.take_request(request_id)?;
        self.pair_device(&req.device(), "operator", actor)?;
        self.audit(
            "pairing.approved",
            Some(&req.device_id),
            Some(actor),
            &format!("request={request_id}"),
        )?;
        Ok(req)
    }

    /// Rejects a pending request.
    pub fn reject_request(&mut self, request_id: &str, actor: &str) -> Result<PendingRequest> {
        let req = self.take_request(request_id)?;
        self.audit(
            "pairing.rejected",
            Some(&req.device_id),
            Some(actor),
            &format!("request={request_id}"),
        )?;
        Ok(req)
    }

    fn take_request(&mut self, request_id: &str) -> Result<PendingRequest> {
        let (at, slack) = live_params();
        let tx = self.write_tx()?;
        let req = tx
            .query_row(
                &format!("SELECT {COLS} FROM pairing_requests WHERE {LIVE} AND request_id = ?3"),
                params![at, slack, request_id],
                from_row,
            )
            .optional()?
            .ok_or_else(|| {
                StoreError::NotFound(format!("no pending pairing request {request_id}"))
            })?;
        tx.execute(
            "DELETE FROM pairing_requests WHERE request_id = ?1",
            [request_id],
        )?;
        tx.commit()?;
        Ok(req)
    }
}
