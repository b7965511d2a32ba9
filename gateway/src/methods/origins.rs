//! `gateway.origins.reload` (admin socket only): re-reads the home's persisted browser-origin list
//! after `claw gateway origins add|remove`, so a running gateway applies it at once.

use serde_json::{json, Value};

use super::Ctx;
use crate::protocol::frames::ErrorShape;
use crate::state::GatewayState;

/// Reloads the persisted list; answers `{"allowedOrigins": [...]}`, every origin now allowed
/// (loopback seeds, `--allow-origin`, persisted). A bad file keeps the previous list.
pub(super) fn reload(state: &GatewayState, _ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    let persisted = crate::origin::load(state.home.root())
        .map_err(|e| ErrorShape::new(crate::protocol::codes::INVALID_REQUEST, e.to_string()))?;
    let mut policy = state.origins.write().unwrap_or_else(|e| e.into_inner());
    policy.set_persisted(persisted);
    Ok(json!({ "allowedOrigins": policy.all() }))
}
