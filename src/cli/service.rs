//! `claw gateway install|uninstall|restart|logs`: the gateway as a service the init system keeps
//! running (a systemd unit on Linux, a launchd agent on macOS).
//!
//! The unit runs `claw --home HOME gateway run FLAGS` and carries no secret: the shared token is
//! read from the home (`gateway.token`, or a `--token-file`) every time the gateway starts, so a
//! unit file, `systemctl show` or a unit backup never holds a token, and a token rotated in the
//! home is picked up by the next start without editing the unit. `--token T` is refused here.
//! Unit texts are built by pure functions ([`systemd_unit_of`], [`launchd_plist_of`]), tested as text
//! and, where `systemd-analyze` exists, verified by it (tests/lifecycle.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use claw_gateway::home::Home;

use super::{exit, fail};

/// The unit's name (`systemctl status claw-gateway`).
pub const UNIT: &str = "claw-gateway.service";
/// The launchd label.
pub const LAUNCHD_LABEL: &str = "dev.claw.gateway";

/// Which claw process a unit keeps running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `claw gateway run` on the gateway host.
    Gateway,
    /// `claw tunnel up` on a paired device.
    Tunnel,
}

impl Kind {
    /// The unit's file name.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Gateway => UNIT,
            Self::Tunnel => "claw-tunnel.service",
        }
    }
    /// The launchd label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Gateway => LAUNCHD_LABEL,
            Self::Tunnel => "dev.claw.tunnel",
        }
    }
    /// The verb the unit runs.
    fn verb(self) -> [&'static str; 2] {
        match self {
            Self::Gateway => ["gateway", "run"],
            Self::Tunnel => ["tunnel", "up"],
        }
    }
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Self::Gateway => (
                "claw gateway (loopback-only remote access for local AI agents)",
                "the gateway reads its token",
            ),
            Self::Tunnel => (
                "claw tunnel (this device's QUIC link to its claw gateway)",
                "the tunnel reads its key and device token",
            ),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Tunnel => "tunnel",
        }
    }
}

/// Where the service is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// The user's own service manager (`systemctl --user`); no root needed.
    User,
    /// The system's (`/etc/systemd/system`); runs as the installing user.
    System,
}

/// Which service format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A systemd unit.
    Systemd,
    /// A launchd property list.
    Launchd,
}

/// `claw gateway install` options.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  claw gateway install --tunnel --ssh     # a user unit, enabled and started\n  claw gateway install --system --print   # show the unit, install nothing"
)]
pub struct InstallArgs {
    /// Install a system unit instead of a user unit.
    #[arg(long, conflicts_with = "user")]
    system: bool,
    /// Install a user unit (the default).
    #[arg(long)]
    user: bool,
    /// Write the unit to stdout and install nothing.
    #[arg(long)]
    print: bool,
    /// Service format (default: launchd on macOS, systemd elsewhere).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// `claw gateway run` flags for the service, e.g. `--tunnel --ssh` (never `--token`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "RUN FLAGS"
    )]
    run_flags: Vec<String>,
}

/// `claw gateway uninstall` / `restart` options.
#[derive(Debug, clap::Args)]
pub struct ScopeArgs {
    /// The system unit instead of the user unit.
    #[arg(long)]
    system: bool,
}

/// `claw gateway logs` options.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Keep printing new lines.
    #[arg(short, long)]
    follow: bool,
    /// The system unit's journal instead of the user unit's.
    #[arg(long)]
    system: bool,
    /// Lines of history.
    #[arg(short = 'n', long, default_value_t = 100)]
    lines: usize,
}

impl ScopeArgs {
    /// `--system` was given.
    pub fn system(&self) -> bool {
        self.system
    }
}

impl Scope {
    fn of(system: bool) -> Self {
        if system {
            Self::System
        } else {
            Self::User
        }
    }
    fn systemctl_args(self) -> &'static [&'static str] {
        match self {
            Self::User => &["--user"],
            Self::System => &[],
        }
    }
}

/// Why run flags cannot go into a unit.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// A secret on the command line would be baked into the unit.
    #[error("--token would put the shared token into the unit file; keep it in the home (the default) or give --token-file FILE")]
    Secret,
    /// Not a flag `gateway run` takes, or a value it refuses.
    #[error("not a valid `claw gateway run` flag list: {0}")]
    Invalid(String),
    /// A character systemd would read as syntax.
    #[error(
        "flag {0:?} has a character a unit cannot carry safely (newline, quote, backslash, % or $)"
    )]
    Unsafe(String),
}

