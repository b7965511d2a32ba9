//! `device.pair.*` and `device.token.*`: pairing records and per-device tokens.

use serde_json::{json, Value};

use super::{invalid_params, store_error, str_param, Ctx};
use crate::auth::scopes;
use crate::protocol::frames::ErrorShape;
use crate::protocol::hello::AuthMethod;
use crate::service::devices as service;
use crate::state::GatewayState;

/// Non-admin device sessions (device token or transport identity) manage only their own device
/// (OpenClaw's rule).
fn check_self_scope(ctx: &Ctx, target: &str) -> Result<(), ErrorShape> {
    if matches!(
        ctx.method,
        Some(AuthMethod::DeviceToken | AuthMethod::Transport)
    ) && !scopes::has_scope(&ctx.scopes, scopes::ADMIN)
        && ctx.device_id.as_deref() != Some(target)
    {
        return Err(ErrorShape::new(
            crate::protocol::codes::FORBIDDEN,
            "device-token sessions may only manage their own device without operator.admin",
        ));
    }
    Ok(())
}

fn role_param(p: &Value) -> Result<String, ErrorShape> {
    match p.get("role") {
        None | Some(Value::Null) => Ok("operator".into()),
        Some(Value::String(r)) if !r.is_empty() && r.len() <= 64 => Ok(r.clone()),
        _ => Err(invalid_params("role must be a string")),
    }
}

/// `device.pair.list`: pending requests and paired devices. Each device carries its presence
/// (`status` online / idle / offline, `transport`, `connectedSinceMs`, besides the stored
/// `lastSeenAtMs` and `lastTransport`); each pending request the address it came from
/// (`remoteAddr`), when known; each device the client keys seen through its transport
/// (`subIdentities`, see `auth::decide`).
pub(super) fn list(state: &GatewayState, _ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    let store = state.store();
    let pending = store.pending().map_err(|e| store_error(state, e))?;
    let remotes = store.request_remotes().map_err(|e| store_error(state, e))?;
    let devices = store.devices().map_err(|e| store_error(state, e))?;
    let mut subs = Vec::with_capacity(devices.len());
    for d in &devices {
        subs.push(
            store
                .sub_identities(&d.device_id)
                .map_err(|e| store_error(state, e))?,
        );
    }
    drop(store);
    let live: std::collections::HashSet<String> = state
        .sessions()
        .values()
        .filter_map(|s| s.device_id.clone())
        .collect();
    let now = crate::now_ms();
    let presence = state.presence();
    let summaries: Vec<_> = devices
        .iter()
        .map(|d| presence.summary(&d.device_id, now))
        .collect();
    drop(presence);
    let paired: Vec<Value> = devices
        .into_iter()
        .zip(summaries)
        .zip(subs)
        .map(|((d, p), subs)| {
            let connected = live.contains(&d.device_id) || p.transport.is_some();
            let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
            v["roles"] = json!([d.role]);
            // Token summaries as OpenClaw shows them: never the token itself.
            let mut tok =
                json!({"role": d.role, "scopes": d.scopes, "createdAtMs": d.approved_at_ms});
            if let Some(r) = d.revoked_at_ms {
                tok["revokedAtMs"] = json!(r);
            }
            v["tokens"] = json!([tok]);
            v["connected"] = json!(connected);
            v["revoked"] = json!(d.revoked_at_ms.is_some());
            v["status"] = json!(p.status);
            v["transport"] = json!(p.transport);
            v["connectedSinceMs"] = json!(p.connected_since_ms);
            // Client keys that connected through this device's transport (they act as it).
            v["subIdentities"] = json!(subs);
            if let Some(a) = p.active_at_ms {
                v["lastSeenAtMs"] = json!(a.max(d.last_seen_at_ms.unwrap_or(0)));
            }
            v
        })
        .collect();
    let pending: Vec<Value> = pending
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
            v["roles"] = json!([r.role]);
            v["ts"] = json!(r.created_at_ms);
            v["silent"] = json!(false);
            v["isRepair"] = json!(false);
            v["remoteAddr"] = json!(remotes.get(&r.request_id));
            v
        })
        .collect();
    Ok(json!({"pending": pending, "paired": paired}))
}

/// `device.pair.approve {requestId}`.
pub(super) fn approve(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let id = str_param(p, "requestId")?;
    let req = service::approve(state, id, ctx.actor).map_err(|e| store_error(state, e))?;
    Ok(json!({"requestId": id, "deviceId": req.device_id, "approved": true}))
}

