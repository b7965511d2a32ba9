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
//! [`NatLab`] is the mesh's topology (docs/mesh.md): a public namespace with a bridge and two
//! masquerading routers on it, each with a private host behind it ([`NatKind`]: cone-like or
//! symmetric; [`NatLab::block_udp`]). [`non_loopback_listeners`] lists what a process accepts
//! from the network.
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

/// Address of the public namespace on the "internet" bridge (where the relay listens).
pub const PUB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// NAT A's WAN address (the gateway's home router).
pub const NAT_A_WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// NAT B's WAN address (the device's network).
pub const NAT_B_WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// The gateway host behind NAT A.
pub const PRIV_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
/// The device behind NAT B.
pub const PRIV_B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// One namespace of a [`NatLab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The "internet": a bridge with [`PUB_ADDR`], where the relay runs.
    Pub,
    /// NAT A's router (WAN [`NAT_A_WAN`], LAN 10.0.1.1).
    NatA,
    /// NAT B's router (WAN [`NAT_B_WAN`], LAN 10.0.2.1).
    NatB,
    /// The host behind NAT A ([`PRIV_A`]): the gateway.
    PrivA,
    /// The host behind NAT B ([`PRIV_B`]): the device.
    PrivB,
}

/// How a [`NatLab`] router maps its LAN's flows onto its WAN address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Plain masquerading: the source port is kept when free (endpoint-independent mapping,
    /// "cone"-like), so simultaneous open can punch through.
    Cone,
    /// `masquerade fully-random` (iptables `--random-fully`): a new random port per flow, a
    /// symmetric NAT.
    Symmetric,
}

/// The mesh topology (docs/mesh.md): a public namespace with a bridge, two NAT routers on it
/// and a private host behind each.
///
/// ```text
///  priv-a 10.0.1.2 ── 10.0.1.1 [nat-a] 198.51.100.2 ─┐
///                                                    br0 in pub (198.51.100.1)
///  priv-b 10.0.2.2 ── 10.0.2.1 [nat-b] 198.51.100.3 ─┘
/// ```
///
/// Each router masquerades its LAN onto its WAN address (nftables), forwards LAN→WAN and
/// established/related WAN→LAN only, and drops unsolicited WAN input to itself, as home routers
/// do. Namespaces are `<prefix>-<pid>-<n>-{pub,na,nb,pa,pb}`, all deleted on drop (also while
/// a panicking test unwinds); stale ones of dead processes on the next create.
#[derive(Debug)]
pub struct NatLab {
    names: [String; 5],
}

/// The nftables table of a router's optional UDP block ([`NatLab::block_udp`]).
const NFT_BLOCK: &str = "lab_block";

impl NatLab {
    /// Builds the topology; NAT A and NAT B map as `a` and `b` say.
    pub fn create(prefix: &str, a: NatKind, b: NatKind) -> Result<Self, String> {
        remove_stale(prefix);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("{prefix}-{}-{n}", std::process::id());
        let lab = Self {
            names: ["pub", "na", "nb", "pa", "pb"].map(|s| format!("{base}-{s}")),
        };
        // From here on, a failure still deletes whatever was made (Drop).
        lab.build(a, b)?;
        Ok(lab)
    }

