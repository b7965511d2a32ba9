//! Which paths a device tries to reach its gateway, in which order: the pairing's tunnel
//! addresses first, staggered like happy eyeballs (RFC 8305), then its relays one after the
//! other. `claw tunnel pair`, `claw tunnel up` (every reconnect) and the probes all dial this
//! way. The order and the timers are the pure [`plan`] and [`due`]; [`Paths`] is the IO.
//!
//! - Address `i` starts `i × ADDR_STAGGER` after the dial begins, or as soon as every attempt
//!   started before it has failed, whichever comes first; each has [`ADDR_TIMEOUT`].
//! - The relays start once every address has failed or timed out (a pairing without addresses
//!   starts with them), one at a time, each with [`RELAY_TIMEOUT`]; a relay that refuses its
//!   first connection gives up at once, so a dead relay does not cost its whole timeout.
//! - The first QUIC handshake to finish wins, the others are dropped; a pinned-key mismatch or
//!   a refusal by the gateway (revoked) ends the dial at once, whatever path it came from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::Connection;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::client::Dialer;
use super::TunnelError;
use crate::device::Pairing;
use crate::identity::Identity;
use crate::pairing::{PairingUri, RelayRef};

/// Delay between two address attempts' starts.
pub const ADDR_STAGGER: Duration = Duration::from_millis(250);
/// How long one address attempt may take: a loopback or LAN handshake takes milliseconds and a
/// far one well under a second, so 5 s only matters for an address that will never answer
/// (a closed UDP port, a gateway behind NAT), which is then what delays the relay fallback.
pub const ADDR_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one relay attempt may take: the relay's own TLS/WebSocket connection comes first.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(20);

/// One way to the gateway: the pairing's address or relay at that index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A tunnel address (direct UDP).
    Addr(usize),
    /// A relay.
    Relay(usize),
}

/// A planned attempt: its route, the latest time it starts (from the start of the dial) and
/// how long it may take once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The route.
    pub route: Route,
    /// It starts at this offset at the latest (earlier when nothing is in flight).
    pub start: Duration,
    /// Its timeout once started.
    pub timeout: Duration,
}

/// The attempts for `addrs` addresses and `relays` relays, in order. Pure.
pub fn plan(addrs: usize, relays: usize) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = (0..addrs)
        .map(|i| Attempt {
            route: Route::Addr(i),
            start: ADDR_STAGGER * i as u32,
            timeout: ADDR_TIMEOUT,
        })
        .collect();
    let mut at = out.last().map(|a| a.start + a.timeout).unwrap_or_default();
    for j in 0..relays {
        out.push(Attempt {
            route: Route::Relay(j),
            start: at,
            timeout: RELAY_TIMEOUT,
        });
        at += RELAY_TIMEOUT;
    }
    out
}

/// The longest a dial along [`plan`] can take: the last attempt's latest start plus its
/// timeout. Pure.
pub fn worst_case(addrs: usize, relays: usize) -> Duration {
    plan(addrs, relays)
        .last()
        .map(|a| a.start + a.timeout)
        .unwrap_or_default()
}

/// Whether `next` is due `elapsed` after the dial began, with `in_flight` attempts running:
/// at its planned start, or at once when nothing is in flight. Pure.
pub fn due(next: &Attempt, elapsed: Duration, in_flight: usize) -> bool {
    in_flight == 0 || elapsed >= next.start
}

/// How the device is known on the relays: the key it proves there and the ticket it presents.
#[derive(Debug, Clone)]
pub struct RelayCredentials {
    /// The Ed25519 seed of the relay key (the identity key once paired; the pairing key of
    /// the URI's code before).
    pub seed: [u8; 32],
    /// The latest ticket.
    pub ticket: watch::Receiver<Option<String>>,
}

/// Every path to one gateway, and the dialers made for them so far (one UDP endpoint for the
/// addresses, one relay link per relay, made when first tried and then kept for reconnects).
pub struct Paths {
    identity: Identity,
    gateway_id: String,
    addrs: Vec<String>,
    relays: Vec<RelayRef>,
    gateway_key: Option<[u8; 32]>,
    creds: Option<RelayCredentials>,
    direct: Mutex<Option<Arc<Dialer>>>,
    relay_dialers: Mutex<Vec<Option<Arc<Dialer>>>>,
    current: Mutex<Option<Arc<Dialer>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Paths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paths")
            .field("gateway_id", &self.gateway_id)
            .field("addrs", &self.addrs)
            .field("relays", &self.relays.len())
            .finish()
    }
}

impl Paths {
    /// The paths of a stored pairing (on the relays as the device's own key, with the ticket
    /// `ticket` holds).
    pub fn for_pairing(
        identity: &Identity,
        pairing: &Pairing,
        ticket: watch::Receiver<Option<String>>,
    ) -> Result<Self, TunnelError> {
        if pairing.addrs.is_empty() && pairing.relays.is_empty() {
            return Err(TunnelError::Config(
                "the pairing names no tunnel address and no relay".into(),
            ));
        }
        let gateway_key = pairing.gateway_key();
        if pairing.addrs.is_empty() && gateway_key.is_none() {
            return Err(TunnelError::Config(
                "the pairing names a relay but not the gateway's key".into(),
            ));
        }
        Ok(Self::build(
            identity,
            &pairing.gateway_id,
            &pairing.addrs,
            &pairing.relays,
            gateway_key,
            Some(RelayCredentials {
                seed: *identity.key().seed(),
                ticket,
            }),
        ))
    }