/// Checks the flags the service will run with: they must parse as `gateway run` flags, carry no
/// secret, and be free of characters systemd or a shell would interpret.
pub fn check_run_flags(flags: &[String]) -> Result<(), FlagError> {
    if flags
        .iter()
        .any(|f| f == "--token" || f.starts_with("--token="))
    {
        return Err(FlagError::Secret);
    }
    if let Some(bad) = flags.iter().find(|f| {
        f.chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '%' | '$' | '`'))
    }) {
        return Err(FlagError::Unsafe(bad.clone()));
    }
    #[derive(clap::Parser)]
    struct RunOnly {
        #[command(flatten)]
        _run: super::gateway::RunArgs,
    }
    // The flags are parsed for validity only: the environment's CLAW_GATEWAY_TOKEN, which clap
    // would also read, never reaches the unit.
    <RunOnly as clap::Parser>::try_parse_from(
        std::iter::once("claw gateway run".to_string()).chain(flags.iter().cloned()),
    )
    .map(|_| ())
    .map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        FlagError::Invalid(first.trim_start_matches("error: ").to_string())
    })
}

/// Quotes an argument for a unit's `ExecStart=` (systemd's own quoting: double quotes when it has
/// spaces; [`check_run_flags`] and [`check_path`] keep quotes, `%`, `$` and `\` out).
fn unit_arg(s: &str) -> String {
    if s.contains(' ') || s.is_empty() {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

/// A path must be absolute and free of characters a unit or plist would interpret.
fn check_path(p: &Path) -> anyhow::Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| fail(exit::CONFIG, format!("{} is not UTF-8", p.display())))?;
    if !p.is_absolute()
        || s.chars().any(|c| {
            c.is_control() || matches!(c, '"' | '\'' | '\\' | '%' | '$' | '`' | '<' | '>' | '&')
        })
    {
        return Err(fail(
            exit::CONFIG,
            format!("{s:?} cannot go into a service file (it must be absolute, without quotes, %, $, \\ or <>&)"),
        ));
    }
    Ok(s.to_string())
}

/// Checks the flags a `claw tunnel up` unit runs with: they must parse as `tunnel up` flags (the
/// real command line), stay in the foreground (no `--daemon`: the service manager supervises it),
/// name no other home, and carry no character systemd would interpret.
pub fn check_tunnel_flags(flags: &[String]) -> Result<(), FlagError> {
    if let Some(bad) = flags.iter().find(|f| {
        f.chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '%' | '$' | '`'))
    }) {
        return Err(FlagError::Unsafe(bad.clone()));
    }
    if let Some(f) = flags.iter().find(|f| {
        ["--daemon", "--home"]
            .iter()
            .any(|x| *f == x || f.starts_with(&format!("{x}=")))
    }) {
        return Err(FlagError::Invalid(format!(
            "{f} cannot go into the unit (it runs `tunnel up` in the foreground on the installing home)"
        )));
    }
    <super::Cli as clap::Parser>::try_parse_from(
        ["claw", "tunnel", "up"]
            .into_iter()
            .map(String::from)
            .chain(flags.iter().cloned()),
    )
    .map(|_| ())
    .map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        FlagError::Invalid(first.trim_start_matches("error: ").to_string())
    })
}

/// The gateway's systemd unit text.
#[cfg(test)]
pub fn systemd_unit(exe: &str, home: &str, flags: &[String], scope: Scope) -> String {
    systemd_unit_of(Kind::Gateway, exe, home, flags, scope)
}

/// The systemd unit text for `kind`.
pub fn systemd_unit_of(
    kind: Kind,
    exe: &str,
    home: &str,
    flags: &[String],
    scope: Scope,
) -> String {
    let [verb, sub] = kind.verb();
    let (description, reads) = kind.describe();
    let args: Vec<String> = [exe, "--home", home, verb, sub]
        .iter()
        .map(|s| unit_arg(s))
        .chain(flags.iter().map(|f| unit_arg(f)))
        .collect();
    let wanted_by = match scope {
        Scope::User => "default.target",
        Scope::System => "multi-user.target",
    };
    let user = match scope {
        Scope::User => String::new(),
        Scope::System => format!(
            "User={}\n",
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| "root".into())
        ),
    };
    let what = kind.name();
    format!(
        "# Written by `claw {what} install`; remove with `claw {what} uninstall`.\n\
         # No secret lives here: {reads} from {home} at every start.\n\
         [Unit]\n\
         Description={description}\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         {user}\
         ExecStart={exec}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         # claw exits 75 when another {what} holds the home, 77 when the gateway revoked this\n\
         # device and 78 on a refused configuration: restarting would not help.\n\
         RestartPreventExitStatus=75 77 78\n\
         UMask=0077\n\
         LimitNOFILE=1048576\n\
         NoNewPrivileges=yes\n\
         PrivateTmp=yes\n\
         ProtectSystem=full\n\
         LockPersonality=yes\n\
         RestrictRealtime=yes\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n\
         \n\
         [Install]\n\
         WantedBy={wanted_by}\n",
        exec = args.join(" "),
    )
}

