//! `pair.create` (admin socket only): mints a one-time pairing code for `claw pair`.

use serde_json::{json, Value};

use super::{store_error, Ctx};
use crate::protocol::frames::ErrorShape;
use crate::state::GatewayState;

/// Longest code lifetime accepted (7 days).
pub const MAX_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// `pair.create {name?, ttlMs?, requireApproval?}` → `{code, codeId, expiresAtMs, requireApproval}`.
pub fn create(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.len() > 64 || n.chars().any(char::is_control)) {
        return Err(super::invalid_params(
            "name must be ≤ 64 printable characters",
        ));
    }
    let ttl = p.get("ttlMs").and_then(Value::as_u64).unwrap_or(600_000);
    if ttl == 0 || ttl > MAX_TTL_MS {
        return Err(super::invalid_params(
            "ttlMs must be between 1 ms and 7 days",
        ));
    }
    let approval = p
        .get("requireApproval")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (code, info) = state
        .store()
        .create_pairing_code(name, ttl, approval, ctx.actor)
        .map_err(store_error)?;
    Ok(json!({
        "code": code,
        "codeId": info.code_id,
        "expiresAtMs": info.expires_at_ms,
        "requireApproval": approval,
        "name": name,
    }))
}
