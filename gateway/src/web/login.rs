//! The control page's credentials, pure (times and the root generation passed in):
//!
//! - **login codes**: minted by `claw dashboard` over the admin socket, 32 random bytes, kept only
//!   as SHA-256, valid for [`CODE_TTL_MS`] and for one exchange — a second use, a wrong code and
//!   an expired code are all refused alike;
//! - **page sessions**: what a code is exchanged for (the cookie's value), kept only as SHA-256,
//!   ended by logout, by [`SESSION_TTL_MS`], and by a root rotation (a session is bound to the
//!   root generation it was made under; the page that asked for a rotation follows it, see
//!   [`Sessions::follow_rotation`]).
//!
//! Codes and sessions have an **owner**: `None` for the local operator (minted over the admin
//! socket, used on the loopback listener), `Some(device_id)` for a paired admin device (minted
//! through that device's tunnel, used only through it). A code or session is never accepted
//! for another owner, and a device's sessions end when it is revoked or removed
//! ([`Sessions::end_owner`]).
//!
//! Everything lives in memory: a gateway restart ends every page session.

use std::collections::HashMap;

use base64::Engine;

/// How long a login code stays valid (two minutes).
pub const CODE_TTL_MS: u64 = 2 * 60_000;
/// How long a page session lasts (twelve hours).
pub const SESSION_TTL_MS: u64 = 12 * 3_600_000;
/// Most unexpired codes kept (a loop of `claw dashboard` cannot grow memory).
pub const MAX_CODES: usize = 64;
/// Most page sessions kept; the oldest is ended past it.
pub const MAX_SESSIONS: usize = 64;

type Hash = [u8; 32];

fn hash(secret: &str) -> Hash {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().try_into().expect("32 bytes")
}

fn random_secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::auth::secrets::random_bytes())
}

/// Who a code or a session belongs to: `None` = the local operator, `Some(id)` = the paired
/// device `id` (through its tunnel).
pub type Owner = Option<String>;

/// One-time login codes by hash, with their expiry and owner.
#[derive(Debug, Default)]
pub struct Codes {
    codes: HashMap<Hash, (u64, Owner)>,
}

impl Codes {
    /// Mints a code for `owner` valid until `now + CODE_TTL_MS`; returns it and its expiry.
    pub fn mint(&mut self, now: u64, owner: Owner) -> (String, u64) {
        self.codes.retain(|_, (exp, _)| *exp > now);
        if self.codes.len() >= MAX_CODES {
            // Drop the one closest to expiring.
            if let Some(k) = self
                .codes
                .iter()
                .min_by_key(|(_, (e, _))| *e)
                .map(|(k, _)| *k)
            {
                self.codes.remove(&k);
            }
        }
        let code = random_secret();
        let exp = now + CODE_TTL_MS;
        self.codes.insert(hash(&code), (exp, owner));
        (code, exp)
    }

