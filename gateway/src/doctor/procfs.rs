//! What `/proc` says about sockets and processes: who holds a port, which claw gateways run.
//!
//! The parsers are pure (tested with captured text); the readers below them are thin. Processes
//! of other users are only partly visible (their `fd/` is not readable): a port they hold is
//! reported by uid and inode instead of pid.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::facts::ProcInfo;
use crate::home::TMP_SUFFIX;

/// TCP state `LISTEN` as `/proc/net/tcp` prints it.
pub const TCP_LISTEN: u8 = 0x0A;

/// One row of `/proc/net/{tcp,tcp6,udp,udp6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEntry {
    /// Local address.
    pub local: SocketAddr,
    /// Socket state (TCP states; UDP sockets show 07).
    pub state: u8,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode (matches `socket:[N]` links in `/proc/PID/fd`).
    pub inode: u64,
}

/// Parses an address as the kernel prints it: `0100007F:4A65` (IPv4) or 32 hex digits and a
/// port (IPv6). Each 32-bit group is printed in host byte order.
pub fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    let ip: IpAddr = match ip.len() {
        8 => Ipv4Addr::from(word(ip)?).into(),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            Ipv6Addr::from(b).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses the text of `/proc/net/tcp` (or `tcp6`, `udp`, `udp6`); malformed rows are skipped.
pub fn parse_net(text: &str) -> Vec<NetEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            Some(NetEntry {
                local: parse_hex_addr(f[1])?,
                state: u8::from_str_radix(f[3], 16).ok()?,
                uid: f[7].parse().ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// The inode of an fd link target `socket:[12345]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Splits `/proc/PID/cmdline` (NUL-separated) into arguments.
pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// A `claw … gateway run` command line, as far as its arguments tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayArgs {
    /// The `--home` it was given, if any (may be relative to its working directory).
    pub home: Option<PathBuf>,
}

/// Recognises `claw [--home DIR] gateway run …` (the binary named `claw`; `--home` anywhere,
/// as `--home DIR` or `--home=DIR`).
pub fn gateway_args(args: &[String]) -> Option<GatewayArgs> {
    let exe = Path::new(args.first()?).file_name()?.to_str()?;
    if exe != "claw" {
        return None;
    }
    let mut home = None;
    let mut positionals = Vec::new();
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        if a == "--home" {
            home = it.next().map(PathBuf::from);
        } else if let Some(h) = a.strip_prefix("--home=") {
            home = Some(PathBuf::from(h));
        } else if !a.starts_with('-') {
            positionals.push(a.as_str());
        }
    }
    (positionals.first() == Some(&"gateway") && positionals.get(1) == Some(&"run"))
        .then_some(GatewayArgs { home })
}

/// The writer pid in a temporary file name `NAME.PID.claw-tmp` (see
/// [`crate::home::write_secret_atomic`]).
pub fn tmp_writer_pid(name: &str) -> Option<u32> {
    name.strip_suffix(TMP_SUFFIX)?
        .rsplit_once('.')?
        .1
        .parse()
        .ok()
}

/// True for the files of a home that must be 0600: the token, the store and its WAL files, the
/// lock, the runtime file, the admin socket, every key (`*.key`) and every JSON file claw writes
/// (device credentials, tunnel pairing).
pub fn is_secret_name(name: &str) -> bool {
    matches!(
        name,
        "gateway.token"
            | "state.db"
            | "state.db-wal"
            | "state.db-shm"
            | "state.db-journal"
            | "gateway.lock"
            | "admin.sock"
    ) || name.ends_with(".key")
        || name.ends_with(".json")
}

/// Reads `KEY` from a NUL-separated environment block.
pub fn env_value(raw: &[u8], key: &str) -> Option<String> {
    raw.split(|b| *b == 0).find_map(|kv| {
        let kv = std::str::from_utf8(kv).ok()?;
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

// ---- readers (IO) ----

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, …); the command name may hold spaces
/// and parentheses, so the state is read after the last `)`.
pub fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// True when a process with this pid exists (even one of another user) and is not a zombie (a
/// killed process nobody reaped yet is dead for our purposes).
pub fn pid_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    };
    exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| stat_state(&s))
            != Some('Z')
}

/// The sockets of `proto` (`tcp` or `udp`, IPv4 and IPv6).
pub fn read_net(proto: &str) -> Vec<NetEntry> {
    [proto.to_string(), format!("{proto}6")]
        .iter()
        .filter_map(|f| std::fs::read_to_string(format!("/proc/net/{f}")).ok())
        .flat_map(|t| parse_net(&t))
        .collect()
}

fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// A process's command line (`None` when it vanished).
pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args = split_cmdline(&raw);
    Some(ProcInfo {
        pid,
        cmdline: args.join(" "),
        claw_gateway: gateway_args(&args).is_some(),
    })
}

/// The processes (other than this one) with `path` open, as `/proc/*/fd` shows them (only those
/// whose `fd/` we can read).
pub fn processes_with_file_open(path: &Path) -> Vec<ProcInfo> {
    let me = std::process::id();
    pids()
        .into_iter()
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
            })
        })
        .filter_map(proc_info)
        .collect()
}

