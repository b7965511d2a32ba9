//! One test per check decision, on hand-built facts.

use std::path::{Path, PathBuf};

use super::*;
use crate::doctor::facts::{PendingFacts, ProcInfo, StorageFacts, StoreReport, WriteLockProbe};
use crate::doctor::Severity;

const UID: u32 = 1000;

fn file(path: &str, mode: u32) -> FileFacts {
    FileFacts {
        path: path.into(),
        mode,
        uid: UID,
    }
}

fn healthy_store() -> StoreReport {
    StoreReport {
        integrity: Ok(vec![]),
        schema: Ok(SCHEMA_VERSION),
        expired_requests: Ok(0),
        expired_codes: Ok(0),
        pending: Ok(vec![]),
        newest_record_ms: Ok(Some(1_000)),
    }
}

fn proc(pid: u32, cmdline: &str, claw_gateway: bool) -> ProcInfo {
    ProcInfo {
        pid,
        cmdline: cmdline.into(),
        claw_gateway,
    }
}

fn holder(pids: Vec<ProcInfo>) -> PortHolder {
    PortHolder {
        addr: "127.0.0.1:18789".parse().unwrap(),
        inode: 99,
        uid: Some(UID),
        processes: pids,
    }
}

fn port_facts(
    source: PortSource,
    holders: Vec<PortHolder>,
    connect: Option<Result<f64, String>>,
) -> PortFacts {
    PortFacts {
        port: 18789,
        source,
        holders,
        connect,
    }
}

/// A healthy home with a running gateway (pid 42).
fn healthy() -> Facts {
    Facts {
        home: "/h".into(),
        uid: UID,
        now_ms: 10_000,
        home_dir: Some(file("/h", 0o700)),
        secrets: vec![file("/h/gateway.token", 0o600), file("/h/state.db", 0o600)],
        lock: LockFacts::Held { pid: 42 },
        runtime: Some(RuntimeFacts {
            pid: Some(42),
            url: Some("ws://127.0.0.1:18789".into()),
            port: Some(18789),
            addrs: vec!["127.0.0.1:18789".into()],
            ..RuntimeFacts::default()
        }),
        admin_socket: SocketFacts::Answers,
        store: StoreFacts::Open(healthy_store()),
        temp_files: vec![],
        port: port_facts(
            PortSource::Runtime,
            vec![holder(vec![proc(42, "claw gateway run", true)])],
            Some(Ok(0.2)),
        ),
        other_gateways: vec![],
        token: TokenFacts {
            home_token_present: true,
            gateway_source: Some("generated".into()),
            probe: CredentialProbe::Accepted { latency_ms: 3.0 },
        },
        tunnel: ListenerFacts::NotConfigured,
        ssh: ListenerFacts::NotConfigured,
        device: DeviceCredentialFacts::NotPaired,
        socket_buffer_max: Some((4 << 20, 4 << 20)),
        storage: StorageFacts {
            read_only: false,
            free_bytes: Some(10 << 30),
            write_lock: WriteLockProbe::Free,
        },
        snapshots: vec![],
        upstream: None,
        relays: vec![],
        device_relay: None,
    }
}

fn severities(f: &[Finding]) -> Vec<(&'static str, Severity)> {
    f.iter().map(|f| (f.id, f.severity)).collect()
}

#[test]
fn a_healthy_home_has_nothing_above_info_and_every_check_reports() {
    let out = evaluate(&healthy());
    let bad: Vec<_> = out
        .iter()
        .filter(|f| f.severity >= Severity::Warn)
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    let ids_seen: Vec<&str> = out.iter().map(|f| f.id).collect();
    for id in [
        ids::HOME_PERMISSIONS,
        ids::SECRET_PERMISSIONS,
        ids::LOCK_STALE,
        ids::RUNTIME_STALE,
        ids::ADMIN_SOCKET_ORPHAN,
        ids::STORE_INTEGRITY,
        ids::STORE_SCHEMA,
        ids::STORE_WRITABLE,
        ids::STORE_SNAPSHOTS,
        ids::FILES_TEMPORARY,
        ids::PAIRING_EXPIRED,
        ids::PAIRING_PENDING,
        ids::BIND_NON_LOOPBACK,
        ids::PORT_RIVAL,
        ids::GATEWAY_MULTIPLE,
        ids::TOKEN_DRIFT,
        ids::CLOCK_SKEW,
        ids::TUNNEL_LISTENER,
        ids::SSH_LISTENER,
    ] {
        assert!(ids_seen.contains(&id), "{id} missing from {ids_seen:?}");
    }
    // Remote listeners that do not exist are informational, not failures.
    let tunnel = out.iter().find(|f| f.id == ids::TUNNEL_LISTENER).unwrap();
    assert_eq!(tunnel.severity, Severity::Info);
    assert!(tunnel.message.contains("not configured"));
}

