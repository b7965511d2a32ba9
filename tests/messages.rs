//! The words users read: no OpenClaw internals (`gateway.auth.token`, `update_auth_credentials`,
//! `ttlMs`), a failed `gateway start` shows this start's log lines only, and `--help` of the main
//! verbs carries examples.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn a_refused_call_names_no_internals() {
    let g = Gateway::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = std::process::Command::new(claw_bin())
        .arg("--home")
        .arg(&other)
        .args(["call", "health", "--url", &g.url])
        .env("CLAW_GATEWAY_TOKEN", "wrong-token")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token mismatch"), "{err}");
    for internal in ["gateway.auth.token", "update_auth_credentials", "internal:"] {
        assert!(!err.contains(internal), "{internal} in {err}");
    }
    assert!(err.contains("next step: "), "{err}");
}

/// In-process gateway with a tunnel; the `claw` binary asks it over the admin socket (so the
/// test thread may block: a multi-thread runtime keeps the daemon serving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_ttl_out_of_range_speaks_of_the_flag() {
    let g = InProcess::start_with(|c| c.tunnel = Some("127.0.0.1:0".parse().unwrap())).await;
    let (code, _, err) = g.claw(&["pair", "--ttl", "8days", "--no-qr"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ttl") && !err.contains("ttlMs"), "{err}");
}

#[test]
fn a_failed_start_shows_only_this_starts_log() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let log = home.join("gateway.log");
    std::fs::write(&log, "AN EARLIER RUN'S LINE\n").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = claw_in(
        &home,
        &["gateway", "start", "--port", "0", "--allow-origin", "null"],
    );
    assert_eq!(code, 78, "{err}");
    assert!(!err.contains("AN EARLIER RUN'S LINE"), "{err}");
    assert!(err.contains("null"), "this run's reason: {err}");
    // The sentence is said once.
    let first = err.lines().next().unwrap_or_default().to_string();
    assert_eq!(err.matches(&first).count(), 1, "{err}");
}

#[test]
fn main_verbs_show_examples_in_help() {
    for verb in [
        &["--help"][..],
        &["gateway", "--help"],
        &["devices", "--help"],
        &["tunnel", "--help"],
        &["pair", "--help"],
        &["call", "--help"],
        &["health", "--help"],
        &["doctor", "--help"],
        &["gateway", "install", "--help"],
    ] {
        let out = std::process::Command::new(claw_bin())
            .args(verb)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Examples:\n  claw "), "{verb:?}: {text}");
    }
}
