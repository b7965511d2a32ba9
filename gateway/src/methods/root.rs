//! `gateway.token.rotate`: rotate the device-token root (and optionally the shared token).

use serde_json::{json, Value};

use super::{store_error, Ctx};
use crate::auth::secrets::random_token;
use crate::protocol::errors::{Rejection, CLOSE_POLICY};
use crate::protocol::frames::ErrorShape;
use crate::protocol::hello::AuthMethod;
use crate::state::{GatewayEvent, GatewayState, TokenSource};

/// Options of a root rotation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RotateOptions {
    /// Proceed even with live device-token sessions.
    pub force: bool,
    /// Forget every paired device (the big red button).
    pub remove_devices: bool,
    /// Also replace a generated shared token.
    pub shared: bool,
}

/// Rotates the root: new generation, every old device token dead, every device-token session
/// closed with 1008 `unauthorized: device token rotated`. Atomic in the store.
pub fn rotate_root(
    state: &GatewayState,
    actor: &str,
    o: RotateOptions,
) -> Result<Value, ErrorShape> {
    let (_, live_device) = state.session_counts();
    if live_device > 0 && !o.force {
        return Err(ErrorShape::new(
            crate::protocol::codes::CONFLICT,
            format!(
                "{live_device} device-token session(s) are live and would be closed; pass force"
            ),
        )
        .with_details(json!({"code": "LIVE_SESSIONS", "liveDeviceSessions": live_device})));
    }
    if o.shared && state.token_source == TokenSource::Pinned {
        return Err(ErrorShape::new(
            crate::protocol::codes::CONFLICT,
            "the shared gateway token is pinned by --token, --token-file or CLAW_GATEWAY_TOKEN[_FILE]; change it there and restart",
        )
        .with_details(json!({"code": "SHARED_TOKEN_PINNED"})));
    }
    // The last state under the old root, for `claw doctor --fix` should the store be damaged.
    state.snapshot("before root rotation");
    let rot = state
        .store()
        .rotate_root(o.remove_devices, actor)
        .map_err(|e| store_error(state, e))?;
    let reason = Rejection::DeviceTokenRotated.frame().close_reason;
    let closed = state.close_sessions(
        |s| s.method == AuthMethod::DeviceToken,
        CLOSE_POLICY,
        &reason,
    );
    state.emit(GatewayEvent::RootRotated {
        generation: rot.generation,
    });
    let mut closed_shared = 0;
    if o.shared {
        let token = random_token();
        crate::home::write_secret_atomic(&state.home.shared_token_path(), token.as_bytes())
            .map_err(|e| {
                tracing::error!(error = %e, "could not write the new shared token");
                crate::protocol::errors::unavailable(crate::fault::FaultKind::from_io(&e))
            })?;
        state.set_shared_token(token);
        closed_shared = state.close_sessions(
            |s| s.method == AuthMethod::Token,
            CLOSE_POLICY,
            &crate::protocol::close::CloseReason::SharedTokenRotated.to_string(),
        );
    }
    let detail = format!(
        "closed_device_sessions={closed} shared={} closed_shared_sessions={closed_shared}",
        o.shared
    );
    state.audit("root.rotate.applied", None, Some(actor), &detail);
    tracing::info!(
        generation = rot.generation,
        closed,
        "device-token root rotated"
    );
    Ok(json!({
        "generation": rot.generation,
        "closedSessions": closed + closed_shared,
        "closedDeviceSessions": closed,
        "devicesRemoved": rot.devices_removed,
        "sharedTokenRotated": o.shared,
    }))
}

/// `gateway.token.rotate {force?, revokeDevices?, shared?}`.
pub(super) fn rotate(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let flag = |k: &str| p.get(k).and_then(Value::as_bool).unwrap_or(false);
    rotate_root(
        state,
        ctx.actor,
        RotateOptions {
            force: flag("force"),
            remove_devices: flag("revokeDevices"),
            shared: flag("shared"),
        },
    )
}
