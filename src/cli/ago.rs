//! Human times for the terminal ("2 min ago") — pure; `--json` output keeps epoch milliseconds.

/// How long before `now_ms` the instant `then_ms` was, in words: `just now` (under 10 s),
/// `42 s ago`, `2 min ago`, `3 h ago`, `5 days ago`. An instant in the future (a clock that
/// moved) reads `just now`.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..10 => "just now".into(),
        10..60 => format!("{s} s ago"),
        60..3_600 => format!("{} min ago", s / 60),
        3_600..86_400 => format!("{} h ago", s / 3_600),
        86_400..172_800 => "1 day ago".into(),
        _ => format!("{} days ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::ago;

    #[test]
    fn each_unit() {
        let now = 10_000_000_000;
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now, now + 5_000), "just now", "future");
        assert_eq!(ago(now, now - 9_999), "just now");
        assert_eq!(ago(now, now - 42_000), "42 s ago");
        assert_eq!(ago(now, now - 125_000), "2 min ago");
        assert_eq!(ago(now, now - 3 * 3_600_000 - 1), "3 h ago");
        assert_eq!(ago(now, now - 86_400_000), "1 day ago");
        assert_eq!(ago(now, now - 5 * 86_400_000), "5 days ago");
        assert_eq!(ago(now, 0), format!("{} days ago", now / 86_400_000));
    }
}
