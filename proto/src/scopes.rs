//! Operator scopes. `operator.admin` satisfies every scope requirement.

/// Read-only operator methods (`health`, `status`, `system-presence`).
pub const READ: &str = "operator.read";
/// Device pairing and token management.
pub const PAIRING: &str = "operator.pairing";
/// Everything, including root rotation.
pub const ADMIN: &str = "operator.admin";
/// Write scope (accepted and recorded; no claw method needs it).
pub const WRITE: &str = "operator.write";

/// True when `granted` satisfies `required`.
pub fn has_scope(granted: &[String], required: &str) -> bool {
    granted.iter().any(|s| s == required || s == ADMIN)
}

/// True when every scope in `asked` is in `allowed` (admin in `allowed` covers all).
pub fn is_subset(asked: &[String], allowed: &[String]) -> bool {
    asked.iter().all(|s| has_scope(allowed, s))
}

/// The scopes of `asked` that `allowed` grants (admin in `allowed` grants all), in `asked`'s order.
pub fn granted(asked: &[String], allowed: &[String]) -> Vec<String> {
    asked
        .iter()
        .filter(|s| has_scope(allowed, s))
        .cloned()
        .collect()
}

/// `a ∪ b`, sorted and deduplicated.
pub fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut v: Vec<String> = a.iter().chain(b.iter()).cloned().collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
    #[test]
    fn granted_keeps_only_what_is_allowed() {
        assert_eq!(granted(&s(&[ADMIN, READ]), &s(&[READ, WRITE])), s(&[READ]));
        assert_eq!(
            granted(&s(&[PAIRING, READ]), &s(&[ADMIN])),
            s(&[PAIRING, READ])
        );
        assert!(granted(&s(&[ADMIN]), &s(&[])).is_empty());
    }

    #[test]
    fn admin_covers_all_and_subsets() {
        assert!(has_scope(&s(&[ADMIN]), PAIRING));
        assert!(!has_scope(&s(&[READ]), PAIRING));
        assert!(is_subset(&s(&[READ]), &s(&[READ, PAIRING])));
        assert!(!is_subset(&s(&[READ, ADMIN]), &s(&[READ])));
        assert!(is_subset(&[], &[]));
        assert_eq!(union(&s(&[READ, ADMIN]), &s(&[READ])), s(&[ADMIN, READ]));
    }
}
