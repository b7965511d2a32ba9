//! Admin-socket-only methods: runtime status, stop, the shared token, the audit log.

use serde_json::{json, Value};

use super::Ctx;
use crate::protocol::frames::ErrorShape;
use crate::state::GatewayState;

/// `gateway.status`: runtime facts for `claw gateway status` and `claw channels status`.
///
/// Besides the `status` payload: `running`, `openSockets`, `maxConnections` (the cap in force,
/// after the open-file limit), and `clients`, one entry per live
/// authenticated session: `{connId, channel, origin, method, deviceId?, client, connectedAtMs,
/// idleMs}` (`channel` is `ws` for loopback WebSocket sessions, `tunnel` for sessions carried by
/// the tunnel or SSH forward), oldest first; `listeners`: where the gateway listens (`ws`, `tunnel`,
/// `ssh`, `relays`, `upstream`).
pub(super) fn status(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let mut v = super::health::status(state, ctx, p)?;
    v["running"] = json!(true);
    v["openSockets"] = json!(state
        .open_sockets
        .load(std::sync::atomic::Ordering::Relaxed));
    v["maxConnections"] = json!(state.config.max_connections);
    v["clients"] = clients(state);
    v["upstream"] = state
        .upstream
        .get()
        .map(|u| u.status_json())
        .unwrap_or(Value::Null);
    v["listeners"] = listeners(state);
    if let Some(every) = state.config.rotate_every {
        let last = state.store().root_rotated_at_ms().unwrap_or(0);
        v["rotation"] = json!({
            "everyMs": every.as_millis() as u64,
            "lastRotatedAtMs": last,
            "nextAtMs": crate::rotation::next_due_ms(last, every),
        });
    }
    Ok(v)
}

/// `gateway.status.listeners`: where the gateway listens, from its runtime file (`gateway.json`,
/// written once every listener is bound): `{ws: [addr…], tunnel: {addr, gatewayId} | null,
/// ssh: {addr, fingerprint} | null, relays: [{url}…], upstream: null}` (`upstream`: reserved
/// for an upstream gateway claw relays to; none yet).
fn listeners(state: &GatewayState) -> Value {
    let rt = crate::runtime_file::RuntimeFile::read(&state.home)
        .ok()
        .flatten()
        .filter(|r| r.pid == std::process::id());
    let Some(rt) = rt else {
        return json!({"ws": [], "tunnel": null, "ssh": null, "relays": [], "upstream": upstream_listener(state)});
    };
    json!({
        "ws": rt.addrs,
        "tunnel": rt.tunnel.map(|t| json!({"addr": t.addr, "gatewayId": t.gateway_id})),
        "ssh": rt.ssh.map(|s| json!({"addr": s.addr, "fingerprint": s.fingerprint})),
        "relays": rt.relays.iter().map(|r| json!({"url": r.url})).collect::<Vec<_>>(),
        "upstream": upstream_listener(state),
    })
}

/// The upstream OpenClaw gateway claw forwards to (`--upstream`), if any: its URL and whether
/// it answers (the full picture is `gateway.status`'s `upstream`).
fn upstream_listener(state: &GatewayState) -> Value {
    state.upstream.get().map_or(Value::Null, |u| {
        let s = u.status_json();
        json!({"url": s["url"], "reachable": s["reachable"]})
    })
}

/// The live sessions as `gateway.status` lists them.
fn clients(state: &GatewayState) -> Value {
    use crate::auth::decide::Origin;
    let uptime = state.uptime_ms();
    let sessions = state.sessions();
    let mut rows: Vec<_> = sessions.values().collect();
    rows.sort_by_key(|s| (s.connected_at_ms, s.conn_id));
    let list: Vec<Value> = rows
        .into_iter()
        .map(|s| {
            let (channel, origin) = match &s.origin {
                Origin::Loopback => ("ws", "loopback"),
                Origin::Tunnel {
                    via: crate::auth::decide::Via::Ssh,
                    ..
                } => ("ssh", "ssh"),
                Origin::Tunnel { .. } => ("tunnel", "tunnel"),
            };
            let last_seen = s.last_seen.load(std::sync::atomic::Ordering::Relaxed);
            let mut e = json!({
                "connId": s.conn_id,
                "channel": channel,
                "origin": origin,
                "method": s.method.as_str(),
                "client": s.client,
                "connectedAtMs": s.connected_at_ms,
                "idleMs": uptime.saturating_sub(last_seen),
            });
            if let Some(d) = &s.device_id {
                e["deviceId"] = json!(d);
            }
            e
        })
        .collect();
    Value::Array(list)
}

/// `pairing.prune`: deletes expired pairing requests and expired or used pairing codes (what
/// `claw doctor --fix` asks of a running gateway). Returns `{requests, codes}` removed.
pub(super) fn prune_pairing(
    state: &GatewayState,
    _ctx: &Ctx,
    _p: &Value,
) -> Result<Value, ErrorShape> {
    let mut store = state.store();
    let requests = store
        .prune_expired_requests()
        .map_err(|e| super::store_error(state, e))?;
    let codes = store
        .prune_codes()
        .map_err(|e| super::store_error(state, e))?;
    Ok(json!({"requests": requests, "codes": codes}))
}

/// `gateway.stop`: graceful shutdown (sessions get `shutdown` and close 1012).
pub(super) fn stop(state: &GatewayState, _ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    state.request_shutdown();
    Ok(json!({"stopping": true, "pid": std::process::id()}))
}

/// `gateway.token.show`: the shared token, for the local operator only.
pub(super) fn show_token(state: &GatewayState, ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    if !ctx.is_local_admin() {
        return Err(ErrorShape::new(
            crate::protocol::codes::FORBIDDEN,
            "the shared token is only shown on the admin socket",
        ));
    }
    Ok(json!({"token": state.shared_token(), "source": state.token_source}))
}

/// `audit.tail {limit?}`: newest audit entries.
pub(super) fn audit_tail(state: &GatewayState, _ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let limit = p
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(50)
        .min(10_000) as usize;
    let rows = state
        .store()
        .audit_tail(limit)
        .map_err(|e| super::store_error(state, e))?;
    Ok(json!({"entries": rows}))
}
