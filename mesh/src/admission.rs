//! Who a relay serves: pure decisions, no IO (the relay's `AccessControl` hook calls these).
//!
//! - A **gateway** is admitted when the id of the key it proved in the relay handshake (the hex
//!   SHA-256 of its raw Ed25519 public key: the `gatewayId` that `claw pair --json` prints) is on
//!   the relay's list.
//! - A **device** is admitted with a [`DeviceTicket`] as its bearer token, signed by a listed
//!   gateway for exactly the key the device proved, and not expired.
//! - Nothing else: an empty list admits no one.

use std::collections::BTreeSet;

use crate::ticket::{DeviceTicket, TicketError};

/// Hex SHA-256 of a raw Ed25519 public key: claw's device and gateway id.
pub fn key_id(raw_public_key: &[u8; 32]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, raw_public_key);
    data_encoding::HEXLOWER.encode(d.as_ref())
}

/// Why a gateway id from the command line or the allow file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a gateway id (64 lowercase hex characters, as `claw pair --json` prints gatewayId): {0:?}"
)]
pub struct BadGatewayId(pub String);

/// Parses one gateway id (surrounding space ignored, case folded).
pub fn parse_gateway_id(s: &str) -> Result<String, BadGatewayId> {
    let t = s.trim().to_ascii_lowercase();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(BadGatewayId(s.chars().take(80).collect()))
    }
}

/// Parses an allow file: one gateway id per line; blank lines and `#` comments ignored.
pub fn parse_allow_file(text: &str) -> Result<Vec<String>, BadGatewayId> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(parse_gateway_id)
        .collect()
}

/// Who was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// A listed gateway.
    Gateway {
        /// Its id.
        id: String,
    },
    /// A device holding a ticket of a listed gateway.
    Device {
        /// The device's id.
        id: String,
        /// The issuing gateway's id.
        gateway_id: String,
    },
}

/// Why a client was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No ticket, and the key is not a listed gateway.
    #[error("this relay serves only its listed gateways and devices holding their tickets")]
    NotListed,
    /// A ticket was presented and failed.
    #[error(transparent)]
    Ticket(#[from] TicketError),
}

/// The relay's admission rules.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    gateways: BTreeSet<String>,
}

impl Admission {
    /// Rules admitting the gateways with these ids (and devices with their tickets).
    pub fn new(gateway_ids: impl IntoIterator<Item = String>) -> Self {
        Self {
            gateways: gateway_ids.into_iter().collect(),
        }
    }

    /// The listed gateway ids.
    pub fn gateways(&self) -> impl Iterator<Item = &str> {
        self.gateways.iter().map(String::as_str)
    }

    /// Decides for a client that proved `endpoint_key` and presented `bearer` (if any), at
    /// `now` (unix seconds).
    pub fn decide(
        &self,
        endpoint_key: &[u8; 32],
        bearer: Option<&str>,
        now: u64,
    ) -> Result<Admitted, Refused> {
        let id = key_id(endpoint_key);
        match bearer {
            None if self.gateways.contains(&id) => Ok(Admitted::Gateway { id }),
            None => Err(Refused::NotListed),
            Some(text) => {
                let t = DeviceTicket::parse(text)?;
                let gateway_id = key_id(&t.gateway_key);
                if !self.gateways.contains(&gateway_id) {
                    return Err(TicketError::UnknownGateway.into());
                }
                t.verify(endpoint_key, now)?;
                Ok(Admitted::Device { id, gateway_id })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const NOW: u64 = 1_800_000_000;

    fn public(seed: &[u8; 32]) -> [u8; 32] {
        let kp = Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
        kp.public_key().as_ref().try_into().unwrap()
    }

    #[test]
    fn key_id_is_claws_device_id() {
        // SHA-256 of 32 zero bytes.
        assert_eq!(
            key_id(&[0u8; 32]),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn listed_gateways_and_their_devices_get_in_nobody_else() {
        let gw_seed = [1u8; 32];
        let gw = public(&gw_seed);
        let dev = public(&[2u8; 32]);
        let a = Admission::new([key_id(&gw)]);
        assert_eq!(
            a.decide(&gw, None, NOW),
            Ok(Admitted::Gateway { id: key_id(&gw) })
        );
        assert_eq!(a.decide(&dev, None, NOW), Err(Refused::NotListed));
        let t = DeviceTicket::issue(&gw_seed, dev, NOW + 60).encode();
        assert_eq!(
            a.decide(&dev, Some(&t), NOW),
            Ok(Admitted::Device {
                id: key_id(&dev),
                gateway_id: key_id(&gw)
            })
        );
        // Another key presenting the device's ticket.
        assert_eq!(
            a.decide(&public(&[3u8; 32]), Some(&t), NOW),
            Err(Refused::Ticket(TicketError::WrongDevice))
        );
        assert_eq!(
            a.decide(&dev, Some(&t), NOW + 60),
            Err(Refused::Ticket(TicketError::Expired))
        );
        // A ticket from a gateway that is not listed.
        let stranger = DeviceTicket::issue(&[4u8; 32], dev, NOW + 60).encode();
        assert_eq!(
            a.decide(&dev, Some(&stranger), NOW),
            Err(Refused::Ticket(TicketError::UnknownGateway))
        );
        assert!(matches!(
            a.decide(&dev, Some("garbage"), NOW),
            Err(Refused::Ticket(TicketError::Malformed(_)))
        ));
    }

    #[test]
    fn an_empty_list_admits_no_one() {
        let a = Admission::new([]);
        let gw_seed = [1u8; 32];
        let dev = public(&[2u8; 32]);
        assert_eq!(
            a.decide(&public(&gw_seed), None, NOW),
            Err(Refused::NotListed)
        );
        let t = DeviceTicket::issue(&gw_seed, dev, NOW + 60).encode();
        assert!(a.decide(&dev, Some(&t), NOW).is_err());
    }

    #[test]
    fn gateway_ids_and_allow_files_parse_strictly() {
        let id = "AB".repeat(32);
        assert_eq!(
            parse_gateway_id(&format!("  {id} ")).unwrap(),
            "ab".repeat(32)
        );
        for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(parse_gateway_id(bad).is_err(), "{bad}");
        }
        let file = format!(
            "# relay list\n\n{}  # home\n{}\n",
            "a".repeat(64),
            "b".repeat(64)
        );
        assert_eq!(parse_allow_file(&file).unwrap().len(), 2);
        assert!(parse_allow_file("not-an-id\n").is_err());
    }
}
