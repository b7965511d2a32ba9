//! `pair.create` (admin socket only): mints a one-time pairing code for `claw pair`.

use serde_json::{json, Value};

use super::{store_error, Ctx};
use crate::protocol::frames::ErrorShape;
use crate::state::GatewayState;

/// Longest code lifetime accepted (7 days).
pub(super) const MAX_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// `pair.create {name?, ttlMs?, requireApproval?}` → `{code, codeId, expiresAtMs, requireApproval}`.
pub(super) fn create(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    if let Some(n) = name {
        crate::text::check_label("name", n, 64)
            .map_err(|e| super::invalid_params(e.to_string()))?;
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
        .map_err(|e| store_error(state, e))?;
    Ok(json!({
        "code": code,
        "codeId": info.code_id,
        "expiresAtMs": info.expires_at_ms,
        "requireApproval": approval,
        "name": name,
    }))
}

/// `device.key.add {name, publicKey}` (admin socket only): authorises an existing Ed25519 key
/// (e.g. an OpenSSH key, parsed by the CLI) as a paired device. `publicKey` is the raw 32-byte
/// key, base64url. Audited as `device.paired via=ssh-key`.
pub(super) fn add_key(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    use base64::Engine;
    let name = super::str_param(p, "name")?;
    crate::text::check_label("name", name, 64).map_err(|e| super::invalid_params(e.to_string()))?;
    let pk = super::str_param(p, "publicKey")?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(pk)
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| super::invalid_params("publicKey must be a base64url raw Ed25519 key"))?;
    let device_id = crate::auth::signature::device_id_for_key(&raw);
    if let Ok(Some(d)) = state.store().device(&device_id) {
        if d.revoked_at_ms.is_some() {
            return Err(ErrorShape::new(
                crate::protocol::codes::CONFLICT,
                format!("device {device_id} is revoked; `claw devices remove` it first"),
            ));
        }
    }
    let d = crate::store::NewDevice {
        device_id: device_id.clone(),
        public_key: pk.to_string(),
        display_name: Some(name.to_string()),
        platform: String::new(),
        device_family: String::new(),
        client_id: "ssh".into(),
        client_mode: "ssh".into(),
        role: "operator".into(),
        scopes: vec!["operator.read".into(), "operator.write".into()],
    };
    state
        .store()
        .pair_device(&d, "ssh-key", ctx.actor)
        .map_err(|e| store_error(state, e))?;
    Ok(json!({"deviceId": device_id, "name": name}))
}
