//! `claw gateway run|start|stop|status|token`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use claw::daemon::{Daemon, DaemonConfig, DaemonError};
use claw_gateway::bind_guard::{check_bind, system_resolve};
use claw_gateway::home::{read_secret, Home};
use claw_gateway::lock::{GatewayLock, LockState};
use claw_gateway::runtime_file::RuntimeFile;
use claw_gateway::state::GatewayConfig;
use serde_json::json;

use super::admin_client::{live_call, running_pid};
use super::{exit, fail};

/// Gateway verbs.
#[derive(Debug, clap::Subcommand)]
pub enum GatewayCmd {
    /// Run the gateway in the foreground.
    Run(Box<RunArgs>),
    /// Start the gateway in the background; waits until it is ready and prints its pid.
    Start(Box<StartArgs>),
    /// Stop the running gateway (graceful: clients get `shutdown` and close 1012).
    Stop {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Show whether the gateway runs, where, and who is connected (exit 3 when not running).
    Status {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// The audit log of auth events (newest first).
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Browser origins allowed to connect (persisted in the home; see `--allow-origin`).
    Origins {
        /// What to do.
        #[command(subcommand)]
        cmd: super::origins::OriginsCmd,
    },
    /// The shared gateway token.
    Token {
        /// Print the token itself (a secret).
        #[arg(long)]
        show: bool,
    },
    /// Install the gateway as a service (systemd user unit by default) and start it.
    Install(super::service::InstallArgs),
    /// Stop and remove the installed service.
    Uninstall(super::service::ScopeArgs),
    /// Restart the installed service.
    Restart(super::service::ScopeArgs),
    /// The gateway's log: the service's journal, or `gateway.log` of `gateway start`.
    Logs(super::service::LogsArgs),
}

/// `gateway start` options: those of `gateway run`, and `--json`.
#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    #[command(flatten)]
    run: RunArgs,
    /// One JSON document.
    #[arg(long)]
    json: bool,
}

/// `gateway run` / `gateway start` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// WebSocket port on loopback (0 = any free port).
    #[arg(long, default_value_t = claw_proto::ports::GATEWAY)]
    port: u16,
    /// Loopback address to listen on: 127.0.0.0/8, ::1 or localhost. Nothing else is accepted.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Shared gateway token (pinned; default: generated once and kept in the home). Prefer
    /// CLAW_GATEWAY_TOKEN or --token-file: argv is readable by every local user.
    #[arg(
        long,
        env = "CLAW_GATEWAY_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// File holding the shared gateway token (Docker secrets); `-` reads it from stdin. Refused
    /// when group/world-readable or owned by another user (not root).
    #[arg(long, env = "CLAW_GATEWAY_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Seconds a client has to send `connect` after the challenge.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    handshake_timeout: u64,
    /// Milliseconds between `tick` events.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    tick_interval_ms: u64,
    /// Milliseconds between WebSocket pings (peers silent for 3 intervals are reaped).
    #[arg(long, default_value_t = 25_000, value_name = "MS")]
    ping_interval_ms: u64,
    /// First delay before answering a wrong secret, doubling per failure up to 5 s.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    auth_fail_delay_ms: u64,
    /// Unauthenticated sockets per source before HTTP 503 (per address on loopback, per device
    /// through the tunnel or SSH).
    #[arg(long, default_value_t = 32)]
    max_preauth: usize,
    /// Sockets open at once on the WebSocket port, counted from accept (before the HTTP head);
    /// over it a new socket is answered 503 and closed. Capped by the open-file limit.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    max_connections: usize,
    /// Start the QUIC tunnel for paired devices (UDP; 0.0.0.0:18790 when given without a value).
    /// The only socket claw opens beyond loopback; nothing crosses it before mutual TLS.
    #[arg(long, num_args = 0..=1, default_missing_value = "0.0.0.0:18790", value_name = "ADDR")]
    tunnel: Option<std::net::SocketAddr>,
    /// Start the built-in SSH forward (TCP; 0.0.0.0:18722 when given without a value): stock
    /// `ssh -N -L` with a paired device's key reaches the gateway.
    #[arg(long, num_args = 0..=1, default_missing_value = "0.0.0.0:18722", value_name = "ADDR")]
    ssh: Option<std::net::SocketAddr>,
    /// Serve paired devices through a relay (`claw relay serve`), dialled out: the gateway
    /// opens no listening socket for it (repeatable). See docs/mesh.md.
    #[arg(long = "relay", value_name = "URL")]
    relay: Vec<String>,
    /// The pin (SHA-256 of the self-signed certificate) of the relay given at the same position
    /// (`--relay A --relay-pin PA --relay B`); a relay without one needs a CA-issued certificate.
    #[arg(long = "relay-pin", value_name = "PIN")]
    relay_pin: Vec<String>,
    /// Pairing attempts allowed per minute from one source address.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pair_attempts_per_min: u32,
    /// Let paired devices reach a loopback service through the tunnel: NAME=127.0.0.1:PORT.
    #[arg(long = "expose", value_name = "NAME=ADDR")]
    expose: Vec<String>,
    /// Rotate the device-token root on a schedule (e.g. 24h): due that long after the last
    /// rotation, which survives restarts; connected devices re-pair over the tunnel at once.
    #[arg(long, value_name = "DURATION")]
    rotate_every: Option<humantime::Duration>,
    /// Through the tunnel or SSH forward, also require the device's token or signature: by
    /// default the transport's authentication of the device key is the credential, so stock
    /// clients on a paired device need no token.
    #[arg(long)]
    strict_device_auth: bool,
    /// Allow a browser origin to open a WebSocket (repeatable): `scheme://host[:port]`, no path,
    /// no wildcard, never `null`. The gateway's own loopback origins are always allowed; a
    /// persistent list is kept with `claw gateway origins add`.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Put claw in front of an OpenClaw gateway on this machine (ws://127.0.0.1:PORT): devices
    /// authenticate to claw, claw carries their calls upstream (docs/upstream.md).
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// File holding the upstream's gateway token (0600); else CLAW_UPSTREAM_TOKEN,
    /// CLAW_UPSTREAM_TOKEN_FILE, or OpenClaw's own config. Re-read at every upstream connect.
    #[arg(long, value_name = "FILE")]
    upstream_token_file: Option<PathBuf>,
    /// OpenClaw's config to read `gateway.auth.token` from (default ~/.openclaw/openclaw.json).
    #[arg(long, value_name = "PATH")]
    upstream_openclaw_config: Option<PathBuf>,
}

