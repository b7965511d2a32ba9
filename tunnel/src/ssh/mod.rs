//! The built-in SSH forward (`claw gateway run --ssh`): a russh server that does exactly one
//! thing — `direct-tcpip` (`ssh -N -L`) to the loopback gateway, and to exposed services, for the
//! keys of paired, non-revoked devices.
//!
//! Public-key authentication only (Ed25519, the device's identity key). Sessions, shells, exec,
//! subsystems, `-R` (`tcpip-forward`), agent and X11 forwarding and every other destination are
//! refused with the proper SSH failure and logged. Unauthenticated connections are capped and get
//! an auth deadline; channels per session are capped.

pub mod policy;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use claw_gateway::auth::decide::Origin;
use claw_gateway::presence::{Link, Transport};
use claw_gateway::service::KeyStatus;
use claw_gateway::state::{GatewayEvent, GatewayState};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{watch, Semaphore};

use crate::identity::{device_id_of_ssh_key, Identity};
use policy::{Target, TargetPolicy};

/// SSH forward settings.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// TCP address to listen on.
    pub listen: SocketAddr,
    /// Connections that have not authenticated yet, at most (like OpenSSH's `MaxStartups`).
    pub max_unauthenticated: usize,
    /// Of those, at most this many from one source address (like OpenSSH's
    /// `PerSourceMaxStartups`): one address holding connections open cannot fill the global cap
    /// and lock paired devices out until the auth deadline.
    pub max_unauthenticated_per_source: usize,
    /// Time to authenticate.
    pub auth_timeout: Duration,
    /// A session with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Channels open at once per session.
    pub max_channels: usize,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 18722)),
            max_unauthenticated: 64,
            max_unauthenticated_per_source: 10,
            auth_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(600),
            max_channels: 64,
        }
    }
}

/// What a running SSH forward reports.
#[derive(Debug, Clone)]
pub struct SshInfo {
    /// Bound address.
    pub addr: SocketAddr,
    /// Host key fingerprint (`SHA256:…`).
    pub fingerprint: String,
    /// The host key as an OpenSSH public key line.
    pub host_key: String,
}

impl SshInfo {
    /// A `known_hosts` line for `host` (bracketed with the port unless it is 22).
    pub fn known_hosts_line(&self, host: &str) -> String {
        let key: Vec<&str> = self.host_key.split_whitespace().take(2).collect();
        let port = self.addr.port();
        let h = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => host.to_string(),
        };
        let pattern = if port == 22 {
            h
        } else if h.starts_with('[') {
            format!("{h}:{port}")
        } else {
            format!("[{h}]:{port}")
        };
        format!("{pattern} {}", key.join(" "))
    }
}

/// Errors starting the SSH forward.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// Binding failed.
    #[error("cannot listen for SSH on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Ciphers offered, in order: russh's defaults plus `aes128-gcm@openssh.com`, which russh
/// implements but does not offer by default — `ssh -c aes128-gcm@openssh.com` (the usual advice
/// for the fastest OpenSSH cipher, and OpenSSH's own server offers it) would otherwise fail with
/// "no matching cipher found". The client's order decides; OpenSSH's default picks chacha20.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