#[test]
fn a_missing_home_skips_the_file_checks() {
    let mut f = healthy();
    f.home_dir = None;
    f.lock = LockFacts::Absent;
    f.port.connect = None;
    f.port.holders.clear();
    let out = evaluate(&f);
    assert_eq!(out[0].severity, Severity::Info);
    assert!(out[0].message.contains("does not exist yet"));
    assert!(!out
        .iter()
        .any(|f| f.id == ids::STORE_INTEGRITY || f.id == ids::TOKEN_DRIFT));
}

#[test]
fn home_permissions_decisions() {
    let h = Path::new("/h");
    assert_eq!(
        home_permissions(h, Some(&file("/h", 0o700)), UID)[0].severity,
        Severity::Ok
    );
    let wide = home_permissions(h, Some(&file("/h", 0o755)), UID);
    assert_eq!(wide.len(), 1);
    assert_eq!(wide[0].severity, Severity::Error);
    assert!(wide[0].message.contains("0755"));
    assert_eq!(
        wide[0].fix,
        Some(FixAction::Chmod {
            path: "/h".into(),
            mode: 0o700
        })
    );
    let unwritable = home_permissions(h, Some(&file("/h", 0o500)), UID);
    assert_eq!(unwritable[0].severity, Severity::Warn);
    assert!(unwritable[0].fix.is_some());
    let foreign = home_permissions(h, Some(&file("/h", 0o700)), UID + 1);
    assert_eq!(foreign[0].severity, Severity::Error);
    assert!(foreign[0].fix.is_none(), "doctor does not chown");
    assert!(foreign[0].hint.as_deref().unwrap().contains("chown"));
}

#[test]
fn secret_permissions_decisions() {
    let ok = secret_permissions(
        &[file("/h/gateway.token", 0o600), file("/h/x.key", 0o400)],
        UID,
    );
    assert_eq!(
        severities(&ok),
        vec![(ids::SECRET_PERMISSIONS, Severity::Ok)]
    );
    let bad = secret_permissions(
        &[
            file("/h/gateway.token", 0o644),
            file("/h/state.db", 0o640),
            file("/h/gateway.json", 0o600),
        ],
        UID,
    );
    assert_eq!(bad.len(), 2);
    assert!(bad.iter().all(|f| f.severity == Severity::Error));
    assert_eq!(
        bad[0].fix,
        Some(FixAction::Chmod {
            path: "/h/gateway.token".into(),
            mode: 0o600
        })
    );
    // An exposed secret gets the rotation command as advice; doctor never rotates.
    assert!(bad[0]
        .hint
        .as_deref()
        .unwrap()
        .contains("claw devices rotate-token --shared --force"));
    assert!(bad[1]
        .hint
        .as_deref()
        .unwrap()
        .contains("claw devices rotate-token --force"));
    let foreign = secret_permissions(
        &[FileFacts {
            uid: 0,
            ..file("/h/state.db", 0o600)
        }],
        UID,
    );
    assert_eq!(foreign[0].severity, Severity::Error);
    assert!(foreign[0].fix.is_none());
    assert_eq!(
        secret_permissions(&[], UID)[0].message,
        "no secret files yet"
    );
}

