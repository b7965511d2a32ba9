use super::*;
use crate::auth::pairing_code::Verdict;
use crate::store::devices::LAST_SEEN_RESOLUTION_MS;

fn dev(id: &str) -> NewDevice {
    NewDevice {
        device_id: id.into(),
        public_key: "pk".into(),
        role: "operator".into(),
        scopes: vec!["operator.read".into()],
        ..Default::default()
    }
}

#[test]
fn file_is_private_and_root_persists() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("state.db");
    let (g, s) = Store::open(&p).unwrap().root().unwrap();
    assert_eq!(g, 1);
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = Store::open(&p).unwrap();
    assert_eq!(again.root().unwrap(), (g, s));
    assert_eq!(again.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(again.integrity_problems().unwrap().is_empty());
}

#[test]
fn tokens_are_stable_until_rotated() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    s.pair_device(&dev("d1"), "silent", "loopback").unwrap();
    let a = s.current_token("d1", "operator", "loopback").unwrap();
    assert!(a.fresh);
    let b = s.current_token("d1", "operator", "loopback").unwrap();
    assert_eq!(a.token, b.token);
    assert!(!b.fresh);
    let rec = s.token_record(&a.token).unwrap().unwrap();
    assert_eq!((rec.generation, rec.superseded), (1, false));
    // The store holds no usable token.
    let raw: Vec<u8> = s
        .conn
        .query_row("SELECT token_hash FROM device_tokens", [], |r| r.get(0))
        .unwrap();
    assert_ne!(raw, a.token.as_bytes());

    // Per-device rotation supersedes.
    let c = s.rotate_device_token("d1", "operator", "admin").unwrap();
    assert_ne!(c.token, a.token);
    assert!(s.token_record(&a.token).unwrap().unwrap().superseded);

    // Root rotation: old generation.
    let rot = s.rotate_root(false, "admin").unwrap();
    assert_eq!(rot.generation, 2);
    assert_eq!(s.token_record(&c.token).unwrap().unwrap().generation, 1);
    assert_eq!(s.live_token_count().unwrap(), 0);
    let d = s.current_token("d1", "operator", "loopback").unwrap();
    assert!(d.fresh && d.token != c.token && d.generation == 2);
    assert_eq!(s.live_token_count().unwrap(), 1);

    // Revocation.
    s.revoke_device("d1", "admin").unwrap();
    assert!(s.device("d1").unwrap().unwrap().revoked_at_ms.is_some());
    assert!(matches!(
        s.current_token("d1", "operator", "x"),
        Err(StoreError::Conflict(_))
    ));
    s.remove_device("d1", "admin").unwrap();
    assert!(s.device("d1").unwrap().is_none());
    assert!(s.token_record(&d.token).unwrap().is_none());
    let events: Vec<String> = s
        .audit_tail(20)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    for want in [
        "device.paired",
        "device.token.issued",
        "root.rotated",
        "device.revoked",
        "device.removed",
    ] {
        assert!(
            events.iter().any(|e| e == want),
            "{want} missing from {events:?}"
        );
    }
}

#[test]
fn big_red_button_forgets_devices() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    s.pair_device(&dev("d1"), "silent", "loopback").unwrap();
    s.pair_device(&dev("d2"), "silent", "loopback").unwrap();
    let r = s.rotate_root(true, "admin").unwrap();
    assert_eq!(r.devices_removed, 2);
    assert!(s.devices().unwrap().is_empty());
}

#[test]
fn pairing_requests_flow() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    let r = s.request_pairing(&dev("d9"), "tunnel", 60_000).unwrap();
    let again = s.request_pairing(&dev("d9"), "tunnel", 60_000).unwrap();
    assert_eq!(r.request_id, again.request_id);
    assert_eq!(s.pending().unwrap().len(), 1);
    s.approve_request(&r.request_id, "admin").unwrap();
    assert!(s.device("d9").unwrap().is_some());
    assert!(s.pending().unwrap().is_empty());
    assert!(matches!(
        s.approve_request(&r.request_id, "admin"),
        Err(StoreError::NotFound(_))
    ));
    let r2 = s.request_pairing(&dev("d10"), "tunnel", 0).unwrap();
    assert_eq!(s.expired_request_count().unwrap(), 1);
    assert!(
        s.approve_request(&r2.request_id, "admin").is_err(),
        "expired requests cannot be approved"
    );
    assert_eq!(s.prune_expired_requests().unwrap(), 1);
}

