//! Gathering the facts (IO): files and modes, the lock, the runtime file, the admin socket, the
//! store, `/proc`. Read-only: no lock is taken (inspecting a stale lock flocks it for an instant,
//! as `claw gateway status` does), the store is opened without creating or migrating it.
//!
//! The token probe needs the WebSocket client and is filled in by the CLI
//! ([`Facts::token`] starts as "not checked").

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::checks::DEFAULT_PORT;
use super::facts::{
    Facts, FileFacts, GatewayProcess, ListenerFacts, LockFacts, PendingFacts, PortFacts,
    PortHolder, PortSource, RuntimeFacts, SnapshotFacts, SocketFacts, StorageFacts, StoreFacts,
    StoreReport, TempFile, TokenFacts, WriteLockProbe,
};
use super::procfs;
use crate::home::{Home, TMP_SUFFIX};
use crate::lock::{GatewayLock, LockState};
use crate::store::Store;

/// How deep under the home secret and temporary files are looked for.
const MAX_DEPTH: usize = 3;

/// What the caller asks for.
#[derive(Debug, Clone, Default)]
pub struct GatherOptions {
    /// Check this port instead of the gateway's (or the default).
    pub port: Option<u16>,
}

/// Gathers every fact about `home` and the machine (the token probe is left "not checked").
pub fn gather(home: &Home, opts: &GatherOptions) -> Facts {
    let uid = nix::unistd::getuid().as_raw();
    let lock = lock_facts(&home.lock_path());
    let runtime = runtime_facts(&home.runtime_path());
    let gw = lock.holder();
    let store = store_facts(&home.store_path());
    // After the store: opening it may create its -wal/-shm files, which are checked too.
    // The home itself may be a symlink (`~/.claw -> /data/claw`): judge what it points to.
    let home_dir = std::fs::metadata(home.root()).ok().map(|m| FileFacts {
        path: home.root().to_path_buf(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
    });
    let (secrets, temp_files) = if home_dir.is_some() {
        scan_home(home.root())
    } else {
        (Vec::new(), Vec::new())
    };
    let port = port_facts(opts.port, runtime.as_ref(), gw);
    let (tunnel, ssh) = remote_listeners(runtime.as_ref(), gw);
    Facts {
        home: home.root().to_path_buf(),
        uid,
        now_ms: crate::now_ms(),
        home_dir,
        secrets,
        lock,
        runtime,
        admin_socket: socket_facts(&home.admin_socket_path()),
        store,
        temp_files,
        port,
        other_gateways: other_gateways(home.root(), gw),
        token: TokenFacts {
            home_token_present: home.shared_token_path().exists(),
            ..TokenFacts::default()
        },
        tunnel,
        ssh,
        device: super::facts::DeviceCredentialFacts::NotPaired,
        socket_buffer_max: socket_buffer_max(),
        storage: storage_facts(home),
        snapshots: snapshot_facts(&home.store_path()),
        upstream: None,
        relays: Vec::new(),
        device_relay: None,
    }
}

fn file_facts(path: &Path) -> Option<FileFacts> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(FileFacts {
        path: path.to_path_buf(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
    })
}

/// Secret files and temporary files under `root` (a few levels deep; symlinks not followed).
fn scan_home(root: &Path) -> (Vec<FileFacts>, Vec<TempFile>) {
    let mut secrets = Vec::new();
    let mut temps = Vec::new();
    let mut dirs: Vec<(PathBuf, usize)> = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if ft.is_dir() {
                if depth + 1 < MAX_DEPTH {
                    dirs.push((path, depth + 1));
                }
                continue;
            }
            if name.ends_with(TMP_SUFFIX) {
                let writer_pid = procfs::tmp_writer_pid(&name);
                temps.push(TempFile {
                    path,
                    writer_pid,
                    // Our own pid cannot be writing: doctor writes nothing.
                    writer_alive: writer_pid
                        .is_some_and(|p| p != std::process::id() && procfs::pid_alive(p)),
                });
            } else if procfs::is_secret_name(&name) {
                if let Some(f) = file_facts(&path) {
                    secrets.push(f);
                }
            }
        }
    }
    (secrets, temps)
}

fn lock_facts(path: &Path) -> LockFacts {
    match GatewayLock::inspect(path) {
        LockState::Absent => LockFacts::Absent,
        LockState::Held { pid } => LockFacts::Held { pid },
        LockState::Stale { pid } => LockFacts::Stale {
            pid,
            pid_alive: procfs::pid_alive(pid),
        },
    }
}

