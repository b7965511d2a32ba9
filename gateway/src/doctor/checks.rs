//! The checks: pure functions from gathered facts to findings. No IO, no clock: the time is a
//! fact like any other, so every decision is tested directly.

use std::net::SocketAddr;
use std::path::Path;

use super::facts::{
    CredentialProbe, DeviceCredentialFacts, Facts, FileFacts, GatewayProcess, ListenerFacts,
    LockFacts, PortFacts, PortHolder, PortSource, RuntimeFacts, SocketFacts, StoreFacts, TempFile,
    TokenFacts,
};
use super::{ids, Finding, FixAction};
use crate::bind_guard::is_loopback;
use crate::home::Home;
use crate::store::SCHEMA_VERSION;

/// The gateway's default WebSocket port.
pub const DEFAULT_PORT: u16 = claw_proto::ports::GATEWAY;

/// How far the system clock may be behind the store's newest record before `clock.skew` warns
/// (small steps back happen when NTP corrects a fast clock).
pub const CLOCK_TOLERANCE_MS: u64 = 2_000;

/// Runs every check, in the order the report lists them.
pub fn evaluate(f: &Facts) -> Vec<Finding> {
    let home = Home::new(&f.home);
    let gw = f.lock.holder();
    let mut out = home_permissions(&f.home, f.home_dir.as_ref(), f.uid);
    if f.home_dir.is_some() {
        out.extend(secret_permissions(&f.secrets, f.uid));
        out.push(lock_stale(&home.lock_path(), &f.lock));
        out.push(runtime_stale(&home.runtime_path(), f.runtime.as_ref(), gw));
        out.push(admin_socket(&home.admin_socket_path(), &f.admin_socket, gw));
        out.extend(store(&home.store_path(), &f.store));
        out.push(storage::store_writable(&f.home, &f.storage, gw));
        out.push(storage::snapshots(&f.store, &f.snapshots, f.now_ms));
        out.push(temp_files(&f.temp_files));
        out.extend(pairing(&f.store, f.now_ms));
        out.push(bind(f.runtime.as_ref()));
    }
    out.push(port(&f.port, gw));
    out.push(multiple(&f.other_gateways));
    if f.home_dir.is_some() {
        out.push(token_drift(&f.token, gw, &home.shared_token_path()));
        out.push(device_drift(&f.device));
    }
    let newest = match &f.store {
        StoreFacts::Open(r) => r.newest_record_ms.clone().ok().flatten(),
        _ => None,
    };
    out.push(clock_skew(f.now_ms, newest));
    out.push(listener(
        ids::TUNNEL_LISTENER,
        "QUIC tunnel",
        &f.tunnel,
        "paired devices reach the gateway through it: `claw gateway run --tunnel`",
    ));
    if let Some(u) = &f.upstream {
        out.push(upstream(u));
    }
    for r in &f.relays {
        out.extend(relay::relay(r));
    }
    if let Some(d) = &f.device_relay {
        out.push(relay::ticket(d, f.now_ms / 1000));
    }
    let uses_tunnel = !matches!(f.tunnel, ListenerFacts::NotConfigured)
        || !matches!(f.device, DeviceCredentialFacts::NotPaired);
    out.push(udp_buffers(uses_tunnel, f.socket_buffer_max));
    out.push(listener(
        ids::SSH_LISTENER,
        "SSH forward",
        &f.ssh,
        "devices without the tunnel reach the gateway through it: `claw gateway run --ssh`, or through your own sshd: `ssh -N -L 18789:127.0.0.1:18789 user@this-host`",
    ));
    out
}

