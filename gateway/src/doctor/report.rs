//! The report: findings with their repair outcomes, the summary, the exit status, the human form.

use std::path::PathBuf;

use serde::Serialize;

use super::fix::FixOutcome;
use super::{Finding, Severity};

/// A finding and what `--fix` did about it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The finding.
    #[serde(flatten)]
    pub finding: Finding,
    /// What the repair did, when it was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// Why the repair failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_error: Option<String>,
}

impl Entry {
    /// True when the human must act: a warning or error not repaired.
    pub fn needs_human(&self) -> bool {
        self.finding.severity >= Severity::Warn && self.fixed.is_none()
    }
}

/// Counts by severity (as found), repairs done, and the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Healthy findings.
    pub ok: usize,
    /// Informational findings.
    pub info: usize,
    /// Warnings.
    pub warnings: usize,
    /// Errors.
    pub errors: usize,
    /// Repairs applied.
    pub fixed: usize,
    /// Nothing needs the human (exit 0).
    pub healthy: bool,
}

/// The whole doctor run, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The home checked.
    pub home: PathBuf,
    /// Every finding, in check order.
    pub findings: Vec<Entry>,
    /// The summary.
    pub summary: Summary,
}

impl Report {
    /// Builds the report; `outcomes` (from [`super::fix::apply`]) is aligned with `findings`, or
    /// empty when nothing was fixed.
    pub fn new(home: PathBuf, findings: Vec<Finding>, outcomes: Vec<Option<FixOutcome>>) -> Self {
        let mut outcomes = outcomes.into_iter();
        let findings: Vec<Entry> = findings
            .into_iter()
            .map(|finding| {
                let (fixed, fix_error) = match outcomes.next().flatten() {
                    Some(Ok(done)) => (Some(done), None),
                    Some(Err(e)) => (None, Some(e.to_string())),
                    None => (None, None),
                };
                Entry {
                    finding,
                    fixed,
                    fix_error,
                }
            })
            .collect();
        let count = |s: Severity| findings.iter().filter(|e| e.finding.severity == s).count();
        let summary = Summary {
            ok: count(Severity::Ok),
            info: count(Severity::Info),
            warnings: count(Severity::Warn),
            errors: count(Severity::Error),
            fixed: findings.iter().filter(|e| e.fixed.is_some()).count(),
            healthy: !findings.iter().any(Entry::needs_human),
        };
        Self {
            home,
            findings,
            summary,
        }
    }

    /// 0 when nothing needs the human, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.summary.healthy {
            0
        } else {
            1
        }
    }

    /// The human form: one line per finding (`[ok] home.permissions  /root/.claw is 0700`), an
    /// indented line for a repair done, failed or offered, or a hint, then the summary line
    /// `doctor: N ok, N warnings, N errors (N fixed)` (informational findings count as ok).
    pub fn human(&self) -> String {
        let width = self
            .findings
            .iter()
            .map(|e| e.finding.id.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for e in &self.findings {
            let f = &e.finding;
            let tag = format!("[{}]", f.severity.as_str());
            out.push_str(&format!("{tag:<7} {:<width$}  {}\n", f.id, f.message));
            let pad = " ".repeat(8);
            if let Some(done) = &e.fixed {
                out.push_str(&format!("{pad}fixed: {done}\n"));
            } else if let Some(err) = &e.fix_error {
                out.push_str(&format!("{pad}fix failed: {err}\n"));
            } else if let Some(a) = &f.fix {
                out.push_str(&format!(
                    "{pad}fix: {} (`claw doctor --fix`)\n",
                    a.describe()
                ));
            }
            if let Some(h) = &f.hint {
                out.push_str(&format!("{pad}hint: {h}\n"));
            }
        }
        let s = &self.summary;
        out.push_str(&format!(
            "doctor: {} ok, {} warnings, {} errors ({} fixed)\n",
            s.ok + s.info,
            s.warnings,
            s.errors,
            s.fixed
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::{ids, DoctorError, FixAction};

    fn findings() -> Vec<Finding> {
        vec![
            Finding::ok(ids::HOME_PERMISSIONS, "/h is 0700"),
            Finding::warn(ids::LOCK_STALE, "left by pid 7").with_fix(FixAction::RemoveStaleLock {
                path: "/h/gateway.lock".into(),
            }),
            Finding::error(ids::TOKEN_DRIFT, "refused").with_hint("`claw gateway stop`"),
            Finding::info(ids::TUNNEL_LISTENER, "QUIC tunnel: not configured"),
        ]
    }

    #[test]
    fn unfixed_warnings_and_errors_need_the_human() {
        let r = Report::new("/h".into(), findings(), Vec::new());
        assert_eq!(
            r.summary,
            Summary {
                ok: 1,
                info: 1,
                warnings: 1,
                errors: 1,
                fixed: 0,
                healthy: false
            }
        );
        assert_eq!(r.exit_code(), 1);
        let h = r.human();
        assert!(h.contains("[ok]    home.permissions  /h is 0700\n"), "{h}");
        assert!(
            h.contains("fix: remove /h/gateway.lock (`claw doctor --fix`)"),
            "{h}"
        );
        assert!(h.contains("hint: `claw gateway stop`"), "{h}");
        assert!(
            h.ends_with("doctor: 2 ok, 1 warnings, 1 errors (0 fixed)\n"),
            "{h}"
        );
    }

    #[test]
    fn fixed_findings_no_longer_count_against_health() {
        let mut f = findings();
        f.remove(2);
        let outcomes = vec![None, Some(Ok("removed /h/gateway.lock".to_string())), None];
        let r = Report::new("/h".into(), f, outcomes);
        assert_eq!(r.summary.fixed, 1);
        assert!(r.summary.healthy);
        assert_eq!(r.exit_code(), 0);
        assert!(r.human().contains("fixed: removed /h/gateway.lock"));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["findings"][1]["id"], "lock.stale");
        assert_eq!(j["findings"][1]["severity"], "warn");
        assert_eq!(j["findings"][1]["fix"]["kind"], "removeStaleLock");
        assert_eq!(j["findings"][1]["fixed"], "removed /h/gateway.lock");
        assert_eq!(j["summary"]["healthy"], true);
    }

    #[test]
    fn a_failed_repair_still_needs_the_human() {
        let outcomes = vec![
            None,
            Some(Err(DoctorError::Changed("a gateway started".into()))),
        ];
        let mut f = findings();
        f.truncate(2);
        let r = Report::new("/h".into(), f, outcomes);
        assert!(!r.summary.healthy);
        assert!(r
            .human()
            .contains("fix failed: not applied: a gateway started"));
    }
}
