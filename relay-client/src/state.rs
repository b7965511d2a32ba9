//! The connection state machine, as a pure type: no sockets, no timers, no tokio. The shell in
//! [`client`](crate::Client) feeds it [`Input`]s with the current time and carries out the
//! [`Action`]s it returns (in the manner of quinn-proto).
//!
//! ```text
//!            ┌──────────── HostSuppliedCredentials ─────────────┐
//!            ▼                                                  │
//!  Start → connecting ──Connected──► connected ──1008 rotated──► re-pairing ──RepairSucceeded,
//!            ▲   │                      │                          │   Connected──► connected
//!            │   │ 1012/1006/no tick     │ 1012/1006/no tick        │ RepairFailed / still refused
//!            │   ▼                      ▼                          ▼
//!            └─ backing_off ◄───────────┘                  auth_failed (terminal until the
//!                                      revoked, bad signature, ──►  host supplies credentials)
//!                                      pairing required
//!  HostClosed (anywhere) → closed
//! ```
//!
//! ```
//! use std::time::{Duration, Instant};
//! use relay_client::claw_proto::CloseReason;
//! use relay_client::state::{Action, Config, Input, Machine, Status};
//!
//! let mut m = Machine::new(Config { can_refresh: true, ..Config::default() }, 1);
//! let t = Instant::now();
//! assert_eq!(m.handle(t, Input::Start), [Action::EmitStatus(Status::Connecting), Action::Connect]);
//! m.handle(t, Input::Connected { tick_interval: Some(Duration::from_secs(30)) });
//! // The gateway rotated its device tokens: one re-pair, then a connect with the new token.
//! let a = m.handle(t, Input::Closed { code: 1008, reason: CloseReason::DeviceTokenRotated });
//! assert!(a.contains(&Action::StartRepair));
//! assert_eq!(m.status(), Status::RePairing);
//! assert_eq!(m.handle(t, Input::RepairSucceeded), [Action::Connect]);
//! m.handle(t, Input::Connected { tick_interval: None });
//! assert_eq!(m.status(), Status::Connected);
//! ```

use std::time::{Duration, Instant};

use claw_proto::close::{CLOSE_POLICY, CLOSE_PROTOCOL};
use claw_proto::codes;
use claw_proto::CloseReason;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::error::{AuthFailure, RefreshError, RefreshErrorKind};
use crate::wire::RemoteError;

/// What the host sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Opening a socket and handshaking.
    Connecting,
    /// A session is up; calls go through.
    Connected,
    /// The credentials went stale; one refresh (re-pair) is in flight, then a connect.
    RePairing,
    /// Waiting before the next attempt.
    BackingOff {
        /// The delay chosen (full jitter).
        retry_in: Duration,
        /// Attempts since the last stable connection.
        attempt: u32,
    },
    /// The credentials were refused and nothing the client can do helps; no reconnects until
    /// the host supplies new credentials.
    AuthFailed(AuthFailure),
    /// Closed by the host; terminal.
    Closed,
}

impl Status {
    /// The status name: `connecting`, `connected`, `re-pairing`, `backing_off`, `auth_failed`,
    /// `closed`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::RePairing => "re-pairing",
            Status::BackingOff { .. } => "backing_off",
            Status::AuthFailed(_) => "auth_failed",
            Status::Closed => "closed",
        }
    }
}

/// A connect that the gateway answered with an error response (then usually a close).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The error object.
    pub error: RemoteError,
    /// The close that followed, when it arrived.
    pub close: Option<(u16, String)>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The host started the client.
    Start,
    /// A handshake completed (`hello-ok`); `tick_interval` is `policy.tickIntervalMs`.
    Connected {
        /// The gateway's tick interval; liveness is checked against twice it.
        tick_interval: Option<Duration>,
    },
    /// Something (a `tick`, a ping, any frame) arrived on the session at `now`.
    Heard,
    /// The socket closed or could not be opened (1006 for network errors and timeouts).
    Closed {
        /// Close code.
        code: u16,
        /// Close reason (any text parses: unknown ones are [`CloseReason::Other`]).
        reason: CloseReason,
    },
    /// The gateway refused `connect` ("AuthError").
    Refused(Refusal),
    /// The refresh started by [`Action::StartRepair`] produced a new credential.
    RepairSucceeded,
    /// The refresh failed.
    RepairFailed(RefreshError),
    /// Time passed (see [`Machine::poll_timeout`]).
    Tick,
    /// The host supplied new credentials.
    HostSuppliedCredentials,
    /// The host closed the client.
    HostClosed,
}

/// Severity of an [`Action::Log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Routine.
    Info,
    /// Needs attention.
    Warn,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a socket and handshake with the current credentials.
    Connect,
    /// Start the (single) refresh of the credentials.
    StartRepair,
    /// Wait this long, then feed [`Input::Tick`] (also given by [`Machine::poll_timeout`]).
    Backoff(Duration),
    /// Drop the current socket (liveness lost, or host closed); report no `Closed` for it.
    Disconnect,
    /// Publish a status change.
    EmitStatus(Status),
    /// Log a line (already rate-limited by the machine).
    Log(LogLevel, String),
}

