//! The whole gateway in-process: WebSocket listener and admin socket, the QUIC tunnel, relay
//! links, the SSH forward, the rotation schedule and the runtime file. `claw gateway run` is a
//! thin caller (flags → [`DaemonConfig`], signals, the ready line); tests start it directly.
//!
//! It lives in the `claw` crate, not in `claw-gateway`, because it starts the tunnel and the
//! SSH forward, and `claw-tunnel` depends on `claw-gateway`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use claw_gateway::home::{read_secret, write_secret_atomic, Home};
use claw_gateway::lock::{GatewayLock, LockError};
use claw_gateway::runtime_file::{RuntimeFile, RuntimeRelay, RuntimeSsh, RuntimeTunnel};
use claw_gateway::server::ServerError;
use claw_gateway::state::{GatewayConfig, GatewayState, TokenSource};
use claw_gateway::store::Store;
use claw_tunnel::identity::Identity;

/// Builds the control page's pairing-URI function for a tunnel (the CLI's QR renderer).
pub type PagePairUri = fn(PagePair) -> claw_gateway::web::PairUriFn;

/// What the control page's pairing URI is made from: the same facts `claw pair` reads from the
/// runtime file (the tunnel's address, the relays with their pins, the gateway's key).
#[derive(Debug, Clone)]
pub struct PagePair {
    /// The gateway's fingerprint.
    pub gateway_id: String,
    /// The direct tunnel's bound address, when `--tunnel` runs.
    pub tunnel: Option<SocketAddr>,
    /// The relays (`--relay`), as the runtime file lists them.
    pub relays: Vec<claw_mesh::client::RelayTarget>,
    /// The gateway key's seed (relay pairing tickets are signed with it).
    pub seed: [u8; 32],
}

/// What to run.
pub struct DaemonConfig {
    /// The home (created 0700 if missing).
    pub home: Home,
    /// The WebSocket gateway's tunables (listen addresses already checked by `bind_guard`).
    pub gateway: GatewayConfig,
    /// A pinned shared token; `None`: the home's generated one (made on first start).
    pub pinned_token: Option<String>,
    /// The QUIC tunnel's UDP address (`--tunnel`).
    pub tunnel: Option<SocketAddr>,
    /// The SSH forward's TCP address (`--ssh`).
    pub ssh: Option<SocketAddr>,
    /// Relays to dial out to (`--relay`).
    pub relays: Vec<claw_mesh::client::RelayTarget>,
    /// Loopback services reachable by name through the tunnel or SSH (`--expose`).
    pub exposes: HashMap<String, SocketAddr>,
    /// Tunnel pairing attempts per minute from one source.
    pub pair_attempts_per_min: u32,
    /// The control page's pairing link and QR code for the tunnel, if any.
    pub page_pair_uri: Option<PagePairUri>,
    /// Upstream mode: claw in front of a real OpenClaw gateway (`--upstream`).
    pub upstream: Option<claw_gateway::upstream::UpstreamConfig>,
}

impl DaemonConfig {
    /// A loopback-only gateway on an ephemeral port of 127.0.0.1 (tests, embedding).
    pub fn loopback(home: Home) -> Self {
        Self {
            home,
            gateway: GatewayConfig {
                listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
                ..GatewayConfig::default()
            },
            pinned_token: None,
            tunnel: None,
            ssh: None,
            relays: Vec::new(),
            exposes: HashMap::new(),
            pair_attempts_per_min: 30,
            page_pair_uri: None,
            upstream: None,
        }
    }
}

/// Why the daemon did not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another gateway holds the home's lock.
    #[error("a claw gateway is already running on {home} (pid {pid}); stop it with `claw gateway stop` or use another --home")]
    Locked {
        /// The home.
        home: String,
        /// The holder.
        pid: u32,
    },
    /// The configuration cannot run (a schedule too short, `--expose` without a transport, an
    /// unreadable origins file, an empty token file).
    #[error("{0}")]
    Config(String),
    /// A listener or transport could not start.
    #[error("{0}")]
    Start(String),
    /// Anything else (home, store, identity, runtime file).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A running gateway. Drop does not stop it: call [`Daemon::shutdown`] then [`Daemon::join`].