/// Escapes text for an XML property list.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The gateway's launchd agent (`~/Library/LaunchAgents/dev.claw.gateway.plist`).
#[cfg(test)]
pub fn launchd_plist(exe: &str, home: &str, flags: &[String]) -> String {
    launchd_plist_of(Kind::Gateway, exe, home, flags)
}

/// The launchd agent for `kind` (`~/Library/LaunchAgents/LABEL.plist`).
pub fn launchd_plist_of(kind: Kind, exe: &str, home: &str, flags: &[String]) -> String {
    let [verb, sub] = kind.verb();
    let args: String = [exe, "--home", home, verb, sub]
        .iter()
        .map(|s| s.to_string())
        .chain(flags.iter().cloned())
        .map(|a| format!("    <string>{}</string>\n", xml(&a)))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `claw {what} install`. No secret lives here: {reads} from the home at every start. -->\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20 <key>Label</key>\n\
         \x20 <string>{label}</string>\n\
         \x20 <key>ProgramArguments</key>\n\
         \x20 <array>\n\
         {args}\
         \x20 </array>\n\
         \x20 <key>RunAtLoad</key>\n\
         \x20 <true/>\n\
         \x20 <key>KeepAlive</key>\n\
         \x20 <dict>\n\
         \x20   <key>SuccessfulExit</key>\n\
         \x20   <false/>\n\
         \x20 </dict>\n\
         \x20 <key>StandardErrorPath</key>\n\
         \x20 <string>{log}</string>\n\
         \x20 <key>Umask</key>\n\
         \x20 <integer>63</integer>\n\
         </dict>\n\
         </plist>\n",
        log = xml(&format!("{home}/{}.log", kind.name())),
        what = kind.name(),
        reads = kind.describe().1,
        label = kind.label(),
    )
}

/// Where the gateway's unit of `scope` lives.
fn unit_path(scope: Scope) -> anyhow::Result<PathBuf> {
    unit_path_of(Kind::Gateway, scope)
}

/// Where `kind`'s unit of `scope` lives.
fn unit_path_of(kind: Kind, scope: Scope) -> anyhow::Result<PathBuf> {
    let unit = kind.unit();
    Ok(match scope {
        Scope::System => PathBuf::from("/etc/systemd/system").join(unit),
        Scope::User => {
            let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
                Some(x) => PathBuf::from(x),
                None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| {
                    fail(
                        exit::CONFIG,
                        "HOME is not set: cannot find the user unit directory",
                    )
                })?)
                .join(".config"),
            };
            base.join("systemd/user").join(unit)
        }
    })
}

fn default_format() -> Format {
    if cfg!(target_os = "macos") {
        Format::Launchd
    } else {
        Format::Systemd
    }
}

/// Runs `systemctl [--user] args…`; `Err` with what to run by hand when it cannot.
fn systemctl(scope: Scope, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("systemctl")
        .args(scope.systemctl_args())
        .args(args)
        .status();
    let by_hand = || {
        format!(
            "systemctl {}{}",
            scope
                .systemctl_args()
                .iter()
                .map(|a| format!("{a} "))
                .collect::<String>(),
            args.join(" ")
        )
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(fail(
            exit::UNAVAILABLE,
            format!(
                "`{}` failed ({s}); run it by hand once the service manager is up",
                by_hand()
            ),
        )),
        Err(e) => Err(fail(
            exit::UNAVAILABLE,
            format!("cannot run systemctl ({e}); run `{}` by hand", by_hand()),
        )),
    }
}

/// `claw gateway install`.
pub fn install(home: &Home, a: InstallArgs) -> anyhow::Result<u8> {
    install_kind(Kind::Gateway, home, a)
}