    /// The paths of a pairing URI being redeemed (on the relays as the code's pairing key).
    pub fn for_uri(identity: &Identity, uri: &PairingUri) -> Result<Self, TunnelError> {
        let creds = uri
            .pairing_relay_credentials()
            .map(|(ticket, seed)| RelayCredentials {
                seed,
                ticket: watch::channel(Some(ticket)).1,
            });
        if uri.addrs.is_empty() && creds.is_none() {
            return Err(TunnelError::Config(
                "the pairing URI names no tunnel address and no relay".into(),
            ));
        }
        Ok(Self::build(
            identity,
            &uri.gateway_id,
            &uri.addrs,
            &uri.relays,
            uri.gateway_key,
            creds,
        ))
    }

    fn build(
        identity: &Identity,
        gateway_id: &str,
        addrs: &[String],
        relays: &[RelayRef],
        gateway_key: Option<[u8; 32]>,
        creds: Option<RelayCredentials>,
    ) -> Self {
        // Relays are usable only with the gateway's key and relay credentials.
        let relays = if gateway_key.is_some() && creds.is_some() {
            relays.to_vec()
        } else {
            Vec::new()
        };
        Self {
            identity: identity.clone(),
            gateway_id: gateway_id.to_string(),
            addrs: addrs.to_vec(),
            relay_dialers: Mutex::new(vec![None; relays.len()]),
            relays,
            gateway_key,
            creds,
            direct: Mutex::new(None),
            current: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// The dialer of the last connection made (for `via`, the relay's status, rebinding).
    pub fn current(&self) -> Option<Arc<Dialer>> {
        lock(&self.current).clone()
    }

    /// The URL of relay `i`.
    pub fn relay_url(&self, i: usize) -> Option<&str> {
        self.relays.get(i).map(|r| r.url.as_str())
    }

    fn direct_dialer(&self) -> Result<Arc<Dialer>, TunnelError> {
        let mut slot = lock(&self.direct);
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let first = self.addrs.first().map(String::as_str).unwrap_or_default();
        let d = Arc::new(Dialer::new(&self.identity, &self.gateway_id, first)?);
        *slot = Some(d.clone());
        Ok(d)
    }

    fn relay_dialer(&self, i: usize) -> Result<Arc<Dialer>, TunnelError> {
        let mut slots = lock(&self.relay_dialers);
        if let Some(Some(d)) = slots.get(i) {
            return Ok(d.clone());
        }
        let (Some(key), Some(creds), Some(relay)) =
            (self.gateway_key, self.creds.as_ref(), self.relays.get(i))
        else {
            return Err(TunnelError::Config("no such relay".into()));
        };
        let d = Arc::new(Dialer::over_relay(
            &self.identity,
            &self.gateway_id,
            key,
            relay.target(),
            creds.seed,
            creds.ticket.clone(),
        )?);
        slots[i] = Some(d.clone());
        Ok(d)
    }

    /// Dials the gateway along [`plan`]; returns the first connection made.
    pub async fn connect(&self) -> Result<Connection, TunnelError> {
        let attempts = plan(self.addrs.len(), self.relays.len());
        let began = tokio::time::Instant::now();
        let mut running: JoinSet<Result<(Connection, Arc<Dialer>), TunnelError>> = JoinSet::new();
        let mut next = 0;
        let mut failures = Vec::new();
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return Err(TunnelError::Connection("the tunnel is closing".into()));
            }
            while let Some(a) = attempts.get(next) {
                if !due(a, began.elapsed(), running.len()) {
                    break;
                }
                next += 1;
                match self.start(a, &mut running) {
                    Ok(()) => {}
                    Err(TunnelError::Unreachable { reason, .. }) => failures.push(reason),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if running.is_empty() && next >= attempts.len() {
                return Err(TunnelError::Unreachable {
                    addrs: self.describe(),
                    reason: failures.join("; "),
                });
            }
            let wake = attempts
                .get(next)
                .map(|a| began + a.start)
                .unwrap_or_else(|| began + Duration::from_secs(24 * 3600));
            tokio::select! {
                done = running.join_next(), if !running.is_empty() => match done {
                    Some(Ok(Ok((conn, dialer)))) => {
                        *lock(&self.current) = Some(dialer);
                        return Ok(conn);
                    }
                    Some(Ok(Err(TunnelError::Unreachable { reason, .. }))) => failures.push(reason),
                    Some(Ok(Err(fatal))) => return Err(fatal),
                    Some(Err(e)) => failures.push(e.to_string()),
                    None => {}
                },
                () = tokio::time::sleep_until(wake), if next < attempts.len() => {}
            }
        }
    }

    /// Starts attempt `a` on the runtime.
    fn start(
        &self,
        a: &Attempt,
        running: &mut JoinSet<Result<(Connection, Arc<Dialer>), TunnelError>>,
    ) -> Result<(), TunnelError> {
        let timeout = a.timeout;
        match a.route {
            Route::Addr(i) => {
                let d = self.direct_dialer()?;
                let addr = self.addrs[i].clone();
                running.spawn(async move {
                    let c = d.connect_one(&addr, timeout).await?;
                    Ok((c, d))
                });
            }
            Route::Relay(i) => {
                let d = self.relay_dialer(i)?;
                let url = self.relays[i].url.clone();
                running.spawn(async move {
                    let target = d.relay_target().unwrap_or_default();
                    let status = d.relay_status_watch();
                    let relay_down = relay_refused_first_connect(status);
                    tokio::select! {
                        r = d.connect_one(&target, timeout) => match r {
                            Ok(c) => Ok((c, d)),
                            Err(TunnelError::Unreachable { reason, .. }) => {
                                Err(unreachable(&url, reason))
                            }
                            Err(e) => Err(e),
                        },
                        why = relay_down => Err(unreachable(&url, why)),
                    }
                });
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.addrs
            .iter()
            .map(String::as_str)
            .chain(self.relays.iter().map(|r| r.url.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Closes every endpoint made so far (the connections on them too) and stops further
    /// dialing; waits up to 1 s for the closes to be delivered.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let mut all: Vec<Arc<Dialer>> = lock(&self.direct).iter().cloned().collect();
        all.extend(lock(&self.relay_dialers).iter().flatten().cloned());
        for d in &all {
            d.close_endpoint(Duration::ZERO).await;
        }
        for d in &all {
            d.close_endpoint(Duration::from_secs(1)).await;
        }
    }
}

fn unreachable(url: &str, reason: String) -> TunnelError {
    TunnelError::Unreachable {
        addrs: url.to_string(),
        reason: format!("relay {url}: {reason}"),
    }
}

/// Resolves with the link's error once the relay has refused its first connection (the relay
/// is down or refuses this device); pending forever once it has connected.
async fn relay_refused_first_connect(
    status: Option<watch::Receiver<claw_mesh::socket::RelayLinkStatus>>,
) -> String {
    let Some(mut status) = status else {
        return std::future::pending().await;
    };
    let refused = status
        .wait_for(|s| s.connects == 0 && s.last_error.is_some())
        .await
        .map(|s| s.last_error.clone().unwrap_or_default());
    match refused {
        Ok(why) => why,
        Err(_) => std::future::pending().await,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_first_staggered_then_the_relays_one_by_one() {
        let p = plan(3, 2);
        let routes: Vec<Route> = p.iter().map(|a| a.route).collect();
        assert_eq!(
            routes,
            [
                Route::Addr(0),
                Route::Addr(1),
                Route::Addr(2),
                Route::Relay(0),
                Route::Relay(1)
            ]
        );
        assert_eq!(p[0].start, Duration::ZERO);
        assert_eq!(p[1].start, ADDR_STAGGER);
        assert_eq!(p[2].start, ADDR_STAGGER * 2);
        assert!(p[..3].iter().all(|a| a.timeout == ADDR_TIMEOUT));
        // The first relay waits for the last address to time out; the second for the first.
        assert_eq!(p[3].start, ADDR_STAGGER * 2 + ADDR_TIMEOUT);
        assert_eq!(p[4].start, p[3].start + RELAY_TIMEOUT);
        assert!(p[3..].iter().all(|a| a.timeout == RELAY_TIMEOUT));
        assert_eq!(worst_case(3, 2), p[4].start + RELAY_TIMEOUT);
        assert_eq!(worst_case(0, 0), Duration::ZERO);
    }

    #[test]
    fn a_relay_only_pairing_starts_with_its_first_relay_and_an_empty_one_plans_nothing() {
        let p = plan(0, 2);
        assert_eq!(p[0].route, Route::Relay(0));
        assert_eq!(p[0].start, Duration::ZERO);
        assert_eq!(p[1].start, RELAY_TIMEOUT);
        assert_eq!(plan(2, 0).len(), 2);
        assert!(plan(0, 0).is_empty());
    }

    #[test]
    fn an_attempt_starts_on_time_or_early_when_nothing_is_in_flight() {
        let p = plan(2, 1);
        assert!(due(&p[0], Duration::ZERO, 0));
        // The second address waits for its stagger while the first is in flight…
        assert!(!due(&p[1], Duration::from_millis(100), 1));
        assert!(due(&p[1], ADDR_STAGGER, 1));
        // …or starts at once when the first has already failed.
        assert!(due(&p[1], Duration::from_millis(100), 0));
        // The relay never starts while an address is still being tried, before its time.
        assert!(!due(&p[2], ADDR_STAGGER + Duration::from_secs(1), 1));
        assert!(due(&p[2], ADDR_STAGGER + Duration::from_secs(1), 0));
    }
}
