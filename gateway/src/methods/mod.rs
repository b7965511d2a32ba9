//! Methods: one file per family, one dispatch table. The table is also the source of
//! `hello-ok.features.methods`, so the advertised list can never disagree with what is served.

mod admin;
mod dashboard;
mod devices;
mod doctor;
mod health;
mod origins;
mod pairing;
mod root;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::auth::scopes;
use crate::protocol::errors::missing_scope;
use crate::protocol::frames::ErrorShape;
use crate::protocol::hello::AuthMethod;
use crate::state::GatewayState;

pub use root::{rotate_root, RotateOptions};

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Effective scopes.
    pub scopes: Vec<String>,
    /// The caller's verified device.
    pub device_id: Option<String>,
    /// How the caller authenticated (`None` for the admin socket / offline CLI).
    pub method: Option<AuthMethod>,
    /// The caller's connection id (0 for admin).
    pub conn_id: u64,
    /// Audit actor name (`ws`, `admin`, `cli`).
    pub actor: &'static str,
}

impl Ctx {
    /// The context of the local operator (admin socket or offline CLI): every scope.
    pub fn admin(actor: &'static str) -> Self {
        Self {
            scopes: vec![scopes::ADMIN.to_string()],
            device_id: None,
            method: None,
            conn_id: 0,
            actor,
        }
    }

    /// True for the admin socket / offline CLI.
    pub fn is_local_admin(&self) -> bool {
        self.method.is_none()
    }
}

/// What a method answers.
pub type Reply = Result<Value, ErrorShape>;

/// A handler that does its work in place (store reads and writes, fsyncs): [`dispatch`] runs it
/// on tokio's blocking pool, never on an async worker, so a slow fsync stalls no session.
pub type SyncHandler = fn(&GatewayState, &Ctx, &Value) -> Reply;

/// A handler that awaits (another connection, a timer): it runs on the caller's task and must
/// put its own store work off the async workers (see [`blocking`]).
pub type AsyncHandler = fn(Arc<GatewayState>, Ctx, Value) -> BoxFuture<'static, Reply>;

/// A method handler: synchronous work, or a future.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Runs on the blocking pool.
    Sync(SyncHandler),
    /// Awaited on the caller's task.
    Async(AsyncHandler),
}

/// One row of the dispatch table.
pub struct MethodSpec {
    /// Wire name.
    pub name: &'static str,
    /// Scope required.
    pub scope: &'static str,
    /// Served over WebSocket (and advertised); false = admin socket only.
    pub ws: bool,
    /// The handler.
    pub handler: Handler,
}

/// Every method claw serves.
#[rustfmt::skip]
pub static TABLE: &[MethodSpec] = &[
    MethodSpec { name: "health", scope: scopes::READ, ws: true, handler: Handler::Sync(health::health) },
    MethodSpec { name: "status", scope: scopes::READ, ws: true, handler: Handler::Sync(health::status) },
    MethodSpec { name: "config.get", scope: scopes::READ, ws: true, handler: Handler::Sync(health::config) },
    MethodSpec { name: "system-presence", scope: scopes::READ, ws: true, handler: Handler::Sync(health::presence) },
    MethodSpec { name: "device.pair.list", scope: scopes::PAIRING, ws: true, handler: Handler::Sync(devices::list) },
    MethodSpec { name: "device.pair.approve", scope: scopes::PAIRING, ws: true, handler: Handler::Sync(devices::approve) },
    MethodSpec { name: "device.pair.reject", scope: scopes::PAIRING, ws: true, handler: Handler::Sync(devices::reject) },
    MethodSpec { name: "device.pair.remove", scope: scopes::PAIRING, ws: true, handler: Handler::Sync(devices::remove) },
    MethodSpec { name: "device.token.rotate", scope: scopes::PAIRING, ws: true, handler: Handler::Sync(devices::rotate_token) },
    MethodSpec { name: "device.token.revoke", scope: scopes::PAIRING, ws: true, handler: Handler::Sync(devices::revoke_token) },
    MethodSpec { name: "gateway.token.rotate", scope: scopes::ADMIN, ws: true, handler: Handler::Sync(root::rotate) },
    MethodSpec { name: "device.scopes.set", scope: scopes::ADMIN, ws: true, handler: Handler::Sync(devices::set_scopes) },
    // Admin socket only (not advertised, not served over WebSocket).
    MethodSpec { name: "pair.create", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(pairing::create) },
    MethodSpec { name: "device.key.add", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(pairing::add_key) },
    MethodSpec { name: "gateway.status", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(admin::status) },
    MethodSpec { name: "gateway.stop", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(admin::stop) },
    MethodSpec { name: "gateway.token.show", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(admin::show_token) },
    MethodSpec { name: "audit.tail", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(admin::audit_tail) },
    MethodSpec { name: "pairing.prune", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(admin::prune_pairing) },
    MethodSpec { name: "gateway.origins.reload", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(origins::reload) },
    MethodSpec { name: "dashboard.login", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(dashboard::login) },
    MethodSpec { name: "dashboard.pair", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(dashboard::pair) },
    MethodSpec { name: "doctor.run", scope: scopes::ADMIN, ws: false, handler: Handler::Sync(doctor::run) },
];