/// `--upstream` and where its credential comes from (`None` without `--upstream`).
fn upstream_config(a: &RunArgs) -> anyhow::Result<Option<claw_gateway::upstream::UpstreamConfig>> {
    use claw_gateway::upstream::{parse_upstream_url, CredentialSource, UpstreamConfig};
    let Some(u) = &a.upstream else {
        if a.upstream_token_file.is_some() || a.upstream_openclaw_config.is_some() {
            return Err(fail(
                exit::CONFIG,
                "--upstream-token-file and --upstream-openclaw-config need --upstream",
            ));
        }
        return Ok(None);
    };
    let url = parse_upstream_url(u).map_err(|e| fail(exit::CONFIG, e.to_string()))?;
    let env_file = std::env::var_os("CLAW_UPSTREAM_TOKEN_FILE").map(PathBuf::from);
    let credential = CredentialSource::pick(
        a.upstream_token_file.clone(),
        std::env::var("CLAW_UPSTREAM_TOKEN").ok(),
        env_file,
        a.upstream_openclaw_config.clone(),
        std::env::var_os("HOME").map(PathBuf::from).as_deref(),
    );
    Ok(Some(UpstreamConfig { url, credential }))
}

/// Parses `--expose NAME=ADDR` values; only loopback targets are accepted.
fn parse_exposes(
    values: &[String],
) -> anyhow::Result<std::collections::HashMap<String, std::net::SocketAddr>> {
    let mut out = std::collections::HashMap::new();
    for v in values {
        let (name, addr) = v.split_once('=').ok_or_else(|| {
            fail(
                exit::CONFIG,
                format!("--expose {v:?}: expected NAME=127.0.0.1:PORT"),
            )
        })?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(fail(
                exit::CONFIG,
                format!("--expose {v:?}: NAME must be letters, digits, '-', '_' or '.'"),
            ));
        }
        let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
            fail(
                exit::CONFIG,
                format!("--expose {v:?}: ADDR must be IP:PORT"),
            )
        })?;
        if !claw_gateway::bind_guard::is_loopback(addr.ip()) {
            return Err(fail(
                exit::CONFIG,
                format!(
                    "--expose {v:?}: only loopback services can be exposed (got {})",
                    addr.ip()
                ),
            ));
        }
        out.insert(name.to_string(), addr);
    }
    Ok(out)
}