/// Reads `gateway.json` (written by `claw gateway run`).
pub fn runtime_facts(path: &Path) -> Option<RuntimeFacts> {
    let rt = match crate::runtime_file::RuntimeFile::read_path(path) {
        Ok(None) => return None,
        Ok(Some(rt)) => rt,
        Err(e) => {
            return Some(RuntimeFacts {
                error: Some(e.to_string()),
                ..RuntimeFacts::default()
            })
        }
    };
    Some(RuntimeFacts {
        pid: Some(rt.pid),
        url: Some(rt.url),
        port: Some(rt.port).filter(|p| *p != 0),
        addrs: rt.addrs,
        tunnel_addr: rt.tunnel.as_ref().map(|t| t.addr.clone()),
        tunnel_id: rt.tunnel.map(|t| t.gateway_id),
        ssh_addr: rt.ssh.as_ref().map(|s| s.addr.clone()),
        ssh_fingerprint: rt.ssh.map(|s| s.fingerprint),
        error: None,
    })
}

/// Connects to a Unix socket to tell a live listener from an orphan file.
pub fn socket_facts(path: &Path) -> SocketFacts {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => SocketFacts::Answers,
        Err(e) => match e.kind() {
            std::io::ErrorKind::NotFound => SocketFacts::Absent,
            std::io::ErrorKind::ConnectionRefused => SocketFacts::Refused,
            _ if e.raw_os_error() == Some(nix::libc::ENOTSOCK) => SocketFacts::Refused,
            _ => SocketFacts::Failed(e.to_string()),
        },
    }
}

fn store_facts(path: &Path) -> StoreFacts {
    if !path.exists() {
        return StoreFacts::Absent;
    }
    let store = match Store::open_existing(path) {
        Ok(s) => s,
        Err(e) => {
            return StoreFacts::Unreadable {
                error: e.to_string(),
            }
        }
    };
    let s = |e: crate::store::StoreError| e.to_string();
    StoreFacts::Open(StoreReport {
        integrity: store.integrity_problems().map_err(s),
        schema: store.schema_version().map_err(s),
        expired_requests: store.expired_request_count().map_err(s),
        expired_codes: store.expired_code_count().map_err(s),
        pending: store
            .pending()
            .map(|p| {
                p.into_iter()
                    .map(|r| PendingFacts {
                        request_id: r.request_id,
                        device_id: r.device_id,
                        created_at_ms: r.created_at_ms,
                    })
                    .collect()
            })
            .map_err(s),
        newest_record_ms: store.newest_record_ms().map_err(s),
    })
}

/// The home's file system (`statvfs`) and a zero-wait probe of the store's write lock, with the
/// processes that have `state.db` open when it is held.
fn storage_facts(home: &Home) -> StorageFacts {
    let mut f = StorageFacts::default();
    if let Ok(v) = nix::sys::statvfs::statvfs(home.root()) {
        f.read_only = v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
        f.free_bytes = Some(v.blocks_available().saturating_mul(v.fragment_size()));
    }
    // The mount flags do not show everything (ext4's emergency read-only after a disk error
    // leaves them alone): one page written to an unnamed file that vanishes on close.
    match crate::store::probe_write(home.root()) {
        Err(nix::errno::Errno::EROFS) => f.read_only = true,
        Err(nix::errno::Errno::ENOSPC | nix::errno::Errno::EDQUOT) => f.free_bytes = Some(0),
        _ => {}
    }
    let db = home.store_path();
    if !db.exists() {
        return f;
    }
    f.write_lock = match Store::open_existing(&db).and_then(|s| s.write_lock_free()) {
        Ok(true) => WriteLockProbe::Free,
        Ok(false) => WriteLockProbe::Held {
            holders: procfs::processes_with_file_open(&canonical(&db)),
        },
        Err(e) => WriteLockProbe::Failed {
            error: e.to_string(),
        },
    };
    f
}

/// Every snapshot of the store, checked read-only, newest first.
fn snapshot_facts(db: &Path) -> Vec<SnapshotFacts> {
    use crate::store::snapshot;
    snapshot::list(&snapshot::dir_for(db))
        .into_iter()
        .map(|s| {
            let c = snapshot::check(&s.path);
            SnapshotFacts {
                path: s.path,
                taken_at_ms: s.taken_at_ms,
                intact: c.intact,
                generation: c.generation,
                devices: c.devices,
            }
        })
        .collect()
}

fn holders(entries: Vec<procfs::NetEntry>) -> Vec<PortHolder> {
    let inodes: Vec<u64> = entries.iter().map(|e| e.inode).collect();
    let mut procs = procfs::processes_holding(&inodes);
    entries
        .into_iter()
        .map(|e| PortHolder {
            addr: e.local,
            inode: e.inode,
            uid: Some(e.uid),
            processes: procs.remove(&e.inode).unwrap_or_default(),
        })
        .collect()
}

/// Loopback addresses on which something accepts TCP connections on `port`.
fn answering(port: u16) -> Vec<std::net::SocketAddr> {
    [
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ]
    .into_iter()
    .filter(|a| std::net::TcpStream::connect_timeout(a, Duration::from_millis(500)).is_ok())
    .collect()
}