/// What a refusal or close means for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Transient: back off and reconnect with the same credentials.
    Reconnect,
    /// Transient, and the gateway said when to come back (`retryAfterMs` of a retryable
    /// `UNAVAILABLE`): back off at least this long (at most [`MAX_RETRY_AFTER`]).
    RetryAfter(Duration),
    /// The credentials went stale and a refresh source can renew them: re-pair.
    Repair,
    /// Terminal: `auth_failed`.
    Fail(AuthFailure),
}

const NO_REFRESH_HINT: &str =
    "this client has no way to refresh its credentials (static token); supply a new token";

fn repairable(can_refresh: bool, f: AuthFailure) -> Verdict {
    if can_refresh {
        Verdict::Repair
    } else {
        Verdict::Fail(f.with_hint(NO_REFRESH_HINT))
    }
}

/// The longest `retryAfterMs` honoured: a gateway cannot park a client for longer than this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// How long a client waits after its signature was refused as stale: the gateway's clock and
/// this host's disagree by more than the signing window. That is a clock fault, not a bad
/// credential — the client keeps its credentials and tries again (each attempt signs anew, so
/// once either clock is corrected the next attempt connects).
pub const CLOCK_SKEW_RETRY: Duration = Duration::from_secs(30);

/// Classifies a WebSocket close. 1008 is an auth decision (repairable or terminal, by reason),
/// 1002 a protocol mismatch (terminal); everything else — 1012 service restart, 1006 network
/// loss, 1001 ping timeout, 1000, 1009, 1011, 1013 — is transient.
pub fn classify_close(code: u16, reason: &CloseReason, can_refresh: bool) -> Verdict {
    let f = AuthFailure::new(reason.to_string());
    match code {
        CLOSE_POLICY => match reason {
            CloseReason::DeviceTokenRotated => repairable(
                can_refresh,
                f.with_code(codes::AUTH_DEVICE_TOKEN_ROTATED)
                    .with_next_step("update_auth_credentials"),
            ),
            CloseReason::SharedTokenRotated | CloseReason::TokenMismatch => repairable(
                can_refresh,
                f.with_code(codes::AUTH_TOKEN_MISMATCH)
                    .with_next_step("update_auth_credentials"),
            ),
            CloseReason::DeviceRemoved => {
                repairable(can_refresh, f.with_next_step("update_auth_credentials"))
            }
            CloseReason::DeviceRevoked => Verdict::Fail(
                f.with_code(codes::AUTH_DEVICE_REVOKED)
                    .with_next_step("review_auth_configuration"),
            ),
            CloseReason::PairingRequired => Verdict::Fail(
                f.with_code(codes::PAIRING_REQUIRED)
                    .with_next_step("wait_then_retry"),
            ),
            CloseReason::SignatureInvalid => {
                Verdict::Fail(f.with_code(codes::DEVICE_AUTH_SIGNATURE_INVALID))
            }
            CloseReason::SignatureExpired => Verdict::RetryAfter(CLOCK_SKEW_RETRY),
            _ => Verdict::Fail(f),
        },
        CLOSE_PROTOCOL => Verdict::Fail(f.with_code(codes::PROTOCOL_MISMATCH)),
        _ => Verdict::Reconnect,
    }
}

/// Classifies a refused `connect` by `details.code`: a rotated device token or a token
/// mismatch is repairable; `UNAVAILABLE` is transient, and so is a signature refused as stale
/// (the clocks disagree: [`CLOCK_SKEW_RETRY`]); every other refusal (revoked, bad signature,
/// pairing required, scope mismatch, malformed connect, …) is terminal.
pub fn classify_refusal(r: &Refusal, can_refresh: bool) -> Verdict {
    let e = &r.error;
    let mut f = AuthFailure::new(if e.message.is_empty() {
        r.close
            .as_ref()
            .map(|c| c.1.clone())
            .unwrap_or_else(|| e.code.clone())
    } else {
        e.message.clone()
    });
    f.code = Some(e.detail_code().unwrap_or(&e.code).to_string());
    f.next_step = e.next_step().map(str::to_string);
    match e.detail_code() {
        Some(codes::AUTH_DEVICE_TOKEN_ROTATED | codes::AUTH_TOKEN_MISMATCH) => {
            repairable(can_refresh, f)
        }
        Some(codes::DEVICE_AUTH_SIGNATURE_EXPIRED) => Verdict::RetryAfter(CLOCK_SKEW_RETRY),
        _ if e.code == codes::UNAVAILABLE => match e.retry_after_ms {
            Some(ms) if e.retryable == Some(true) && ms > 0 => {
                Verdict::RetryAfter(Duration::from_millis(ms).min(MAX_RETRY_AFTER))
            }
            _ => Verdict::Reconnect,
        },
        _ => Verdict::Fail(f),
    }
}

/// `t + d`, a year ahead at most instead of overflowing (any configured duration is accepted).
fn later(t: Instant, d: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    t.checked_add(d.min(YEAR)).unwrap_or(t)
}

/// Lets one log line through per window, counting what it held back.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    window: Duration,
    last: Option<Instant>,
    suppressed: u32,
}

