//! The punching state machine driven directly: two peers wired by a function that plays the
//! network (a NAT that passes or drops), with a hand-moved clock.

use super::*;

fn key() -> ProbeKey {
    ProbeKey::new(&[7u8; 32])
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const GW: &str = "198.51.100.2:40000";
const DEV: &str = "198.51.100.3:50000";

/// Sends everything `from` wants to send now; each datagram reaches `to` when `pass` says so,
/// arriving from `from_addr`. Answers (pongs) travel back the same way. Returns the count sent.
fn exchange(
    from: &mut Punch,
    from_addr: SocketAddr,
    to: &mut Punch,
    now: Instant,
    pass: bool,
) -> usize {
    let mut n = 0;
    while let Some((_dst, bytes)) = from.poll_transmit(now) {
        n += 1;
        assert!(n < 1000, "unbounded probes");
        if !pass {
            continue;
        }
        if let Received::Probe(Some(pong)) = to.on_datagram(from_addr, &bytes, now) {
            let to_addr = if from_addr == addr(GW) {
                addr(DEV)
            } else {
                addr(GW)
            };
            from.on_datagram(to_addr, &pong, now);
        }
    }
    n
}

fn pair(t0: Instant) -> (Punch, Punch) {
    let mut g = Punch::new(Role::Gateway, key(), t0);
    let mut d = Punch::new(Role::Device, key(), t0);
    g.set_candidates(&[addr(DEV)], t0);
    d.set_candidates(&[addr(GW)], t0);
    (g, d)
}

#[test]
fn probes_round_trip_and_refuse_tampering_and_foreign_keys() {
    let k = key();
    let p = Probe {
        kind: Kind::Pong,
        from_role: Role::Device,
        seq: 0x0102_0304_0506_0708,
        observed: addr("10.0.2.2:4433"),
    };
    let wire = k.encode(&p);
    assert!(looks_like_probe(&wire));
    assert_eq!(wire[0] & 0x40, 0, "the fixed bit is clear");
    assert_eq!(k.decode(&wire), Ok(p));
    let v6 = Probe {
        observed: addr("[2001:db8::1]:9"),
        ..p
    };
    assert_eq!(k.decode(&k.encode(&v6)), Ok(v6));
    // Every flipped bit is refused.
    for i in 0..PROBE_LEN {
        for bit in 0..8 {
            let mut bad = wire;
            bad[i] ^= 1 << bit;
            assert!(k.decode(&bad).is_err(), "byte {i} bit {bit}");
        }
    }
    // Another session's key, truncations, extensions, QUIC-looking packets.
    assert_eq!(
        ProbeKey::new(&[8u8; 32]).decode(&wire),
        Err(ProbeError::BadTag)
    );
    for n in 0..PROBE_LEN {
        assert!(k.decode(&wire[..n]).is_err());
    }
    let mut long = wire.to_vec();
    long.push(0);
    assert_eq!(k.decode(&long), Err(ProbeError::Malformed));
    assert_eq!(k.decode(&[0xc0, 0, 0, 1]), Err(ProbeError::NotProbe));
    assert_eq!(k.decode(&[0x40; PROBE_LEN]), Err(ProbeError::NotProbe));
    assert_eq!(k.decode(&[]), Err(ProbeError::NotProbe));
}

#[test]
fn two_cone_nats_go_direct_and_quic_is_accepted_on_the_first_ping() {
    let t0 = Instant::now();
    let (mut g, mut d) = pair(t0);
    assert_eq!(g.path(), Path::Relay);
    assert!(!g.accepts(addr(DEV), t0));
    // The device's first pings reach the gateway: it accepts QUIC from there at once, and its
    // pongs confirm the path for the device.
    exchange(&mut d, addr(DEV), &mut g, t0, true);
    assert!(g.accepts(addr(DEV), t0), "accept-on-probe");
    assert_eq!(d.path(), Path::Direct(addr(GW)));
    assert_eq!(d.reflexive(), Some(addr(DEV)));
    // The gateway's own pings confirm it too.
    exchange(&mut g, addr(GW), &mut d, t0, true);
    assert_eq!(g.path(), Path::Direct(addr(DEV)));
    assert!(d.accepts(addr(GW), t0));
    // Unrelated senders are still not accepted.
    assert!(!g.accepts(addr("198.51.100.9:1"), t0));
}

#[test]
fn a_blocked_path_stays_relayed_with_bounded_bursts() {
    let t0 = Instant::now();
    let (mut g, mut d) = pair(t0);
    let mut sent: usize = 0;
    let mut now = t0;
    let end = t0 + Duration::from_secs(600);
    let mut bursts_started = 0;
    while now < end {
        let n = exchange(&mut g, addr(GW), &mut d, now, false);
        if n > 0 && sent.is_multiple_of(BURST_PINGS as usize) {
            bursts_started += 1;
        }
        sent += n;
        now = g
            .poll_timeout()
            .expect("a retry is always scheduled")
            .max(now + Duration::from_millis(1));
    }
    assert_eq!(g.path(), Path::Relay);
    assert_eq!(d.path(), Path::Relay);
    // 10 minutes of retries doubling from 2 s to 30 s: about 23 bursts of 5 pings.
    assert!(sent > 0);
    assert!(sent <= 30 * BURST_PINGS as usize, "{sent} pings in 10 min");
    assert!(bursts_started >= 10, "{bursts_started}");
}

#[test]
fn a_dead_direct_path_falls_back_to_the_relay_and_returns_when_it_answers() {
    let t0 = Instant::now();
    let (mut g, mut d) = pair(t0);
    exchange(&mut d, addr(DEV), &mut g, t0, true);
    exchange(&mut g, addr(GW), &mut d, t0, true);
    assert_eq!(g.path(), Path::Direct(addr(DEV)));
    // The path dies: keep-alives go unanswered until the timeout.
    let mut now = t0;
    while g.path() != Path::Relay {
        now = g.poll_timeout().unwrap();
        exchange(&mut g, addr(GW), &mut d, now, false);
        assert!(
            now - t0 <= DIRECT_TIMEOUT + KEEPALIVE,
            "no fallback by {:?}",
            now - t0
        );
    }
    assert!(now - t0 >= DIRECT_TIMEOUT);
    assert!(g.since() >= t0 + DIRECT_TIMEOUT);
    // It answers again: the next burst finds it.
    let mut rounds = 0;
    while g.path() == Path::Relay {
        now = g.poll_timeout().unwrap();
        exchange(&mut g, addr(GW), &mut d, now, true);
        rounds += 1;
        assert!(rounds < 20, "never went direct again");
    }
    assert_eq!(g.path(), Path::Direct(addr(DEV)));
}

#[test]
fn reflected_replayed_and_unsolicited_probes_are_refused() {
    let t0 = Instant::now();
    let (mut g, mut d) = pair(t0);
    let (_, ping) = d.poll_transmit(t0).unwrap();
    // Our own ping reflected at us.
    assert_eq!(d.on_datagram(addr(GW), &ping, t0), Received::Refused);
    // Accepted once; the same ping again (a replay, from anywhere) is refused.
    assert!(matches!(
        g.on_datagram(addr(DEV), &ping, t0),
        Received::Probe(Some(_))
    ));
    assert_eq!(
        g.on_datagram(addr("203.0.113.5:1"), &ping, t0),
        Received::Refused
    );
    assert!(!g.accepts(addr("203.0.113.5:1"), t0));
    // A pong nobody asked for, and one from another address than the ping went to.
    let k = key();
    let stray = k.encode(&Probe {
        kind: Kind::Pong,
        from_role: Role::Gateway,
        seq: 999,
        observed: addr(DEV),
    });
    assert_eq!(d.on_datagram(addr(GW), &stray, t0), Received::Refused);
    let (to, ping2) = d.poll_transmit(t0 + BURST_GAP).unwrap();
    assert_eq!(to, addr(GW));
    let Received::Probe(Some(pong)) = g.on_datagram(addr(DEV), &ping2, t0) else {
        panic!("no pong")
    };
    assert_eq!(
        d.on_datagram(addr("203.0.113.5:1"), &pong, t0),
        Received::Refused
    );
    assert_eq!(d.path(), Path::Relay);
    // Once far ahead, a sequence number outside the window is refused.
    let ping_seq = |seq| {
        k.encode(&Probe {
            kind: Kind::Ping,
            from_role: Role::Device,
            seq,
            observed: addr("0.0.0.0:0"),
        })
    };
    assert!(matches!(
        g.on_datagram(addr(DEV), &ping_seq(REPLAY_WINDOW * 3), t0),
        Received::Probe(Some(_))
    ));
    assert_eq!(
        g.on_datagram(addr(DEV), &ping_seq(5), t0),
        Received::Refused
    );
    // Not a probe: left to the shell.
    assert_eq!(
        g.on_datagram(addr(DEV), &[0xc3, 0, 0], t0),
        Received::NotProbe
    );
}

#[test]
fn candidates_are_bounded_and_filtered() {
    let t0 = Instant::now();
    let mut g = Punch::new(Role::Gateway, key(), t0);
    let mut many: Vec<SocketAddr> = vec![
        addr("0.0.0.0:5"),
        addr("10.0.0.1:0"),
        addr("224.0.0.1:5"),
        addr("255.255.255.255:5"),
        addr("[fd63:6c61:7721::1]:1"),
        addr("10.0.0.1:5"),
        addr("10.0.0.1:5"),
    ];
    many.extend((1..100).map(|i| SocketAddr::from(([10, 0, 1, i as u8], 7))));
    g.set_candidates(&many, t0);
    let mut targets = BTreeSet::new();
    while let Some((to, _)) = g.poll_transmit(t0 + Duration::from_secs(1)) {
        targets.insert(to);
    }
    assert_eq!(targets.len(), MAX_CANDIDATES);
    assert!(targets.contains(&addr("10.0.0.1:5")));
    assert!(!targets.contains(&addr("0.0.0.0:5")));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes: decoding never panics, and only the key's own encodings verify.
        #[test]
        fn decoding_anything_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let k = key();
            if let Ok(p) = k.decode(&bytes) {
                prop_assert_eq!(&k.encode(&p)[..], &bytes[..]);
            }
        }
    }
}
