//! Pairing outside a WebSocket: a device redeems a one-time code (the QUIC tunnel's control
//! stream), and a paired device is handed its current token.

use crate::auth::pairing_code::Verdict;
use crate::state::GatewayState;
use crate::store::{IssuedToken, NewDevice, Redeemed, StoreError};

/// Redeems `code` for device `d` arriving by `origin` from `remote`: paired at once, or a
/// pending request (noted with the address it came from, announced to every session) when the
/// code needs approval; the
/// code's verdict when it does not redeem. The store audits each outcome.
pub fn redeem_code(
    state: &GatewayState,
    code: &str,
    d: &NewDevice,
    origin: &str,
    remote: &str,
) -> Result<Result<Redeemed, Verdict>, StoreError> {
    let outcome = state.store().redeem_pairing_code(code, d, origin)?;
    if let Ok(Redeemed::Pending { request_id }) = &outcome {
        // Shown to the operator; a failure to note it refuses nothing.
        let _ = state.store().set_request_remote(request_id, remote);
        // Every operator session (the control page among them) hears of it, as of a request
        // made by a signed connect.
        state.broadcast(&crate::protocol::frames::event(
            "device.pair.requested",
            &serde_json::json!({"requestId": request_id, "deviceId": d.device_id}),
            Some(state.next_seq()),
        ));
    }
    Ok(outcome)
}

/// The device's current token for `role` (minted again from the root; a fresh one after a
/// rotation), audited as issued by `origin`.
pub fn current_token(
    state: &GatewayState,
    device_id: &str,
    role: &str,
    origin: &str,
) -> Result<IssuedToken, StoreError> {
    state.store().current_token(device_id, role, origin)
}