#[test]
fn lock_decisions() {
    let p = Path::new("/h/gateway.lock");
    assert_eq!(lock_stale(p, &LockFacts::Absent).severity, Severity::Ok);
    assert_eq!(
        lock_stale(p, &LockFacts::Held { pid: 7 }).severity,
        Severity::Ok
    );
    let dead = lock_stale(
        p,
        &LockFacts::Stale {
            pid: 7,
            pid_alive: false,
        },
    );
    assert_eq!(dead.severity, Severity::Warn);
    assert!(
        dead.message.contains("pid 7, which is not running"),
        "{}",
        dead.message
    );
    assert_eq!(
        dead.fix,
        Some(FixAction::RemoveStaleLock { path: p.into() })
    );
    let reused = lock_stale(
        p,
        &LockFacts::Stale {
            pid: 7,
            pid_alive: true,
        },
    );
    assert!(
        reused.message.contains("another process"),
        "{}",
        reused.message
    );
    assert!(reused.fix.is_some());
}

#[test]
fn runtime_file_decisions() {
    let p = Path::new("/h/gateway.json");
    let rt = |pid| RuntimeFacts {
        pid: Some(pid),
        url: Some("ws://127.0.0.1:1".into()),
        ..RuntimeFacts::default()
    };
    assert_eq!(runtime_stale(p, None, None).severity, Severity::Ok);
    assert_eq!(
        runtime_stale(p, Some(&rt(5)), Some(5)).severity,
        Severity::Ok
    );
    let left = runtime_stale(p, Some(&rt(5)), None);
    assert_eq!(left.severity, Severity::Warn);
    assert_eq!(
        left.fix,
        Some(FixAction::RemoveStaleRuntime { path: p.into() })
    );
    let other = runtime_stale(p, Some(&rt(5)), Some(6));
    assert_eq!(other.severity, Severity::Warn);
    assert!(other.fix.is_none(), "never removed under a running gateway");
    let missing = runtime_stale(p, None, Some(6));
    assert_eq!(missing.severity, Severity::Warn);
    let garbled = RuntimeFacts {
        error: Some("EOF".into()),
        ..RuntimeFacts::default()
    };
    assert!(runtime_stale(p, Some(&garbled), None).fix.is_some());
    assert!(runtime_stale(p, Some(&garbled), Some(1)).fix.is_none());
}

#[test]
fn admin_socket_decisions() {
    let p = Path::new("/h/admin.sock");
    let table = [
        (SocketFacts::Absent, None, Severity::Ok, false),
        (SocketFacts::Absent, Some(1), Severity::Error, false),
        (SocketFacts::Answers, Some(1), Severity::Ok, false),
        (SocketFacts::Answers, None, Severity::Warn, false),
        (SocketFacts::Refused, None, Severity::Warn, true),
        (SocketFacts::Refused, Some(1), Severity::Error, false),
        (
            SocketFacts::Failed("EACCES".into()),
            None,
            Severity::Warn,
            false,
        ),
    ];
    for (sock, gw, sev, fixable) in table {
        let f = admin_socket(p, &sock, gw);
        assert_eq!(
            (f.severity, f.fix.is_some()),
            (sev, fixable),
            "{sock:?} {gw:?}: {f:?}"
        );
    }
    assert!(admin_socket(p, &SocketFacts::Refused, None)
        .message
        .contains("left over"));
}

#[test]
fn store_decisions() {
    let db = Path::new("/h/state.db");
    assert_eq!(
        severities(&store(db, &StoreFacts::Absent)),
        vec![(ids::STORE_INTEGRITY, Severity::Info)]
    );
    let unreadable = store(
        db,
        &StoreFacts::Unreadable {
            error: "file is not a database".into(),
        },
    );
    assert_eq!(unreadable[0].severity, Severity::Error);
    assert!(
        unreadable[0].fix.is_none(),
        "a damaged store is never repaired automatically"
    );
    assert!(unreadable[0].hint.as_deref().unwrap().contains(".recover"));
    let healthy = store(db, &StoreFacts::Open(healthy_store()));
    assert_eq!(
        severities(&healthy),
        vec![
            (ids::STORE_INTEGRITY, Severity::Ok),
            (ids::STORE_SCHEMA, Severity::Ok)
        ]
    );
    let damaged = StoreReport {
        integrity: Ok(vec![
            "Tree 4 page 4: btreeInitPage() returns error code 11".into()
        ]),
        ..healthy_store()
    };
    let f = store(db, &StoreFacts::Open(damaged));
    assert_eq!(f[0].severity, Severity::Error);
    assert!(
        f[0].message.contains("1 problem (first: Tree 4"),
        "{}",
        f[0].message
    );
    let failing = StoreReport {
        integrity: Err("database disk image is malformed".into()),
        schema: Err("database disk image is malformed".into()),
        ..healthy_store()
    };
    assert_eq!(
        severities(&store(db, &StoreFacts::Open(failing))),
        vec![
            (ids::STORE_INTEGRITY, Severity::Error),
            (ids::STORE_SCHEMA, Severity::Error)
        ]
    );
    let newer = StoreReport {
        schema: Ok(SCHEMA_VERSION + 1),
        ..healthy_store()
    };
    assert_eq!(
        store(db, &StoreFacts::Open(newer))[1].severity,
        Severity::Error
    );
    let older = StoreReport {
        schema: Ok(SCHEMA_VERSION - 1),
        ..healthy_store()
    };
    assert_eq!(
        store(db, &StoreFacts::Open(older))[1].severity,
        Severity::Info
    );
}

