//! Snapshot file names as `claw doctor` and the gateway's rotation read them from `snapshots/`
//! (`state-<ms>.db`): anything else in the directory is ignored, never misread.
#![no_main]

use claw_gateway::store::snapshot::parse_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(ms) = parse_name(name) {
        // Only the canonical form of a time is a snapshot (no sign, no padding games beyond
        // leading zeros, nothing around it), and printing it back names the same time.
        assert!(name.starts_with("state-") && name.ends_with(".db"));
        let digits = &name["state-".len()..name.len() - ".db".len()];
        assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(parse_name(&format!("state-{ms}.db")), Some(ms));
    }
});
