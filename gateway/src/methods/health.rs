//! `health`, `status`, `system-presence`: read-only views of the gateway.

use serde_json::{json, Value};

use super::Ctx;
use crate::protocol::frames::ErrorShape;
use crate::state::GatewayState;

/// `health`: liveness and the basics.
pub(super) fn health(state: &GatewayState, _ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    Ok(health_payload(state))
}

/// The health payload (also sent as the periodic `health` event).
pub(super) fn health_payload(state: &GatewayState) -> Value {
    json!({
        "ok": true,
        "ts": crate::now_ms(),
        "durationMs": 0,
        "uptimeMs": state.uptime_ms(),
    })
}

/// `status`: what the gateway is and who is connected.
pub(super) fn status(state: &GatewayState, _ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    let (shared, device) = state.session_counts();
    let store = state.store();
    let (generation, _) = store.root().map_err(|e| super::store_error(state, e))?;
    let devices = store.devices().map_err(|e| super::store_error(state, e))?;
    let pending = store
        .pending()
        .map_err(|e| super::store_error(state, e))?
        .len();
    drop(store);
    // The OpenClaw CLI (`openclaw status`) reads `channelSummary`, `sessions.count` and
    // `sessions.byAgent`; claw has no agents or channels, so those are empty. claw's own facts
    // follow under `gateway`, `connections` and `devices`.
    Ok(json!({
        "runtimeVersion": crate::VERSION,
        "heartbeat": {"defaultAgentId": "main", "agents": []},
        "channelSummary": [],
        "queuedSystemEvents": [],
        "sessions": {"paths": [], "count": 0, "recent": [], "byAgent": []},
        "gateway": {
            "url": state.url.lock().map(|u| u.clone()).unwrap_or_default(),
            "pid": std::process::id(),
            "uptimeMs": state.uptime_ms(),
            "bind": "loopback",
            "tokenSource": state.token_source,
            "auditWriteFailures": state.audit_failures.load(std::sync::atomic::Ordering::Relaxed),
        },
        "connections": {"total": shared + device, "sharedToken": shared, "deviceToken": device},
        "devices": {
            "paired": devices.iter().filter(|d| d.revoked_at_ms.is_none()).count(),
            "revoked": devices.iter().filter(|d| d.revoked_at_ms.is_some()).count(),
            "pending": pending,
        },
        "deviceTokenGeneration": generation,
    }))
}

/// `config.get`: the gateway's effective configuration, in the shape OpenClaw probes read.
pub(super) fn config(state: &GatewayState, _ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    // The bound port (the configured one may be 0 = any).
    let url = state.url.lock().map(|u| u.clone()).unwrap_or_default();
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    Ok(json!({
        "path": state.home.root(),
        "exists": true,
        "valid": true,
        "issues": [],
        "legacyIssues": [],
        "config": {"gateway": {
            "mode": "local",
            "bind": "loopback",
            "port": port,
            "auth": {"mode": "token"},
        }},
    }))
}

/// `system-presence`: the gateway and each connected client.
pub(super) fn presence(state: &GatewayState, _ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let mut out = vec![json!({
        "host": host,
        "ip": "127.0.0.1",
        "version": crate::VERSION,
        "platform": std::env::consts::OS,
        "mode": "gateway",
        "reason": "self",
        "ts": crate::now_ms(),
    })];
    for s in state.sessions().values() {
        let mut e = json!({
            "host": host,
            "mode": s.client,
            "reason": "connect",
            "ts": s.connected_at_ms,
            "authMethod": s.method.as_str(),
        });
        if let Some(d) = &s.device_id {
            e["deviceId"] = json!(d);
        }
        out.push(e);
    }
    Ok(Value::Array(out))
}