/// `claw gateway install` / `claw tunnel install`.
pub fn install_kind(kind: Kind, home: &Home, a: InstallArgs) -> anyhow::Result<u8> {
    match kind {
        Kind::Gateway => check_run_flags(&a.run_flags),
        Kind::Tunnel => check_tunnel_flags(&a.run_flags),
    }
    .map_err(|e| fail(exit::CONFIG, e.to_string()))?;
    let unit = kind.unit();
    let what = kind.name();
    let scope = Scope::of(a.system);
    let exe = std::env::current_exe().context("cannot find the claw executable")?;
    let exe = check_path(&exe)?;
    let root = std::path::absolute(home.root()).context("cannot resolve the home directory")?;
    let home_s = check_path(&root)?;
    let text = match a.format.unwrap_or_else(default_format) {
        Format::Systemd => systemd_unit_of(kind, &exe, &home_s, &a.run_flags, scope),
        Format::Launchd => launchd_plist_of(kind, &exe, &home_s, &a.run_flags),
    };
    if a.print {
        print!("{text}");
        return Ok(0);
    }
    if a.format.unwrap_or_else(default_format) == Format::Launchd {
        return Err(fail(
            exit::CONFIG,
            format!("installing a launchd agent is done with launchctl: `claw {what} install --print --format launchd > ~/Library/LaunchAgents/{label}.plist && launchctl load ~/Library/LaunchAgents/{label}.plist`", label = kind.label()),
        ));
    }
    // The gateway's home must exist before the service first starts (it refuses a missing one
    // only when told to; here it is simply created as `gateway run` would).
    home.ensure()?;
    let path = unit_path_of(kind, scope)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_unit_atomic(&path, &text)?;
    println!("wrote {}", path.display());
    systemctl(scope, &["daemon-reload"])?;
    systemctl(scope, &["enable", "--now", unit])?;
    let user = if scope == Scope::User { "--user " } else { "" };
    match kind {
        Kind::Gateway => println!(
            "claw gateway enabled and started: `systemctl {user}status {unit}`, `claw gateway logs -f`"
        ),
        Kind::Tunnel => println!(
            "claw tunnel enabled and started: `systemctl {user}status {unit}`, `journalctl {user}-u {unit} -f`"
        ),
    }
    Ok(0)
}

