//! Hole punching, the pure part: the probe wire format and the state machine that decides
//! where one peer's QUIC packets go (relay or a confirmed direct UDP path). No IO and no clock:
//! the socket shell hands in `now`, received datagrams and timer expiries, and sends what
//! [`Punch::poll_transmit`] returns.
//!
//! - **Probes** are UDP datagrams that can never be QUIC packets from a mesh endpoint: their
//!   first byte has the fixed bit (0x40) clear, and mesh endpoints never grease it
//!   ([`crate::socket::endpoint_config`]). Each carries a kind (ping/pong), the sender's role
//!   (gateway/device, so a reflected probe is refused), a sequence number and an HMAC-SHA256
//!   tag (16 bytes) keyed with material exported from the QUIC session
//!   (`Connection::export_keying_material`, [`PROBE_KEY_LABEL`]): only the two ends of this
//!   QUIC connection can make one. A pong echoes the ping's sequence number and the address the
//!   ping came from (what the peer's NAT shows: a reflexive candidate).
//! - **Bursts are bounded**: [`BURST_PINGS`] pings per candidate, [`BURST_GAP`] apart, for at
//!   most [`MAX_CANDIDATES`] candidates; a new burst no sooner than the retry delay
//!   ([`RETRY_FIRST`] doubling to [`RETRY_MAX`]).
//! - **Accept-on-probe**: an authenticated ping from an address makes QUIC from it acceptable at
//!   once ([`Punch::accepts`]) and triggers a burst of our own towards it, so the side that
//!   switches first is not dropped.
//! - **Switching**: a pong to one of our pings confirms a direct path; QUIC packets go there
//!   from then on. While direct, a keep-alive ping every [`KEEPALIVE`]; no pong for
//!   [`DIRECT_TIMEOUT`] falls back to the relay (quinn never notices: it sees one fake peer
//!   address either way), and bursts towards the old path continue so it is taken again when it
//!   answers.
//! - **Replays** of pings are refused: a sequence number at or below the highest seen minus
//!   [`REPLAY_WINDOW`], or already seen inside the window, is ignored.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

pub use claw_proto::tunnel::MAX_CANDIDATES;

/// The exporter label for the probe key (`Connection::export_keying_material`, empty context).
pub const PROBE_KEY_LABEL: &[u8] = b"claw mesh probe key v1";
/// Pings per candidate in one burst.
pub const BURST_PINGS: u32 = 5;
/// Between two pings of a burst.
pub const BURST_GAP: Duration = Duration::from_millis(100);
/// The first delay between bursts while no direct path is confirmed.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest delay between bursts.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// Between keep-alive pings on a confirmed direct path.
pub const KEEPALIVE: Duration = Duration::from_secs(2);
/// A direct path with no pong for this long is given up (back to the relay).
pub const DIRECT_TIMEOUT: Duration = Duration::from_millis(6_500);
/// How long an address that pinged us stays acceptable without a confirmed path.
pub const ACCEPT_FOR: Duration = Duration::from_secs(10);
/// Ping sequence numbers remembered for replay checks.
pub const REPLAY_WINDOW: u64 = 1024;
/// Outstanding pings remembered (the oldest is forgotten first).
const MAX_OUTSTANDING: usize = 256;

/// First byte of every probe: the QUIC fixed bit (0x40) clear.
const MAGIC: u8 = 0x0c;
/// Probe format version.
const VERSION: u8 = 1;
/// Bytes of the HMAC-SHA256 tag kept.
const TAG_LEN: usize = 16;
/// magic, version, kind, role, seq(8), addr(16), port(2).
const BODY_LEN: usize = 4 + 8 + 18;
/// A probe's length on the wire.
pub const PROBE_LEN: usize = BODY_LEN + TAG_LEN;

/// Which end of the QUIC connection a probe comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The gateway (the QUIC server).
    Gateway = 1,
    /// The device (the QUIC client).
    Device = 2,
}

/// A probe's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// "Are you there?": answered with a pong to the address it came from.
    Ping = 1,
    /// The answer: echoes the ping's sequence number and where the ping came from.
    Pong = 2,
}