/// `upstream`: the OpenClaw gateway behind claw serves it; else the cause and the fix. An
/// upstream whose config pins no token runs with a per-boot runtime token nobody can read: the
/// fix is to pin one in OpenClaw's config.
pub fn upstream(u: &super::facts::UpstreamFacts) -> Finding {
    let id = ids::UPSTREAM;
    let esc = |s: &str| crate::text::escape(s).into_owned();
    if u.authenticated {
        return Finding::ok(
            id,
            format!(
                "upstream {} serves claw (credential: {})",
                esc(&u.url),
                esc(&u.credential)
            ),
        );
    }
    let why = u
        .last_error
        .as_deref()
        .map(esc)
        .unwrap_or_else(|| "not connected yet".into());
    if why.contains("gateway.auth.token") && why.contains("runtime token") {
        return Finding::error(id, format!("upstream {}: OpenClaw runs with a per-boot runtime token claw cannot read ({why})", esc(&u.url)))
            .with_hint("pin OpenClaw's token: `openclaw config set gateway.auth.token \"$(openssl rand -hex 24)\"`, restart OpenClaw (`openclaw gateway restart`); claw re-reads it at its next upstream connect");
    }
    if !u.reachable {
        return Finding::error(id, format!("upstream {} is not reachable: {why}", esc(&u.url)))
            .with_hint("start OpenClaw's gateway (`openclaw gateway run --bind loopback`) on the port --upstream names");
    }
    Finding::error(id, format!("upstream {} refuses claw: {why}", esc(&u.url))).with_hint(format!(
        "claw reads the upstream's token from {}; make it OpenClaw's `gateway.auth.token` (`openclaw config get gateway.auth.token`)",
        esc(&u.credential)
    ))
}

fn mode(m: u32) -> String {
    format!("{:04o}", m & 0o7777)
}

/// `home.permissions`: the home is a directory of the caller's, mode 0700.
pub fn home_permissions(home: &Path, dir: Option<&FileFacts>, uid: u32) -> Vec<Finding> {
    let id = ids::HOME_PERMISSIONS;
    let Some(d) = dir else {
        return vec![Finding::info(
            id,
            format!(
                "{} does not exist yet (the first `claw gateway run` creates it)",
                home.display()
            ),
        )];
    };
    let mut out = Vec::new();
    if d.uid != uid {
        out.push(
            Finding::error(
                id,
                format!(
                    "{} is owned by uid {}, not by you (uid {uid})",
                    home.display(),
                    d.uid
                ),
            )
            .with_hint(format!(
                "run claw as uid {}, or give the home to uid {uid}: `sudo chown -R {uid} {}`",
                d.uid,
                home.display()
            )),
        );
    }
    let chmod = FixAction::Chmod {
        path: home.to_path_buf(),
        mode: 0o700,
    };
    if d.mode & 0o077 != 0 {
        out.push(
            Finding::error(
                id,
                format!(
                    "{} is {}: other users can reach the secrets in it (must be 0700)",
                    home.display(),
                    mode(d.mode)
                ),
            )
            .with_fix(chmod),
        );
    } else if d.mode & 0o700 != 0o700 {
        out.push(
            Finding::warn(
                id,
                format!(
                    "{} is {}: claw cannot write in it (must be 0700)",
                    home.display(),
                    mode(d.mode)
                ),
            )
            .with_fix(chmod),
        );
    }
    if out.is_empty() {
        out.push(Finding::ok(
            id,
            format!("{} is {}", home.display(), mode(d.mode)),
        ));
    }
    out
}

/// `secret.permissions`: every secret file is the caller's, with no group or other bits.
pub fn secret_permissions(files: &[FileFacts], uid: u32) -> Vec<Finding> {
    let id = ids::SECRET_PERMISSIONS;
    let mut out = Vec::new();
    for f in files {
        if f.uid != uid {
            out.push(
                Finding::error(
                    id,
                    format!(
                        "{} is owned by uid {}, not by you (uid {uid})",
                        f.path.display(),
                        f.uid
                    ),
                )
                .with_hint(format!("`sudo chown {uid} {}`", f.path.display())),
            );
        }
        if f.mode & 0o077 != 0 {
            let name = f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut finding = Finding::error(
                id,
                format!(
                    "{} is {}: readable by other users (must be 0600)",
                    f.path.display(),
                    mode(f.mode)
                ),
            )
            .with_fix(FixAction::Chmod {
                path: f.path.clone(),
                mode: 0o600,
            });
            if let Some(h) = exposure_hint(&name) {
                finding = finding.with_hint(h);
            }
            out.push(finding);
        }
    }
    if out.is_empty() {
        out.push(Finding::ok(
            id,
            if files.is_empty() {
                "no secret files yet".to_string()
            } else {
                format!("{} secret files are 0600 and yours", files.len())
            },
        ));
    }
    out
}