/// A clock set back days after a request was made: the request neither waits days longer nor
/// can be approved then (its creation lies beyond the clock slack ahead of now); within the
/// slack it is still live.
#[test]
fn a_pairing_request_does_not_outlive_a_clock_set_back() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    let r = s.request_pairing(&dev("d11"), "tunnel", 600_000).unwrap();
    let shift = |s: &Store, by_ms: u64| {
        s.conn
            .execute(
                "UPDATE pairing_requests SET created_at_ms = created_at_ms + ?1, expires_at_ms = expires_at_ms + ?1",
                [by_ms as i64],
            )
            .unwrap();
    };
    // The clock stepped back by a minute: still waiting.
    shift(&s, 60_000);
    assert_eq!(s.pending().unwrap().len(), 1);
    // Stepped back a day: gone, and not approvable.
    shift(&s, 86_400_000);
    assert!(s.pending().unwrap().is_empty());
    assert_eq!(s.expired_request_count().unwrap(), 1);
    assert!(matches!(
        s.approve_request(&r.request_id, "admin"),
        Err(StoreError::NotFound(_))
    ));
    // The device asks again: a fresh request.
    let again = s.request_pairing(&dev("d11"), "tunnel", 600_000).unwrap();
    assert_ne!(again.request_id, r.request_id);
    assert_eq!(s.pending().unwrap().len(), 1);
}

#[test]
fn corrupt_file_is_reported_not_clobbered() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("state.db");
    std::fs::write(
        &p,
        b"this is not a database, and it is long enough to look like a header....",
    )
    .unwrap();
    assert!(Store::open(&p).is_err());
    assert!(std::fs::read(&p).unwrap().starts_with(b"this is not"));
}

#[test]
fn a_removed_device_that_pairs_again_gets_a_new_token() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    s.pair_device(&dev("d1"), "silent", "loopback").unwrap();
    let a = s.current_token("d1", "operator", "loopback").unwrap();
    s.remove_device("d1", "admin").unwrap();
    s.pair_device(&dev("d1"), "silent", "loopback").unwrap();
    let b = s.current_token("d1", "operator", "loopback").unwrap();
    assert_ne!(a.token, b.token);
    assert!(s.token_record(&a.token).unwrap().is_none());
}

#[test]
fn pairing_codes_work_once_expire_and_burn() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    let (code, info) = s
        .create_pairing_code(Some("phone"), 60_000, false, "cli")
        .unwrap();
    assert!(!code.is_empty() && code.starts_with(&info.code_id));
    assert_eq!(
        s.redeem_pairing_code(&code, &dev("p1"), "tunnel").unwrap(),
        Ok(Redeemed::Paired)
    );
    assert_eq!(
        s.device("p1").unwrap().unwrap().display_name.as_deref(),
        Some("phone")
    );
    assert_eq!(
        s.device("p1").unwrap().unwrap().approved_via,
        "pairing-code"
    );
    // Reuse.
    assert_eq!(
        s.redeem_pairing_code(&code, &dev("p2"), "tunnel").unwrap(),
        Err(Verdict::Used)
    );
    // Burn after three wrong secrets: then even the right one fails.
    let (code, info) = s.create_pairing_code(None, 60_000, false, "cli").unwrap();
    let wrong = format!("{}.{}", info.code_id, "A".repeat(22));
    for i in 0..3 {
        let v = s.redeem_pairing_code(&wrong, &dev("x"), "tunnel").unwrap();
        assert_eq!(v, Err(Verdict::Wrong { burned: i == 2 }));
    }
    assert_eq!(
        s.redeem_pairing_code(&code, &dev("x"), "tunnel").unwrap(),
        Err(Verdict::Burned)
    );
    // Expiry.
    let (code, _) = s.create_pairing_code(None, 0, false, "cli").unwrap();
    assert_eq!(
        s.redeem_pairing_code(&code, &dev("y"), "tunnel").unwrap(),
        Err(Verdict::Expired)
    );
    assert_eq!(s.expired_code_count().unwrap(), 1);
    // Approval-required codes leave the device pending.
    let (code, _) = s.create_pairing_code(None, 60_000, true, "cli").unwrap();
    let got = s.redeem_pairing_code(&code, &dev("z"), "tunnel").unwrap();
    assert!(matches!(got, Ok(Redeemed::Pending { .. })));
    assert!(s.device("z").unwrap().is_none());
    assert_eq!(s.pending().unwrap().len(), 1);
    assert!(s
        .redeem_pairing_code("garbage", &dev("g"), "tunnel")
        .unwrap()
        .is_err());
}