/// The port's facts. Reading `/proc/net/tcp` costs milliseconds (the kernel walks its whole
/// socket table), so it is read only when someone must be named: when a loopback connect to the
/// port succeeds and no gateway of this home answers there, or when the gateway does not answer.
fn port_facts(flag: Option<u16>, rt: Option<&RuntimeFacts>, gw: Option<u32>) -> PortFacts {
    let rt_port = rt.and_then(|r| r.port);
    let (port, source) = match (flag, rt_port) {
        (Some(p), _) => (p, PortSource::Flag),
        (None, Some(p)) => (p, PortSource::Runtime),
        (None, None) => (DEFAULT_PORT, PortSource::Default),
    };
    // Reachability is measured only for the running gateway's own port.
    let connect = match (gw, rt) {
        (Some(_), Some(r)) if r.port == Some(port) => {
            let addr = r
                .addrs
                .first()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], port)));
            let t = Instant::now();
            Some(
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .map(|_| t.elapsed().as_secs_f64() * 1000.0)
                    .map_err(|e| format!("{addr}: {e}")),
            )
        }
        _ => None,
    };
    let (scan, seen) = match &connect {
        // The gateway bound this address itself: nobody else can hold it.
        Some(Ok(_)) => (false, Vec::new()),
        Some(Err(_)) => (true, Vec::new()),
        None => {
            let seen = answering(port);
            (!seen.is_empty(), seen)
        }
    };
    let mut found = Vec::new();
    if scan {
        let listening: Vec<_> = procfs::read_net("tcp")
            .into_iter()
            .filter(|e| e.state == procfs::TCP_LISTEN && e.local.port() == port && e.inode != 0)
            .collect();
        found = holders(listening);
        if found.is_empty() {
            // Something answers but is not in our /proc view (another network namespace).
            found = seen
                .into_iter()
                .map(|addr| PortHolder {
                    addr,
                    inode: 0,
                    uid: None,
                    processes: Vec::new(),
                })
                .collect();
        }
    }
    PortFacts {
        port,
        source,
        holders: found,
        connect,
    }
}

/// The QUIC tunnel and the SSH forward of the running gateway, as `gateway.json` announces them:
/// up when a socket of the gateway's is bound on the announced port (UDP for the tunnel, a
/// listening TCP socket for SSH).
fn remote_listeners(rt: Option<&RuntimeFacts>, gw: Option<u32>) -> (ListenerFacts, ListenerFacts) {
    let (Some(r), Some(pid)) = (rt, gw) else {
        return (ListenerFacts::NotConfigured, ListenerFacts::NotConfigured);
    };
    if r.pid != Some(pid) {
        return (ListenerFacts::NotConfigured, ListenerFacts::NotConfigured);
    }
    let short = |id: &str| id.get(..16).unwrap_or(id).to_string();
    let tunnel = match &r.tunnel_addr {
        Some(addr) => listener_facts(addr, r.tunnel_id.as_deref().map(short), "udp", pid),
        None => ListenerFacts::NotConfigured,
    };
    let ssh = match &r.ssh_addr {
        Some(addr) => listener_facts(addr, r.ssh_fingerprint.clone(), "tcp", pid),
        None => ListenerFacts::NotConfigured,
    };
    (tunnel, ssh)
}

fn listener_facts(addr: &str, fingerprint: Option<String>, proto: &str, pid: u32) -> ListenerFacts {
    let Some(port) = addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port()) else {
        return ListenerFacts::Down {
            addr: addr.to_string(),
            error: "gateway.json holds an unparsable address".into(),
        };
    };
    let bound: Vec<_> = procfs::read_net(proto)
        .into_iter()
        .filter(|e| {
            e.local.port() == port
                && e.inode != 0
                && (proto == "udp" || e.state == procfs::TCP_LISTEN)
        })
        .collect();
    let held = holders(bound)
        .iter()
        .any(|h| h.processes.iter().any(|p| p.pid == pid));
    if held {
        ListenerFacts::Up {
            addr: addr.to_string(),
            fingerprint,
        }
    } else {
        ListenerFacts::Down {
            addr: addr.to_string(),
            error: format!("the gateway (pid {pid}) holds no {proto} socket on port {port}"),
        }
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn other_gateways(home: &Path, gw: Option<u32>) -> Vec<GatewayProcess> {
    let me = std::process::id();
    let ours = canonical(home);
    procfs::claw_gateways()
        .into_iter()
        .filter(|(pid, _, _)| *pid != me && Some(*pid) != gw)
        .filter_map(|(pid, args, cmdline)| {
            let home = procfs::process_home(pid, &args).map(|h| canonical(&h));
            if home.as_deref() == Some(ours.as_path()) {
                // A gateway of this home that does not hold the lock is starting or stopping.
                return None;
            }
            Some(GatewayProcess { pid, home, cmdline })
        })
        .collect()
}

/// `net.core.rmem_max` and `net.core.wmem_max`.
fn socket_buffer_max() -> Option<(u64, u64)> {
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((read("rmem_max")?, read("wmem_max")?))
}