/// A decoded, authenticated probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Ping or pong.
    pub kind: Kind,
    /// Who sent it.
    pub from_role: Role,
    /// The ping's sequence number (echoed by its pong).
    pub seq: u64,
    /// A pong: the address the ping arrived from; a ping: unspecified.
    pub observed: SocketAddr,
}

/// Why a datagram is not an acceptable probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Not a probe at all (QUIC, or something else): the shell passes it on or drops it.
    #[error("not a probe")]
    NotProbe,
    /// Looks like a probe but its length, version, kind or role is wrong.
    #[error("malformed probe")]
    Malformed,
    /// The tag does not verify: not made by the other end of this QUIC session.
    #[error("probe not authenticated")]
    BadTag,
}

/// True when `datagram` is in the probe format's space (first byte, fixed bit clear); QUIC
/// packets of a mesh endpoint never are.
pub fn looks_like_probe(datagram: &[u8]) -> bool {
    datagram.first() == Some(&MAGIC)
}

/// The key probes are tagged with, from the exported keying material of the QUIC session.
#[derive(Clone)]
pub struct ProbeKey(ring::hmac::Key);

impl std::fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeKey(…)")
    }
}

impl ProbeKey {
    /// A key from 32 bytes of exported keying material.
    pub fn new(material: &[u8; 32]) -> Self {
        Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, material))
    }

    /// The probe on the wire.
    pub fn encode(&self, p: &Probe) -> [u8; PROBE_LEN] {
        let mut out = [0u8; PROBE_LEN];
        out[0] = MAGIC;
        out[1] = VERSION;
        out[2] = p.kind as u8;
        out[3] = p.from_role as u8;
        out[4..12].copy_from_slice(&p.seq.to_be_bytes());
        let v6 = match p.observed.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        out[12..28].copy_from_slice(&v6.octets());
        out[28..30].copy_from_slice(&p.observed.port().to_be_bytes());
        let tag = ring::hmac::sign(&self.0, &out[..BODY_LEN]);
        out[BODY_LEN..].copy_from_slice(&tag.as_ref()[..TAG_LEN]);
        out
    }

    /// Decodes and authenticates a probe.
    pub fn decode(&self, datagram: &[u8]) -> Result<Probe, ProbeError> {
        if !looks_like_probe(datagram) {
            return Err(ProbeError::NotProbe);
        }
        if datagram.len() != PROBE_LEN || datagram[1] != VERSION {
            return Err(ProbeError::Malformed);
        }
        let kind = match datagram[2] {
            1 => Kind::Ping,
            2 => Kind::Pong,
            _ => return Err(ProbeError::Malformed),
        };
        let from_role = match datagram[3] {
            1 => Role::Gateway,
            2 => Role::Device,
            _ => return Err(ProbeError::Malformed),
        };
        let expected = ring::hmac::sign(&self.0, &datagram[..BODY_LEN]);
        // Constant time: every byte is compared whatever the first difference.
        let diff = expected.as_ref()[..TAG_LEN]
            .iter()
            .zip(&datagram[BODY_LEN..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(ProbeError::BadTag);
        }
        let seq = u64::from_be_bytes(datagram[4..12].try_into().expect("8 bytes"));
        let octets: [u8; 16] = datagram[12..28].try_into().expect("16 bytes");
        let v6 = Ipv6Addr::from(octets);
        let ip = v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6));
        let port = u16::from_be_bytes([datagram[28], datagram[29]]);
        Ok(Probe {
            kind,
            from_role,
            seq,
            observed: SocketAddr::new(ip, port),
        })
    }
}

/// Where QUIC packets to the peer go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Over the relay.
    Relay,
    /// Straight to this UDP address.
    Direct(SocketAddr),
}

/// What the shell does with a received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Not a probe: QUIC from an accepted address ([`Punch::accepts`]) goes to quinn as from
    /// the peer's fake address; anything else is dropped.
    NotProbe,
    /// A probe, handled; send this answer (a pong) back to where it came from, if any.
    Probe(Option<[u8; PROBE_LEN]>),
    /// Refused (unauthenticated, malformed, reflected, replayed or unsolicited): dropped.
    Refused,
}

#[derive(Debug, Clone, Copy)]
struct Direct {
    addr: SocketAddr,
    last_pong: Instant,
    next_keepalive: Instant,
}