/// Raises the soft open-file limit to the hard limit, as long-running servers do (Go's runtime
/// does it for every program; nginx has `worker_rlimit_nofile`): every session is a socket, and
/// a distribution's default soft limit of 1,024 would cap a gateway far below what it can hold.
/// Failure is logged, not fatal: the gateway still serves up to the current limit. Returns the
/// soft limit now in force (`u64::MAX` when it cannot be read).
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        // An unlimited hard limit is capped at the kernel's usual `fs.nr_open` (2^20).
        Ok((soft, hard)) if soft < hard.min(1 << 20) => {
            let to = hard.min(1 << 20);
            match setrlimit(Resource::RLIMIT_NOFILE, to, hard) {
                Ok(()) => {
                    tracing::debug!(from = soft, to, "raised the open-file limit");
                    to
                }
                Err(e) => {
                    tracing::warn!(error = %e, soft, "cannot raise the open-file limit");
                    soft
                }
            }
        }
        Ok((soft, _)) => {
            tracing::debug!(limit = soft, "open-file limit");
            soft
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            u64::MAX
        }
    }
}

/// `--max-connections` when not given.
const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// `--max-connections`, capped by what the open-file limit can hold (a socket over the cap is
/// refused with 503; one over the descriptor limit would fail the store and the admin socket).
/// A warning when the operator asked for more than the limit holds, or the limit leaves fewer
/// than a thousand; otherwise the cap is only logged at info.
fn connection_cap(requested: usize, nofile: u64) -> usize {
    let cap = claw_gateway::limits::connection_cap(requested, nofile);
    if cap < requested && requested == DEFAULT_MAX_CONNECTIONS && cap >= 1_000 {
        tracing::info!(nofile, cap, "connections capped by the open-file limit");
    } else if cap < requested {
        tracing::warn!(
            nofile,
            requested,
            cap,
            "the open-file limit caps the gateway at {cap} connections; raise it (ulimit -n, or \
             LimitNOFILE= in the unit) to hold {requested}"
        );
    }
    cap
}

/// Runs a gateway verb.
pub async fn run(home: &Home, cmd: GatewayCmd) -> anyhow::Result<u8> {
    match cmd {
        GatewayCmd::Run(a) => run_foreground(home, *a).await,
        GatewayCmd::Start(a) => start(home, a.run.clone(), a.json).await,
        GatewayCmd::Stop { json } => stop(home, json).await,
        GatewayCmd::Status { json } => status(home, json).await,
        GatewayCmd::Token { show } => token(home, show).await,
        GatewayCmd::Audit { limit, json } => audit(home, limit, json).await,
        GatewayCmd::Origins { cmd } => super::origins::run(home, cmd).await,
        GatewayCmd::Install(a) => super::service::install(home, a),
        GatewayCmd::Uninstall(a) => super::service::uninstall(a),
        GatewayCmd::Restart(a) if super::service::installed(a.system()) => {
            super::service::restart_unit(&a)
        }
        GatewayCmd::Restart(_) => Err(fail(
            exit::FAILURE,
            "no claw gateway service is installed (`claw gateway install`); a gateway started with `claw gateway start` restarts with `claw gateway stop` then `claw gateway start FLAGS`",
        )),
        GatewayCmd::Logs(a) => super::service::logs(home, a),
    }
}

/// A pinned token shorter than this draws a warning at start (the generated one has 43).
const MIN_PINNED_TOKEN_CHARS: usize = 32;

