//! A real network path for tests and benches: two network namespaces joined by a veth pair with
//! a 1,500-byte MTU and the veth offloads off, so packets cross a link like an Ethernet one
//! instead of loopback's 64 KiB ones. Random loss is injected with nftables (`numgen random mod
//! 100 < N drop`; this kernel has no netem) and the link can be taken down and up again.
//!
//! Everything lives inside the two namespaces, named `<prefix>-<pid>-<n>a` / `…b`: the private
//! addresses ([`ADDR_A`], [`ADDR_B`]), the veth ends ([`IF_A`], [`IF_B`]) and the nftables table.
//! Dropping the [`NetnsPair`] deletes both namespaces (which removes the veth and the rules with
//! them); that also happens while a panicking test unwinds. Namespaces left behind by a process
//! that was killed outright are deleted by the next [`NetnsPair::create`] with the same prefix.
//!
//! Programs run in a namespace with `ip netns exec` ([`NetnsPair::command`]); sockets of the
//! test process itself are opened in a namespace by a short-lived thread that enters it
//! ([`NetnsPair::run_in`]), and keep working from any thread afterwards.
//!
//! Shared by `tests/real_paths.rs` and `benches/real_paths.rs` (`#[path]`), so it depends on
//! nothing but std and nix and reports errors as strings.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Address of namespace A's veth end (the gateway side in the tests).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 218, 0, 1);
/// Address of namespace B's veth end (the device side).
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 218, 0, 2);
/// Prefix length of the link's subnet.
const PREFIX_LEN: u8 = 30;
/// Interface names inside the namespaces (each namespace has its own name space for links).
pub const IF_A: &str = "veth-a";
pub const IF_B: &str = "veth-b";
/// The link's ends when it is a pair of TUN devices ([`NetnsPair::create_tun`]).
pub const TUN_A: &str = "tun-a";
pub const TUN_B: &str = "tun-b";
/// Ethernet's MTU: QUIC packets of ~1,452 bytes, as on most internet paths.
pub const MTU: u32 = 1500;
/// The nftables table that holds the loss rule, in each namespace.
const NFT_TABLE: &str = "netns_loss";

/// One end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Why a netns test cannot run here (not root, no `ip`, namespaces not permitted), or `None`.
/// `needs_nft` also requires `nft` (for loss).
pub fn unavailable(needs_nft: bool) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)".into());
    }
    if !on_path("ip") {
        return Some("`ip` (iproute2) is not installed".into());
    }
    if needs_nft && !on_path("nft") {
        return Some("`nft` (nftables) is not installed".into());
    }
    None
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(program);
            f.is_file()
        })
    })
}

/// Runs a command to completion; its stderr becomes the error.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args))
}