    fn build(&self, a: NatKind, b: NatKind) -> Result<(), String> {
        for ns in &self.names {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let pub_ns = self.name(Host::Pub);
        ip(&["-n", pub_ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            pub_ns,
            "addr",
            "add",
            &format!("{PUB_ADDR}/24"),
            "dev",
            "br0",
        ])?;
        ip(&["-n", pub_ns, "link", "set", "br0", "up"])?;
        let mtu = MTU.to_string();
        for (nat, host, wan, lan_net, kind, port) in [
            (Host::NatA, Host::PrivA, NAT_A_WAN, 1u8, a, "port-a"),
            (Host::NatB, Host::PrivB, NAT_B_WAN, 2u8, b, "port-b"),
        ] {
            let (nat_ns, host_ns) = (self.name(nat), self.name(host));
            // WAN: a veth from the router into the bridge.
            ip(&[
                "-n", nat_ns, "link", "add", "wan", "mtu", &mtu, "type", "veth", "peer", "name",
                port, "netns", pub_ns, "mtu", &mtu,
            ])?;
            ip(&["-n", pub_ns, "link", "set", port, "master", "br0"])?;
            ip(&["-n", pub_ns, "link", "set", port, "up"])?;
            ip(&[
                "-n",
                nat_ns,
                "addr",
                "add",
                &format!("{wan}/24"),
                "dev",
                "wan",
            ])?;
            ip(&["-n", nat_ns, "link", "set", "wan", "up"])?;
            // LAN: a veth from the router to its host.
            ip(&[
                "-n", nat_ns, "link", "add", "lan", "mtu", &mtu, "type", "veth", "peer", "name",
                "eth0", "netns", host_ns, "mtu", &mtu,
            ])?;
            let gw = format!("10.0.{lan_net}.1");
            ip(&[
                "-n",
                nat_ns,
                "addr",
                "add",
                &format!("{gw}/24"),
                "dev",
                "lan",
            ])?;
            ip(&["-n", nat_ns, "link", "set", "lan", "up"])?;
            let host_addr = format!("10.0.{lan_net}.2/24");
            ip(&["-n", host_ns, "addr", "add", &host_addr, "dev", "eth0"])?;
            ip(&["-n", host_ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", host_ns, "route", "add", "default", "via", &gw])?;
            run(self
                .command(nat, "sysctl")
                .args(["-q", "-w", "net.ipv4.ip_forward=1"]))?;
            let flags = match kind {
                NatKind::Cone => "",
                NatKind::Symmetric => " fully-random",
            };
            let rules = format!(
                "table ip lab_nat {{\n\
                   chain post {{ type nat hook postrouting priority 100; oifname \"wan\" masquerade{flags}; }}\n\
                 }}\n\
                 table inet lab_filter {{\n\
                   chain forward {{ type filter hook forward priority 0; policy drop;\n\
                     ct state established,related accept; iifname \"lan\" oifname \"wan\" accept; }}\n\
                   chain input {{ type filter hook input priority 0; policy accept;\n\
                     iifname \"wan\" ct state established,related accept; iifname \"wan\" drop; }}\n\
                 }}\n"
            );
            self.nft_script(nat, &rules)?;
        }
        Ok(())
    }

    /// Loads an nftables script in `host`'s namespace.
    fn nft_script(&self, host: Host, script: &str) -> Result<(), String> {
        use std::io::Write;
        let mut child = self
            .command(host, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft stdin: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "nft -f exited {}: {}\n{script}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Makes router `nat` ([`Host::NatA`] or [`Host::NatB`]) drop every UDP packet it would
    /// forward (both directions), or, with `blocked == false`, forward UDP again. TCP (the
    /// relay's WebSocket) is untouched.
    pub fn block_udp(&self, nat: Host, blocked: bool) -> Result<(), String> {
        let rule = if blocked {
            "meta l4proto udp drop;"
        } else {
            ""
        };
        self.nft_script(
            nat,
            &format!(
                "table inet {NFT_BLOCK} {{\n\
                   chain forward {{ type filter hook forward priority -10; policy accept; }}\n\
                 }}\n\
                 flush chain inet {NFT_BLOCK} forward\n\
                 table inet {NFT_BLOCK} {{\n\
                   chain forward {{ {rule} }}\n\
                 }}\n"
            ),
        )
    }

    /// The namespace's name.
    pub fn name(&self, host: Host) -> &str {
        &self.names[host as usize]
    }

    /// `ip netns exec NS program`: add arguments, then spawn or run it. The program `exec`s in
    /// place of `ip`, so the child's pid is the program's.
    pub fn command(&self, host: Host, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.name(host)]).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered `host`'s network namespace (sockets it opens, and
    /// threads it starts, belong to that namespace).
    pub fn run_in<T: Send>(&self, host: Host, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let path = format!("/run/netns/{}", self.name(host));
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
}

impl Drop for NatLab {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Local addresses of the sockets process `pid` holds that accept from the network outside
/// loopback: TCP listeners and bound UDP sockets, read from `/proc/<pid>/net/{tcp,tcp6,udp,
/// udp6}` (the process's own network namespace) and matched against its socket inodes.
pub fn non_loopback_listeners(pid: u32) -> Vec<String> {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                let t = t.display().to_string();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(i.to_string());
                }
            }
        }
    }
    let mut found = Vec::new();
    for (file, listen_state) in [
        ("tcp", Some("0A")),
        ("tcp6", Some("0A")),
        ("udp", None),
        ("udp6", None),
    ] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let (local, state, inode) = (f[1], f[3], f[9]);
            if !inodes.contains(inode) || listen_state.is_some_and(|s| s != state) {
                continue;
            }
            let ip = local.split(':').next().unwrap_or_default();
            let loopback = match ip.len() {
                8 => ip.ends_with("7F"),
                _ => {
                    ip == "00000000000000000000000001000000"
                        || (ip.starts_with("0000000000000000FFFF0000") && ip.ends_with("7F"))
                }
            };
            if !loopback {
                found.push(format!("{file} {local}"));
            }
        }
    }
    found
}
