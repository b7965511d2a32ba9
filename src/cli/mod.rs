//! The command line: one module per verb group.

mod admin_client;
mod ago;
mod call;
mod channels;
mod channels_relay;
mod completions;
mod dashboard;
mod detached;
mod devices;
mod doctor;
mod gateway;
mod json_out;
mod origins;
mod pair;
mod qr;
mod relay;
mod service;
mod tunnel;
mod tunnel_proxy;
mod tunnel_service;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit statuses scripts can rely on (see docs/cli.md).
pub mod exit {
    /// Something needs the human (error, auth failure, refusal).
    pub const FAILURE: u8 = 1;
    /// `gateway status`: not running.
    pub const NOT_RUNNING: u8 = 3;
    /// The gateway is not running and the command needs it.
    pub const UNAVAILABLE: u8 = 69;
    /// The home does not exist (a mistyped `--home`): nothing was created (sysexits' EX_NOINPUT).
    pub const NO_HOME: u8 = 66;
    /// Another gateway holds this home's lock.
    pub const LOCKED: u8 = 75;
    /// `tunnel up`: the gateway refused this device for who it is (revoked, or not paired); the
    /// tunnel stopped for good (sysexits' EX_NOPERM), so a service manager must not restart it.
    pub const REVOKED: u8 = 77;
    /// Configuration refused (non-loopback bind).
    pub const CONFIG: u8 = 78;
    /// stdout's reader went away (`claw … | head -1`): what a process killed by SIGPIPE reports
    /// (128 + 13), so `set -o pipefail` scripts see the same as with any Unix tool.
    pub const BROKEN_PIPE: u8 = 141;
}

/// An error that carries its exit status.
#[derive(Debug)]
pub struct Exit {
    /// Exit status.
    pub code: u8,
    msg: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}
impl std::error::Error for Exit {}

/// Builds an error with an exit status.
pub fn fail(code: u8, msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        msg: msg.into(),
    })
}

/// claw: loopback-only remote access to local AI agent gateways.
#[derive(Debug, Parser)]
#[command(
    name = "claw",
    version,
    about,
    after_help = "Examples:\n  claw gateway run --tunnel                 # on the gateway host\n  claw pair                                 # mint a one-time pairing URI + QR\n  claw tunnel pair 'CLAW://P/…' && claw tunnel up --daemon   # on the device\n  claw health                               # is it up?"
)]
pub struct Cli {
    /// claw's home directory (state, keys, sockets); created 0700.
    #[arg(long, global = true, env = "CLAW_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process: the size of the `gateway run` flags costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run and manage the gateway.
    #[command(
        subcommand,
        after_help = "Examples:\n  claw gateway run --tunnel --ssh           # foreground, QUIC tunnel + SSH forward\n  claw gateway start --json                 # background; {\"pid\",\"url\",\"log\",\"home\"}\n  claw gateway status --json\n  claw gateway install --tunnel --rotate-every 24h   # a systemd user unit"
    )]
    Gateway(gateway::GatewayCmd),
    /// Paired devices, pairing requests and device tokens.
    #[command(
        subcommand,
        after_help = "Examples:\n  claw devices list\n  claw devices approve --latest\n  claw devices revoke laptop --yes          # by name, full id or 8+ character prefix\n  claw devices rotate-token --force         # every device re-pairs over the tunnel"
    )]
    Devices(devices::DevicesCmd),
    /// Call any gateway method.
    #[command(
        after_help = "Examples:\n  claw call status --json\n  claw call health --url ws://127.0.0.1:18789   # through `claw tunnel up` on a device"
    )]
    Call(call::CallArgs),
    /// Call `health` on the gateway.
    #[command(
        after_help = "Examples:\n  claw health\n  claw health --url ws://127.0.0.1:18789 --json"
    )]
    Health(call::HealthArgs),
    /// Mint a one-time pairing URI (and QR code) for a device to join through the tunnel.
    #[command(
        after_help = "Examples:\n  claw pair --name laptop\n  claw pair --ttl 1h --require-approval --json"
    )]
    Pair(pair::PairArgs),
    /// The device side of the QUIC tunnel: pair, up, down, status, install.
    #[command(
        subcommand,
        after_help = "Examples:\n  claw tunnel pair 'CLAW://P/…'\n  claw tunnel up --daemon                   # background; log in HOME/tunnel.log\n  claw tunnel status --json\n  claw tunnel down\n  claw tunnel install                       # a systemd user unit"
    )]
    Tunnel(tunnel::TunnelCmd),
    /// Find drifted or orphaned state; `--fix` repairs what is safe (exit 1: the human must act).
    #[command(after_help = "Examples:\n  claw doctor\n  claw doctor --fix --json")]
    Doctor(doctor::DoctorArgs),
    /// The gateway's listeners and the clients on each.
    #[command(subcommand)]
    Channels(channels::ChannelsCmd),
    /// A relay for gateways behind NAT: `claw relay serve`.
    #[command(subcommand)]
    Relay(relay::RelayCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(completions::CompletionsArgs),
    /// Print claw's man page (roff) to stdout: `claw man > claw.1`.
    Man,
    /// Open the control page in a browser with a one-time login link (`--no-open`: print it).
    Dashboard(dashboard::DashboardArgs),
}

impl Cli {
    fn home(&self) -> claw_gateway::home::Home {
        claw_gateway::home::Home::new(
            self.home
                .clone()
                .unwrap_or_else(claw_gateway::home::Home::default_root),
        )
    }
}

impl Cmd {
    /// Verbs that may make a new home: the gateway (`run`, `start`, `install`), a device's
    /// `tunnel pair` and `tunnel export-ssh-key` (a key for `claw devices add-ssh-key`); verbs that need none; and `gateway status`, whose "not running" (exit 3) is
    /// the true answer for a home that was never used. Every other verb on a missing home would
    /// create an empty store (and `pair` a new gateway identity), so it is refused instead.
    fn may_run_without_home(&self) -> bool {
        use gateway::GatewayCmd as G;
        matches!(
            self,
            Cmd::Gateway(G::Run(_) | G::Start(_) | G::Install(_) | G::Status { .. })
                | Cmd::Tunnel(
                    tunnel::TunnelCmd::Pair { .. } | tunnel::TunnelCmd::ExportSshKey { .. }
                )
                | Cmd::Relay(_)
                | Cmd::Completions(_)
                | Cmd::Man
        )
    }
}

/// Runs the parsed command; returns the exit status.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let home = cli.home();
    if !cli.cmd.may_run_without_home() && !home.root().exists() {
        return Err(fail(
            exit::NO_HOME,
            format!(
                "no claw home at {} (nothing was created): check --home / CLAW_HOME; `claw gateway run` makes a gateway home, `claw tunnel pair URI` a device home",
                home.root().display()
            ),
        ));
    }
    match cli.cmd {
        Cmd::Gateway(c) => gateway::run(&home, c).await,
        Cmd::Devices(c) => devices::run(&home, c).await,
        Cmd::Call(a) => call::call(&home, a).await,
        Cmd::Health(a) => call::health(&home, a).await,
        Cmd::Pair(a) => pair::run(&home, a).await,
        Cmd::Tunnel(c) => tunnel::run(&home, c).await,
        Cmd::Doctor(a) => doctor::run(&home, a).await,
        Cmd::Channels(c) => channels::run(&home, c).await,
        Cmd::Relay(c) => relay::run(&home, c).await,
        Cmd::Completions(a) => completions::completions(a),
        Cmd::Man => completions::man(),
        Cmd::Dashboard(a) => dashboard::run(&home, a).await,
    }
}
