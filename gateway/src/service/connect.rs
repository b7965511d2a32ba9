//! The device side of a connect the decision accepted or sent for approval: what the
//! WebSocket session (loopback, tunnel and SSH alike) changes in the store.

use serde_json::json;

use crate::auth::decide::{Accept, DeviceAction};
use crate::protocol::connect::ConnectParams;
use crate::protocol::frames;
use crate::state::GatewayState;
use crate::store::{NewDevice, PendingRequest, StoreError};

/// Files a pairing request for `device_id` (from `remote`, by `origin`) and tells every session
/// (`device.pair.requested`).
pub fn request_pairing(
    state: &GatewayState,
    params: &ConnectParams,
    device_id: &str,
    origin: &str,
    remote: &str,
) -> Result<PendingRequest, StoreError> {
    let d = new_device(params, device_id);
    let ttl = state.config.pairing_request_ttl.as_millis() as u64;
    let req = state.store().request_pairing(&d, origin, ttl)?;
    // Shown to the operator; a failure to note it refuses nothing.
    let _ = state.store().set_request_remote(&req.request_id, remote);
    let ev = frames::event(
        "device.pair.requested",
        &json!({"requestId": req.request_id, "deviceId": device_id}),
        Some(state.next_seq()),
    );
    state.broadcast(&ev);
    Ok(req)
}

fn new_device(params: &ConnectParams, device_id: &str) -> NewDevice {
    NewDevice {
        device_id: device_id.to_string(),
        public_key: params
            .device
            .as_ref()
            .map(|d| d.public_key.clone())
            .unwrap_or_default(),
        display_name: params.client.display_name.clone(),
        platform: params.client.platform.clone(),
        device_family: params.client.device_family.clone(),
        client_id: params.client.id.clone(),
        client_mode: params.client.mode.clone(),
        role: params.role.clone(),
        scopes: params.scopes.clone(),
    }
}

/// Applies the device side of an accepted connect (pair silently, refresh, re-pair over the
/// tunnel, record a sub-identity, keep); returns the device token to hand out. A store fault is
/// the caller's to answer (retryable `UNAVAILABLE`).
pub fn carry_out(
    state: &GatewayState,
    a: &Accept,
    params: &ConnectParams,
    origin: &str,
) -> Result<Option<(String, u64)>, StoreError> {
    let Some(device_id) = &a.device_id else {
        return Ok(None);
    };
    let mut store = state.store();
    let issued = match &a.action {
        DeviceAction::None => return Ok(None),
        DeviceAction::SubIdentity { key_id } => {
            // Bookkeeping, like `last_seen`: a store that cannot write does not stop a client
            // the transport authenticated.
            let sub = crate::store::SubIdentity {
                device_id: device_id.clone(),
                key_id: key_id.clone(),
                client: format!("{}/{}", params.client.id, params.client.mode),
                display_name: params.client.display_name.clone(),
                role: a.role.clone(),
            };
            match store.record_sub_identity(&sub) {
                Ok(true) => {
                    drop(store);
                    state.audit(
                        "device.subidentity.seen",
                        Some(device_id),
                        Some(origin),
                        &format!(
                            "key={} client={}",
                            &key_id[..16.min(key_id.len())],
                            sub.client
                        ),
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "could not record a sub-identity"),
            }
            return Ok(None);
        }
        DeviceAction::PairSilently | DeviceAction::Refresh => {
            store.pair_device(&new_device(params, device_id), "silent", origin)?;
            store.current_token(device_id, &a.role, origin)?
        }
        DeviceAction::RepairOverTunnel => {
            let t = store.current_token(device_id, &a.role, origin)?;
            drop(store);
            state.audit(
                "device.repaired",
                Some(device_id),
                Some(origin),
                "stale token replaced over the tunnel",
            );
            t
        }
        DeviceAction::Keep => {
            // `last_seen` is bookkeeping: a store that cannot write does not stop a device whose
            // token verified.
            if let Err(e) = store.touch_device(device_id) {
                tracing::debug!(error = %e, "could not record last_seen");
            }
            // Same token back (a device token is re-derivable from the root).
            return Ok(Some((
                params.secret().unwrap_or_default().to_string(),
                crate::now_ms(),
            )));
        }
    };
    Ok(Some((issued.token, issued.issued_at_ms)))
}
