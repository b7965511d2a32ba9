//! Changing a device's standing: approve or reject its pairing request, rotate its token,
//! revoke it, forget it — each with its audit entry (written by the store in the same
//! transaction), its credential event and the closes of the sessions it ends. The WebSocket
//! methods and the admin socket call these; no transport changes a device another way.

use serde_json::json;

use crate::protocol::close::CloseReason;
use crate::protocol::errors::{Rejection, CLOSE_POLICY};
use crate::protocol::hello::AuthMethod;
use crate::state::{GatewayEvent, GatewayState};
use crate::store::{IssuedToken, PendingRequest, StoreError};

/// Approves a pending request: the device is paired; every session hears
/// `device.pair.resolved`; listeners (the tunnel's pairing wait) hear the event.
pub fn approve(
    state: &GatewayState,
    request_id: &str,
    actor: &str,
) -> Result<PendingRequest, StoreError> {
    let req = state.store().approve_request(request_id, actor)?;
    let event = crate::protocol::frames::event(
        "device.pair.resolved",
        &json!({"requestId": request_id, "deviceId": req.device_id, "decision": "approved"}),
        Some(state.next_seq()),
    );
    state.broadcast(&event);
    state.emit(GatewayEvent::PairingResolved {
        device_id: req.device_id.clone(),
        approved: true,
    });
    Ok(req)
}

/// Rejects a pending request: announced like an approval, as `device.pair.resolved` with
/// `decision: "rejected"`, so a page or CLI waiting on it stops waiting.
pub fn reject(
    state: &GatewayState,
    request_id: &str,
    actor: &str,
) -> Result<PendingRequest, StoreError> {
    let req = state.store().reject_request(request_id, actor)?;
    let event = crate::protocol::frames::event(
        "device.pair.resolved",
        &json!({"requestId": request_id, "deviceId": req.device_id, "decision": "rejected"}),
        Some(state.next_seq()),
    );
    state.broadcast(&event);
    state.emit(GatewayEvent::PairingResolved {
        device_id: req.device_id.clone(),
        approved: false,
    });
    Ok(req)
}

/// Forgets a device; every session of it (or carried by its tunnel or SSH forward) closes.
/// Returns how many closed.
pub fn remove(state: &GatewayState, device_id: &str, actor: &str) -> Result<usize, StoreError> {
    state.store().remove_device(device_id, actor)?;
    state.emit(GatewayEvent::DeviceRemoved {
        device_id: device_id.to_string(),
    });
    Ok(state.close_device_sessions(
        device_id,
        CLOSE_POLICY,
        &CloseReason::DeviceRemoved.to_string(),
    ))
}

/// Revokes a device: every session of it closes with the revoked reason and every transport
/// refuses its key from now on. Returns how many closed.
pub fn revoke(state: &GatewayState, device_id: &str, actor: &str) -> Result<usize, StoreError> {
    state.store().revoke_device(device_id, actor)?;
    state.emit(GatewayEvent::DeviceRevoked {
        device_id: device_id.to_string(),
    });
    let reason = Rejection::DeviceRevoked.frame().close_reason;
    Ok(state.close_device_sessions(device_id, CLOSE_POLICY, &reason))
}

/// Replaces a device's approved scopes. Every session of the device (or carried by its tunnel
/// or SSH forward) closes with [`CloseReason::ScopesChanged`] and the retryable 1013, so a
/// narrowed device loses the scopes at once and a widened one gets them at its next connect; its
/// token stays valid. Returns the old scopes and how many sessions closed.
pub fn set_scopes(
    state: &GatewayState,
    device_id: &str,
    scopes: &[String],
    actor: &str,
) -> Result<(Vec<String>, usize), StoreError> {
    let old = state.store().set_device_scopes(device_id, scopes, actor)?;
    let closed = state.close_device_sessions(
        device_id,
        crate::protocol::close::CLOSE_TRY_AGAIN_LATER,
        &CloseReason::ScopesChanged.to_string(),
    );
    Ok((old, closed))
}

/// A new token for one device; its other device-token sessions (all but `keep_conn`) close
/// with the rotated reason. Returns the token and how many closed.
pub fn rotate_token(
    state: &GatewayState,
    device_id: &str,
    role: &str,
    actor: &str,
    keep_conn: u64,
) -> Result<(IssuedToken, usize), StoreError> {
    let issued = state.store().rotate_device_token(device_id, role, actor)?;
    state.emit(GatewayEvent::DeviceTokenRotated {
        device_id: device_id.to_string(),
    });
    let reason = Rejection::DeviceTokenRotated.frame().close_reason;
    let closed = state.close_sessions(
        |s| {
            s.device_id.as_deref() == Some(device_id)
                && s.method == AuthMethod::DeviceToken
                && s.conn_id != keep_conn
        },
        CLOSE_POLICY,
        &reason,
    );
    Ok((issued, closed))
}
