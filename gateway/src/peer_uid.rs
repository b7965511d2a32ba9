//! Which local user owns the other end of a loopback TCP connection (Linux `sock_diag`).
//!
//! The gateway charges a loopback socket's pre-auth budget and wrong-secret delay to the uid
//! that opened it, so another local user's sockets cannot spend the operator's budget. The
//! kernel knows the owner of the client's socket; `NETLINK_SOCK_DIAG` with an exact 4-tuple
//! (`inet_diag_req_v2` without `NLM_F_DUMP`) asks for that one socket, in O(1) — what `ss -e`
//! does, unprivileged. Scanning `/proc/net/tcp` would be O(sockets) per connection. No crate:
//! the request is one fixed 72-byte message and the answer's uid sits at a fixed offset, so the
//! ~60 lines below replace two netlink crates (`netlink-packet-sock-diag`, `netlink-sys`) and
//! their dependency trees; the parsing is pure and fuzzed (`fuzz/fuzz_targets/sock_diag.rs`).
//!
//! Off Linux, or when the lookup fails, callers fall back to the source address.

use std::net::{IpAddr, SocketAddr};

/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR` (what the kernel answers when no socket matches).
#[cfg(test)]
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// Length of `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;
/// Length of `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// Offset of `idiag_uid` in `struct inet_diag_msg` (family, state, timer, retrans: 4 bytes; the
/// 48-byte socket id; expires, rqueue, wqueue: 12 bytes).
const UID_OFFSET: usize = 64;

/// The request for the TCP socket whose local end is `local` and remote end `remote` (for the
/// client's socket of a connection the gateway accepted: local = the peer's address, remote =
/// the gateway's). `None` for mixed address families.
pub fn build_request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Option<Vec<u8>> {
    let family: u8 = match (local.ip(), remote.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => 2,  // AF_INET
        (IpAddr::V6(_), IpAddr::V6(_)) => 10, // AF_INET6
        _ => return None,
    };
    let mut m = Vec::with_capacity(NLMSG_HDR + REQ_LEN);
    m.extend_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    m.extend_from_slice(&[family, 6 /* IPPROTO_TCP */, 0, 0]);
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every TCP state
    m.extend_from_slice(&local.port().to_be_bytes());
    m.extend_from_slice(&remote.port().to_be_bytes());
    for ip in [local.ip(), remote.ip()] {
        let mut a = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => a.copy_from_slice(&v6.octets()),
        }
        m.extend_from_slice(&a);
    }
    m.extend_from_slice(&0u32.to_ne_bytes()); // interface: any
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // INET_DIAG_NOCOOKIE
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    debug_assert_eq!(m.len(), NLMSG_HDR + REQ_LEN);
    Some(m)
}

/// The uid in the kernel's answer to the request numbered `seq`; `None` for an error, a short
/// or malformed message, or another sequence number. Never panics, whatever `buf` holds.
pub fn parse_reply(buf: &[u8], seq: u32) -> Option<u32> {
    let u32_at = |off: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(buf.get(off..off + 4)?.try_into().ok()?))
    };
    let len = u32_at(0)? as usize;
    let kind = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
    if len > buf.len() || len < NLMSG_HDR + UID_OFFSET + 4 || u32_at(8)? != seq {
        return None;
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return None; // NLMSG_ERROR (no such socket) or anything else
    }
    u32_at(NLMSG_HDR + UID_OFFSET)
}

/// The uid owning the client end of the accepted loopback connection `peer` → `local`, asked of
/// the kernel. `None` off Linux or on any failure.
#[cfg(target_os = "linux")]
pub fn of_peer(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(1);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    // The client's socket: its local end is the peer's address.
    let req = build_request(peer, local, seq)?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    use std::os::fd::AsRawFd;
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 1024];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).ok()?;
    parse_reply(&buf[..n], seq)
}

/// Not Linux: unknown.
#[cfg(not(target_os = "linux"))]
pub fn of_peer(_peer: SocketAddr, _local: SocketAddr) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_kernel_names_the_owner_of_a_real_loopback_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer) = l.accept().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(of_peer(peer, s.local_addr().unwrap()), Some(me));
        // A 4-tuple nobody holds: no answer.
        let gone = SocketAddr::from(([127, 0, 0, 1], 1));
        assert_eq!(of_peer(gone, s.local_addr().unwrap()), None);
        drop(c);
    }

    #[test]
    fn requests_are_well_formed_and_mixed_families_refused() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:18789".parse().unwrap();
        let m = build_request(a, b, 7).unwrap();
        assert_eq!(m.len(), 72);
        assert_eq!(&m[24..26], &5000u16.to_be_bytes());
        assert_eq!(&m[26..28], &18789u16.to_be_bytes());
        assert!(build_request(a, "[::1]:1".parse().unwrap(), 1).is_none());
    }

    #[test]
    fn hostile_replies_are_refused() {
        let mut ok = vec![0u8; NLMSG_HDR + 72];
        let len = ok.len() as u32;
        ok[0..4].copy_from_slice(&len.to_ne_bytes());
        ok[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        ok[8..12].copy_from_slice(&9u32.to_ne_bytes());
        ok[NLMSG_HDR + UID_OFFSET..NLMSG_HDR + UID_OFFSET + 4]
            .copy_from_slice(&1234u32.to_ne_bytes());
        assert_eq!(parse_reply(&ok, 9), Some(1234));
        assert_eq!(parse_reply(&ok, 8), None, "another request's answer");
        assert_eq!(parse_reply(&ok[..40], 9), None, "short");
        let mut err = ok.clone();
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_reply(&err, 9), None, "an error message");
        let mut long = ok.clone();
        long[0..4].copy_from_slice(&(len + 1).to_ne_bytes());
        assert_eq!(parse_reply(&long, 9), None, "length past the buffer");
        assert_eq!(parse_reply(&[], 9), None);
    }

    proptest! {
        #[test]
        fn parse_reply_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200), seq: u32) {
            let _ = parse_reply(&buf, seq);
        }
    }
}
