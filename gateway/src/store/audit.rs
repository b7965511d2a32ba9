//! The audit log of auth events: failures, pairing, issuance, rotation, revocation.
//!
//! Two kinds of rows. *Security events* (pairings, approvals, token issues and rotations,
//! revocations, removals, root rotations, admin actions) are never pruned: they are what an
//! operator reads after an incident, and nothing an attacker does can push them out. *Refusals*
//! (and routine re-pairs) are what an attacker can cause at will; they go through a
//! [`RefusalGate`]: within a [`REFUSAL_WINDOW_MS`] window one row per (event, device, origin),
//! at most [`REFUSAL_ROWS_PER_WINDOW`] rows in all, and one `audit.suppressed` row counting what
//! was left out; only refusal rows are pruned past [`MAX_ROWS`].

use std::collections::HashMap;

use rusqlite::{params, Transaction};

use super::{Result, Store};
use crate::now_ms;

/// Rows kept; older *refusal* rows are pruned so a flood of failures cannot grow the file
/// without bound (security events are never pruned).
pub(super) const MAX_ROWS: i64 = 50_000;

/// Events an attacker can cause at will, collapsed by the [`RefusalGate`] and pruned first.
pub(super) const REFUSALS: &[&str] = &[
    "auth.failed",
    "ssh.auth.refused",
    "ssh.refused",
    "tunnel.refused",
    "tunnel.handshake_failed",
    "pairing.rate_limited",
    "pairing.code.refused",
    "device.repaired",
    "device.subidentity.seen",
    SUPPRESSED,
];

/// The row that counts refusals the gate did not write.
pub(super) const SUPPRESSED: &str = "audit.suppressed";
/// Length of one collapsing window.
pub(super) const REFUSAL_WINDOW_MS: u64 = 60_000;
/// Refusal rows written per window, all kinds together.
pub(super) const REFUSAL_ROWS_PER_WINDOW: usize = 100;
/// Distinct (event, device, origin) keys remembered per window (beyond: counted as "other").
const MAX_KEYS: usize = 4096;

/// (event, device, origin, detail without its `from=ADDRESS` part): refusals that differ only
/// in the attacker's source port or address collapse; different reasons stay apart.
type RefusalKey = (String, Option<String>, Option<String>, String);

fn key_detail(detail: &str) -> String {
    let d: Vec<&str> = detail
        .split(' ')
        .filter(|w| !w.starts_with("from="))
        .collect();
    d.join(" ").chars().take(200).collect()
}

/// Decides which refusals are written. Pure (the caller passes the time); tested directly.
#[derive(Debug, Default)]
pub(super) struct RefusalGate {
    window_start: u64,
    written: usize,
    /// Suppressed count per key written this window.
    seen: HashMap<RefusalKey, u64>,
    /// Suppressed because the window's row budget or key table was full.
    overflow: u64,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct GateVerdict {
    /// Write the refusal's own row.
    pub write: bool,
    /// First write this `audit.suppressed` row about the window that just ended.
    pub summary: Option<String>,
}

impl RefusalGate {
    /// Admits one refusal at `now_ms`.
    pub(super) fn admit(
        &mut self,
        now_ms: u64,
        event: &str,
        device: Option<&str>,
        origin: Option<&str>,
        detail: &str,
    ) -> GateVerdict {
        let mut summary = None;
        if now_ms.saturating_sub(self.window_start) >= REFUSAL_WINDOW_MS {
            summary = self.summary();
            self.window_start = now_ms;
            self.written = 0;
            self.seen.clear();
            self.overflow = 0;
        }
        let key = (
            event.to_string(),
            device.map(str::to_string),
            origin.map(str::to_string),
            key_detail(detail),
        );
        if let Some(n) = self.seen.get_mut(&key) {
            *n += 1;
            return GateVerdict {
                write: false,
                summary,
            };
        }
        if self.written >= REFUSAL_ROWS_PER_WINDOW || self.seen.len() >= MAX_KEYS {
            self.overflow += 1;
            return GateVerdict {
                write: false,
                summary,
            };
        }
        self.seen.insert(key, 0);
        self.written += 1;
        GateVerdict {
            write: true,
            summary,
        }
    }