/// What to consider after a secret was readable by others: the credential it holds may have
/// been copied, and only a rotation retires it (doctor never rotates).
fn exposure_hint(name: &str) -> Option<String> {
    if name == "gateway.token" {
        Some(
            "it may have been copied; to retire it: `claw devices rotate-token --shared --force`"
                .into(),
        )
    } else if name.starts_with("state.db") {
        Some("the device-token root in it may have been copied; to retire every device token: `claw devices rotate-token --force`".into())
    } else {
        None
    }
}

/// `lock.stale`: a lock file nobody holds was left by a process that died (a clean exit removes
/// it).
pub fn lock_stale(path: &Path, lock: &LockFacts) -> Finding {
    let id = ids::LOCK_STALE;
    match *lock {
        LockFacts::Absent => Finding::ok(id, "no gateway lock: no gateway runs on this home"),
        LockFacts::Held { pid } => {
            Finding::ok(id, format!("held by the running gateway (pid {pid})"))
        }
        LockFacts::Stale { pid, pid_alive } => {
            let who = if pid == 0 {
                "an unknown process".to_string()
            } else if pid_alive {
                format!(
                    "pid {pid}, which no longer holds it (the pid now belongs to another process)"
                )
            } else {
                format!("pid {pid}, which is not running")
            };
            Finding::warn(
                id,
                format!("gateway.lock was left by {who}: the gateway died without cleaning up (crash, OOM or kill -9)"),
            )
            .with_fix(FixAction::RemoveStaleLock {
                path: path.to_path_buf(),
            })
        }
    }
}

const RESTART: &str = "restart it: `claw gateway stop && claw gateway start`";

/// `runtime.stale`: `gateway.json` describes the gateway that holds the lock, or none is left.
pub fn runtime_stale(path: &Path, rt: Option<&RuntimeFacts>, gw: Option<u32>) -> Finding {
    let id = ids::RUNTIME_STALE;
    let remove = FixAction::RemoveStaleRuntime {
        path: path.to_path_buf(),
    };
    let Some(r) = rt else {
        return match gw {
            None => Finding::ok(id, "no gateway.json: no gateway runs"),
            Some(pid) => Finding::warn(
                id,
                format!("the running gateway (pid {pid}) has no gateway.json: `claw call` and `claw health` fall back to ws://127.0.0.1:{DEFAULT_PORT}"),
            )
            .with_hint(RESTART),
        };
    };
    if let Some(e) = &r.error {
        let f = Finding::warn(id, format!("gateway.json is unreadable: {e}"));
        return match gw {
            None => f.with_fix(remove),
            Some(_) => f.with_hint(RESTART),
        };
    }
    let url = r.url.as_deref().unwrap_or("no url");
    match (r.pid, gw) {
        (Some(p), Some(pid)) if p == pid => Finding::ok(
            id,
            format!("gateway.json describes the running gateway (pid {pid}, {url})"),
        ),
        (p, Some(pid)) => Finding::warn(
            id,
            format!(
                "gateway.json names pid {} but the gateway running on this home is pid {pid}",
                p.unwrap_or(0)
            ),
        )
        .with_hint(RESTART),
        (p, None) => Finding::warn(
            id,
            format!(
                "gateway.json was left by pid {}, which no longer runs a gateway here ({url} is stale)",
                p.unwrap_or(0)
            ),
        )
        .with_fix(remove),
    }
}

/// `admin_socket.orphan`: `admin.sock` exists exactly when a gateway runs, and answers.
pub fn admin_socket(path: &Path, sock: &SocketFacts, gw: Option<u32>) -> Finding {
    let id = ids::ADMIN_SOCKET_ORPHAN;
    let kill = |pid: u32| {
        format!("stop it with `kill {pid}` (SIGTERM is graceful), then `claw gateway start`")
    };
    match (sock, gw) {
        (SocketFacts::Absent, None) => Finding::ok(id, "no admin socket: no gateway runs"),
        (SocketFacts::Absent, Some(pid)) => Finding::error(
            id,
            format!("the gateway (pid {pid}) runs but admin.sock is gone: `claw gateway stop|status|token` cannot reach it"),
        )
        .with_hint(kill(pid)),
        (SocketFacts::Answers, Some(pid)) => {
            Finding::ok(id, format!("admin.sock answers (gateway pid {pid})"))
        }
        (SocketFacts::Answers, None) => Finding::warn(
            id,
            "admin.sock answers but no gateway holds this home's lock",
        )
        .with_hint(format!(
            "find the listener: `ss -xlp | grep {}`",
            path.display()
        )),
        (SocketFacts::Refused, None) => Finding::warn(
            id,
            "admin.sock is left over: nothing listens on it (the gateway died)",
        )
        .with_fix(FixAction::RemoveOrphanSocket {
            path: path.to_path_buf(),
        }),
        (SocketFacts::Refused, Some(pid)) => Finding::error(
            id,
            format!("the gateway (pid {pid}) runs but nothing answers on admin.sock (the file was replaced)"),
        )
        .with_hint(kill(pid)),
        (SocketFacts::Failed(e), _) => {
            Finding::warn(id, format!("cannot connect to admin.sock: {e}")).with_hint(format!(
                "check {} (it must be a socket of yours, mode 0600)",
                path.display()
            ))
        }
    }
}