#[test]
fn open_existing_never_creates_and_reports_the_newest_record() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("state.db");
    assert!(Store::open_existing(&p).is_err(), "no file, no store");
    assert!(!p.exists(), "open_existing created the file");
    let before = crate::now_ms();
    let mut s = Store::open(&p).unwrap();
    s.audit("test.event", None, Some("test"), "x").unwrap();
    drop(s);
    let s = Store::open_existing(&p).unwrap();
    let newest = s.newest_record_ms().unwrap().unwrap();
    assert!(newest >= before && newest <= crate::now_ms());
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn last_seen_is_written_at_most_once_per_resolution() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    s.pair_device(&dev("d1"), "silent", "loopback").unwrap();
    let seen = |s: &Store| s.device("d1").unwrap().unwrap().last_seen_at_ms;
    s.touch_device("d1").unwrap();
    let first = seen(&s).expect("the first connect is recorded");
    std::thread::sleep(std::time::Duration::from_millis(5));
    s.touch_device("d1").unwrap();
    assert_eq!(
        seen(&s),
        Some(first),
        "a reconnect within a minute costs no write"
    );
    // An entry older than the resolution is rewritten.
    let old = first - LAST_SEEN_RESOLUTION_MS - 1;
    s.conn
        .execute(
            "UPDATE devices SET last_seen_at_ms = ?1 WHERE device_id = 'd1'",
            [old as i64],
        )
        .unwrap();
    s.touch_device("d1").unwrap();
    assert!(seen(&s).unwrap() >= first);
}

/// Another process holding the write lock (an operator's `sqlite3` shell in `BEGIN IMMEDIATE`):
/// writes fail with the typed `Locked` fault after a bounded wait, reads keep working, a device's
/// existing token is still handed out, and everything works again once the lock is released.
#[test]
fn a_held_write_lock_is_a_bounded_locked_fault() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("state.db");
    let mut s = Store::open(&p).unwrap();
    s.pair_device(&dev("d1"), "silent", "loopback").unwrap();
    let tok = s.current_token("d1", "operator", "loopback").unwrap();

    let other = Connection::open(&p).unwrap();
    other.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let started = std::time::Instant::now();
    let e = s.pair_device(&dev("d2"), "silent", "loopback").unwrap_err();
    assert_eq!(e.fault(), Some(FaultKind::Locked), "{e}");
    // Bounded: the wait ends (a generous bound, not a timing assertion on the value).
    assert!(started.elapsed() < BUSY_TIMEOUT * 10);
    assert!(s.device("d1").unwrap().is_some());
    let again = s.current_token("d1", "operator", "loopback").unwrap();
    assert_eq!(again.token, tok.token);
    // A device without a token cannot be minted one while locked.
    let e = s.current_token("d9", "operator", "loopback").unwrap_err();
    assert!(
        e.fault().is_some() || matches!(e, StoreError::NotFound(_)),
        "{e}"
    );

    other.execute_batch("COMMIT;").unwrap();
    s.pair_device(&dev("d2"), "silent", "loopback").unwrap();
}