    /// Spends `code` for `owner`: true once for a code minted for that owner within its
    /// lifetime, false for anything else (never minted, already used, expired, another owner's).
    /// A code presented is forgotten, whoever presented it.
    pub fn redeem(&mut self, code: &str, now: u64, owner: Option<&str>) -> bool {
        if code.is_empty() || code.len() > 128 {
            return false;
        }
        match self.codes.remove(&hash(code)) {
            Some((exp, o)) => exp > now && o.as_deref() == owner,
            None => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    expires_ms: u64,
    generation: u64,
    /// Set while this session's own page asks for a root rotation.
    following: bool,
    owner: Owner,
}

/// Page sessions by the hash of their cookie value.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: HashMap<Hash, Session>,
}

/// A page session's identity for the other calls (the hash of its cookie value; the value itself
/// is not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(Hash);

impl Sessions {
    /// Starts a session of `owner` under root `generation`; returns the cookie value.
    pub fn start(&mut self, now: u64, generation: u64, owner: Owner) -> String {
        self.sessions.retain(|_, s| s.expires_ms > now);
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(k) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| *k)
            {
                self.sessions.remove(&k);
            }
        }
        let value = random_secret();
        self.sessions.insert(
            hash(&value),
            Session {
                expires_ms: now + SESSION_TTL_MS,
                generation,
                following: false,
                owner,
            },
        );
        value
    }

    /// The session a cookie value names, if it is live at `now` under root `generation` and
    /// belongs to `owner`.
    pub fn check(
        &mut self,
        value: &str,
        now: u64,
        generation: u64,
        owner: Option<&str>,
    ) -> Option<SessionId> {
        let id = SessionId(hash(value));
        (self.owner(id)? == owner && self.valid(id, now, generation)).then_some(id)
    }

    /// Who session `id` belongs to (`None` when there is no such session; `Some(None)` for the
    /// local operator).
    pub fn owner(&self, id: SessionId) -> Option<Option<&str>> {
        self.sessions.get(&id.0).map(|s| s.owner.as_deref())
    }

    /// Ends every session of device `device_id` (revoked or removed).
    pub fn end_owner(&mut self, device_id: &str) {
        self.sessions
            .retain(|_, s| s.owner.as_deref() != Some(device_id));
    }

    /// True while `id` is live at `now` under root `generation`. A session whose page asked
    /// for the rotation that moved the generation on moves with it (once).
    pub fn valid(&mut self, id: SessionId, now: u64, generation: u64) -> bool {
        let Some(s) = self.sessions.get_mut(&id.0) else {
            return false;
        };
        if s.expires_ms <= now {
            self.sessions.remove(&id.0);
            return false;
        }
        if s.generation != generation && s.following && generation > s.generation {
            s.generation = generation;
            s.following = false;
        }
        if s.generation != generation {
            self.sessions.remove(&id.0);
            return false;
        }
        true
    }

    /// Marks `id` as asking for a root rotation (`on`) or done asking: the next generation seen
    /// by [`Sessions::valid`] is adopted instead of ending the session.
    pub fn follow_rotation(&mut self, id: SessionId, on: bool) {
        if let Some(s) = self.sessions.get_mut(&id.0) {
            s.following = on;
        }
    }

    /// Ends one session (logout).
    pub fn end(&mut self, id: SessionId) {
        self.sessions.remove(&id.0);
    }

    /// Live sessions (for status).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is kept.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once() {
        let mut c = Codes::default();
        let (code, exp) = c.mint(1_000, None);
        assert_eq!(exp, 1_000 + CODE_TTL_MS);
        assert!(c.redeem(&code, 2_000, None));
        assert!(!c.redeem(&code, 2_000, None), "second use");
    }

    #[test]
    fn wrong_and_expired_codes_are_refused() {
        let mut c = Codes::default();
        let (code, exp) = c.mint(0, None);
        assert!(!c.redeem("not-a-code", 1, None));
        assert!(!c.redeem("", 1, None));
        assert!(!c.redeem(&"x".repeat(10_000), 1, None));
        assert!(!c.redeem(&code, exp, None), "expired at its expiry instant");
        assert!(!c.redeem(&code, 1, None), "an expired code is gone");
        // Codes are distinct and random.
        let (a, _) = c.mint(0, None);
        let (b, _) = c.mint(0, None);
        assert_ne!(a, b);
        assert!(a.len() >= 43);
    }

    #[test]
    fn codes_are_bounded() {
        let mut c = Codes::default();
        let first = c.mint(0, None).0;
        for _ in 0..MAX_CODES * 2 {
            c.mint(0, None);
        }
        assert!(c.codes.len() <= MAX_CODES);
        let _ = first;
    }

    #[test]
    fn a_session_lives_until_logout_expiry_or_rotation() {
        let mut s = Sessions::default();
        let v = s.start(0, 1, None);
        let id = s.check(&v, 1, 1, None).expect("live");
        assert!(s.check("forged", 1, 1, None).is_none());
        s.end(id);
        assert!(s.check(&v, 1, 1, None).is_none(), "logged out");

        let v = s.start(0, 1, None);
        assert!(s.check(&v, SESSION_TTL_MS, 1, None).is_none(), "expired");

        let v = s.start(0, 1, None);
        assert!(s.check(&v, 1, 2, None).is_none(), "rotation ends it");
        assert!(s.check(&v, 1, 1, None).is_none(), "and it stays ended");
    }

    #[test]
    fn the_page_that_rotates_follows_its_rotation_others_do_not() {
        let mut s = Sessions::default();
        let mine = s.start(0, 1, None);
        let other = s.start(0, 1, None);
        let id = s.check(&mine, 1, 1, None).unwrap();
        s.follow_rotation(id, true);
        assert!(s.valid(id, 2, 2), "follows generation 2");
        s.follow_rotation(id, false);
        assert!(
            s.check(&other, 2, 2, None).is_none(),
            "the other page is logged out"
        );
        assert!(
            !s.valid(id, 3, 3),
            "a later rotation it did not ask for ends it"
        );
    }

    #[test]
    fn codes_and_sessions_serve_their_owner_only() {
        let mut c = Codes::default();
        let dev = Some("dev-a".to_string());
        let (code, _) = c.mint(0, dev.clone());
        assert!(
            !c.redeem(&code, 1, None),
            "a device's code is no loopback login"
        );
        assert!(
            !c.redeem(&code, 1, Some("dev-a")),
            "and it was spent by that try"
        );
        let (code, _) = c.mint(0, dev.clone());
        assert!(!c.redeem(&code, 1, Some("dev-b")));
        let (code, _) = c.mint(0, dev.clone());
        assert!(c.redeem(&code, 1, Some("dev-a")));
        let (local, _) = c.mint(0, None);
        assert!(
            !c.redeem(&local, 1, Some("dev-a")),
            "a local code is no device login"
        );

        let mut s = Sessions::default();
        let v = s.start(0, 1, dev.clone());
        let local = s.start(0, 1, None);
        assert!(s.check(&v, 1, 1, None).is_none());
        assert!(s.check(&v, 1, 1, Some("dev-b")).is_none());
        let id = s.check(&v, 1, 1, Some("dev-a")).expect("the device's own");
        assert_eq!(s.owner(id), Some(Some("dev-a")));
        assert!(s.check(&local, 1, 1, Some("dev-a")).is_none());
        s.end_owner("dev-a");
        assert!(s.check(&v, 1, 1, Some("dev-a")).is_none(), "revoked");
        assert!(s.check(&local, 1, 1, None).is_some(), "others stay");
    }

    #[test]
    fn sessions_are_bounded() {
        let mut s = Sessions::default();
        for i in 0..MAX_SESSIONS as u64 * 2 {
            s.start(i, 1, None);
        }
        assert!(s.len() <= MAX_SESSIONS);
    }
}