/// One peer's hole-punching state.
#[derive(Debug)]
pub struct Punch {
    key: ProbeKey,
    role: Role,
    candidates: Vec<SocketAddr>,
    next_seq: u64,
    /// Our pings awaiting a pong: seq → (where it went, when).
    outstanding: HashMap<u64, (SocketAddr, Instant)>,
    /// The burst in progress: candidates still to ping, pings sent to each so far, next ping.
    burst: Option<(Vec<SocketAddr>, u32, Instant)>,
    next_burst: Option<Instant>,
    retry: Duration,
    direct: Option<Direct>,
    /// The last confirmed direct address, probed again after a fallback.
    last_direct: Option<SocketAddr>,
    /// Addresses that sent us an authenticated ping, until when QUIC from them is accepted.
    accepted: HashMap<SocketAddr, Instant>,
    seen_max: Option<u64>,
    seen: BTreeSet<u64>,
    /// The address the peer's last pong said our pings came from.
    reflexive: Option<SocketAddr>,
    since: Instant,
}

impl Punch {
    /// A punch for one QUIC connection: our role and the key from its exported keying material.
    pub fn new(role: Role, key: ProbeKey, now: Instant) -> Self {
        Self {
            key,
            role,
            candidates: Vec::new(),
            next_seq: 1,
            outstanding: HashMap::new(),
            burst: None,
            next_burst: None,
            retry: RETRY_FIRST,
            direct: None,
            last_direct: None,
            accepted: HashMap::new(),
            seen_max: None,
            seen: BTreeSet::new(),
            reflexive: None,
            since: now,
        }
    }

    /// The peer's candidates arrived (over the control stream): the first [`MAX_CANDIDATES`]
    /// usable ones (no unspecified, multicast, broadcast or port-0 address, no duplicates)
    /// replace the old ones, and a burst starts now.
    pub fn set_candidates(&mut self, addrs: &[SocketAddr], now: Instant) {
        let mut keep = Vec::new();
        for a in addrs {
            if usable(a) && !keep.contains(a) {
                keep.push(*a);
            }
            if keep.len() == MAX_CANDIDATES {
                break;
            }
        }
        self.candidates = keep;
        self.retry = RETRY_FIRST;
        self.next_burst = Some(now);
    }

    /// Where QUIC packets go now.
    pub fn path(&self) -> Path {
        match self.direct {
            Some(d) => Path::Direct(d.addr),
            None => Path::Relay,
        }
    }

    /// When the current path was taken.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// What the peer last reported seeing as our address (a reflexive candidate).
    pub fn reflexive(&self) -> Option<SocketAddr> {
        self.reflexive
    }

    /// Whether QUIC packets arriving from `from` belong to this peer: the confirmed direct
    /// address, or one that sent an authenticated ping recently (accept-on-probe).
    pub fn accepts(&self, from: SocketAddr, now: Instant) -> bool {
        self.direct.is_some_and(|d| d.addr == from)
            || self.accepted.get(&from).is_some_and(|until| *until > now)
    }

    /// Handles a datagram from `from`.
    pub fn on_datagram(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) -> Received {
        let p = match self.key.decode(datagram) {
            Ok(p) => p,
            Err(ProbeError::NotProbe) => return Received::NotProbe,
            Err(_) => return Received::Refused,
        };
        if p.from_role == self.role {
            // Our own probe reflected back at us.
            return Received::Refused;
        }
        match p.kind {
            Kind::Ping => {
                if !self.fresh(p.seq) {
                    return Received::Refused;
                }
                self.accepted.insert(from, now + ACCEPT_FOR);
                if self.accepted.len() > 4 * MAX_CANDIDATES {
                    self.accepted.retain(|_, until| *until > now);
                }
                // Punch back towards it unless it is the path we already use.
                if self.direct.map(|d| d.addr) != Some(from) && self.burst.is_none() {
                    self.burst = Some((vec![from], 0, now));
                }
                let pong = Probe {
                    kind: Kind::Pong,
                    from_role: self.role,
                    seq: p.seq,
                    observed: from,
                };
                Received::Probe(Some(self.key.encode(&pong)))
            }
            Kind::Pong => {
                let Some((to, _)) = self.outstanding.remove(&p.seq) else {
                    return Received::Refused;
                };
                if to != from {
                    // Answered from elsewhere than we pinged: not a round trip on one path.
                    return Received::Refused;
                }
                self.reflexive = Some(p.observed);
                match &mut self.direct {
                    Some(d) if d.addr == from => d.last_pong = now,
                    _ => {
                        self.direct = Some(Direct {
                            addr: from,
                            last_pong: now,
                            next_keepalive: now + KEEPALIVE,
                        });
                        self.last_direct = Some(from);
                        self.since = now;
                        self.burst = None;
                        self.next_burst = None;
                    }
                }
                Received::Probe(None)
            }
        }
    }