/// Units are not secret (0644, as systemd expects) but are written atomically: a crash never
/// leaves half a unit for the next boot.
fn write_unit_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("service.claw-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `claw gateway uninstall`.
pub fn uninstall(a: ScopeArgs) -> anyhow::Result<u8> {
    uninstall_kind(Kind::Gateway, a)
}

/// `claw gateway uninstall` / `claw tunnel uninstall`.
pub fn uninstall_kind(kind: Kind, a: ScopeArgs) -> anyhow::Result<u8> {
    let scope = Scope::of(a.system);
    let unit = kind.unit();
    let path = unit_path_of(kind, scope)?;
    if !path.exists() {
        println!("no {unit} installed at {}", path.display());
        return Ok(0);
    }
    // Stop and disable first; a manager that is not running cannot, and the file still goes.
    if let Err(e) = systemctl(scope, &["disable", "--now", unit]) {
        eprintln!("warning: {e:#}");
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    let _ = systemctl(scope, &["daemon-reload"]);
    println!("removed {}", path.display());
    Ok(0)
}

/// True when a unit of `scope` is installed.
pub fn installed(system: bool) -> bool {
    unit_path(Scope::of(system)).is_ok_and(|p| p.exists())
}

/// `claw gateway restart` of an installed unit.
pub fn restart_unit(a: &ScopeArgs) -> anyhow::Result<u8> {
    systemctl(Scope::of(a.system), &["restart", UNIT])?;
    println!("restarted {UNIT}");
    Ok(0)
}

/// `claw gateway logs`: the unit's journal when installed, else `gateway.log` of
/// `claw gateway start`.
pub fn logs(home: &Home, a: LogsArgs) -> anyhow::Result<u8> {
    if installed(a.system) {
        let mut cmd = Command::new("journalctl");
        cmd.args(Scope::of(a.system).systemctl_args()).args([
            "-u",
            UNIT,
            "-n",
            &a.lines.to_string(),
            "--no-pager",
        ]);
        if a.follow {
            cmd.arg("-f");
        }
        let status = cmd
            .status()
            .map_err(|e| fail(exit::UNAVAILABLE, format!("cannot run journalctl: {e}")))?;
        return Ok(if status.success() { 0 } else { exit::FAILURE });
    }
    let path = home.root().join("gateway.log");
    let mut cmd = Command::new("tail");
    cmd.args(["-n", &a.lines.to_string()]);
    if a.follow {
        cmd.arg("-F");
    }
    if !path.exists() {
        return Err(fail(
            exit::FAILURE,
            format!(
                "no gateway log: {} does not exist (the gateway was not started with `claw gateway start`, and no unit is installed)",
                path.display()
            ),
        ));
    }
    let status = cmd
        .arg(&path)
        .status()
        .map_err(|e| fail(exit::UNAVAILABLE, format!("cannot run tail: {e}")))?;
    Ok(if status.success() { 0 } else { exit::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn run_flags_are_checked() {
        assert_eq!(check_run_flags(&flags(&["--tunnel", "--ssh"])), Ok(()));
        assert_eq!(
            check_run_flags(&flags(&[
                "--port",
                "18800",
                "--expose",
                "web=127.0.0.1:8080"
            ])),
            Ok(())
        );
        assert_eq!(
            check_run_flags(&flags(&["--token", "hunter2"])),
            Err(FlagError::Secret)
        );
        assert_eq!(
            check_run_flags(&flags(&["--token=hunter2"])),
            Err(FlagError::Secret)
        );
        assert!(matches!(
            check_run_flags(&flags(&["--frobnicate"])),
            Err(FlagError::Invalid(_))
        ));
        assert!(matches!(
            check_run_flags(&flags(&["--port", "eighty"])),
            Err(FlagError::Invalid(_))
        ));
        for bad in ["a\nExecStartPre=/bin/sh", "%h", "$HOME", "a\"b", "a\\b"] {
            assert!(
                matches!(
                    check_run_flags(&flags(&["--token-file", bad])),
                    Err(FlagError::Unsafe(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_unit_runs_the_gateway_with_the_flags_and_no_secret() {
        let u = systemd_unit(
            "/usr/bin/claw",
            "/home/me/.claw",
            &flags(&["--tunnel", "--ssh"]),
            Scope::User,
        );
        assert!(u.contains(
            "\nExecStart=/usr/bin/claw --home /home/me/.claw gateway run --tunnel --ssh\n"
        ));
        assert!(u.contains("WantedBy=default.target"));
        assert!(!u.contains("User="));
        assert!(!u.to_lowercase().contains("environment="), "{u}");
        let s = systemd_unit("/opt/my claw/claw", "/var/lib/claw", &[], Scope::System);
        assert!(s.contains("ExecStart=\"/opt/my claw/claw\" --home /var/lib/claw gateway run\n"));
        assert!(s.contains("WantedBy=multi-user.target"));
        assert!(s.contains("\nUser="));
    }

    #[test]
    fn the_tunnel_unit_runs_tunnel_up_in_the_foreground_with_no_secret() {
        let u = systemd_unit_of(
            Kind::Tunnel,
            "/usr/bin/claw",
            "/home/me/.claw",
            &flags(&["--listen", "127.0.0.1:18800"]),
            Scope::User,
        );
        assert!(u.contains(
            "\nExecStart=/usr/bin/claw --home /home/me/.claw tunnel up --listen 127.0.0.1:18800\n"
        ));
        assert!(u.contains("Description=claw tunnel"));
        assert!(u.contains("`claw tunnel uninstall`"));
        assert!(!u.to_lowercase().contains("environment="), "{u}");
        assert_eq!(
            check_tunnel_flags(&flags(&["--forward", "127.0.0.1:9000=web"])),
            Ok(())
        );
        for bad in [
            &["--daemon"][..],
            &["--home", "/x"],
            &["--home=/x"],
            &["--bogus"],
        ] {
            assert!(
                matches!(check_tunnel_flags(&flags(bad)), Err(FlagError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_tunnel_flags(&flags(&["--listen", "%h"])),
            Err(FlagError::Unsafe(_))
        ));
        let p = launchd_plist_of(Kind::Tunnel, "/c", "/h", &[]);
        assert!(p.contains("<string>dev.claw.tunnel</string>"));
        assert!(p.contains("<string>/h/tunnel.log</string>"));
    }

    #[test]
    fn the_plist_escapes_and_lists_every_argument() {
        let p = launchd_plist(
            "/usr/local/bin/claw",
            "/Users/me/.claw",
            &flags(&["--tunnel"]),
        );
        assert!(p.contains("<string>/usr/local/bin/claw</string>\n    <string>--home</string>\n    <string>/Users/me/.claw</string>\n    <string>gateway</string>\n    <string>run</string>\n    <string>--tunnel</string>\n"));
        assert!(p.contains("<key>Label</key>\n  <string>dev.claw.gateway</string>"));
        assert_eq!(xml("a<b&c>"), "a&lt;b&amp;c&gt;");
    }
}
