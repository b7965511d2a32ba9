//! The pairing URI a device is handed (`claw tunnel pair 'claw://pair?…'` or its compact
//! `CLAW://P/…` form): parse, and what parses prints — in both forms — and parses back to the
//! same value.
#![no_main]

use claw_tunnel::pairing::{PairingUri, MAX_ADDRS, MAX_RELAYS, MAX_URI_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(u) = PairingUri::parse(text) else {
        return;
    };
    assert_eq!(u.gateway_id.len(), 64);
    assert!(u
        .gateway_id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(!u.addrs.is_empty() || !u.relays.is_empty());
    assert!(u.addrs.len() <= MAX_ADDRS && u.relays.len() <= MAX_RELAYS);
    // With relays, the key and the ticket signature are there (and verified by parse).
    assert!(u.relays.is_empty() || u.pairing_relay_credentials().is_some());
    assert!(claw_gateway::auth::pairing_code::split(&u.code).is_some());
    assert!(u.name.as_ref().is_none_or(|n| n.len() <= 64));
    let printed = u.to_uri();
    if printed.len() <= MAX_URI_LEN {
        assert_eq!(
            PairingUri::parse(&printed),
            Ok(u.clone()),
            "printed {printed:?}"
        );
    }
    // The compact form (`CLAW://P/…`) carries the same value, less the name the gateway keeps.
    let compact = u.to_display_uri();
    if compact.len() <= MAX_URI_LEN {
        let expected = if claw_tunnel::pairing_compact::is_compact(&compact) {
            PairingUri { name: None, ..u }
        } else {
            u
        };
        assert_eq!(
            PairingUri::parse(&compact),
            Ok(expected),
            "printed {compact:?}"
        );
    }
});