/// `device.pair.reject {requestId}`: like approve, announced as `device.pair.resolved`
/// (`decision: "rejected"`) to every session.
pub(super) fn reject(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let id = str_param(p, "requestId")?;
    let req = service::reject(state, id, ctx.actor).map_err(|e| store_error(state, e))?;
    Ok(json!({"requestId": id, "deviceId": req.device_id, "rejected": true}))
}

/// `device.pair.remove {deviceId}`: forget the device; its sessions close.
pub(super) fn remove(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let id = str_param(p, "deviceId")?;
    check_self_scope(ctx, id)?;
    let closed = service::remove(state, id, ctx.actor).map_err(|e| store_error(state, e))?;
    Ok(
        json!({"deviceId": id, "removed": true, "closedSessions": closed, "removedAtMs": crate::now_ms()}),
    )
}

/// `device.token.rotate {deviceId, role}`: a new token for one device. The token is echoed only
/// to the device itself (OpenClaw's rule); its other device-token sessions close with
/// `unauthorized: device token rotated`.
pub(super) fn rotate_token(
    state: &GatewayState,
    ctx: &Ctx,
    p: &Value,
) -> Result<Value, ErrorShape> {
    let id = str_param(p, "deviceId")?;
    let role = role_param(p)?;
    check_self_scope(ctx, id)?;
    let (issued, closed) = service::rotate_token(state, id, &role, ctx.actor, ctx.conn_id)
        .map_err(|e| store_error(state, e))?;
    let scopes = state
        .store()
        .device(id)
        .ok()
        .flatten()
        .map(|d| d.scopes)
        .unwrap_or_default();
    let mut out = json!({
        "deviceId": id,
        "role": role,
        "scopes": scopes,
        "rotatedAtMs": issued.issued_at_ms,
        "closedSessions": closed,
        "tokenDelivery": "withheld-cross-device",
    });
    if ctx.device_id.as_deref() == Some(id) && ctx.method == Some(AuthMethod::DeviceToken) {
        out["token"] = json!(issued.token);
        out["tokenDelivery"] = json!("in-band");
    }
    Ok(out)
}

/// `device.token.revoke {deviceId, role}`: revokes the device; every session of it closes with
/// `unauthorized: device revoked` and every channel refuses it from now on.
/// The operator scopes a device may be given (`device.scopes.set`).
const GRANTABLE: [&str; 4] = [scopes::READ, scopes::WRITE, scopes::PAIRING, scopes::ADMIN];

/// Reads `scopes` for `device.scopes.set`: a non-empty array of operator scopes, deduplicated
/// and sorted. Pure: tested in `methods::tests`.
pub(crate) fn scopes_param(p: &Value) -> Result<Vec<String>, ErrorShape> {
    let list = p
        .get("scopes")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.len() <= 16)
        .ok_or_else(|| {
            invalid_params("scopes (a non-empty array of operator scopes) is required")
        })?;
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        match v.as_str().filter(|s| GRANTABLE.contains(s)) {
            Some(s) => out.push(s.to_string()),
            None => {
                let raw: String = v.to_string().chars().take(64).collect();
                let shown = crate::text::escape(&raw);
                return Err(invalid_params(format!(
                    "unknown scope {shown}; one of {}",
                    GRANTABLE.join(", ")
                )));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `device.scopes.set` (claw; `operator.admin`): replaces a paired device's approved scopes;
/// its sessions close (retryable) so the new scopes apply at once.
pub(super) fn set_scopes(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let id = str_param(p, "deviceId")?;
    let new = scopes_param(p)?;
    let (old, closed) =
        service::set_scopes(state, id, &new, ctx.actor).map_err(|e| store_error(state, e))?;
    Ok(json!({"deviceId": id, "scopes": new, "previousScopes": old, "closedSessions": closed}))
}

pub(super) fn revoke_token(
    state: &GatewayState,
    ctx: &Ctx,
    p: &Value,
) -> Result<Value, ErrorShape> {
    let id = str_param(p, "deviceId")?;
    let role = role_param(p)?;
    check_self_scope(ctx, id)?;
    let closed = service::revoke(state, id, ctx.actor).map_err(|e| store_error(state, e))?;
    Ok(
        json!({"deviceId": id, "role": role, "revoked": true, "revokedAtMs": crate::now_ms(), "closedSessions": closed}),
    )
}