fn damaged_hint(db: &Path) -> String {
    let d = db.display();
    format!(
        "not repairable automatically (the store holds the device-token root). Stop the gateway, keep a copy, then salvage: `sqlite3 {d} .recover | sqlite3 {d}.recovered && mv {d}.recovered {d}`; or move it aside (`mv {d} {d}.corrupt`): a new store has a new root, so every device pairs again"
    )
}

/// `store.integrity` and `store.schema`: SQLite's own integrity check and the schema version.
pub fn store(db: &Path, s: &StoreFacts) -> Vec<Finding> {
    match s {
        StoreFacts::Absent => vec![Finding::info(
            ids::STORE_INTEGRITY,
            "no state.db yet (the first `claw gateway run` creates it)",
        )],
        StoreFacts::Unreadable { error } => vec![Finding::error(
            ids::STORE_INTEGRITY,
            format!("state.db cannot be opened: {error}"),
        )
        .with_hint(damaged_hint(db))],
        StoreFacts::Open(r) => {
            let integrity = match &r.integrity {
                Ok(p) if p.is_empty() => Finding::ok(
                    ids::STORE_INTEGRITY,
                    "state.db passes SQLite's integrity check",
                ),
                Ok(p) => Finding::error(
                    ids::STORE_INTEGRITY,
                    format!(
                        "state.db is damaged: {} problem{} (first: {})",
                        p.len(),
                        if p.len() == 1 { "" } else { "s" },
                        p[0]
                    ),
                )
                .with_hint(damaged_hint(db)),
                Err(e) => Finding::error(
                    ids::STORE_INTEGRITY,
                    format!("state.db fails SQLite's integrity check: {e}"),
                )
                .with_hint(damaged_hint(db)),
            };
            let schema = match &r.schema {
                Ok(v) if *v == SCHEMA_VERSION => {
                    Finding::ok(ids::STORE_SCHEMA, format!("schema version {v}"))
                }
                Ok(v) if *v < SCHEMA_VERSION => Finding::info(
                    ids::STORE_SCHEMA,
                    format!("schema version {v}: the next gateway start migrates it to {SCHEMA_VERSION}"),
                ),
                Ok(v) => Finding::error(
                    ids::STORE_SCHEMA,
                    format!("schema version {v} is newer than this claw understands ({SCHEMA_VERSION})"),
                )
                .with_hint("upgrade claw to the version that wrote it"),
                Err(e) => Finding::error(
                    ids::STORE_SCHEMA,
                    format!("cannot read the schema version: {e}"),
                )
                .with_hint(damaged_hint(db)),
            };
            vec![integrity, schema]
        }
    }
}