/// The processes whose open fds include each of `inodes` (only those whose `fd/` we can read).
pub fn processes_holding(inodes: &[u64]) -> HashMap<u64, Vec<ProcInfo>> {
    let mut out: HashMap<u64, Vec<ProcInfo>> = HashMap::new();
    if inodes.is_empty() {
        return out;
    }
    for pid in pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut hit: Vec<u64> = Vec::new();
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(ino) = link.to_str().and_then(socket_inode) {
                if inodes.contains(&ino) && !hit.contains(&ino) {
                    hit.push(ino);
                }
            }
        }
        if hit.is_empty() {
            continue;
        }
        if let Some(info) = proc_info(pid) {
            for ino in hit {
                out.entry(ino).or_default().push(info.clone());
            }
        }
    }
    out
}

/// Every `claw … gateway run` process on the machine (pid and arguments).
pub fn claw_gateways() -> Vec<(u32, GatewayArgs, String)> {
    pids()
        .into_iter()
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = split_cmdline(&raw);
            let g = gateway_args(&args)?;
            Some((pid, g, args.join(" ")))
        })
        .collect()
}

/// The home a gateway process uses: its `--home` (relative to its working directory), else its
/// `CLAW_HOME`, else its `HOME/.claw`. `None` when that cannot be read (another user's process).
pub fn process_home(pid: u32, args: &GatewayArgs) -> Option<PathBuf> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok();
    let raw = match &args.home {
        Some(h) => h.clone(),
        None => {
            let env = environ.as_deref()?;
            match env_value(env, "CLAW_HOME") {
                Some(h) => PathBuf::from(h),
                None => PathBuf::from(env_value(env, "HOME")?).join(".claw"),
            }
        }
    };
    if raw.is_absolute() {
        Some(raw)
    } else {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        Some(cwd.join(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_proc_net_tcp_and_tcp6() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4A65 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   2: 0100007F:4A65 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 0 1
   garbage line
";
        let e = parse_net(tcp);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].local, "127.0.0.1:19045".parse().unwrap());
        assert_eq!(
            (e[0].state, e[0].uid, e[0].inode),
            (TCP_LISTEN, 1000, 123456)
        );
        assert_eq!(e[1].local, "0.0.0.0:2024".parse().unwrap());
        assert_eq!(e[2].state, 1);
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:4A65 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 42 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 43 1 0000000000000000 100 0 0 10 0
";
        let e = parse_net(tcp6);
        assert_eq!(e[0].local, "[::1]:19045".parse().unwrap());
        assert_eq!(e[1].local, "[::ffff:127.0.0.1]:8080".parse().unwrap());
        assert_eq!(e[1].inode, 43);
    }

    #[test]
    fn parses_fd_links_and_cmdlines() {
        assert_eq!(socket_inode("socket:[98765]"), Some(98765));
        assert_eq!(socket_inode("pipe:[98765]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(
            split_cmdline(b"claw\0--home\0/tmp/h\0gateway\0run\0"),
            args("claw --home /tmp/h gateway run")
        );
        assert_eq!(
            env_value(b"A=1\0CLAW_HOME=/x\0HOME=/root\0", "CLAW_HOME").as_deref(),
            Some("/x")
        );
        assert_eq!(env_value(b"A=1\0", "HOME"), None);
    }

    #[test]
    fn recognises_claw_gateway_run_and_its_home() {
        let table: &[(&str, Option<Option<&str>>)] = &[
            ("claw gateway run", Some(None)),
            (
                "/usr/local/bin/claw --home /h gateway run --port 0",
                Some(Some("/h")),
            ),
            ("target/debug/claw gateway run --home=/x", Some(Some("/x"))),
            ("claw --home rel gateway run --tunnel", Some(Some("rel"))),
            ("claw gateway start", None),
            ("claw gateway status", None),
            ("claw devices run", None),
            ("clawd gateway run", None),
            ("python3 claw gateway run", None),
            ("claw --home gateway gateway run", Some(Some("gateway"))),
        ];
        for (line, want) in table {
            let got = gateway_args(&args(line)).map(|g| g.home);
            let want = want.map(|h| h.map(PathBuf::from));
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn temp_file_writer_and_secret_names() {
        assert_eq!(tmp_writer_pid("gateway.token.4242.claw-tmp"), Some(4242));
        assert_eq!(tmp_writer_pid("gateway.json.1.claw-tmp"), Some(1));
        assert_eq!(tmp_writer_pid("junk.claw-tmp"), None);
        assert_eq!(tmp_writer_pid("gateway.token"), None);
        for s in [
            "gateway.token",
            "state.db",
            "state.db-wal",
            "state.db-shm",
            "gateway.lock",
            "gateway.json",
            "admin.sock",
            "identity.key",
            "device-token.json",
            "tunnel.json",
        ] {
            assert!(is_secret_name(s), "{s}");
        }
        for s in ["gateway.log", "state.db.corrupt", "README", "x.claw-tmp"] {
            assert!(!is_secret_name(s), "{s}");
        }
    }

    #[test]
    fn own_pid_is_alive_and_nonsense_and_zombies_are_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
        assert_eq!(stat_state("42 (claw) S 1 42 42 0"), Some('S'));
        assert_eq!(stat_state("42 (a) b) (c) Z 1 42"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
        // A killed child that is not reaped yet is a zombie: dead.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while pid_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!pid_alive(pid), "zombie {pid} counted as alive");
        child.wait().unwrap();
    }
}