fn russh_config(identity: &Identity, cfg: &SshConfig) -> Arc<russh::server::Config> {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard(format!("SSH-2.0-claw_{}", claw_gateway::VERSION).into()),
        methods,
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![identity.ssh_private_key()],
        max_auth_attempts: 6,
        inactivity_timeout: Some(cfg.idle_timeout),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Binds the SSH forward; `gateway_addrs` are the gateway's actual WebSocket addresses.
pub async fn bind(
    state: Arc<GatewayState>,
    identity: &Identity,
    cfg: SshConfig,
    gateway_addrs: Vec<SocketAddr>,
    exposes: HashMap<String, SocketAddr>,
) -> Result<(SshInfo, impl std::future::Future<Output = ()>), SshError> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| SshError::Bind {
            addr: cfg.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SshError::Bind {
        addr: cfg.listen.to_string(),
        source,
    })?;
    let info = SshInfo {
        addr,
        fingerprint: identity.ssh_fingerprint(),
        host_key: identity.ssh_public_openssh(),
    };
    let config = russh_config(identity, &cfg);
    let policy = Arc::new(TargetPolicy::new(gateway_addrs, exposes));
    let preauth = Arc::new(Semaphore::new(cfg.max_unauthenticated));
    let per_source = claw_gateway::limits::PerKeyLimit::new(cfg.max_unauthenticated_per_source);
    let fut = async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            // Caps on unauthenticated connections, per source address first, then overall: a
            // scanner or slowloris gets nothing.
            let Some(source_slot) = per_source.try_take(peer.ip()) else {
                tracing::info!(%peer, "ssh: too many unauthenticated connections from this address; dropped");
                continue;
            };
            let Ok(permit) = preauth.clone().try_acquire_owned() else {
                tracing::info!(%peer, "ssh: too many unauthenticated connections; dropped");
                continue;
            };
            let permit = (permit, source_slot);
            let (authed_tx, mut authed_rx) = watch::channel(None::<String>);
            // Subscribed before authentication: a revocation after the key was checked is seen.
            let mut events = state.events.subscribe();
            let watch_state = state.clone();
            let handler = Handler {
                state: state.clone(),
                policy: policy.clone(),
                peer,
                device_id: None,
                channels: Arc::new(AtomicUsize::new(0)),
                max_channels: cfg.max_channels,
                authed: authed_tx,
            };
            let config = config.clone();
            let auth_timeout = cfg.auth_timeout;
            // A second handle on the socket: at the auth deadline, or when the device is revoked,
            // it is shut down, which ends the connection whatever russh is waiting for (russh
            // runs the session in a task of its own that dropping its handle does not stop, and
            // reads the client's banner with only the 10-minute inactivity timeout).
            let Ok((tcp, cutoff)) = tcp.into_std().and_then(|s| {
                let cutoff = s.try_clone()?;
                Ok((tokio::net::TcpStream::from_std(s)?, cutoff))
            }) else {
                continue;
            };
            tokio::spawn(async move {
                let mut permit = Some(permit);
                let mut cutoff = Some(cutoff);
                let deadline = tokio::time::Instant::now() + auth_timeout;
                let cut = |c: &mut Option<std::net::TcpStream>| {
                    if let Some(c) = c.take() {
                        let _ = c.shutdown(std::net::Shutdown::Both);
                    }
                };
                let start = russh::server::run_stream(config, tcp, handler);
                let session = match tokio::time::timeout_at(deadline, start).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = ?e, "ssh: handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%peer, "ssh: no identification before the auth deadline");
                        cut(&mut cutoff);
                        return;
                    }
                };
                let handle = session.handle();
                tokio::pin!(session);
                let deadline = tokio::time::sleep_until(deadline);
                tokio::pin!(deadline);
                let mut device: Option<String> = None;
                // The device's presence while its SSH session lives.
                let mut _link: Option<Link> = None;
                loop {
                    tokio::select! {
                        r = &mut session => {
                            if let Err(e) = r {
                                tracing::debug!(%peer, error = ?e, "ssh: session ended");
                            }
                            return;
                        }
                        ok = async { authed_rx.wait_for(Option::is_some).await.map(|id| id.clone()) }, if permit.is_some() => {
                            if let Ok(id) = ok {
                                _link = id.as_deref().map(|d| Link::open(&watch_state, d, Transport::Ssh));
                                device = id;
                                permit = None; // authenticated: no longer counts against the cap
                            }
                        }
                        _ = &mut deadline, if permit.is_some() => {
                            tracing::info!(%peer, "ssh: authentication timed out");
                            cut(&mut cutoff);
                            return;
                        }
                        ev = events.recv(), if device.is_some() => {
                            let id = device.as_deref().unwrap_or_default();
                            let cut_off = match ev {
                                Ok(GatewayEvent::DeviceRevoked { device_id } | GatewayEvent::DeviceRemoved { device_id }) => device_id == id,
                                Ok(_) => false,
                                // Missed events: ask the store.
                                Err(RecvError::Lagged(_)) => !device_is_trusted(&watch_state, id),
                                Err(RecvError::Closed) => false,
                            };
                            if cut_off {
                                // Revoked or removed: the session and every channel in it end
                                // now. A polite disconnect first, then the socket itself.
                                tracing::info!(%peer, device = %id, "ssh: session of a revoked device disconnected");
                                let polite = async {
                                    let _ = handle.disconnect(russh::Disconnect::ByApplication, "device revoked".into(), String::new()).await;
                                    let _ = (&mut session).await;
                                };
                                let _ = tokio::time::timeout(Duration::from_secs(1), polite).await;
                                cut(&mut cutoff);
                                return;
                            }
                        }
                    }
                }
            });
        }
    };
    Ok((info, fut))
}

struct Handler {
    state: Arc<GatewayState>,
    policy: Arc<TargetPolicy>,
    peer: SocketAddr,
    device_id: Option<String>,
    channels: Arc<AtomicUsize>,
    max_channels: usize,
    /// Set to the device id once authenticated.
    authed: watch::Sender<Option<String>>,
}

/// Paired and not revoked, by device id (the one check of login, every channel open and a
/// session's watch for revocations).
fn device_is_trusted(state: &GatewayState, device_id: &str) -> bool {
    claw_gateway::service::key_status(state, device_id).is_trusted()
}