#[test]
fn temp_file_decisions() {
    let t = |name: &str, pid: Option<u32>, alive: bool| TempFile {
        path: PathBuf::from("/h").join(name),
        writer_pid: pid,
        writer_alive: alive,
    };
    assert_eq!(temp_files(&[]).severity, Severity::Ok);
    let live = temp_files(&[t("gateway.token.5.claw-tmp", Some(5), true)]);
    assert_eq!(live.severity, Severity::Info);
    assert!(live.fix.is_none(), "a write in progress is left alone");
    let left = temp_files(&[
        t("gateway.token.5.claw-tmp", Some(5), true),
        t("gateway.json.6.claw-tmp", Some(6), false),
        t("odd.claw-tmp", None, false),
    ]);
    assert_eq!(left.severity, Severity::Warn);
    assert!(
        left.message.starts_with("2 temporary files"),
        "{}",
        left.message
    );
    assert_eq!(
        left.fix,
        Some(FixAction::RemoveTempFiles {
            paths: vec![
                "/h/gateway.json.6.claw-tmp".into(),
                "/h/odd.claw-tmp".into()
            ]
        })
    );
}

#[test]
fn pairing_decisions() {
    assert!(pairing(&StoreFacts::Absent, 0).is_empty());
    let healthy = pairing(&StoreFacts::Open(healthy_store()), 0);
    assert_eq!(
        severities(&healthy),
        vec![
            (ids::PAIRING_EXPIRED, Severity::Ok),
            (ids::PAIRING_PENDING, Severity::Ok)
        ]
    );
    let r = StoreReport {
        expired_requests: Ok(2),
        expired_codes: Ok(1),
        pending: Ok(vec![PendingFacts {
            request_id: "req-0123456789abcdef".into(),
            device_id: "dev-0123456789abcdef".into(),
            created_at_ms: 1_000,
        }]),
        ..healthy_store()
    };
    let f = pairing(&StoreFacts::Open(r), 1_000 + 5 * 60_000);
    assert_eq!(f[0].severity, Severity::Info);
    assert_eq!(f[0].fix, Some(FixAction::PruneExpiredPairing));
    assert!(f[0]
        .message
        .contains("2 expired pairing request(s) and 1 expired"));
    assert_eq!(f[1].severity, Severity::Info);
    assert!(
        f[1].message.contains("req-01234567") && f[1].message.contains("5 min ago"),
        "{}",
        f[1].message
    );
    assert!(f[1]
        .hint
        .as_deref()
        .unwrap()
        .contains("claw devices approve"));
}

#[test]
fn bind_decisions() {
    let rt = |addrs: &[&str]| RuntimeFacts {
        addrs: addrs.iter().map(|s| s.to_string()).collect(),
        ..RuntimeFacts::default()
    };
    assert_eq!(bind(None).severity, Severity::Ok);
    assert_eq!(
        bind(Some(&rt(&["127.0.0.1:1", "[::1]:1"]))).severity,
        Severity::Ok
    );
    let open = bind(Some(&rt(&["127.0.0.1:1", "0.0.0.0:1"])));
    assert_eq!(open.severity, Severity::Error);
    assert!(open.message.contains("0.0.0.0:1"));
    assert!(open.hint.as_deref().unwrap().contains("--tunnel"));
    assert!(open.hint.as_deref().unwrap().contains("ssh -N -L"));
    assert_eq!(
        bind(Some(&rt(&["[::ffff:10.0.0.1]:1"]))).severity,
        Severity::Error
    );
    assert_eq!(bind(Some(&rt(&["nonsense"]))).severity, Severity::Warn);
}