    /// A ping sequence number not seen before and inside the window.
    fn fresh(&mut self, seq: u64) -> bool {
        if let Some(max) = self.seen_max {
            if seq.saturating_add(REPLAY_WINDOW) <= max || self.seen.contains(&seq) {
                return false;
            }
        }
        self.seen.insert(seq);
        let max = self.seen_max.map_or(seq, |m| m.max(seq));
        self.seen_max = Some(max);
        let floor = max.saturating_sub(REPLAY_WINDOW);
        self.seen = self.seen.split_off(&floor);
        true
    }

    /// The next probe to send now, if any; call until `None`, then wait for
    /// [`Punch::poll_timeout`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, [u8; PROBE_LEN])> {
        self.expire(now);
        if let Some(d) = &mut self.direct {
            if now >= d.next_keepalive {
                d.next_keepalive = now + KEEPALIVE;
                let to = d.addr;
                return Some((to, self.ping(to, now)));
            }
        }
        if self.burst.is_none()
            && self.direct.is_none()
            && self.next_burst.is_some_and(|t| now >= t)
        {
            let mut targets = self.candidates.clone();
            if let Some(l) = self.last_direct {
                if !targets.contains(&l) {
                    targets.insert(0, l);
                }
            }
            targets.truncate(MAX_CANDIDATES);
            self.next_burst = Some(now + self.retry);
            self.retry = (self.retry * 2).min(RETRY_MAX);
            if !targets.is_empty() {
                self.burst = Some((targets, 0, now));
            }
        }
        let (targets, sent, at) = self.burst.as_mut()?;
        if now < *at {
            return None;
        }
        // One ping per target per round; rounds BURST_GAP apart.
        let i = (*sent as usize) % targets.len();
        let to = targets[i];
        *sent += 1;
        let rounds_done = (*sent as usize).is_multiple_of(targets.len());
        if rounds_done {
            *at = now + BURST_GAP;
        }
        if *sent >= BURST_PINGS * targets.len() as u32 {
            self.burst = None;
        }
        Some((to, self.ping(to, now)))
    }

    fn ping(&mut self, to: SocketAddr, now: Instant) -> [u8; PROBE_LEN] {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.outstanding.len() >= MAX_OUTSTANDING {
            if let Some(oldest) = self.outstanding.keys().min().copied() {
                self.outstanding.remove(&oldest);
            }
        }
        self.outstanding.insert(seq, (to, now));
        self.key.encode(&Probe {
            kind: Kind::Ping,
            from_role: self.role,
            seq,
            observed: SocketAddr::from(([0, 0, 0, 0], 0)),
        })
    }

    /// Falls back to the relay when the direct path stopped answering.
    fn expire(&mut self, now: Instant) {
        if let Some(d) = self.direct {
            if now.saturating_duration_since(d.last_pong) >= DIRECT_TIMEOUT {
                self.direct = None;
                self.accepted.remove(&d.addr);
                self.since = now;
                self.retry = RETRY_FIRST;
                self.next_burst = Some(now);
            }
        }
        self.outstanding
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < DIRECT_TIMEOUT);
    }

    /// When [`Punch::poll_transmit`] or the path may change next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(d) = self.direct {
            at(d.next_keepalive);
            at(d.last_pong + DIRECT_TIMEOUT);
        } else if let Some(n) = self.next_burst {
            at(n);
        }
        if let Some((_, _, when)) = &self.burst {
            at(*when);
        }
        t
    }
}

/// An address worth probing.
fn usable(a: &SocketAddr) -> bool {
    let ip = a.ip();
    a.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && ip != IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
        && !crate::peers::is_relay_addr(a)
}

#[cfg(test)]
mod tests;