pub struct Daemon {
    state: Arc<GatewayState>,
    /// The bound WebSocket addresses (ports resolved).
    pub addrs: Vec<SocketAddr>,
    /// `ws://` URL of the first address.
    pub url: String,
    /// The tunnel's bound address and the gateway id (its key fingerprint), if running.
    pub tunnel: Option<(SocketAddr, String)>,
    /// The SSH forward, if running.
    pub ssh: Option<claw_tunnel::ssh::SshInfo>,
    /// The gateway id when relays are used.
    pub relays: Vec<claw_mesh::client::RelayTarget>,
    server: tokio::task::JoinHandle<Result<(), ServerError>>,
    relay_links: Vec<claw_mesh::socket::RelayLink>,
    _lock: GatewayLock,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("url", &self.url)
            .field("tunnel", &self.tunnel)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts everything, writes the runtime file and returns once every listener is bound.
    pub async fn start(cfg: DaemonConfig) -> Result<Daemon, DaemonError> {
        let home = cfg.home.clone();
        home.ensure()
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", home.root().display()))?;
        let lock = match GatewayLock::acquire(&home.lock_path()) {
            Ok(l) => l,
            Err(LockError::Held { pid }) => {
                return Err(DaemonError::Locked {
                    home: home.root().display().to_string(),
                    pid,
                })
            }
            Err(e) => return Err(anyhow::Error::from(e).into()),
        };
        if let Some(every) = cfg.gateway.rotate_every {
            if every < claw_gateway::rotation::MIN_EVERY {
                return Err(DaemonError::Config(format!(
                    "--rotate-every {}: the shortest schedule is {}",
                    humantime::format_duration(every),
                    humantime::format_duration(claw_gateway::rotation::MIN_EVERY)
                )));
            }
        }
        if !cfg.exposes.is_empty()
            && cfg.tunnel.is_none()
            && cfg.ssh.is_none()
            && cfg.relays.is_empty()
        {
            return Err(DaemonError::Config(
                "--expose needs --tunnel, --relay or --ssh (it is how devices reach the service)"
                    .into(),
            ));
        }
        claw_gateway::origin::load(home.root()).map_err(|e| DaemonError::Config(e.to_string()))?;
        let (token, source) = match cfg.pinned_token {
            Some(t) => (t, TokenSource::Pinned),
            None => (generated_token(&home)?, TokenSource::Generated),
        };
        let store = Store::open(&home.store_path())
            .map_err(|e| anyhow::anyhow!("cannot open the state store (run `claw doctor`): {e}"))?;
        let state = GatewayState::new(home.clone(), cfg.gateway, store, token, source);
        // The gateway's identity signs the proof local clients check before they send a secret
        // (and is the tunnel's and SSH's key when those run).
        let identity = Identity::load_or_create(&home.root().join("identity.key"))
            .map_err(anyhow::Error::from)?;
        let _ = state.identity.set(identity.key().clone());
        if let Some(ucfg) = cfg.upstream {
            if let Err(e) = ucfg.credential.read() {
                // Not fatal: the credential is re-read at every upstream connect, and a device
                // token claw already holds may still serve.
                tracing::warn!(error = %e, "the upstream credential is not readable yet");
            }
            let up = claw_gateway::upstream::Upstream::new(ucfg, home.root());
            let _ = state.upstream.set(up.clone());
            tokio::spawn(claw_gateway::upstream::link::probe(state.clone(), up));
        }
        // With relays, paired devices are handed relay tickets (on every transport: a device
        // paired on the direct tunnel may come back through a relay).
        let relay_tickets = (!cfg.relays.is_empty())
            .then(|| claw_mesh::ticket::TicketSigner::new(*identity.key().seed()));
        // Filled once the SSH forward is bound (after the tunnel): devices learn it at pairing.
        let ssh_hint: Arc<OnceLock<claw_tunnel::control::SshHint>> = Default::default();
        let tunnel = match cfg.tunnel {
            Some(listen) => {
                let tcfg = claw_tunnel::quic::server::TunnelConfig {
                    listen,
                    exposes: cfg.exposes.clone(),
                    pair_attempts_per_min: cfg.pair_attempts_per_min.max(1),
                    ssh: ssh_hint.clone(),
                    relay_tickets: relay_tickets.clone(),
                    ..Default::default()
                };
                let (endpoint, serving) =
                    claw_tunnel::quic::server::bind(state.clone(), &identity, tcfg)
                        .map_err(|e| DaemonError::Start(e.to_string()))?;
                let local = endpoint
                    .local_addr()
                    .map_err(|e| DaemonError::Start(e.to_string()))?;
                tokio::spawn(claw_tunnel::quic::server::serve(
                    state.clone(),
                    endpoint,
                    serving,
                ));
                Some((local, identity.id().to_string()))
            }
            None => None,
        };
        // Each relay: a dialled-out link and a tunnel endpoint on it (kept for the gateway's life).
        let mut relay_links = Vec::new();
        for target in &cfg.relays {
            let (socket, link) = claw_mesh::socket::RelaySocket::spawn(
                target.clone(),
                *identity.key().seed(),
                tokio::sync::watch::channel(None).1,
                claw_mesh::socket::Peers::Any,
            );
            let tcfg = claw_tunnel::quic::server::TunnelConfig {
                exposes: cfg.exposes.clone(),
                pair_attempts_per_min: cfg.pair_attempts_per_min.max(1),
                ssh: ssh_hint.clone(),
                relay_tickets: relay_tickets.clone(),
                ..Default::default()
            };
            let (endpoint, serving) =
                claw_tunnel::quic::server::bind_relay(state.clone(), &identity, tcfg, socket)
                    .map_err(|e| DaemonError::Start(e.to_string()))?;
            tokio::spawn(claw_tunnel::quic::server::serve(
                state.clone(),
                endpoint,
                serving,
            ));
            relay_links.push(link);
        }
        if let Some(make) = cfg
            .page_pair_uri
            .filter(|_| tunnel.is_some() || !cfg.relays.is_empty())
        {
            let _ = state
                .web
                .pair_uri
                .set(claw_gateway::web::PairUri(make(PagePair {
                    gateway_id: identity.id().to_string(),
                    tunnel: tunnel.as_ref().map(|(a, _)| *a),
                    relays: cfg.relays.clone(),
                    seed: *identity.key().seed(),
                })));
        }
        if let Some(every) = state.config.rotate_every {
            tokio::spawn(claw_gateway::rotation::run(state.clone(), every));
        }
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(claw_gateway::server::run(state.clone(), ready_tx));
        let ready = match ready_rx.await {
            Ok(r) => r,
            Err(_) => {
                return Err(match server.await {
                    Ok(Err(e)) => DaemonError::Start(e.to_string()),
                    _ => DaemonError::Start("the gateway failed to start".into()),
                })
            }
        };
        let url = format!("ws://{}", ready.addrs[0]);
        let ssh = match cfg.ssh {
            Some(listen) => {
                let scfg = claw_tunnel::ssh::SshConfig {
                    listen,
                    ..Default::default()
                };
                let started = claw_tunnel::ssh::bind(
                    state.clone(),
                    &identity,
                    scfg,
                    ready.addrs.clone(),
                    cfg.exposes.clone(),
                )
                .await;
                let (info, serving) = match started {
                    Ok(s) => s,
                    Err(e) => {
                        state.request_shutdown();
                        let _ = server.await;
                        return Err(DaemonError::Start(e.to_string()));
                    }
                };
                let _ = ssh_hint.set(claw_tunnel::control::SshHint {
                    port: info.addr.port(),
                    gateway_port: ready.addrs[0].port(),
                    host_key: info.host_key.clone(),
                });
                let stop = state.clone();
                tokio::spawn(async move {
                    let mut rx = stop.shutdown.subscribe();
                    tokio::select! { _ = serving => {}, _ = rx.wait_for(|s| *s) => {} }
                });
                Some(info)
            }
            None => None,
        };
        let daemon = Daemon {
            state,
            addrs: ready.addrs,
            url,
            tunnel,
            ssh,
            relays: cfg.relays,
            server,
            relay_links,
            _lock: lock,
        };
        if let Err(e) = daemon.runtime_file(&identity).write(&home) {
            daemon.shutdown();
            let _ = daemon.join().await;
            return Err(anyhow::anyhow!("cannot write the runtime file: {e}").into());
        }
        Ok(daemon)
    }

