//! Admin-socket-only methods: runtime status, stop, the shared token, the audit log.

use serde_json::{json, Value};

use super::Ctx;
use crate::protocol::frames::ErrorShape;
use crate::state::GatewayState;

/// `gateway.status`: runtime facts for `claw gateway status`.
pub fn status(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let mut v = super::health::status(state, ctx, p)?;
    v["running"] = json!(true);
    v["openSockets"] = json!(state
        .open_sockets
        .load(std::sync::atomic::Ordering::Relaxed));
    Ok(v)
}

/// `gateway.stop`: graceful shutdown (sessions get `shutdown` and close 1012).
pub fn stop(state: &GatewayState, _ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    state.request_shutdown();
    Ok(json!({"stopping": true, "pid": std::process::id()}))
}

/// `gateway.token.show`: the shared token, for the local operator only.
pub fn show_token(state: &GatewayState, ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    if !ctx.is_local_admin() {
        return Err(ErrorShape::new(
            "FORBIDDEN",
            "the shared token is only shown on the admin socket",
        ));
    }
    Ok(json!({"token": state.shared_token(), "source": state.token_source}))
}

/// `audit.tail {limit?}`: newest audit entries.
pub fn audit_tail(state: &GatewayState, _ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let limit = p
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(50)
        .min(10_000) as usize;
    let rows = state
        .store()
        .audit_tail(limit)
        .map_err(super::store_error)?;
    Ok(json!({"entries": rows}))
}
