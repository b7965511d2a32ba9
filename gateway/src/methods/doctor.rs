//! `doctor.run {fix?}` (admin socket and control page): `claw doctor` on the gateway's own home,
//! from inside the running gateway, so the control page can show the findings and apply the safe
//! fix. With `fix: true` only what is safe while the gateway runs is applied — file modes,
//! leftover temporary files, expired pairing rows — never a credential and never what needs the
//! gateway stopped (a stale lock, an orphaned socket, a snapshot restore): those stay findings
//! with their hint (`claw doctor --fix` with the gateway stopped).

use serde_json::Value;

use super::{store_error, Ctx};
use crate::doctor::gather::{gather, GatherOptions};
use crate::doctor::{checks, fix, FixAction, Report};
use crate::protocol::frames::ErrorShape;
use crate::state::GatewayState;

/// True for the repairs `doctor.run {fix: true}` applies in a running gateway.
pub(super) fn safe_online(a: &FixAction) -> bool {
    matches!(
        a,
        FixAction::Chmod { .. }
            | FixAction::RemoveTempFiles { .. }
            | FixAction::PruneExpiredPairing
    )
}

/// `doctor.run {fix?: bool}` → the `claw doctor --json` report (`{home, findings, summary}`).
pub(super) fn run(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let fix = p.get("fix").and_then(Value::as_bool).unwrap_or(false);
    let home = state.home.clone();
    let findings = checks::evaluate(&gather(&home, &GatherOptions::default()));
    let outcomes = if fix {
        let mut out = Vec::with_capacity(findings.len());
        for f in &findings {
            out.push(match &f.fix {
                Some(FixAction::PruneExpiredPairing) => {
                    let mut store = state.store();
                    let requests = store
                        .prune_expired_requests()
                        .map_err(|e| store_error(state, e))?;
                    let codes = store.prune_codes().map_err(|e| store_error(state, e))?;
                    Some(Ok(format!(
                        "pruned {requests} expired pairing request(s) and {codes} pairing code(s)"
                    )))
                }
                Some(a) if safe_online(a) => {
                    fix::apply(&home, std::slice::from_ref(f)).pop().flatten()
                }
                _ => None,
            });
        }
        state.audit("doctor.fix", None, Some(ctx.actor), "");
        out
    } else {
        Vec::new()
    };
    let report = Report::new(home.root().to_path_buf(), findings, outcomes);
    serde_json::to_value(&report)
        .map_err(|e| ErrorShape::new("INTERNAL", format!("doctor report: {e}")))
}