#[test]
fn port_decisions() {
    let gw = proc(42, "claw gateway run", true);
    let rival = proc(777, "python3 -m http.server 18789", false);
    let other_claw = proc(888, "claw --home /other gateway run", true);
    // Served by our gateway.
    let f = port(
        &port_facts(
            PortSource::Runtime,
            vec![holder(vec![gw.clone()])],
            Some(Ok(0.3)),
        ),
        Some(42),
    );
    assert_eq!(f.severity, Severity::Ok);
    // Running but unreachable.
    let f = port(
        &port_facts(PortSource::Runtime, vec![], Some(Err("refused".into()))),
        Some(42),
    );
    assert_eq!(f.severity, Severity::Error);
    // Free, no gateway.
    assert_eq!(
        port(&port_facts(PortSource::Default, vec![], None), None).severity,
        Severity::Ok
    );
    // Held by another process: named with pid and command line.
    let f = port(
        &port_facts(PortSource::Flag, vec![holder(vec![rival.clone()])], None),
        None,
    );
    assert_eq!(f.severity, Severity::Warn);
    assert!(
        f.message.contains("pid 777") && f.message.contains("http.server"),
        "{}",
        f.message
    );
    assert!(f.fix.is_none(), "doctor never kills a process");
    // Another claw gateway on the default port: informational.
    let f = port(
        &port_facts(
            PortSource::Default,
            vec![holder(vec![other_claw.clone()])],
            None,
        ),
        None,
    );
    assert_eq!(f.severity, Severity::Info);
    // ... but not when that port was asked for.
    let f = port(
        &port_facts(PortSource::Flag, vec![holder(vec![other_claw])], None),
        None,
    );
    assert_eq!(f.severity, Severity::Warn);
    // Our gateway serves it and someone else also listens on it.
    let f = port(
        &port_facts(
            PortSource::Runtime,
            vec![holder(vec![gw]), holder(vec![rival])],
            Some(Ok(0.3)),
        ),
        Some(42),
    );
    assert_eq!(f.severity, Severity::Warn);
    // A holder whose process is invisible (another user's).
    let f = port(
        &port_facts(PortSource::Default, vec![holder(vec![])], None),
        None,
    );
    assert_eq!(f.severity, Severity::Warn);
    assert!(f.message.contains("inode 99"), "{}", f.message);
    // Something answers that is not in our /proc view at all.
    let ghost = PortHolder {
        uid: None,
        ..holder(vec![])
    };
    let f = port(&port_facts(PortSource::Default, vec![ghost], None), None);
    assert_eq!(f.severity, Severity::Warn);
    assert!(
        f.message.contains("a listener on 127.0.0.1:18789"),
        "{}",
        f.message
    );
}

#[test]
fn multiple_gateway_decisions() {
    assert_eq!(multiple(&[]).severity, Severity::Ok);
    let f = multiple(&[
        GatewayProcess {
            pid: 5,
            home: Some("/a".into()),
            cmdline: "claw --home /a gateway run".into(),
        },
        GatewayProcess {
            pid: 6,
            home: None,
            cmdline: "claw gateway run".into(),
        },
    ]);
    assert_eq!(f.severity, Severity::Info);
    assert!(f.message.contains("pid 5 (home /a)") && f.message.contains("pid 6 (home unknown)"));
}