    /// The `audit.suppressed` detail for the current window, if anything was suppressed.
    fn summary(&self) -> Option<String> {
        let mut top: Vec<(&RefusalKey, u64)> = self
            .seen
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k, *n))
            .collect();
        let total: u64 = top.iter().map(|(_, n)| n).sum::<u64>() + self.overflow;
        if total == 0 {
            return None;
        }
        top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let parts: Vec<String> = top
            .iter()
            .take(5)
            .map(|((e, d, o, _), n)| {
                format!(
                    "{n}×{e}{}{}",
                    o.as_deref().map(|o| format!(" {o}")).unwrap_or_default(),
                    d.as_deref()
                        .map(|d| format!(" device={d}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        Some(format!(
            "suppressed {total} repeated refusals in {} s: {}{}",
            REFUSAL_WINDOW_MS / 1000,
            parts.join(", "),
            if self.overflow > 0 {
                format!(", {} others", self.overflow)
            } else {
                String::new()
            }
        ))
    }
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// When.
    pub ts_ms: u64,
    /// What (`auth.failed`, `device.paired`, `root.rotated`, …).
    pub event: String,
    /// Device concerned.
    pub device_id: Option<String>,
    /// Where it came from (`loopback`, `tunnel`, `admin`, …).
    pub origin: Option<String>,
    /// Free text, never a secret.
    pub detail: Option<String>,
}

pub(super) fn insert(
    tx: &Transaction<'_>,
    event: &str,
    device_id: Option<&str>,
    origin: Option<&str>,
    detail: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit(ts_ms, event, device_id, origin, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms() as i64, event, device_id, origin, detail],
    )?;
    let last = tx.last_insert_rowid();
    if last % 1000 == 0 {
        let list = REFUSALS
            .iter()
            .map(|e| format!("'{e}'"))
            .collect::<Vec<_>>()
            .join(",");
        tx.execute(
            &format!("DELETE FROM audit WHERE id <= ?1 AND event IN ({list})"),
            [last - MAX_ROWS],
        )?;
    }
    Ok(())
}

impl Store {
    /// Appends an audit entry in its own transaction; a refusal (`REFUSALS`) only when the
    /// `RefusalGate` lets it through.
    pub fn audit(
        &mut self,
        event: &str,
        device_id: Option<&str>,
        origin: Option<&str>,
        detail: &str,
    ) -> Result<()> {
        let verdict = if REFUSALS.contains(&event) {
            self.refusals
                .admit(now_ms(), event, device_id, origin, detail)
        } else {
            GateVerdict {
                write: true,
                summary: None,
            }
        };
        if !verdict.write && verdict.summary.is_none() {
            return Ok(());
        }
        let tx = self.write_tx()?;
        if let Some(summary) = &verdict.summary {
            insert(&tx, SUPPRESSED, None, None, summary)?;
        }
        if verdict.write {
            insert(&tx, event, device_id, origin, detail)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` entries, newest first.
    pub fn audit_tail(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, ts_ms, event, device_id, origin, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    ts_ms: r.get::<_, i64>(1)? as u64,
                    event: r.get(2)?,
                    device_id: r.get(3)?,
                    origin: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_refusals_collapse_per_window_and_are_counted() {
        let mut g = RefusalGate::default();
        let t = 1_000_000;
        assert!(
            g.admit(t, "auth.failed", None, Some("loopback"), "token_mismatch")
                .write
        );
        for i in 0..999 {
            let v = g.admit(
                t + i,
                "auth.failed",
                None,
                Some("loopback"),
                "token_mismatch",
            );
            assert_eq!(
                v,
                GateVerdict {
                    write: false,
                    summary: None
                }
            );
        }
        assert!(
            g.admit(t, "auth.failed", Some("d1"), Some("tunnel"), "x")
                .write,
            "another key"
        );
        // Next window: the summary of the last one, then a fresh row.
        let v = g.admit(
            t + REFUSAL_WINDOW_MS,
            "auth.failed",
            None,
            Some("loopback"),
            "token_mismatch",
        );
        assert!(v.write);
        let s = v.summary.unwrap();
        assert!(
            s.contains("suppressed 999") && s.contains("999×auth.failed loopback"),
            "{s}"
        );
        // Nothing suppressed: no summary.
        let v = g.admit(t + 2 * REFUSAL_WINDOW_MS, "ssh.refused", None, None, "");
        assert!(v.write && v.summary.is_none());
        // Only the source differs: collapsed; another reason: its own row.
        let v = g.admit(
            t + 2 * REFUSAL_WINDOW_MS,
            "ssh.refused",
            None,
            None,
            "from=1.2.3.4:5 x",
        );
        assert!(v.write);
        let v = g.admit(
            t + 2 * REFUSAL_WINDOW_MS,
            "ssh.refused",
            None,
            None,
            "from=1.2.3.4:6 x",
        );
        assert!(!v.write);
        let v = g.admit(
            t + 2 * REFUSAL_WINDOW_MS,
            "ssh.refused",
            None,
            None,
            "from=1.2.3.4:6 y",
        );
        assert!(v.write && v.summary.is_none());
    }

    #[test]
    fn many_distinct_keys_are_capped_per_window() {
        let mut g = RefusalGate::default();
        let written = (0..10_000)
            .filter(|i| {
                g.admit(5, "tunnel.refused", Some(&format!("k{i}")), None, "")
                    .write
            })
            .count();
        assert_eq!(written, REFUSAL_ROWS_PER_WINDOW);
        let s = g
            .admit(5 + REFUSAL_WINDOW_MS, "x", None, None, "")
            .summary
            .unwrap();
        assert!(
            s.contains(&format!("{} others", 10_000 - REFUSAL_ROWS_PER_WINDOW)),
            "{s}"
        );
    }
}