/// Two namespaces joined by a veth; deleted on drop.
#[derive(Debug)]
pub struct NetnsPair {
    a: String,
    b: String,
    /// Why the veth offloads could not be turned off (no `ethtool`), if so.
    pub offload_note: Option<String>,
    /// The link is two TUN devices ([`TUN_A`], [`TUN_B`]) joined by a userspace program, not a veth.
    tun: bool,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl NetnsPair {
    /// Creates `<prefix>-<pid>-<n>a` and `…b`, the veth between them (MTU 1,500, TSO/GSO/GRO
    /// off), [`ADDR_A`] and [`ADDR_B`] on it, loopback up in both. Deletes stale pairs with the
    /// same prefix whose process is gone first.
    pub fn create(prefix: &str) -> Result<Self, String> {
        remove_stale(prefix);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("{prefix}-{}-{n}", std::process::id());
        let pair = Self {
            a: format!("{base}a"),
            b: format!("{base}b"),
            offload_note: None,
            tun: false,
        };
        // From here on, a failure still deletes whatever was made (Drop).
        pair.build()
    }

    /// Like [`NetnsPair::create`], but the link is a persistent TUN device in each namespace
    /// ([`TUN_A`] with [`ADDR_A`], [`TUN_B`] with [`ADDR_B`], point to point, MTU 1,500): no
    /// packet crosses until a program opens both devices (`TUNSETIFF` on `/dev/net/tun` inside
    /// each namespace) and copies packets between them — a userspace delay line, since this
    /// kernel has no netem (benches/common/delay_line.rs). Loss and link down work as on the veth.
    pub fn create_tun(prefix: &str) -> Result<Self, String> {
        remove_stale(prefix);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("{prefix}-{}-{n}", std::process::id());
        let pair = Self {
            a: format!("{base}a"),
            b: format!("{base}b"),
            offload_note: None,
            tun: true,
        };
        pair.build_tun()
    }

    fn build_tun(self) -> Result<Self, String> {
        ip(&["netns", "add", &self.a])?;
        ip(&["netns", "add", &self.b])?;
        let mtu = MTU.to_string();
        for (ns, ifname, addr, peer) in [
            (&self.a, TUN_A, ADDR_A, ADDR_B),
            (&self.b, TUN_B, ADDR_B, ADDR_A),
        ] {
            ip(&["-n", ns, "tuntap", "add", "dev", ifname, "mode", "tun"])?;
            ip(&["-n", ns, "link", "set", ifname, "mtu", &mtu])?;
            let (local, peer) = (addr.to_string(), format!("{peer}/32"));
            ip(&[
                "-n", ns, "addr", "add", &local, "peer", &peer, "dev", ifname,
            ])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(self)
    }

    /// True when the link is a TUN pair ([`NetnsPair::create_tun`]).
    pub fn is_tun(&self) -> bool {
        self.tun
    }

    fn build(mut self) -> Result<Self, String> {
        ip(&["netns", "add", &self.a])?;
        ip(&["netns", "add", &self.b])?;
        let mtu = MTU.to_string();
        // Created inside A with its peer moved straight into B: no name ever exists in the
        // root namespace, so parallel pairs cannot collide.
        ip(&[
            "-n", &self.a, "link", "add", IF_A, "mtu", &mtu, "type", "veth", "peer", "name", IF_B,
            "netns", &self.b, "mtu", &mtu,
        ])?;
        for (ns, ifname, addr) in [(&self.a, IF_A, ADDR_A), (&self.b, IF_B, ADDR_B)] {
            let cidr = format!("{addr}/{PREFIX_LEN}");
            ip(&["-n", ns, "addr", "add", &cidr, "dev", ifname])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        if on_path("ethtool") {
            for side in [Side::A, Side::B] {
                run(self.command(side, "ethtool").args([
                    "-K",
                    self.ifname(side),
                    "tso",
                    "off",
                    "gso",
                    "off",
                    "gro",
                    "off",
                ]))?;
            }
        } else {
            self.offload_note =
                Some("ethtool is not installed: the veth offloads (TSO/GSO/GRO) stay on".into());
        }
        Ok(self)
    }

    /// The namespace's name.
    pub fn name(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// The link end's interface name in `side` (the veth's, or the TUN device's).
    pub fn ifname(&self, side: Side) -> &'static str {
        match (side, self.tun) {
            (Side::A, false) => IF_A,
            (Side::B, false) => IF_B,
            (Side::A, true) => TUN_A,
            (Side::B, true) => TUN_B,
        }
    }

    /// The veth end's address in `side`.
    pub fn addr(&self, side: Side) -> Ipv4Addr {
        match side {
            Side::A => ADDR_A,
            Side::B => ADDR_B,
        }
    }

    /// `ip netns exec NS program`: add arguments, then spawn or run it.
    pub fn command(&self, side: Side, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.name(side)]).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered `side`'s network namespace: sockets it opens belong
    /// to that namespace (and can be used from any thread afterwards).
    pub fn run_in<T: Send>(&self, side: Side, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let path = format!("/run/netns/{}", self.name(side));
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns {path}: {e}"))?;
                Ok(f())
            })
            .join()
            .map_err(|_| "a thread in the namespace panicked".to_string())?
        })
    }

    /// Drops `percent` % of the packets arriving over the veth, at random, in both directions
    /// (an nftables rule in each namespace's input hook, matching the veth only, so loopback is
    /// untouched). 0 removes the loss.
    pub fn set_loss(&self, percent: u32) -> Result<(), String> {
        for side in [Side::A, Side::B] {
            let nft = |args: &[&str]| run(self.command(side, "nft").args(args));
            // `add` is idempotent for tables and chains.
            nft(&["add", "table", "inet", NFT_TABLE])?;
            nft(&[
                "add",
                "chain",
                "inet",
                NFT_TABLE,
                "input",
                "{ type filter hook input priority 0; policy accept; }",
            ])?;
            nft(&["flush", "chain", "inet", NFT_TABLE, "input"])?;
            if percent > 0 {
                let n = percent.to_string();
                nft(&[
                    "add",
                    "rule",
                    "inet",
                    NFT_TABLE,
                    "input",
                    "iifname",
                    self.ifname(side),
                    "numgen",
                    "random",
                    "mod",
                    "100",
                    "<",
                    &n,
                    "drop",
                ])?;
            }
        }
        Ok(())
    }

    /// Takes the link down (`ip link set down` on A's end, which drops the carrier of both) or
    /// brings it back up.
    pub fn set_link(&self, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.a, "link", "set", self.ifname(Side::A), state])?;
        Ok(())
    }

    /// UDP `RcvbufErrors` of `side`'s namespace (`/proc/net/snmp` read inside it): datagrams
    /// the kernel dropped because a socket's receive buffer was full.
    pub fn udp_rcvbuf_errors(&self, side: Side) -> Result<u64, String> {
        let snmp = run(self.command(side, "cat").arg("/proc/net/snmp"))?;
        udp_counter(&snmp, "RcvbufErrors")
            .ok_or_else(|| "no Udp RcvbufErrors in /proc/net/snmp".to_string())
    }
}

/// The `Udp:` counter named `field` from the text of `/proc/net/snmp` (a header line of names,
/// then a line of values).
pub fn udp_counter(snmp: &str, field: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let i = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth in it (and so its peer) and the nft rules.
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Deletes namespaces `<prefix>-<pid>-…` whose process no longer exists (left by a test that
/// was killed before it could clean up). Live processes' namespaces are never touched.
fn remove_stale(prefix: &str) {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    let head = format!("{prefix}-");
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(&head)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