impl Handler {
    fn audit(&self, event: &str, detail: &str) {
        self.state.audit(
            event,
            self.device_id.as_deref(),
            Some("ssh"),
            &format!("from={} {detail}", self.peer),
        );
    }

    /// Paired and not revoked? `Err(None)` = the store could not answer (a fault): the caller
    /// drops the connection instead of refusing the key, so the client is never told its key
    /// is wrong and simply retries.
    fn trusted(&self, key: &russh::keys::PublicKey) -> Result<String, Option<&'static str>> {
        let id = device_id_of_ssh_key(key).ok_or(Some("not an Ed25519 key"))?;
        match claw_gateway::service::key_status(&self.state, &id) {
            KeyStatus::Paired => Ok(id),
            KeyStatus::Revoked => Err(Some("revoked device key")),
            KeyStatus::Unpaired => Err(Some("unknown key")),
            KeyStatus::Unavailable => {
                tracing::error!(peer = %self.peer, "ssh: the store cannot say whether a key is paired; closing (the client retries)");
                Err(None)
            }
        }
    }

    /// Logs and audits a refusal. `what` may carry client-chosen text (a forward destination):
    /// escaped, so a newline cannot forge a log line or an audit row.
    fn refuse(&self, what: &str) {
        let what = claw_gateway::text::escape(what);
        tracing::info!(peer = %self.peer, device = ?self.device_id, "ssh: refused {what}");
        self.audit("ssh.refused", &what);
    }
}

/// Guard that frees a channel slot when the forwarded connection ends.
struct ChannelSlot(Arc<AtomicUsize>);

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        match self.trusted(offer.public_key) {
            Ok(_) => Ok(Auth::Accept),
            Err(Some(why)) => {
                self.audit("ssh.auth.refused", why);
                Ok(Auth::reject())
            }
            Err(None) => Err(russh::Error::Disconnect),
        }
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        match self.trusted(key.public_key) {
            Ok(id) => {
                self.device_id = Some(id);
                Ok(Auth::Accept)
            }
            Err(Some(why)) => {
                self.audit("ssh.auth.refused", why);
                Ok(Auth::reject())
            }
            Err(None) => Err(russh::Error::Disconnect),
        }
    }

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        self.audit(
            "ssh.auth.refused",
            "password authentication is not accepted",
        );
        Ok(Auth::reject())
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, device = ?self.device_id, "ssh: authenticated");
        let _ = self.authed.send(self.device_id.clone());
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        _c: Channel<Msg>,
        reply: ChannelOpenHandle,
        _s: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(
            "a session channel (shell/exec/subsystem): only ssh -N -L forwarding is served",
        );
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _c: Channel<Msg>,
        _a: &str,
        _p: u32,
        reply: ChannelOpenHandle,
        _s: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("X11 forwarding");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _c: Channel<Msg>,
        path: &str,
        reply: ChannelOpenHandle,
        _s: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(&format!("a Unix socket forward to {path:?}"));
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _s: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse(&format!("remote forwarding (-R) of {address}:{port}"));
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        path: &str,
        _s: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse(&format!("remote Unix socket forwarding of {path:?}"));
        Ok(false)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(device_id) = self.device_id.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        // Every channel re-checks the key: a device revoked since login opens nothing.
        if !device_is_trusted(&self.state, &device_id) {
            self.refuse("a channel of a revoked or removed device");
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.state
            .presence()
            .touch(&device_id, Some(Transport::Ssh), claw_home::now_ms());
        let Some(target) = self.policy.resolve(host, port) else {
            self.refuse(&format!(
                "a forward to {host}:{port} (only the gateway port and exposed services)"
            ));
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if self.channels.fetch_add(1, Ordering::Relaxed) >= self.max_channels {
            self.channels.fetch_sub(1, Ordering::Relaxed);
            self.refuse("a channel beyond the per-session cap");
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        let slot = ChannelSlot(self.channels.clone());
        reply.accept().await;
        let state = self.state.clone();
        let ip = self.peer.ip();
        let stream = channel.into_stream();
        tokio::spawn(async move {
            let _slot = slot;
            match target {
                Target::Gateway => {
                    claw_gateway::server::serve_stream(state, stream, ip, Origin::ssh(device_id))
                        .await;
                }
                Target::Exposed(addr) => {
                    if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await {
                        let _ = tcp.set_nodelay(true);
                        let mut stream = stream;
                        let _ = tokio::io::copy_bidirectional_with_sizes(
                            &mut stream,
                            &mut tcp,
                            64 * 1024,
                            64 * 1024,
                        )
                        .await;
                    }
                }
            }
        });
        Ok(())
    }
}