#[test]
fn token_drift_decisions() {
    let p = Path::new("/h/gateway.token");
    let t = |present: bool, source: Option<&str>, probe: CredentialProbe| TokenFacts {
        home_token_present: present,
        gateway_source: source.map(str::to_string),
        probe,
    };
    let accepted = CredentialProbe::Accepted { latency_ms: 1.0 };
    let mismatch = CredentialProbe::Refused {
        code: crate::protocol::codes::AUTH_TOKEN_MISMATCH.into(),
        reason: "unauthorized: gateway token mismatch".into(),
    };
    assert_eq!(
        token_drift(&t(true, None, accepted.clone()), None, p).severity,
        Severity::Info
    );
    assert_eq!(
        token_drift(&t(true, Some("generated"), accepted), Some(1), p).severity,
        Severity::Ok
    );
    let pinned = token_drift(&t(true, Some("pinned"), mismatch.clone()), Some(1), p);
    assert_eq!(pinned.severity, Severity::Error);
    assert!(pinned.fix.is_none(), "drift is never repaired by doctor");
    assert!(pinned.message.contains("pinned"), "{}", pinned.message);
    assert!(pinned
        .hint
        .as_deref()
        .unwrap()
        .contains("claw gateway stop && claw gateway start"));
    let changed = token_drift(&t(true, Some("generated"), mismatch), Some(1), p);
    assert!(changed
        .hint
        .as_deref()
        .unwrap()
        .contains("claw devices rotate-token --shared --force"));
    let none_pinned = token_drift(
        &t(
            false,
            Some("pinned"),
            CredentialProbe::NotChecked { why: "x".into() },
        ),
        Some(1),
        p,
    );
    assert_eq!(none_pinned.severity, Severity::Info);
    let lost = token_drift(
        &t(
            false,
            Some("generated"),
            CredentialProbe::NotChecked { why: "x".into() },
        ),
        Some(1),
        p,
    );
    assert_eq!(lost.severity, Severity::Warn);
    let failed = token_drift(
        &t(
            true,
            Some("generated"),
            CredentialProbe::Failed {
                error: "timeout".into(),
            },
        ),
        Some(1),
        p,
    );
    assert_eq!(failed.severity, Severity::Warn);
}

#[test]
fn drift_advice_names_the_reason_and_the_command() {
    let (m, h) = drift_advice(
        Credential::DeviceToken,
        crate::protocol::codes::AUTH_DEVICE_TOKEN_ROTATED,
        &crate::protocol::close::CloseReason::DeviceTokenRotated.to_string(),
    );
    assert!(m.contains("rotated") && h.contains("claw tunnel pair"));
    let (m, h) = drift_advice(
        Credential::DeviceToken,
        crate::protocol::codes::AUTH_DEVICE_REVOKED,
        &crate::protocol::close::CloseReason::DeviceRevoked.to_string(),
    );
    assert!(m.contains("revoked") && h.contains("claw devices remove"));
    let (m, h) = drift_advice(
        Credential::DeviceToken,
        crate::protocol::codes::AUTH_TOKEN_MISMATCH,
        "unauthorized: gateway token mismatch",
    );
    assert!(m.contains("does not know") && h.contains("claw tunnel pair"));
    let (m, _) = drift_advice(
        Credential::SharedToken { pinned: None },
        crate::protocol::codes::NOT_PAIRED,
        &crate::protocol::close::CloseReason::DeviceIdentityRequired.to_string(),
    );
    assert!(m.contains("device identity required (NOT_PAIRED)"));
}

#[test]
fn clock_skew_decisions() {
    assert_eq!(clock_skew(10_000, None).severity, Severity::Ok);
    assert_eq!(clock_skew(10_000, Some(9_000)).severity, Severity::Ok);
    assert_eq!(
        clock_skew(10_000, Some(10_000 + CLOCK_TOLERANCE_MS)).severity,
        Severity::Ok
    );
    let back = clock_skew(10_000, Some(10_000 + 3_600_000));
    assert_eq!(back.severity, Severity::Warn);
    assert!(back.message.contains("60 min behind"), "{}", back.message);
    assert!(back.hint.is_some());
}

#[test]
fn listener_decisions() {
    let nc = listener(
        ids::SSH_LISTENER,
        "SSH forward",
        &ListenerFacts::NotConfigured,
        "how",
    );
    assert_eq!(
        (nc.severity, nc.message.as_str()),
        (Severity::Info, "SSH forward: not configured")
    );
    let up = listener(
        ids::TUNNEL_LISTENER,
        "QUIC tunnel",
        &ListenerFacts::Up {
            addr: "0.0.0.0:18790".into(),
            fingerprint: Some("abcd".into()),
        },
        "how",
    );
    assert_eq!(up.severity, Severity::Ok);
    assert!(up.message.contains("fingerprint abcd"));
    let down = listener(
        ids::TUNNEL_LISTENER,
        "QUIC tunnel",
        &ListenerFacts::Down {
            addr: "0.0.0.0:18790".into(),
            error: "no socket".into(),
        },
        "how",
    );
    assert_eq!(down.severity, Severity::Error);
}