/// `files.temporary`: temporary files of interrupted atomic writes (their writer is dead).
pub fn temp_files(files: &[TempFile]) -> Finding {
    let id = ids::FILES_TEMPORARY;
    let (live, dead): (Vec<&TempFile>, Vec<&TempFile>) = files.iter().partition(|f| f.writer_alive);
    if !dead.is_empty() {
        let names: Vec<String> = dead
            .iter()
            .map(|f| {
                f.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        return Finding::warn(
            id,
            format!(
                "{} temporary file{} left by interrupted writes: {}",
                dead.len(),
                if dead.len() == 1 { "" } else { "s" },
                names.join(", ")
            ),
        )
        .with_fix(FixAction::RemoveTempFiles {
            paths: dead.iter().map(|f| f.path.clone()).collect(),
        });
    }
    if !live.is_empty() {
        let pids: Vec<String> = live
            .iter()
            .filter_map(|f| f.writer_pid.map(|p| p.to_string()))
            .collect();
        return Finding::info(
            id,
            format!(
                "{} temporary file{} of live writers (pid {}): writes in progress",
                live.len(),
                if live.len() == 1 { "" } else { "s" },
                pids.join(", ")
            ),
        );
    }
    Finding::ok(id, "no leftover temporary files")
}

/// A duration for humans: `45 s`, `12 min`, `3 h`, `2 d`.
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `pairing.expired` and `pairing.pending`: expired requests and codes to prune; requests that
/// wait for the operator.
pub fn pairing(s: &StoreFacts, now_ms: u64) -> Vec<Finding> {
    let StoreFacts::Open(r) = s else {
        return Vec::new();
    };
    let expired = match (&r.expired_requests, &r.expired_codes) {
        (Ok(0), Ok(0)) => Finding::ok(ids::PAIRING_EXPIRED, "no expired pairing requests or codes"),
        (Ok(req), Ok(codes)) => Finding::info(
            ids::PAIRING_EXPIRED,
            format!("{req} expired pairing request(s) and {codes} expired pairing code(s) are still stored"),
        )
        .with_fix(FixAction::PruneExpiredPairing),
        (Err(e), _) | (_, Err(e)) => Finding::warn(
            ids::PAIRING_EXPIRED,
            format!("cannot count expired pairing requests: {e}"),
        ),
    };
    let pending = match &r.pending {
        Ok(p) if p.is_empty() => Finding::ok(ids::PAIRING_PENDING, "no pairing requests waiting"),
        Ok(p) => {
            let oldest = &p[0];
            Finding::info(
                ids::PAIRING_PENDING,
                format!(
                    "{} pairing request(s) wait for approval; oldest: request {} from device {} ({} ago)",
                    p.len(),
                    short(&oldest.request_id),
                    short(&oldest.device_id),
                    human_duration(now_ms.saturating_sub(oldest.created_at_ms))
                ),
            )
            .with_hint("`claw devices list`, then `claw devices approve <id>` or `claw devices reject <id>`")
        }
        Err(e) => Finding::warn(
            ids::PAIRING_PENDING,
            format!("cannot list pending pairing requests: {e}"),
        ),
    };
    vec![expired, pending]
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `bind.non_loopback`: the running gateway's WebSocket addresses are loopback.
pub fn bind(rt: Option<&RuntimeFacts>) -> Finding {
    let id = ids::BIND_NON_LOOPBACK;
    let addrs = rt.map(|r| r.addrs.as_slice()).unwrap_or_default();
    if addrs.is_empty() {
        return Finding::ok(
            id,
            "no gateway listening; `claw gateway run` accepts loopback only (default 127.0.0.1)",
        );
    }
    for a in addrs {
        match a.parse::<SocketAddr>() {
            Ok(sa) if is_loopback(sa.ip()) => {}
            Ok(_) => {
                return Finding::error(
                    id,
                    format!("gateway.json lists {a}: the gateway listens beyond loopback"),
                )
                .with_hint("stop it (`claw gateway stop`) and run it on loopback; for remote access use the tunnel (`claw gateway run --tunnel`, then `claw pair`) or `ssh -N -L 18789:127.0.0.1:18789 user@this-host`");
            }
            Err(_) => {
                return Finding::warn(
                    id,
                    format!("gateway.json lists an unparsable address {a:?}"),
                )
            }
        }
    }
    Finding::ok(
        id,
        format!(
            "the gateway listens on loopback only ({})",
            addrs.join(", ")
        ),
    )
}

fn describe_holder(h: &PortHolder) -> String {
    if h.processes.is_empty() {
        return match h.uid {
            Some(uid) => format!(
                "a socket of uid {uid} on {} (inode {}; its process is not visible to you)",
                h.addr, h.inode
            ),
            None => format!(
                "a listener on {} (its process is not visible to you)",
                h.addr
            ),
        };
    }
    let procs: Vec<String> = h
        .processes
        .iter()
        .map(|p| format!("pid {} (`{}`)", p.pid, truncate(&p.cmdline, 80)))
        .collect();
    format!("{} on {}", procs.join(", "), h.addr)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

fn is_claw_gateway(h: &PortHolder) -> bool {
    !h.processes.is_empty() && h.processes.iter().all(|p| p.claw_gateway)
}

/// `port.rival`: the WebSocket port is served by this home's gateway, or free for it; when
/// another process holds it, which one (pid and command line).
pub fn port(p: &PortFacts, gw: Option<u32>) -> Finding {
    let id = ids::PORT_RIVAL;
    let port = p.port;
    let ours = |h: &&PortHolder| gw.is_some_and(|pid| h.processes.iter().any(|x| x.pid == pid));
    let rivals: Vec<&PortHolder> = p.holders.iter().filter(|h| !ours(h)).collect();
    let rival_text = rivals
        .iter()
        .map(|h| describe_holder(h))
        .collect::<Vec<_>>()
        .join("; ");
    if let (Some(pid), Some(connect)) = (gw, &p.connect) {
        return match connect {
            Err(e) => Finding::error(
                id,
                format!("the gateway (pid {pid}) does not accept connections on port {port}: {e}"),
            )
            .with_hint(RESTART),
            Ok(_) if !rivals.is_empty() => Finding::warn(
                id,
                format!("port {port} is served by the gateway (pid {pid}) and also held by {rival_text}"),
            )
            .with_hint("stop the other process; clients may reach it instead of the gateway"),
            Ok(ms) => Finding::ok(
                id,
                format!("port {port} is served by the gateway (pid {pid}); TCP connect {ms:.1} ms"),
            ),
        };
    }
    let whence = match p.source {
        PortSource::Flag => "",
        PortSource::Runtime => " (from gateway.json)",
        PortSource::Default => " (the default)",
    };
    if rivals.is_empty() {
        return Finding::ok(id, format!("port {port}{whence} is free"));
    }
    if p.source == PortSource::Default && rivals.iter().all(|h| is_claw_gateway(h)) {
        return Finding::info(
            id,
            format!("port {port}{whence} is used by another claw gateway: {rival_text}"),
        )
        .with_hint("run this home's gateway on another port: `claw gateway run --port <port>`");
    }
    Finding::warn(
        id,
        format!("port {port}{whence} is held by {rival_text}: `claw gateway run` on it will fail"),
    )
    .with_hint(format!(
        "stop that process, or run the gateway on another port: `claw gateway run --port <port>` (not {port})"
    ))
}

/// `gateway.multiple`: other claw gateways run on this machine (other homes).
pub fn multiple(others: &[GatewayProcess]) -> Finding {
    let id = ids::GATEWAY_MULTIPLE;
    if others.is_empty() {
        return Finding::ok(id, "no other claw gateway runs on this machine");
    }
    let list: Vec<String> = others
        .iter()
        .map(|g| match &g.home {
            Some(h) => format!("pid {} (home {})", g.pid, h.display()),
            None => format!("pid {} (home unknown)", g.pid),
        })
        .collect();
    Finding::info(
        id,
        format!(
            "{} other claw gateway{} on this machine: {}",
            others.len(),
            if others.len() == 1 { " runs" } else { "s run" },
            list.join(", ")
        ),
    )
}

/// The credential a drift finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The home's shared gateway token; `pinned` is the running gateway's token source when known.
    SharedToken {
        /// The gateway runs with a pinned token (`--token`, `--token-file`, env).
        pinned: Option<bool>,
    },
    /// A device token this home holds for a (remote) gateway (the tunnel's device credentials).
    DeviceToken,
}

/// What a refusal of `cred` means and the exact command that resolves it. Doctor never runs it:
/// minting, rotating and revoking stay with the human.
pub fn drift_advice(cred: Credential, code: &str, reason: &str) -> (String, String) {
    match (cred, code) {
        (Credential::SharedToken { pinned: Some(true) }, crate::protocol::codes::AUTH_TOKEN_MISMATCH) => (
            format!("the gateway refuses this home's gateway.token ({reason}): it runs with a pinned token (--token, --token-file or CLAW_GATEWAY_TOKEN) that differs"),
            "restart it without the pin so it uses gateway.token: `claw gateway stop && claw gateway start`; or keep the pin and give clients that token (`claw health --token …`)".into(),
        ),
        (Credential::SharedToken { .. }, crate::protocol::codes::AUTH_TOKEN_MISMATCH) => (
            format!("the gateway refuses this home's gateway.token ({reason}): the file changed after the gateway started"),
            "restart the gateway to load the file: `claw gateway stop && claw gateway start`; or issue a new token to both: `claw devices rotate-token --shared --force`".into(),
        ),
        (Credential::DeviceToken, crate::protocol::codes::AUTH_DEVICE_TOKEN_ROTATED) => (
            format!("the gateway rotated its device tokens behind this device ({reason})"),
            "reconnect through the tunnel (`claw tunnel up` re-pairs and fetches a new token); if that fails, pair again: `claw tunnel pair <uri>` with a URI from `claw pair` on the gateway".into(),
        ),
        (Credential::DeviceToken, crate::protocol::codes::AUTH_DEVICE_REVOKED) => (
            format!("the gateway revoked this device ({reason})"),
            "re-pairing will not help until the gateway's operator runs `claw devices remove <id>`; then `claw tunnel pair <uri>`".into(),
        ),
        (Credential::DeviceToken, crate::protocol::codes::AUTH_TOKEN_MISMATCH) => (
            format!("the gateway does not know this device's token ({reason}): the device was removed or the gateway's store replaced"),
            "pair again: `claw tunnel pair <uri>` with a URI from `claw pair` on the gateway".into(),
        ),
        (Credential::SharedToken { .. }, _) => (
            format!("the gateway refuses this home's gateway.token: {reason} ({code})"),
            "check how the gateway was started (`claw gateway status`); `claw devices rotate-token --shared --force` issues a new shared token".into(),
        ),
        (Credential::DeviceToken, _) => (
            format!("the gateway refuses this device: {reason} ({code})"),
            "pair again: `claw tunnel pair <uri>`".into(),
        ),
    }
}

/// `token.drift`: does the running gateway accept this home's shared token?
pub fn token_drift(t: &TokenFacts, gw: Option<u32>, token_path: &Path) -> Finding {
    let id = ids::TOKEN_DRIFT;
    let Some(pid) = gw else {
        return Finding::info(id, "not checked: no gateway runs on this home");
    };
    let pinned = t.gateway_source.as_deref().map(|s| s == "pinned");
    if !t.home_token_present {
        return match pinned {
            Some(true) => Finding::info(
                id,
                format!("the gateway (pid {pid}) runs with a pinned token; this home keeps no gateway.token to compare"),
            ),
            Some(false) => Finding::warn(
                id,
                format!("{} is missing although the gateway (pid {pid}) generated its token: the next start generates a new one and clients holding the current one drift", token_path.display()),
            )
            .with_hint("write a fresh token and keep it: `claw devices rotate-token --shared --force` (clients must then use the new token)"),
            None => Finding::info(id, "not checked: this home has no gateway.token"),
        };
    }
    match &t.probe {
        CredentialProbe::NotChecked { why } => Finding::info(id, format!("not checked: {why}")),
        CredentialProbe::Accepted { latency_ms } => Finding::ok(
            id,
            format!("the gateway (pid {pid}) accepts this home's shared token (connect + health {latency_ms:.1} ms)"),
        ),
        CredentialProbe::Failed { error } => {
            Finding::warn(id, format!("could not check the shared token: {error}"))
        }
        CredentialProbe::Refused { code, reason } => {
            let (msg, hint) = drift_advice(Credential::SharedToken { pinned }, code, reason);
            Finding::error(id, msg).with_hint(hint)
        }
    }
}

/// `token.drift.device`: is the device token this home holds still of the gateway's generation?
/// (Answered by a read-only probe over the tunnel; doctor never fetches or stores a token.)
pub fn device_drift(d: &DeviceCredentialFacts) -> Finding {
    let id = ids::DEVICE_DRIFT;
    match d {
        DeviceCredentialFacts::NotPaired => Finding::ok(id, "this home holds no device credentials"),
        DeviceCredentialFacts::Checked { stored_generation, gateway_generation } => {
            if stored_generation == gateway_generation {
                Finding::ok(id, format!("the device token is of the gateway's current generation ({gateway_generation})"))
            } else if *stored_generation == 0 {
                Finding::info(id, format!("the stored device token's generation is unknown; the gateway is at {gateway_generation} (`claw tunnel up` records it)"))
            } else {
                let (msg, hint) = drift_advice(
                    Credential::DeviceToken,
                    crate::protocol::codes::AUTH_DEVICE_TOKEN_ROTATED,
                    &format!("stored token of generation {stored_generation}, gateway at {gateway_generation}"),
                );
                Finding::error(id, msg).with_hint(hint)
            }
        }
        DeviceCredentialFacts::Refused { code, reason } => {
            let wire = if code == "revoked" { crate::protocol::codes::AUTH_DEVICE_REVOKED } else { crate::protocol::codes::AUTH_TOKEN_MISMATCH };
            let (msg, hint) = drift_advice(Credential::DeviceToken, wire, reason);
            Finding::error(id, msg).with_hint(hint)
        }
        DeviceCredentialFacts::Unreachable { error } => Finding::warn(
            id,
            format!("could not reach the gateway this device paired with: {error}"),
        )
        .with_hint("check the network and the gateway (`claw gateway status` on its host); `claw tunnel status` here"),
    }
}

/// `clock.skew`: the system clock is not earlier than the newest record the store wrote.
pub fn clock_skew(now_ms: u64, newest_ms: Option<u64>) -> Finding {
    let id = ids::CLOCK_SKEW;
    match newest_ms {
        None => Finding::ok(id, "no store records to compare the clock with"),
        Some(t) if t > now_ms.saturating_add(CLOCK_TOLERANCE_MS) => Finding::warn(
            id,
            format!(
                "the system clock is {} behind the store's newest record: it went backwards",
                human_duration(t - now_ms)
            ),
        )
        .with_hint("fix the clock (`timedatectl set-ntp true`): pairing expiry and token ages are computed from it"),
        Some(_) => Finding::ok(id, "the system clock is not behind the store's records"),
    }
}

/// What the QUIC tunnel asks for per UDP socket.
pub const TUNNEL_SOCKET_BUFFER: u64 = claw_proto::tunnel::SOCKET_BUFFER;

/// `udp.buffers`: the kernel lets the tunnel's UDP sockets have the buffers it asks for. With
/// the usual ~208 KiB cap, bulk transfers overflow the receive queue and lose packets. Reported
/// as info (the tunnel works, only slower) and never fixed: it is a system-wide setting.
pub fn udp_buffers(uses_tunnel: bool, max: Option<(u64, u64)>) -> Finding {
    let id = ids::UDP_BUFFERS;
    let Some((r, w)) = max else {
        return Finding::ok(id, "socket buffer caps unreadable; nothing to check");
    };
    if !uses_tunnel {
        return Finding::ok(id, "the QUIC tunnel is not used here");
    }
    if r >= TUNNEL_SOCKET_BUFFER && w >= TUNNEL_SOCKET_BUFFER {
        return Finding::ok(
            id,
            format!(
                "UDP socket buffers may grow to the {} KiB the tunnel asks for",
                TUNNEL_SOCKET_BUFFER / 1024
            ),
        );
    }
    Finding::info(
        id,
        format!(
            "the kernel caps socket buffers at {} KiB receive / {} KiB send; the tunnel asks for {} KiB, so bulk transfers through it lose packets and slow down",
            r / 1024,
            w / 1024,
            TUNNEL_SOCKET_BUFFER / 1024
        ),
    )
    .with_hint(format!(
        "as root: `sysctl -w net.core.rmem_max={TUNNEL_SOCKET_BUFFER} net.core.wmem_max={TUNNEL_SOCKET_BUFFER}` (persist it in /etc/sysctl.d/); then restart the gateway and `claw tunnel up`"
    ))
}

/// `tunnel.listener` / `ssh.listener`: a remote-access listener is up with its key, or not
/// configured.
pub fn listener(id: &'static str, name: &str, l: &ListenerFacts, how: &str) -> Finding {
    match l {
        ListenerFacts::NotConfigured => {
            Finding::info(id, format!("{name}: not configured")).with_hint(how)
        }
        ListenerFacts::Up { addr, fingerprint } => Finding::ok(
            id,
            match fingerprint {
                Some(f) => format!("{name} up on {addr}, key fingerprint {f}"),
                None => format!("{name} up on {addr}"),
            },
        ),
        ListenerFacts::Down { addr, error } => {
            Finding::error(id, format!("{name} on {addr} is down: {error}")).with_hint(RESTART)
        }
    }
}

mod storage;

pub mod relay;

#[cfg(test)]
mod tests;