    /// The runtime file's contents (`gateway.json`), what `gateway status` and clients read.
    fn runtime_file(&self, identity: &Identity) -> RuntimeFile {
        RuntimeFile {
            pid: std::process::id(),
            url: self.url.clone(),
            port: self.addrs[0].port(),
            addrs: self.addrs.iter().map(|a| a.to_string()).collect(),
            admin_socket: self.state.home.admin_socket_path(),
            started_at_ms: claw_gateway::now_ms(),
            tunnel: self.tunnel.as_ref().map(|(addr, id)| RuntimeTunnel {
                addr: addr.to_string(),
                gateway_id: id.clone(),
            }),
            ssh: self.ssh.as_ref().map(|info| RuntimeSsh {
                addr: info.addr.to_string(),
                fingerprint: info.fingerprint.to_string(),
                host_key: info.host_key.to_string(),
                known_hosts: crate::hosts::advertised_hosts(info.addr)
                    .iter()
                    .map(|h| info.known_hosts_line(h))
                    .collect(),
            }),
            relays: self
                .relays
                .iter()
                .map(|r| RuntimeRelay {
                    url: r.url.to_string(),
                    pin: r.pin.as_ref().map(|p| p.to_string()),
                })
                .collect(),
            gateway_id: (!self.relays.is_empty()).then(|| identity.id().to_string()),
        }
    }

    /// The shared state (sessions, store, events) — what in-process callers inspect.
    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// The home it runs on.
    pub fn home(&self) -> &Home {
        &self.state.home
    }

    /// Asks every part to stop (what SIGTERM and `gateway.stop` do); [`Daemon::join`] waits.
    pub fn shutdown(&self) {
        self.state.request_shutdown();
    }

    /// Waits until the gateway stopped (after [`Daemon::shutdown`], a signal or
    /// `gateway.stop`), then removes the runtime file and releases the home's lock.
    pub async fn join(self) -> Result<(), DaemonError> {
        let result = self.server.await;
        drop(self.relay_links);
        RuntimeFile::remove(&self.state.home);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DaemonError::Start(e.to_string())),
            Err(e) => Err(DaemonError::Start(format!("gateway task failed: {e}"))),
        }
    }
}

/// The home's generated shared token, made (0600, atomically) on first start.
fn generated_token(home: &Home) -> Result<String, DaemonError> {
    let path = home.shared_token_path();
    match read_secret(&path) {
        Ok(t) if !t.is_empty() => Ok(t),
        Ok(_) => Err(DaemonError::Config(format!(
            "{} is empty; run `claw doctor`",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = claw_gateway::auth::secrets::random_token();
            write_secret_atomic(&path, t.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "generated the shared gateway token");
            Ok(t)
        }
        Err(e) => Err(DaemonError::Config(e.to_string())),
    }
}
