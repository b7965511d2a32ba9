//! `relay.reachable`, `relay.pin`, `relay.admitted` (each relay the gateway dials out to, from
//! one end-to-end probe through it) and `relay.ticket` (the device's relay ticket). Pure.

use super::super::facts::{DeviceRelayFacts, RelayFacts};
use super::super::{ids, Finding};
use super::human_duration;

/// Below this much validity left a relay ticket warns: a connected device gets a fresh one
/// every 24 h, so less means the device has not reached its gateway for days.
pub const TICKET_WARN_SECS: u64 = 2 * 24 * 3600;

/// What a failed probe through a relay says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFailure {
    /// The relay presented another certificate than the pinned one.
    PinMismatch,
    /// The relay refused the gateway's ticket: the gateway's id is not on its list.
    GatewayNotAdmitted,
    /// Anything else: the relay (or the gateway behind it) did not answer.
    Unreachable,
}

/// Classifies a probe error by the relay's and rustls's own wording. Pure.
pub fn classify(error: &str) -> RelayFailure {
    if error.contains("does not serve") {
        RelayFailure::GatewayNotAdmitted
    } else if error.contains("ApplicationVerificationFailure")
        || error.contains("invalid peer certificate")
        || error.contains("pin")
    {
        RelayFailure::PinMismatch
    } else {
        RelayFailure::Unreachable
    }
}

/// The three findings of one relay.
pub fn relay(r: &RelayFacts) -> Vec<Finding> {
    let url = crate::text::escape(&r.url).into_owned();
    let pin_ok = || {
        if r.pinned {
            Finding::ok(
                ids::RELAY_PIN,
                format!("{url}: its certificate matches the pin"),
            )
        } else {
            Finding::info(
                ids::RELAY_PIN,
                format!("{url}: no pin; its certificate is checked against the web PKI roots"),
            )
        }
    };
    match &r.probe {
        Ok(ms) => vec![
            Finding::ok(
                ids::RELAY_REACHABLE,
                format!("{url}: a device reaches this gateway through it ({ms:.1} ms handshake)"),
            ),
            pin_ok(),
            Finding::ok(ids::RELAY_ADMITTED, format!("{url}: admits this gateway")),
        ],
        Err(e) => {
            let e = crate::text::escape(e).into_owned();
            match classify(&e) {
                RelayFailure::PinMismatch => vec![
                    Finding::ok(ids::RELAY_REACHABLE, format!("{url}: answers")),
                    Finding::error(
                        ids::RELAY_PIN,
                        format!("{url}: its certificate is not the pinned one ({e}); devices refuse it too"),
                    )
                    .with_hint("compare the `pin` that `claw relay serve --json` prints on the relay with --relay-pin; a relay that lost its home (HOME/relay/) made a new certificate: restart the gateway with the new pin and pair the devices again"),
                    Finding::info(ids::RELAY_ADMITTED, format!("{url}: not checked (pin mismatch)")),
                ],
                RelayFailure::GatewayNotAdmitted => vec![
                    Finding::ok(ids::RELAY_REACHABLE, format!("{url}: answers")),
                    pin_ok(),
                    Finding::error(
                        ids::RELAY_ADMITTED,
                        format!("{url}: refuses this gateway ({e}); devices cannot reach it there"),
                    )
                    .with_hint("on the relay host add this gateway's id (`claw pair --json` prints it as gatewayId): `claw relay serve … --allow-gateway ID`"),
                ],
                RelayFailure::Unreachable => vec![
                    Finding::error(
                        ids::RELAY_REACHABLE,
                        format!("{url}: no device can reach this gateway through it: {e}"),
                    )
                    .with_hint("is `claw relay serve` running there and its TCP port open? `claw gateway logs` shows the gateway's relay link"),
                    Finding::info(ids::RELAY_PIN, format!("{url}: not checked (unreachable)")),
                    Finding::info(ids::RELAY_ADMITTED, format!("{url}: not checked (unreachable)")),
                ],
            }
        }
    }
}