#[test]
fn durations_read_well() {
    assert_eq!(human_duration(0), "0 s");
    assert_eq!(human_duration(45_000), "45 s");
    assert_eq!(human_duration(5 * 60_000), "5 min");
    assert_eq!(human_duration(3 * 3_600_000), "3 h");
    assert_eq!(human_duration(3 * 86_400_000), "3 d");
}

#[test]
fn device_drift_decisions() {
    use crate::doctor::Severity;
    assert_eq!(
        device_drift(&DeviceCredentialFacts::NotPaired).severity,
        Severity::Ok
    );
    let same = DeviceCredentialFacts::Checked {
        stored_generation: 3,
        gateway_generation: 3,
    };
    assert_eq!(device_drift(&same).severity, Severity::Ok);
    let behind = DeviceCredentialFacts::Checked {
        stored_generation: 2,
        gateway_generation: 3,
    };
    let f = device_drift(&behind);
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.hint.as_deref().unwrap().contains("claw tunnel up"),
        "{f:?}"
    );
    let unknown = DeviceCredentialFacts::Checked {
        stored_generation: 0,
        gateway_generation: 3,
    };
    assert_eq!(device_drift(&unknown).severity, Severity::Info);
    let revoked = DeviceCredentialFacts::Refused {
        code: "revoked".into(),
        reason: "x".into(),
    };
    let f = device_drift(&revoked);
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.hint.as_deref().unwrap().contains("claw devices remove"),
        "{f:?}"
    );
    let down = DeviceCredentialFacts::Unreachable {
        error: "timed out".into(),
    };
    assert_eq!(device_drift(&down).severity, Severity::Warn);
}

#[test]
fn small_udp_buffer_caps_are_reported_only_where_the_tunnel_is_used() {
    let small = Some((212_992, 212_992));
    let f = udp_buffers(true, small);
    assert_eq!(f.severity, Severity::Info);
    assert!(f.message.contains("208 KiB"), "{}", f.message);
    assert!(f
        .hint
        .unwrap()
        .contains("sysctl -w net.core.rmem_max=4194304"));
    assert!(
        f.fix.is_none(),
        "a system-wide setting is never changed by --fix"
    );
    assert_eq!(udp_buffers(false, small).severity, Severity::Ok);
    assert_eq!(
        udp_buffers(true, Some((4 << 20, 8 << 20))).severity,
        Severity::Ok
    );
    assert_eq!(
        udp_buffers(true, Some((8 << 20, 212_992))).severity,
        Severity::Info
    );
    assert_eq!(udp_buffers(true, None).severity, Severity::Ok);
}

#[test]
fn upstream_names_the_runtime_token_and_the_fix() {
    use crate::doctor::facts::UpstreamFacts;
    use crate::upstream::CredentialError;
    let runtime = CredentialError::RuntimeToken {
        path: "/h/.openclaw/openclaw.json".into(),
    };
    let u = UpstreamFacts {
        url: "ws://127.0.0.1:18789/".into(),
        credential: "openclaw config /h/.openclaw/openclaw.json (gateway.auth.token)".into(),
        reachable: false,
        authenticated: false,
        last_error: Some(runtime.to_string()),
    };
    let f = upstream(&u);
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message.contains("per-boot runtime token"),
        "{}",
        f.message
    );
    assert!(f
        .hint
        .unwrap()
        .contains("openclaw config set gateway.auth.token"));
    let down = UpstreamFacts {
        last_error: Some("cannot connect to ws://127.0.0.1:18789/: Connection refused".into()),
        ..u.clone()
    };
    assert!(upstream(&down).message.contains("not reachable"));
    let refused = UpstreamFacts {
        reachable: true,
        last_error: Some(
            "upstream refused claw: shared token refused (SharedToken)\u{1b}[2J".into(),
        ),
        ..u.clone()
    };
    let f = upstream(&refused);
    assert!(f.message.contains("refuses claw") && !f.message.contains('\u{1b}'));
    let ok = UpstreamFacts {
        authenticated: true,
        reachable: true,
        last_error: None,
        ..u
    };
    assert_eq!(upstream(&ok).severity, Severity::Ok);
}