impl LogLimiter {
    /// At most one line per `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged at `now`.
    pub fn allow(&mut self, now: Instant) -> Option<u32> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.window => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Tuning of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Reconnect backoff.
    pub backoff: BackoffPolicy,
    /// A session up this long resets the backoff when it ends.
    pub stable_after: Duration,
    /// Whether a refresh (re-pair) source is configured.
    pub can_refresh: bool,
    /// At most one "connection lost / reconnecting" log line per this window.
    pub log_window: Duration,
}

impl Default for Config {
    /// Default backoff, stable after 30 s, no refresh source, one log line a minute.
    fn default() -> Self {
        Self {
            backoff: BackoffPolicy::default(),
            stable_after: Duration::from_secs(30),
            can_refresh: false,
            log_window: Duration::from_secs(60),
        }
    }
}

/// What to do when a backoff ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Connect { after_repair: bool },
    Repair,
}

#[derive(Debug, Clone)]
enum Phase {
    Idle,
    Connecting {
        after_repair: bool,
    },
    Connected {
        since: Instant,
        last_heard: Instant,
        tick: Option<Duration>,
    },
    /// `connecting`: the refresh succeeded and the connect with the new credential is out.
    RePairing {
        connecting: bool,
    },
    BackingOff {
        until: Instant,
        retry_in: Duration,
        attempt: u32,
        then: Then,
    },
    AuthFailed(AuthFailure),
    Closed,
}

/// The reconnect / re-pair state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    cfg: Config,
    phase: Phase,
    backoff: Backoff,
    log: LogLimiter,
}