/// `relay.ticket`: a device paired through relays holds a ticket that is not expired, with
/// days to spare. `now` in unix seconds.
pub fn ticket(d: &DeviceRelayFacts, now: u64) -> Finding {
    let id = ids::RELAY_TICKET;
    let Some(exp) = d.ticket_expires_at else {
        return Finding::warn(id, format!("no relay ticket, though the pairing names {} relay(s): the relays refuse this device until the gateway hands one over", d.relays))
            .with_hint("connect once by a path that works (`claw tunnel up`), or pair again with a fresh URI (`claw pair` on the gateway)");
    };
    if exp <= now {
        return Finding::error(
            id,
            format!("the relay ticket expired {} ago: the relays refuse this device", human_duration((now - exp) * 1000)),
        )
        .with_hint("pair again with a fresh URI (`claw pair` on the gateway, `claw tunnel pair URI` here), or connect once directly so the gateway hands a new ticket over");
    }
    let left = human_duration((exp - now) * 1000);
    if exp - now < TICKET_WARN_SECS {
        return Finding::warn(
            id,
            format!("the relay ticket expires in {left}: this device has not reached its gateway for days (a connected device gets a fresh one every 24 h)"),
        )
        .with_hint("run `claw tunnel up` so the gateway hands a fresh ticket over");
    }
    Finding::ok(id, format!("the relay ticket is valid for {left}"))
}

#[cfg(test)]
mod tests {
    use super::super::super::Severity;
    use super::*;

    fn sev(f: &[Finding]) -> Vec<(&'static str, Severity)> {
        f.iter().map(|f| (f.id, f.severity)).collect()
    }

    fn facts(probe: Result<f64, String>) -> RelayFacts {
        RelayFacts {
            url: "https://relay.example:8443".into(),
            pinned: true,
            probe,
        }
    }

    #[test]
    fn a_relay_that_carries_the_probe_is_ok_three_times() {
        let f = relay(&facts(Ok(3.5)));
        assert_eq!(
            sev(&f),
            [
                (ids::RELAY_REACHABLE, Severity::Ok),
                (ids::RELAY_PIN, Severity::Ok),
                (ids::RELAY_ADMITTED, Severity::Ok)
            ]
        );
        let mut unpinned = facts(Ok(1.0));
        unpinned.pinned = false;
        assert_eq!(relay(&unpinned)[1].severity, Severity::Info);
    }

    #[test]
    fn each_failure_is_named_for_what_broke() {
        let not_served = relay(&facts(Err(
            "connection refused by the relay: relay ticket issued by a gateway this relay does not serve".into(),
        )));
        assert_eq!(
            sev(&not_served),
            [
                (ids::RELAY_REACHABLE, Severity::Ok),
                (ids::RELAY_PIN, Severity::Ok),
                (ids::RELAY_ADMITTED, Severity::Error)
            ]
        );
        assert!(not_served[2]
            .hint
            .as_deref()
            .unwrap()
            .contains("--allow-gateway"));
        let wrong_pin = relay(&facts(Err(
            "invalid peer certificate: Other(ApplicationVerificationFailure)".into(),
        )));
        assert_eq!(wrong_pin[1].severity, Severity::Error);
        assert_eq!(wrong_pin[2].severity, Severity::Info);
        let down = relay(&facts(Err("Connection refused (os error 111)".into())));
        assert_eq!(down[0].severity, Severity::Error);
        assert_eq!(down[1].severity, Severity::Info);
        // A hostile relay's error text is escaped before it reaches the terminal.
        let hostile = relay(&facts(Err("boom\u{1b}[2J".into())));
        assert!(
            !hostile[0].message.contains('\u{1b}'),
            "{}",
            hostile[0].message
        );
    }

    #[test]
    fn tickets_are_judged_by_what_is_left() {
        let now = 1_000_000_000;
        let t = |exp: Option<u64>| {
            ticket(
                &DeviceRelayFacts {
                    relays: 1,
                    ticket_expires_at: exp,
                },
                now,
            )
            .severity
        };
        assert_eq!(t(None), Severity::Warn);
        assert_eq!(t(Some(now)), Severity::Error);
        assert_eq!(t(Some(now - 60)), Severity::Error);
        assert_eq!(t(Some(now + 3600)), Severity::Warn);
        assert_eq!(t(Some(now + 7 * 24 * 3600)), Severity::Ok);
    }
}
