//! Talks to the gateway's admin socket, or — when no gateway runs on this home — applies the same
//! method to the store directly (holding the gateway lock meanwhile, so no gateway starts halfway).

use std::time::Duration;

use anyhow::Context;
use claw_gateway::home::Home;
use claw_gateway::lock::{GatewayLock, LockState};
use claw_gateway::methods::{self, Ctx};
use claw_gateway::protocol::frames::ErrorShape;
use claw_gateway::state::{GatewayConfig, GatewayState, TokenSource};
use claw_gateway::store::Store;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{exit, fail};

/// Is a gateway running on this home? Returns its pid.
pub fn running_pid(home: &Home) -> Option<u32> {
    match GatewayLock::inspect(&home.lock_path()) {
        LockState::Held { pid } => Some(pid),
        _ => None,
    }
}

/// Calls `method` on the live gateway's admin socket.
pub async fn live_call(
    home: &Home,
    method: &str,
    params: Value,
) -> anyhow::Result<Result<Value, ErrorShape>> {
    let path = home.admin_socket_path();
    let stream = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(&path))
        .await
        .map_err(|_| anyhow::anyhow!("timed out connecting to {}", path.display()))?
        .with_context(|| {
            format!(
                "cannot reach the gateway's admin socket {} (run `claw doctor`)",
                path.display()
            )
        })?;
    let (r, mut w) = stream.into_split();
    let line = json!({"type":"req","id":"1","method":method,"params":params}).to_string();
    w.write_all(line.as_bytes()).await?;
    w.write_all(b"\n").await?;
    let mut lines = BufReader::new(r).lines();
    let reply = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| anyhow::anyhow!("the gateway did not answer {method}"))??
        .ok_or_else(|| anyhow::anyhow!("the gateway closed the admin socket"))?;
    let v: Value = serde_json::from_str(&reply).context("bad admin reply")?;
    if v["ok"] == true {
        Ok(Ok(v["payload"].clone()))
    } else {
        Ok(Err(
            serde_json::from_value(v["error"].clone()).context("bad admin error")?
        ))
    }
}

/// Opens the home's state without a running gateway (holding the lock for the duration).
pub fn offline_state(home: &Home) -> anyhow::Result<(std::sync::Arc<GatewayState>, GatewayLock)> {
    home.ensure()
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    let lock = match GatewayLock::acquire(&home.lock_path()) {
        Ok(l) => l,
        Err(claw_gateway::lock::LockError::Held { pid }) => {
            return Err(fail(
                exit::LOCKED,
                format!("a gateway (pid {pid}) just started on this home; retry"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let store = Store::open(&home.store_path())?;
    let token = claw_gateway::home::read_secret(&home.shared_token_path()).unwrap_or_default();
    let state = GatewayState::new(
        home.clone(),
        GatewayConfig::default(),
        store,
        token,
        TokenSource::Generated,
    );
    Ok((state, lock))
}

/// Calls `method` with full admin rights: on the live gateway if one runs, else offline.
pub async fn admin_call(home: &Home, method: &str, params: Value) -> anyhow::Result<Value> {
    let result = if running_pid(home).is_some() {
        live_call(home, method, params).await?
    } else {
        let (state, _lock) = offline_state(home)?;
        methods::dispatch(&state, &Ctx::admin("cli"), method, &params, false).await
    };
    result.map_err(|e| fail(exit::FAILURE, format!("{}: {}", e.code, e.message)))
}