impl Machine {
    /// A machine in the idle state; `seed` seeds the backoff jitter.
    pub fn new(cfg: Config, seed: u64) -> Self {
        Self {
            cfg,
            phase: Phase::Idle,
            backoff: Backoff::with_seed(cfg.backoff, seed),
            log: LogLimiter::new(cfg.log_window),
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        match &self.phase {
            Phase::Idle | Phase::Connecting { .. } => Status::Connecting,
            Phase::Connected { .. } => Status::Connected,
            Phase::RePairing { .. } => Status::RePairing,
            Phase::BackingOff {
                retry_in, attempt, ..
            } => Status::BackingOff {
                retry_in: *retry_in,
                attempt: *attempt,
            },
            Phase::AuthFailed(f) => Status::AuthFailed(f.clone()),
            Phase::Closed => Status::Closed,
        }
    }

    /// When to feed the next [`Input::Tick`]: the end of a backoff, or the liveness deadline
    /// (last frame heard + 2 × tick interval) of a session.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::BackingOff { until, .. } => Some(*until),
            Phase::Connected {
                last_heard,
                tick: Some(t),
                ..
            } => Some(later(*last_heard, t.saturating_mul(2))),
            _ => None,
        }
    }

    /// Feeds one input at time `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => {
                if matches!(self.phase, Phase::Idle) {
                    self.connect(false, &mut out);
                }
            }
            Input::Connected { tick_interval } => match self.phase {
                Phase::Connecting { .. } | Phase::RePairing { connecting: true } => {
                    self.phase = Phase::Connected {
                        since: now,
                        last_heard: now,
                        tick: tick_interval.filter(|t| !t.is_zero()),
                    };
                    out.push(Action::EmitStatus(Status::Connected));
                }
                // A session nobody asked for (the shell raced a close): drop it.
                _ => out.push(Action::Disconnect),
            },
            Input::Heard => {
                if let Phase::Connected { last_heard, .. } = &mut self.phase {
                    *last_heard = (*last_heard).max(now);
                }
            }
            Input::Tick => self.tick(now, &mut out),
            Input::Closed { code, reason } => {
                let Some(after_repair) = self.awaiting_session() else {
                    return out;
                };
                let verdict = classify_close(code, &reason, self.cfg.can_refresh);
                self.judge(
                    now,
                    verdict,
                    after_repair,
                    format!("{code}: {reason}"),
                    &mut out,
                );
            }
            Input::Refused(r) => {
                // Only a connect can be refused.
                let after_repair = match self.phase {
                    Phase::Connecting { after_repair } => after_repair,
                    Phase::RePairing { connecting: true } => true,
                    _ => return out,
                };
                let verdict = classify_refusal(&r, self.cfg.can_refresh);
                let what = format!("connect refused: {}: {}", r.error.code, r.error.message);
                self.judge(now, verdict, after_repair, what, &mut out);
            }
            Input::RepairSucceeded => {
                if let Phase::RePairing { connecting: false } = self.phase {
                    self.phase = Phase::RePairing { connecting: true };
                    out.push(Action::Connect);
                }
            }
            Input::RepairFailed(e) => {
                if let Phase::RePairing { connecting: false } = self.phase {
                    if e.kind == RefreshErrorKind::Transient {
                        let what = format!("re-pair could not reach its source: {e}");
                        self.back_off(now, Then::Repair, None, None, what, &mut out);
                    } else {
                        self.fail(e.to_failure(), &mut out);
                    }
                }
            }
            Input::HostSuppliedCredentials => match self.phase {
                Phase::AuthFailed(_) | Phase::BackingOff { .. } => {
                    self.backoff.reset();
                    self.connect(false, &mut out);
                }
                _ => {}
            },
            Input::HostClosed => {
                if !matches!(self.phase, Phase::Closed) {
                    self.phase = Phase::Closed;
                    out.push(Action::Disconnect);
                    out.push(Action::EmitStatus(Status::Closed));
                }
            }
        }
        out
    }

    /// `Some(after_repair)` when a session is up or being opened (so a close concerns us).
    fn awaiting_session(&self) -> Option<bool> {
        match self.phase {
            Phase::Connecting { after_repair } => Some(after_repair),
            Phase::Connected { .. } => Some(false),
            Phase::RePairing { connecting: true } => Some(true),
            _ => None,
        }
    }

    fn connect(&mut self, after_repair: bool, out: &mut Vec<Action>) {
        self.phase = Phase::Connecting { after_repair };
        out.push(Action::EmitStatus(Status::Connecting));
        out.push(Action::Connect);
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::BackingOff { until, then, .. } if now >= until => match then {
                Then::Connect { after_repair } => self.connect(after_repair, out),
                Then::Repair => self.start_repair(out),
            },
            Phase::Connected {
                since,
                last_heard,
                tick: Some(t),
            } if now >= later(last_heard, t.saturating_mul(2)) => {
                out.push(Action::Disconnect);
                let what = format!(
                    "no tick from the gateway for {} ms (2 × tickIntervalMs)",
                    now.saturating_duration_since(last_heard).as_millis()
                );
                self.back_off(
                    now,
                    Then::Connect {
                        after_repair: false,
                    },
                    Some(since),
                    None,
                    what,
                    out,
                );
            }
            _ => {}
        }
    }

    fn judge(
        &mut self,
        now: Instant,
        verdict: Verdict,
        after_repair: bool,
        what: String,
        out: &mut Vec<Action>,
    ) {
        let since = match self.phase {
            Phase::Connected { since, .. } => Some(since),
            _ => None,
        };
        match verdict {
            Verdict::Reconnect => {
                self.back_off(now, Then::Connect { after_repair }, since, None, what, out)
            }
            Verdict::RetryAfter(floor) => self.back_off(
                now,
                Then::Connect { after_repair },
                since,
                Some(floor),
                what,
                out,
            ),
            Verdict::Repair if after_repair => {
                let f = AuthFailure::new(format!(
                    "the gateway refused the credentials obtained by re-pairing ({what})"
                ))
                .with_next_step("update_auth_credentials");
                self.fail(f, out);
            }
            Verdict::Repair => {
                out.push(Action::Log(
                    LogLevel::Info,
                    format!("credentials went stale ({what}); re-pairing"),
                ));
                self.start_repair(out);
            }
            Verdict::Fail(f) => self.fail(f, out),
        }
    }

    fn start_repair(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::RePairing { connecting: false };
        out.push(Action::EmitStatus(Status::RePairing));
        out.push(Action::StartRepair);
    }

    fn back_off(
        &mut self,
        now: Instant,
        then: Then,
        connected_since: Option<Instant>,
        at_least: Option<Duration>,
        what: String,
        out: &mut Vec<Action>,
    ) {
        if connected_since
            .is_some_and(|s| now.saturating_duration_since(s) >= self.cfg.stable_after)
        {
            self.backoff.reset();
        }
        let attempt = self.backoff.attempt();
        // The jittered delay, or the gateway's `retryAfterMs` when that is longer (the attempt
        // still counts, so the backoff keeps growing if the gateway stays unavailable).
        let d = self.backoff.next_delay().max(at_least.unwrap_or_default());
        self.phase = Phase::BackingOff {
            until: later(now, d),
            retry_in: d,
            attempt,
            then,
        };
        out.push(Action::EmitStatus(self.status()));
        out.push(Action::Backoff(d));
        if let Some(held) = self.log.allow(now) {
            let more = if held > 0 {
                format!(" ({held} similar lines suppressed)")
            } else {
                String::new()
            };
            out.push(Action::Log(
                LogLevel::Warn,
                format!(
                    "{what}; retrying in {} ms (attempt {}){more}",
                    d.as_millis(),
                    attempt + 1
                ),
            ));
        }
    }

    fn fail(&mut self, f: AuthFailure, out: &mut Vec<Action>) {
        out.push(Action::Log(
            LogLevel::Warn,
            format!("auth_failed: {f}; not reconnecting until new credentials are supplied"),
        ));
        self.phase = Phase::AuthFailed(f.clone());
        out.push(Action::EmitStatus(Status::AuthFailed(f)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claw_proto::errors::Rejection;
    use claw_proto::fault::FaultKind;

    fn statuses(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::EmitStatus(s) => Some(s.name()),
                _ => None,
            })
            .collect()
    }

    fn has(actions: &[Action], want: &Action) -> bool {
        actions.iter().any(|a| a == want)
    }

    fn refusal_of(r: &Rejection) -> Refusal {
        let f = r.frame();
        let e = serde_json::to_value(&f.error).unwrap();
        Refusal {
            error: RemoteError::from_wire(&e),
            close: Some((f.close_code, f.close_reason)),
        }
    }

    fn unavailable(k: FaultKind) -> Input {
        Input::Refused(refusal_of(&Rejection::Unavailable(k)))
    }

    fn closed(code: u16, reason: impl Into<CloseReason>) -> Input {
        Input::Closed {
            code,
            reason: reason.into(),
        }
    }

    fn connected() -> Input {
        Input::Connected {
            tick_interval: Some(Duration::from_millis(100)),
        }
    }

    fn machine(can_refresh: bool) -> Machine {
        Machine::new(
            Config {
                can_refresh,
                stable_after: Duration::from_secs(10),
                ..Config::default()
            },
            42,
        )
    }

    /// Every claw rejection, as the gateway really frames it, classified — with and without a
    /// refresh source.
    #[test]
    fn refusals_from_the_real_gateway_frames() {
        use Verdict::*;
        let cases: Vec<(Rejection, &str, &str)> = vec![
            // (rejection, with refresh, without)
            (Rejection::DeviceTokenRotated, "repair", "fail"),
            (
                Rejection::TokenMismatch {
                    can_retry_with_device_token: false,
                },
                "repair",
                "fail",
            ),
            (Rejection::DeviceRevoked, "fail", "fail"),
            (Rejection::SignatureInvalid, "fail", "fail"),
            // The clocks disagree: a fault, not a credential problem — wait and sign again.
            (Rejection::SignatureExpired, "reconnect", "reconnect"),
            (
                Rejection::PairingRequired {
                    request_id: "r".into(),
                },
                "fail",
                "fail",
            ),
            (Rejection::ScopeMismatch, "fail", "fail"),
            (Rejection::TokenMissing, "fail", "fail"),
            (Rejection::DeviceIdentityRequired, "fail", "fail"),
            (Rejection::NonceMismatch, "fail", "fail"),
            (Rejection::FirstRequestNotConnect, "fail", "fail"),
            (
                Rejection::ProtocolMismatch {
                    client_min: 9,
                    client_max: 9,
                },
                "fail",
                "fail",
            ),
            // A fault on the gateway (disk full, read-only, locked store): never auth_failed.
            (
                Rejection::Unavailable(FaultKind::DiskFull),
                "reconnect",
                "reconnect",
            ),
            (
                Rejection::Unavailable(FaultKind::ReadOnly),
                "reconnect",
                "reconnect",
            ),
            (
                Rejection::Unavailable(FaultKind::Locked),
                "reconnect",
                "reconnect",
            ),
            (
                Rejection::Unavailable(FaultKind::Io),
                "reconnect",
                "reconnect",
            ),
            (
                Rejection::Unavailable(FaultKind::Corrupt),
                "reconnect",
                "reconnect",
            ),
            (
                Rejection::Unavailable(FaultKind::Internal),
                "reconnect",
                "reconnect",
            ),
        ];
        let name = |v: &Verdict| match v {
            Reconnect | RetryAfter(_) => "reconnect",
            Repair => "repair",
            Fail(_) => "fail",
        };
        for (r, with, without) in cases {
            let refusal = refusal_of(&r);
            assert_eq!(name(&classify_refusal(&refusal, true)), with, "{r:?}");
            assert_eq!(name(&classify_refusal(&refusal, false)), without, "{r:?}");
            // The close that follows the refusal classifies the same way where it is specific.
            let (code, reason) = refusal.close.clone().unwrap();
            let by_close = name(&classify_close(code, &reason.parse().unwrap(), true));
            assert!(by_close == with || by_close == "fail", "{r:?}: {by_close}");
        }
        // The server's reason, code and next step are carried into auth_failed.
        let Fail(f) = classify_refusal(&refusal_of(&Rejection::DeviceRevoked), true) else {
            panic!()
        };
        assert_eq!(f.reason, CloseReason::DeviceRevoked.to_string());
        assert_eq!(f.code.as_deref(), Some(codes::AUTH_DEVICE_REVOKED));
        assert_eq!(f.next_step.as_deref(), Some("review_auth_configuration"));
        let Fail(f) = classify_refusal(
            &refusal_of(&Rejection::PairingRequired {
                request_id: "r".into(),
            }),
            true,
        ) else {
            panic!()
        };
        assert_eq!(f.code.as_deref(), Some(codes::PAIRING_REQUIRED));
        assert_eq!(f.next_step.as_deref(), Some("wait_then_retry"));
        let busy = Refusal {
            error: RemoteError::new(codes::UNAVAILABLE, "busy"),
            close: None,
        };
        assert_eq!(classify_refusal(&busy, false), Reconnect);
    }

    #[test]
    fn closes_classified() {
        use Verdict::*;
        let table: Vec<(u16, CloseReason, bool, &str)> = vec![
            (1012, CloseReason::ServiceRestart, false, "reconnect"),
            (1006, "connection lost".into(), true, "reconnect"),
            (1001, "ping timeout".into(), true, "reconnect"),
            (1000, "".into(), true, "reconnect"),
            (1009, CloseReason::MessageTooBig, true, "reconnect"),
            (1008, CloseReason::DeviceTokenRotated, true, "repair"),
            (1008, CloseReason::DeviceTokenRotated, false, "fail"),
            (1008, CloseReason::SharedTokenRotated, true, "repair"),
            (1008, CloseReason::SharedTokenRotated, false, "fail"),
            (1008, CloseReason::DeviceRemoved, true, "repair"),
            (1008, CloseReason::DeviceRevoked, true, "fail"),
            (1008, CloseReason::PairingRequired, true, "fail"),
            (1008, CloseReason::SignatureInvalid, true, "fail"),
            (1008, CloseReason::SignatureExpired, false, "reconnect"),
            (1008, "something new".into(), true, "fail"),
            (1002, CloseReason::ProtocolMismatch, true, "fail"),
            (
                1013,
                CloseReason::fault(FaultKind::DiskFull),
                false,
                "reconnect",
            ),
        ];
        for (code, reason, refresh, want) in table {
            let got = match classify_close(code, &reason, refresh) {
                Reconnect | RetryAfter(_) => "reconnect",
                Repair => "repair",
                Fail(_) => "fail",
            };
            assert_eq!(got, want, "{code} {reason} refresh={refresh}");
        }
        let Fail(f) = classify_close(1008, &CloseReason::SharedTokenRotated, false) else {
            panic!()
        };
        assert!(f.to_string().contains("static token"), "{f}");
    }

    /// A retryable `UNAVAILABLE` with `retryAfterMs` (a store fault) backs off at least that
    /// long — the jittered first delay is ≤ 500 ms, the gateway asked for 5 s — and never longer
    /// than MAX_RETRY_AFTER however much a gateway asks; without `retryAfterMs` the backoff is
    /// the plain jittered one.
    #[test]
    fn a_retryable_unavailable_waits_for_retry_after_ms() {
        let backoff_of = |actions: &[Action]| {
            actions.iter().find_map(|a| match a {
                Action::Backoff(d) => Some(*d),
                _ => None,
            })
        };
        let t0 = Instant::now();
        // The real gateway's frame for a full disk: retryAfterMs 5000.
        let mut m = machine(false);
        m.handle(t0, Input::Start);
        let a = m.handle(t0, unavailable(FaultKind::DiskFull));
        let d = backoff_of(&a).expect("backs off");
        assert_eq!(
            d,
            Duration::from_millis(FaultKind::DiskFull.retry_after_ms())
        );
        assert_eq!(m.poll_timeout(), Some(t0 + d));
        assert!(matches!(m.status(), Status::BackingOff { retry_in, attempt: 0 } if retry_in == d));
        // Not before the gateway's time: a tick 1 ms early does nothing; on time it connects.
        assert!(m
            .handle(t0 + d - Duration::from_millis(1), Input::Tick)
            .is_empty());
        assert!(m.handle(t0 + d, Input::Tick).contains(&Action::Connect));
        // Still unavailable: the attempt counts, the floor holds.
        let a = m.handle(t0 + d, unavailable(FaultKind::Locked));
        assert!(backoff_of(&a).unwrap() >= Duration::from_millis(1_000));
        assert!(matches!(m.status(), Status::BackingOff { attempt: 1, .. }));

        // A hostile gateway cannot park the client for a week.
        let mut m = machine(false);
        m.handle(t0, Input::Start);
        let mut e = claw_proto::errors::unavailable(FaultKind::Locked);
        e.retry_after_ms = Some(7 * 86_400_000);
        let a = m.handle(
            t0,
            Input::Refused(Refusal {
                error: e,
                close: None,
            }),
        );
        assert_eq!(backoff_of(&a), Some(MAX_RETRY_AFTER));

        // No retryAfterMs (or not retryable): the plain jittered backoff (≤ base).
        for retryable in [None, Some(false)] {
            let mut m = machine(false);
            m.handle(t0, Input::Start);
            let mut e = RemoteError::new(codes::UNAVAILABLE, "busy");
            e.retryable = retryable;
            e.retry_after_ms = retryable.map(|_| 60_000);
            let a = m.handle(
                t0,
                Input::Refused(Refusal {
                    error: e,
                    close: None,
                }),
            );
            assert!(backoff_of(&a).unwrap() <= BackoffPolicy::default().base);
        }
    }

    /// Sequences of inputs and the statuses / key actions they must produce.
    #[test]
    fn transitions_table() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        struct Case {
            name: &'static str,
            refresh: bool,
            steps: Vec<(u64, Input)>,
            want_statuses: Vec<&'static str>,
            want_last: &'static str,
            repairs: usize,
            connects: usize,
        }
        let cases = vec![
            Case {
                name: "happy path",
                refresh: false,
                steps: vec![(0, Input::Start), (1, connected())],
                want_statuses: vec!["connecting", "connected"],
                want_last: "connected",
                repairs: 0,
                connects: 1,
            },
            Case {
                name: "rotation: one re-pair, then connected",
                refresh: true,
                steps: vec![
                    (0, Input::Start),
                    (1, connected()),
                    (2, closed(1008, CloseReason::DeviceTokenRotated)),
                    // More closes/refusals while the re-pair is in flight change nothing.
                    (3, closed(1008, CloseReason::DeviceTokenRotated)),
                    (3, Input::Tick),
                    (4, Input::RepairSucceeded),
                    (5, connected()),
                ],
                want_statuses: vec!["connecting", "connected", "re-pairing", "connected"],
                want_last: "connected",
                repairs: 1,
                connects: 2,
            },
            Case {
                name: "rotation without a refresh source",
                refresh: false,
                steps: vec![
                    (0, Input::Start),
                    (1, connected()),
                    (2, closed(1008, CloseReason::DeviceTokenRotated)),
                    (90_000, Input::Tick),
                ],
                want_statuses: vec!["connecting", "connected", "auth_failed"],
                want_last: "auth_failed",
                repairs: 0,
                connects: 1,
            },
            Case {
                name: "revoked: auth_failed, no reconnect",
                refresh: true,
                steps: vec![
                    (0, Input::Start),
                    (1, connected()),
                    (2, closed(1008, CloseReason::DeviceRevoked)),
                    (60_000, Input::Tick),
                    (60_001, closed(1006, "late")),
                ],
                want_statuses: vec!["connecting", "connected", "auth_failed"],
                want_last: "auth_failed",
                repairs: 0,
                connects: 1,
            },
            Case {
                name: "re-pair fails",
                refresh: true,
                steps: vec![
                    (0, Input::Start),
                    (1, connected()),
                    (2, closed(1008, CloseReason::DeviceTokenRotated)),
                    (3, Input::RepairFailed(RefreshError::permanent("refused"))),
                ],
                want_statuses: vec!["connecting", "connected", "re-pairing", "auth_failed"],
                want_last: "auth_failed",
                repairs: 1,
                connects: 1,
            },
            Case {
                name: "re-paired token refused again: no loop",
                refresh: true,
                steps: vec![
                    (0, Input::Start),
                    (1, connected()),
                    (2, closed(1008, CloseReason::DeviceTokenRotated)),
                    (3, Input::RepairSucceeded),
                    (
                        4,
                        Input::Refused(refusal_of(&Rejection::DeviceTokenRotated)),
                    ),
                ],
                want_statuses: vec!["connecting", "connected", "re-pairing", "auth_failed"],
                want_last: "auth_failed",
                repairs: 1,
                connects: 2,
            },
            Case {
                name: "re-pair source unreachable: back off, then one more re-pair",
                refresh: true,
                steps: vec![
                    (0, Input::Start),
                    (1, connected()),
                    (2, closed(1008, CloseReason::DeviceTokenRotated)),
                    (
                        3,
                        Input::RepairFailed(RefreshError::transient("refused conn")),
                    ),
                    (60_000, Input::Tick),
                    (60_001, Input::RepairSucceeded),
                    (60_002, connected()),
                ],
                want_statuses: vec![
                    "connecting",
                    "connected",
                    "re-pairing",
                    "backing_off",
                    "re-pairing",
                    "connected",
                ],
                want_last: "connected",
                repairs: 2,
                connects: 2,
            },
            Case {
                name: "1012 restart: back off and reconnect",
                refresh: false,
                steps: vec![
                    (0, Input::Start),
                    (1, connected()),
                    (2, closed(1012, CloseReason::ServiceRestart)),
                    (60_000, Input::Tick),
                    (60_001, closed(1006, "refused")),
                    (120_000, Input::Tick),
                    (120_001, connected()),
                ],
                want_statuses: vec![
                    "connecting",
                    "connected",
                    "backing_off",
                    "connecting",
                    "backing_off",
                    "connecting",
                    "connected",
                ],
                want_last: "connected",
                repairs: 0,
                connects: 3,
            },
            Case {
                name: "store fault: UNAVAILABLE refusals back off and retry, never auth_failed",
                refresh: true,
                steps: vec![
                    (0, Input::Start),
                    (1, unavailable(FaultKind::DiskFull)),
                    (60_000, Input::Tick),
                    (60_001, unavailable(FaultKind::Locked)),
                    (120_000, Input::Tick),
                    (120_001, connected()),
                ],
                want_statuses: vec![
                    "connecting",
                    "backing_off",
                    "connecting",
                    "backing_off",
                    "connecting",
                    "connected",
                ],
                want_last: "connected",
                repairs: 0,
                connects: 3,
            },
            Case {
                name: "store fault right after a re-pair: retry the new token, no second re-pair",
                refresh: true,
                steps: vec![
                    (0, Input::Start),
                    (1, connected()),
                    (2, closed(1008, CloseReason::DeviceTokenRotated)),
                    (3, Input::RepairSucceeded),
                    (4, unavailable(FaultKind::ReadOnly)),
                    (60_000, Input::Tick),
                    (60_001, connected()),
                ],
                want_statuses: vec![
                    "connecting",
                    "connected",
                    "re-pairing",
                    "backing_off",
                    "connecting",
                    "connected",
                ],
                want_last: "connected",
                repairs: 1,
                connects: 3,
            },
            Case {
                name: "no tick for 2x tickIntervalMs: reconnect",
                refresh: false,
                steps: vec![
                    (0, Input::Start),
                    (0, connected()),
                    (150, Input::Heard),
                    (340, Input::Tick), // 190 ms of silence < 200 ms: still fine
                    (351, Input::Tick), // 201 ms: dead
                    (60_000, Input::Tick),
                ],
                want_statuses: vec!["connecting", "connected", "backing_off", "connecting"],
                want_last: "connecting",
                repairs: 0,
                connects: 2,
            },
            Case {
                name: "host supplies credentials after auth_failed",
                refresh: false,
                steps: vec![
                    (0, Input::Start),
                    (1, Input::Refused(refusal_of(&Rejection::DeviceRevoked))),
                    (2, Input::Tick),
                    (3, Input::HostSuppliedCredentials),
                    (4, connected()),
                ],
                want_statuses: vec!["connecting", "auth_failed", "connecting", "connected"],
                want_last: "connected",
                repairs: 0,
                connects: 2,
            },
            Case {
                name: "host closes",
                refresh: true,
                steps: vec![
                    (0, Input::Start),
                    (1, connected()),
                    (2, Input::HostClosed),
                    (3, closed(1012, "x")),
                    (60_000, Input::Tick),
                    (60_001, Input::HostSuppliedCredentials),
                ],
                want_statuses: vec!["connecting", "connected", "closed"],
                want_last: "closed",
                repairs: 0,
                connects: 1,
            },
        ];
        for c in cases {
            let mut m = machine(c.refresh);
            let mut all = Vec::new();
            for (at, input) in c.steps {
                all.extend(m.handle(ms(at), input));
            }
            assert_eq!(statuses(&all), c.want_statuses, "{}", c.name);
            assert_eq!(m.status().name(), c.want_last, "{}", c.name);
            let count = |want: &Action| all.iter().filter(|a| *a == want).count();
            assert_eq!(count(&Action::StartRepair), c.repairs, "{}", c.name);
            assert_eq!(count(&Action::Connect), c.connects, "{}", c.name);
        }
    }

    #[test]
    fn backoff_grows_while_flapping_and_resets_after_a_stable_session() {
        let t0 = Instant::now();
        let mut m = machine(false);
        m.handle(t0, Input::Start);
        let mut now = t0;
        let mut attempts = Vec::new();
        for _ in 0..6 {
            // Connect, then lose it at once: not stable.
            m.handle(now, connected());
            let a = m.handle(now, closed(1006, "lost"));
            let Status::BackingOff { attempt, retry_in } = m.status() else {
                panic!()
            };
            assert!(has(&a, &Action::Backoff(retry_in)));
            assert!(retry_in <= m.cfg.backoff.ceiling(attempt));
            attempts.push(attempt);
            now = m.poll_timeout().unwrap();
            assert_eq!(m.handle(now, Input::Tick)[1], Action::Connect);
        }
        assert_eq!(attempts, [0, 1, 2, 3, 4, 5]);
        // A session that lasted past stable_after resets the sequence.
        m.handle(now, connected());
        m.handle(now + Duration::from_secs(10), Input::Heard);
        m.handle(now + Duration::from_secs(11), closed(1012, "restart"));
        assert!(matches!(m.status(), Status::BackingOff { attempt: 0, .. }));
    }

    #[test]
    fn logging_is_rate_limited() {
        let t0 = Instant::now();
        let mut m = machine(false);
        m.handle(t0, Input::Start);
        let mut logs = 0;
        let mut now = t0;
        for _ in 0..50 {
            let a = m.handle(now, closed(1006, "refused"));
            logs += a.iter().filter(|a| matches!(a, Action::Log(..))).count();
            now = m.poll_timeout().unwrap();
            m.handle(now, Input::Tick);
        }
        // 50 failures within well under two minutes (backoff cap 30 s... at most a few lines).
        let elapsed = now.duration_since(t0).as_secs();
        assert!(
            logs as u64 <= elapsed / 60 + 1,
            "{logs} lines in {elapsed} s"
        );
        let mut l = LogLimiter::new(Duration::from_secs(60));
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(61)), Some(2));
    }

    #[test]
    fn stray_inputs_are_harmless() {
        let t0 = Instant::now();
        let mut m = machine(true);
        // Before start, nothing but Start and HostClosed does anything.
        for i in [
            closed(1008, CloseReason::DeviceTokenRotated),
            Input::RepairSucceeded,
            Input::RepairFailed(RefreshError::permanent("x")),
            Input::Tick,
            Input::Heard,
            Input::Refused(refusal_of(&Rejection::DeviceRevoked)),
        ] {
            assert!(m.handle(t0, i).is_empty());
        }
        // A Connected nobody asked for is dropped.
        assert_eq!(m.handle(t0, connected()), [Action::Disconnect]);
        // Absurd configured durations do not overflow.
        let mut m = Machine::new(
            Config {
                backoff: BackoffPolicy {
                    base: Duration::MAX,
                    cap: Duration::MAX,
                },
                ..Config::default()
            },
            1,
        );
        m.handle(t0, Input::Start);
        m.handle(
            t0,
            Input::Connected {
                tick_interval: Some(Duration::MAX),
            },
        );
        assert!(m.poll_timeout().is_some());
        m.handle(t0, Input::Tick);
        m.handle(t0, closed(1006, "x"));
        assert!(m.poll_timeout().unwrap() > t0);
    }
}