/// The methods advertised in `hello-ok.features.methods`.
pub fn served_methods() -> Vec<&'static str> {
    TABLE.iter().filter(|m| m.ws).map(|m| m.name).collect()
}

/// Runs `method` for `ctx`. `ws` selects the WebSocket view of the table. A sync handler runs
/// on the blocking pool (the caller's task waits; other sessions keep their workers).
pub async fn dispatch(
    state: &Arc<GatewayState>,
    ctx: &Ctx,
    method: &str,
    params: &Value,
    ws: bool,
) -> Reply {
    dispatch_in(TABLE, state, ctx, method, params, ws).await
}

/// [`dispatch`] over any table (tests give their own, with async rows).
pub(crate) async fn dispatch_in(
    table: &[MethodSpec],
    state: &Arc<GatewayState>,
    ctx: &Ctx,
    method: &str,
    params: &Value,
    ws: bool,
) -> Reply {
    let Some(spec) = table.iter().find(|m| m.name == method && (m.ws || !ws)) else {
        // OpenClaw answers unknown methods with the admin-scope error when the caller lacks admin.
        if !scopes::has_scope(&ctx.scopes, scopes::ADMIN) {
            return Err(missing_scope(scopes::ADMIN));
        }
        return Err(ErrorShape::new(
            crate::protocol::codes::INVALID_REQUEST,
            format!("unknown method: {method}"),
        ));
    };
    if !scopes::has_scope(&ctx.scopes, spec.scope) {
        return Err(missing_scope(spec.scope));
    }
    match spec.handler {
        Handler::Sync(h) => {
            let (ctx, params) = (ctx.clone(), params.clone());
            blocking(state, move |state| h(state, &ctx, &params)).await?
        }
        Handler::Async(h) => h(state.clone(), ctx.clone(), params.clone()).await,
    }
}

/// Runs `f` on tokio's blocking pool (the store's SQLite calls and fsyncs belong there, not on
/// an async worker). A panic in `f` is answered as an internal fault, as the old in-place call
/// would have unwound the session.
pub async fn blocking<R, F>(state: &Arc<GatewayState>, f: F) -> Result<R, ErrorShape>
where
    F: FnOnce(&GatewayState) -> R + Send + 'static,
    R: Send + 'static,
{
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "a blocking method task failed");
            crate::protocol::errors::unavailable(crate::fault::FaultKind::Internal)
        })
}

/// `INVALID_REQUEST` for bad params.
pub(crate) fn invalid_params(msg: impl std::fmt::Display) -> ErrorShape {
    ErrorShape::new(
        crate::protocol::codes::INVALID_REQUEST,
        format!("invalid params: {msg}"),
    )
}

/// Maps a store error to a wire error: a fault is a retryable `UNAVAILABLE` naming it (an IO
/// error narrowed by a write probe of the home, see [`GatewayState::fault_of`]).
pub(crate) fn store_error(state: &GatewayState, e: crate::store::StoreError) -> ErrorShape {
    use crate::store::StoreError;
    match e {
        StoreError::NotFound(m) => ErrorShape::new(crate::protocol::codes::NOT_FOUND, m),
        StoreError::Conflict(m) => ErrorShape::new(crate::protocol::codes::CONFLICT, m),
        other => {
            let fault = state.fault_of(&other);
            tracing::error!(error = %other, fault = fault.name(), "store failure");
            crate::protocol::errors::unavailable(fault)
        }
    }
}

/// Reads a required string param.
pub(crate) fn str_param<'a>(params: &'a Value, key: &str) -> Result<&'a str, ErrorShape> {
    params
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or_else(|| invalid_params(format!("{key} (string) is required")))
}