/// Logic outcomes are not faults.
#[test]
fn logic_errors_are_not_faults() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    let e = s
        .current_token("nobody", "operator", "loopback")
        .unwrap_err();
    assert_eq!(e.fault(), None, "{e}");
    assert_eq!(e.fault_or_internal(), FaultKind::Internal);
}

/// Sub-identities are remembered under their device (bounded, the least recently seen replaced),
/// kept by a silent refresh, and forgotten by a re-pair, a removal or a rotation that removes
/// devices.
#[test]
fn sub_identities_are_bounded_and_go_with_their_device() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    s.pair_device(&dev("d1"), "pairing-code", "tunnel").unwrap();
    let sub = |k: &str| SubIdentity {
        device_id: "d1".into(),
        key_id: k.into(),
        client: "node-host/node".into(),
        display_name: Some("N".into()),
        role: "node".into(),
    };
    assert!(s.record_sub_identity(&sub("k0")).unwrap());
    assert!(!s.record_sub_identity(&sub("k0")).unwrap(), "seen before");
    for i in 1..(MAX_SUB_IDENTITIES + 5) {
        assert!(s.record_sub_identity(&sub(&format!("k{i}"))).unwrap());
    }
    let subs = s.sub_identities("d1").unwrap();
    assert_eq!(subs.len() as i64, MAX_SUB_IDENTITIES);
    assert!(subs
        .iter()
        .all(|x| x.role == "node" && x.client == "node-host/node"));
    assert!(s.sub_identities("d2").unwrap().is_empty());
    // A silent refresh keeps them; a re-pair forgets them.
    s.pair_device(&dev("d1"), "silent", "loopback").unwrap();
    assert_eq!(
        s.sub_identities("d1").unwrap().len() as i64,
        MAX_SUB_IDENTITIES
    );
    s.pair_device(&dev("d1"), "pairing-code", "tunnel").unwrap();
    assert!(s.sub_identities("d1").unwrap().is_empty());
    // Removal forgets them.
    s.record_sub_identity(&sub("k0")).unwrap();
    s.remove_device("d1", "test").unwrap();
    assert!(s.sub_identities("d1").unwrap().is_empty());
    // So does a rotation that removes every device.
    s.pair_device(&dev("d1"), "pairing-code", "tunnel").unwrap();
    s.record_sub_identity(&sub("k0")).unwrap();
    s.rotate_root(true, "test").unwrap();
    assert!(s.sub_identities("d1").unwrap().is_empty());
}

/// `devices set-scopes`: the device's approved scopes become exactly the new ones (audited with
/// old and new); an unknown device is `NotFound`, a revoked one a `Conflict` and stays as it was.
#[test]
fn set_device_scopes_replaces_them_and_is_audited() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(&t.path().join("state.db")).unwrap();
    s.pair_device(&dev("d1"), "pairing-code", "tunnel").unwrap();
    let new = vec!["operator.admin".to_string(), "operator.read".to_string()];
    let old = s.set_device_scopes("d1", &new, "operator").unwrap();
    assert_eq!(old, vec!["operator.read".to_string()]);
    assert_eq!(s.device("d1").unwrap().unwrap().scopes, new);
    let row = &s.audit_tail(1).unwrap()[0];
    assert_eq!(row.event, "device.scopes.set");
    assert_eq!(row.device_id.as_deref(), Some("d1"));
    assert_eq!(
        row.detail.as_deref(),
        Some("operator.read -> operator.admin,operator.read")
    );
    // Narrowing works the same way.
    s.set_device_scopes("d1", &["operator.read".to_string()], "operator")
        .unwrap();
    assert_eq!(
        s.device("d1").unwrap().unwrap().scopes,
        vec!["operator.read".to_string()]
    );
    assert!(matches!(
        s.set_device_scopes("nope", &new, "operator"),
        Err(StoreError::NotFound(_))
    ));
    s.revoke_device("d1", "operator").unwrap();
    assert!(matches!(
        s.set_device_scopes("d1", &new, "operator"),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.device("d1").unwrap().unwrap().scopes,
        vec!["operator.read".to_string()]
    );
}
