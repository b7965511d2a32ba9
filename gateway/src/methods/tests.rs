//! Dispatch: sync handlers run off the async workers; async handlers fit in the table.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::state::GatewayState;

fn state(dir: &std::path::Path) -> std::sync::Arc<GatewayState> {
    GatewayState::for_tests(dir)
}

/// A method waiting on a locked store (another writer holding it, a slow fsync) leaves the
/// runtime free: on a one-thread runtime another task runs while `device.pair.list` waits. Run
/// in place, the waiting method would hold the only thread and the other task would run only
/// once the holder gave up (here after 20 s, and the test fails on the order).
#[test]
fn a_method_waiting_on_the_store_does_not_hold_the_runtime() {
    let t = tempfile::tempdir().unwrap();
    let st = state(t.path());
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (held_tx, held_rx) = mpsc::channel::<()>();
    let holder = {
        let st = st.clone();
        std::thread::spawn(move || {
            let _guard = st.store();
            held_tx.send(()).unwrap();
            // Released when the other task ran, or after a bound if it never does.
            let _ = release_rx.recv_timeout(Duration::from_secs(20));
        })
    };
    held_rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let order = rt.block_on(async {
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let d = done_tx.clone();
        let st2 = st.clone();
        let call = tokio::spawn(async move {
            let r = dispatch(
                &st2,
                &Ctx::admin("test"),
                "device.pair.list",
                &json!({}),
                false,
            )
            .await;
            let _ = d.send("method");
            r
        });
        tokio::task::yield_now().await;
        let other = tokio::spawn(async move {
            let _ = done_tx.send("other task");
            release_tx.send(()).unwrap();
        });
        let first = tokio::time::timeout(Duration::from_secs(60), done_rx.recv()).await;
        other.await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("the method finishes once the store is free")
            .unwrap();
        assert!(reply.is_ok(), "{reply:?}");
        first.expect("something finished").unwrap()
    });
    holder.join().unwrap();
    assert_eq!(order, "other task");
}

fn echo_later(_s: Arc<GatewayState>, ctx: Ctx, p: Value) -> BoxFuture<'static, Reply> {
    Box::pin(async move {
        tokio::task::yield_now().await;
        Ok(json!({ "actor": ctx.actor, "echo": p }))
    })
}

fn boom(_s: &GatewayState, _c: &Ctx, _p: &Value) -> Reply {
    panic!("handler bug")
}

static TEST_TABLE: &[MethodSpec] = &[
    MethodSpec {
        name: "echo.later",
        scope: scopes::READ,
        ws: true,
        handler: Handler::Async(echo_later),
    },
    MethodSpec {
        name: "boom",
        scope: scopes::READ,
        ws: true,
        handler: Handler::Sync(boom),
    },
];

/// An async row is awaited with its own copies of the context and params; scopes are checked
/// before it runs, as for sync rows.
#[tokio::test]
async fn an_async_handler_is_awaited_and_scope_checked() {
    let t = tempfile::tempdir().unwrap();
    let st = state(t.path());
    let p = json!({ "x": 1 });
    let r = dispatch_in(
        TEST_TABLE,
        &st,
        &Ctx::admin("admin"),
        "echo.later",
        &p,
        true,
    )
    .await;
    assert_eq!(r.unwrap(), json!({ "actor": "admin", "echo": { "x": 1 } }));
    let no_scopes = Ctx {
        scopes: vec![],
        ..Ctx::admin("ws")
    };
    let r = dispatch_in(TEST_TABLE, &st, &no_scopes, "echo.later", &p, true).await;
    assert_eq!(r.unwrap_err().code, crate::protocol::codes::FORBIDDEN);
}

/// A sync handler that panics on the blocking pool is answered as an internal fault; the
/// caller's task survives.
#[tokio::test]
async fn a_panicking_sync_handler_is_an_unavailable_reply() {
    let t = tempfile::tempdir().unwrap();
    let st = state(t.path());
    let r = dispatch_in(TEST_TABLE, &st, &Ctx::admin("a"), "boom", &json!({}), true).await;
    let e = r.unwrap_err();
    assert_eq!(e.code, crate::protocol::codes::UNAVAILABLE);
    let fault = crate::fault::FaultKind::Internal.name();
    assert_eq!(e.details.as_ref().unwrap()["fault"], fault);
}

/// `device.scopes.set`'s `scopes`: only operator scopes, at least one, deduplicated and sorted;
/// anything else is a clear `INVALID_REQUEST` naming the offender (escaped) and the choices.
#[test]
fn scopes_param_takes_operator_scopes_only() {
    use super::devices::scopes_param;
    let ok = scopes_param(
        &serde_json::json!({"scopes": ["operator.write", "operator.admin", "operator.write"]}),
    )
    .unwrap();
    assert_eq!(
        ok,
        vec!["operator.admin".to_string(), "operator.write".to_string()]
    );
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"scopes": []}),
        serde_json::json!({"scopes": "operator.admin"}),
        serde_json::json!({"scopes": [1]}),
        serde_json::json!({"scopes": ["operator.root"]}),
        serde_json::json!({"scopes": ["node"]}),
        serde_json::json!({"scopes": ["operator.read\u{1b}[2J"]}),
        serde_json::json!({"scopes": vec!["operator.read"; 17]}),
    ] {
        let e = scopes_param(&bad).unwrap_err();
        assert_eq!(e.code, crate::protocol::codes::INVALID_REQUEST, "{bad}");
        assert!(!e.message.contains('\u{1b}'), "escaped: {}", e.message);
    }
    let e = scopes_param(&serde_json::json!({"scopes": ["operator.root"]})).unwrap_err();
    assert!(
        e.message.contains("operator.root") && e.message.contains("operator.admin"),
        "{}",
        e.message
    );
}