/// Reads a `--token-file`: `-` is stdin (one line); a file must not be readable by group or
/// others and must belong to us or to root, else it is refused (exit 78) as OpenSSH refuses a
/// loose private key — a token another user can read or write is not a secret.
fn read_token_file(f: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if f == std::path::Path::new("-") {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the token from stdin")?;
        return Ok(line.trim().to_string());
    }
    let mut file = std::fs::File::open(f)
        .with_context(|| format!("cannot read token file {}", f.display()))?;
    let meta = file.metadata()?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(fail(
            exit::CONFIG,
            format!(
                "token file {} is owned by uid {}, not by you (uid {me}) or root: refused",
                f.display(),
                meta.uid()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(
            exit::CONFIG,
            format!(
                "token file {} has mode {mode:o}: other users can read it; refused (chmod 600 {}, or `mode: 0400` for a Docker secret)",
                f.display(),
                f.display()
            ),
        ));
    }
    let mut t = String::new();
    file.read_to_string(&mut t)
        .with_context(|| format!("cannot read token file {}", f.display()))?;
    Ok(t.trim().to_string())
}

/// True when `--token` itself appeared on the command line (not through `CLAW_GATEWAY_TOKEN`):
/// then the token is in `/proc/PID/cmdline` for every local user to read.
pub fn token_in_argv() -> bool {
    std::env::args_os()
        .skip(1)
        .any(|a| a == "--token" || a.to_string_lossy().starts_with("--token="))
}

/// The one warning (stderr) for a token given in argv.
pub fn warn_token_in_argv() {
    if token_in_argv() {
        eprintln!(
            "warning: --token on the command line is readable by every local user (ps, /proc/PID/cmdline); use CLAW_GATEWAY_TOKEN, --token-file FILE or --token-file - (stdin) instead"
        );
    }
}

async fn run_foreground(home: &Home, a: RunArgs) -> anyhow::Result<u8> {
    let listen = check_bind(&a.bind, a.port, system_resolve)
        .map_err(|e| fail(exit::CONFIG, e.to_string()))?;
    let upstream = upstream_config(&a)?;
    home.ensure()
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    if a.token.is_some() {
        warn_token_in_argv();
    }
    let pinned_token = pinned_token(a.token.clone(), a.token_file.clone())?;
    if let Some(token) = &pinned_token {
        if token.chars().count() < MIN_PINNED_TOKEN_CHARS {
            // The wrong-secret delay slows guessing; it does not make a short token safe.
            tracing::warn!(
                length = token.chars().count(),
                "the pinned gateway token is shorter than {MIN_PINNED_TOKEN_CHARS} characters: a \
                 local user can guess a short token; use a long random one (or let claw generate it)"
            );
        }
    }
    let nofile = raise_open_file_limit();
    let allowed_origins = a
        .allow_origin
        .iter()
        .map(|o| {
            claw_gateway::origin::parse_origin(o).map_err(|e| {
                fail(
                    exit::CONFIG,
                    format!("--allow-origin {}: {e}", o.escape_debug()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let gateway = GatewayConfig {
        listen,
        allowed_origins,
        handshake_timeout: Duration::from_secs(a.handshake_timeout.max(1)),
        tick_interval: Duration::from_millis(a.tick_interval_ms.max(100)),
        ping_interval: Duration::from_millis(a.ping_interval_ms.max(100)),
        auth_fail_delay: Duration::from_millis(a.auth_fail_delay_ms),
        max_preauth_per_source: a.max_preauth.max(1),
        rotate_every: a.rotate_every.map(Into::into),
        strict_device_auth: a.strict_device_auth,
        max_connections: connection_cap(a.max_connections.max(1), nofile),
        ..GatewayConfig::default()
    };
    let cfg = DaemonConfig {
        home: home.clone(),
        gateway,
        pinned_token,
        tunnel: a.tunnel,
        ssh: a.ssh,
        relays: parse_relays(&a.relay, &a.relay_pin)?,
        exposes: parse_exposes(&a.expose)?,
        pair_attempts_per_min: a.pair_attempts_per_min,
        page_pair_uri: Some(super::pair::page_pair_uri),
        upstream,
    };
    // Installed before the daemon starts and so before the ready line is printed: a SIGTERM
    // right after it must reach the handler, not the default action.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let daemon = Daemon::start(cfg).await.map_err(daemon_error)?;
    let signals = daemon.state().clone();
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        signals.request_shutdown();
    });
    let mut note = String::new();
    if let Some((addr, id)) = &daemon.tunnel {
        note = format!(", tunnel udp://{addr} fingerprint {}", &id[..16]);
    }
    for r in &daemon.relays {
        note.push_str(&format!(", relay {}", r.url));
    }
    if let Some(info) = &daemon.ssh {
        note.push_str(&format!(", ssh tcp://{} {}", info.addr, info.fingerprint));
    }
    println!(
        "claw gateway ready on {} (pid {}, home {}{note})",
        daemon.url,
        std::process::id(),
        home.root().display()
    );
    daemon.join().await.map_err(daemon_error)?;
    Ok(0)
}

/// The exit code of each way the daemon fails.
fn daemon_error(e: DaemonError) -> anyhow::Error {
    let code = match &e {
        DaemonError::Locked { .. } => exit::LOCKED,
        DaemonError::Config(_) => exit::CONFIG,
        DaemonError::Start(_) | DaemonError::Other(_) => exit::FAILURE,
    };
    fail(code, e.to_string())
}

/// A token pinned by `--token` / `CLAW_GATEWAY_TOKEN` or `--token-file` /
/// `CLAW_GATEWAY_TOKEN_FILE`; `None`: the home's generated one.
fn pinned_token(flag: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    if let Some(t) = flag.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(t.trim().to_string()));
    }
    if let Some(f) = file {
        let t = read_token_file(&f)?;
        if t.is_empty() {
            return Err(fail(
                exit::CONFIG,
                format!("token file {} is empty", f.display()),
            ));
        }
        return Ok(Some(t));
    }
    Ok(None)
}

/// `--relay` URLs with the `--relay-pin` at the same position.
fn parse_relays(
    urls: &[String],
    pins: &[String],
) -> anyhow::Result<Vec<claw_mesh::client::RelayTarget>> {
    if pins.len() > urls.len() {
        return Err(fail(exit::CONFIG, "more --relay-pin than --relay"));
    }
    urls.iter()
        .enumerate()
        .map(|(i, u)| {
            claw_mesh::client::parse_url(u).map_err(|e| fail(exit::CONFIG, e.to_string()))?;
            let pin = pins
                .get(i)
                .map(|p| claw_mesh::pin::parse_pin(p))
                .transpose()
                .map_err(|e| fail(exit::CONFIG, e.to_string()))?;
            Ok(claw_mesh::client::RelayTarget {
                url: u.clone(),
                pin,
            })
        })
        .collect()
}

fn run_args_to_cli(a: &RunArgs) -> Vec<String> {
    let mut v = vec![
        "--port".into(),
        a.port.to_string(),
        "--bind".into(),
        a.bind.clone(),
        "--handshake-timeout".into(),
        a.handshake_timeout.to_string(),
        "--tick-interval-ms".into(),
        a.tick_interval_ms.to_string(),
        "--ping-interval-ms".into(),
        a.ping_interval_ms.to_string(),
        "--auth-fail-delay-ms".into(),
        a.auth_fail_delay_ms.to_string(),
        "--max-preauth".into(),
        a.max_preauth.to_string(),
        "--max-connections".into(),
        a.max_connections.to_string(),
    ];
    if let Some(f) = &a.token_file {
        v.push("--token-file".into());
        v.push(f.display().to_string());
    }
    if let Some(s) = a.ssh {
        v.push(format!("--ssh={s}"));
    }
    for r in &a.relay {
        v.push(format!("--relay={r}"));
    }
    for p in &a.relay_pin {
        v.push(format!("--relay-pin={p}"));
    }
    if let Some(t) = a.tunnel {
        v.push(format!("--tunnel={t}"));
        v.push(format!(
            "--pair-attempts-per-min={}",
            a.pair_attempts_per_min
        ));
    }
    for e in &a.expose {
        v.push("--expose".into());
        v.push(e.clone());
    }
    for o in &a.allow_origin {
        v.push(format!("--allow-origin={o}"));
    }
    if let Some(every) = a.rotate_every {
        v.push(format!("--rotate-every={every}"));
    }
    if a.strict_device_auth {
        v.push("--strict-device-auth".into());
    }
    if let Some(u) = &a.upstream {
        v.push(format!("--upstream={u}"));
    }
    if let Some(f) = &a.upstream_token_file {
        v.push(format!("--upstream-token-file={}", f.display()));
    }
    if let Some(f) = &a.upstream_openclaw_config {
        v.push(format!("--upstream-openclaw-config={}", f.display()));
    }
    v
}

async fn start(home: &Home, a: RunArgs, as_json: bool) -> anyhow::Result<u8> {
    check_bind(&a.bind, a.port, system_resolve).map_err(|e| fail(exit::CONFIG, e.to_string()))?;
    upstream_config(&a)?;
    home.ensure()?;
    if let Some(pid) = running_pid(home) {
        return Err(fail(
            exit::LOCKED,
            format!(
                "a claw gateway is already running on {} (pid {pid})",
                home.root().display()
            ),
        ));
    }
    let exe = std::env::current_exe().context("cannot find the claw executable")?;
    if a.token.is_some() {
        warn_token_in_argv();
    }
    // A token from stdin is read here and handed on through the environment (the background
    // gateway's stdin is /dev/null).
    let mut a = a;
    if a.token_file.as_deref() == Some(std::path::Path::new("-")) {
        a.token = Some(read_token_file(std::path::Path::new("-"))?);
        a.token_file = None;
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home")
        .arg(home.root())
        .arg("gateway")
        .arg("run")
        .args(run_args_to_cli(&a));
    if let Some(t) = &a.token {
        // Pass a pinned token through the environment, never argv (visible in ps).
        cmd.env("CLAW_GATEWAY_TOKEN", t);
    }
    let child = super::detached::Detached::spawn(cmd, &home.log_path(), "gateway")?;
    let pid = child.pid;
    let rt = child
        .wait_ready(|pid| RuntimeFile::of_running(home, pid))
        .await?;
    if as_json {
        super::json_out::print(&super::json_out::GatewayStarted {
            pid,
            url: rt.url.clone(),
            log: home.log_path(),
            home: home.root().to_path_buf(),
        })?;
    } else {
        println!(
            "claw gateway started: pid {pid}, {} (log {})",
            rt.url,
            home.log_path().display()
        );
    }
    Ok(0)
}

async fn stop(home: &Home, as_json: bool) -> anyhow::Result<u8> {
    let report = |pid: Option<u32>, text: String| -> anyhow::Result<()> {
        if as_json {
            super::json_out::print(&super::json_out::Stopped {
                stopped: pid.is_some(),
                pid,
            })
        } else {
            println!("{text}");
            Ok(())
        }
    };
    let Some(pid) = running_pid(home) else {
        report(
            None,
            format!("no claw gateway is running on {}", home.root().display()),
        )?;
        return Ok(0);
    };
    if live_call(home, "gateway.stop", json!({})).await.is_err() && pid != 0 {
        // The admin socket is gone (orphaned); fall back to SIGTERM.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !matches!(
            GatewayLock::inspect(&home.lock_path()),
            LockState::Held { .. }
        ) {
            report(Some(pid), format!("claw gateway stopped (pid {pid})"))?;
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(fail(
        exit::FAILURE,
        format!("the gateway (pid {pid}) did not stop within 10 s"),
    ))
}

async fn status(home: &Home, as_json: bool) -> anyhow::Result<u8> {
    let Some(pid) = running_pid(home) else {
        if as_json {
            super::json_out::print(&super::json_out::GatewayStatus {
                running: false,
                home: home.root().to_path_buf(),
                ..Default::default()
            })?;
        } else {
            println!("claw gateway: not running (home {})", home.root().display());
        }
        return Ok(exit::NOT_RUNNING);
    };
    let v = match live_call(home, "gateway.status", json!({})).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(fail(exit::FAILURE, format!("{}: {}", e.code, e.message))),
        Err(e) => {
            return Err(fail(
                exit::FAILURE,
                format!(
                    "gateway pid {pid} holds the lock but its admin socket does not answer: {e:#}"
                ),
            ))
        }
    };
    let rt = RuntimeFile::read(home).ok().flatten();
    if as_json {
        super::json_out::print(&super::json_out::GatewayStatus::running(
            home.root().to_path_buf(),
            pid,
            &v,
            &serde_json::to_value(&rt).unwrap_or(serde_json::Value::Null),
        ))?;
    } else {
        println!("claw gateway: running (pid {pid})");
        println!(
            "  url:        {}",
            v["gateway"]["url"].as_str().unwrap_or("")
        );
        println!("  home:       {}", home.root().display());
        println!(
            "  uptime:     {} s",
            v["gateway"]["uptimeMs"].as_u64().unwrap_or(0) / 1000
        );
        println!(
            "  token:      {}",
            v["gateway"]["tokenSource"].as_str().unwrap_or("")
        );
        println!(
            "  sessions:   {} ({} shared-token, {} device-token)",
            v["connections"]["total"],
            v["connections"]["sharedToken"],
            v["connections"]["deviceToken"]
        );
        println!(
            "  devices:    {} paired, {} revoked, {} pending",
            v["devices"]["paired"], v["devices"]["revoked"], v["devices"]["pending"]
        );
        println!("  generation: {}", v["deviceTokenGeneration"]);
        if let (Some(every), Some(next)) = (
            v["rotation"]["everyMs"].as_u64(),
            v["rotation"]["nextAtMs"].as_u64(),
        ) {
            let left = next.saturating_sub(claw_gateway::now_ms()) / 1000;
            println!(
                "  rotation:   every {}, next in {} ({})",
                humantime::format_duration(Duration::from_millis(every)),
                humantime::format_duration(Duration::from_secs(left)),
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_millis(next)
                )
            );
        }
        if let Some(t) = rt.as_ref().and_then(|r| r.tunnel.as_ref()) {
            println!(
                "  tunnel:     udp://{} (fingerprint {})",
                t.addr, t.gateway_id
            );
        }
        if let Some(ssh) = rt.as_ref().and_then(|r| r.ssh.as_ref()) {
            println!("  ssh:        tcp://{} {}", ssh.addr, ssh.fingerprint);
            for line in &ssh.known_hosts {
                println!("  known_hosts: {line}");
            }
        }
    }
    Ok(0)
}

async fn token(home: &Home, show: bool) -> anyhow::Result<u8> {
    let (token, source) = if running_pid(home).is_some() {
        match live_call(home, "gateway.token.show", json!({})).await? {
            Ok(v) => (
                v["token"].as_str().unwrap_or_default().to_string(),
                v["source"].as_str().unwrap_or_default().to_string(),
            ),
            Err(e) => return Err(fail(exit::FAILURE, e.message)),
        }
    } else {
        let t = read_secret(&home.shared_token_path()).map_err(|e| {
            fail(exit::FAILURE, format!("no generated shared token in {} ({e}); it is created by the first `claw gateway run`", home.root().display()))
        })?;
        (t, "generated".into())
    };
    if show {
        println!("{token}");
    } else {
        println!(
            "shared gateway token: {source} ({}); `claw gateway token --show` prints it",
            home.shared_token_path().display()
        );
    }
    Ok(0)
}

async fn audit(home: &Home, limit: usize, as_json: bool) -> anyhow::Result<u8> {
    let esc = |s: &str| claw_gateway::text::escape(s).into_owned();
    let v = super::admin_client::admin_call(home, "audit.tail", json!({"limit": limit})).await?;
    if as_json {
        println!("{v}");
        return Ok(0);
    }
    for e in v["entries"].as_array().cloned().unwrap_or_default() {
        println!(
            "{}  {:<24} {:<10} {}  {}",
            e["tsMs"],
            esc(e["event"].as_str().unwrap_or("")),
            esc(e["origin"].as_str().unwrap_or("-")),
            esc(&e["deviceId"]
                .as_str()
                .map(|d| d.chars().take(16).collect::<String>())
                .unwrap_or_else(|| "-".into())),
            // Details quote client-chosen text (names, SSH destinations): one escaped line.
            esc(e["detail"].as_str().unwrap_or(""))
        );
    }
    Ok(0)
}
