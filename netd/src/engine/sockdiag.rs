//! Which host sockets of the daemon's network namespace hold a local port, read with
//! NETLINK_SOCK_DIAG (inet_diag): with the bind hooks reserving published ports there is no
//! reservation socket whose bind would fail, so `publish` asks the kernel instead.
//!
//! Hand-rolled (one request struct, one reply struct) rather than the netlink-packet-sock-diag
//! crate: netd needs a dump filtered by local port, about 100 lines, and the crate would pull
//! a second netlink-packet-core line into the lock file next to rtnetlink's.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_TIME_WAIT: u8 = 6;
const TCP_SYN_RECV: u8 = 3;

/// A socket holding a local port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub addr: IpAddr,
    pub port: u16,
    /// The socket's inode (what /proc/PID/fd links name), for the error message.
    pub inode: u32,
}

/// Every socket of (family, proto) in this network namespace whose local port `port` picks:
/// listeners, bound-only and connected sockets. TIME_WAIT and embryonic connections are left
/// out (they belong to no process, and the reservation socket's bind set no SO_REUSEADDR
/// either way).
pub fn holders(family: u8, proto: u8, port: impl Fn(u16) -> bool) -> io::Result<Vec<Holder>> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };

    // nlmsghdr (16) + inet_diag_req_v2 (56).
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = family;
    req[17] = proto;
    // idiag_states: every state, including TCP_BOUND_INACTIVE (13, Linux 6.7: bound sockets
    // that neither listen nor connect, which hold the port as much as a listener does).
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    // SAFETY: req is a valid buffer of its length.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut msg = &buf[..n as usize];
        while msg.len() >= 16 {
            let len = u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(msg[4..6].try_into().unwrap());
            if len < 16 || len > msg.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated sock_diag message",
                ));
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(msg[16..20].try_into().unwrap());
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(h) = parse(&msg[16..len], &port) {
                        out.push(h);
                    }
                }
                _ => {}
            }
            // Messages are 4-byte aligned.
            let next = (len + 3) & !3;
            msg = &msg[next.min(msg.len())..];
        }
    }
}

/// One inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid (sport, dport,
/// src[16], dst[16], if, cookie[8]), expires, rqueue, wqueue, uid, inode.
fn parse(m: &[u8], want: &impl Fn(u16) -> bool) -> Option<Holder> {
    if m.len() < 72 {
        return None;
    }
    let (family, state) = (m[0], m[1]);
    if state == TCP_TIME_WAIT || state == TCP_SYN_RECV {
        return None;
    }
    let sport = u16::from_be_bytes([m[4], m[5]]);
    if !want(sport) {
        return None;
    }
    let src: [u8; 16] = m[8..24].try_into().ok()?;
    let addr = if family == libc::AF_INET as u8 {
        IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(src))
    };
    let inode = u32::from_ne_bytes(m[68..72].try_into().ok()?);
    Some(Holder {
        addr,
        port: sport,
        inode,
    })
}

/// Does a host socket bound to `sock` keep a binding on `published` from being exclusive?
/// Either side being a wildcard overlaps everything; an IPv6 socket on `[::]` may take IPv4
/// (dual stack), `::ffff:a.b.c.d` is a.b.c.d.
pub fn overlaps(sock: IpAddr, published: IpAddr) -> bool {
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(v) if v.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(v) => v.to_ipv4_mapped(),
    };
    match (v4(sock), v4(published)) {
        (Some(s), Some(p)) => s.is_unspecified() || p.is_unspecified() || s == p,
        _ => sock == published || sock.is_unspecified() || published.is_unspecified(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_overlap() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(overlaps(a("0.0.0.0"), a("192.0.2.1")));
        assert!(overlaps(a("192.0.2.1"), a("0.0.0.0")));
        assert!(overlaps(a("::"), a("127.0.0.1")));
        assert!(overlaps(a("::ffff:192.0.2.1"), a("192.0.2.1")));
        assert!(!overlaps(a("192.0.2.2"), a("192.0.2.1")));
        assert!(!overlaps(a("::1"), a("127.0.0.1")));
    }

    #[test]
    fn finds_a_bound_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = holders(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, |p| p == port).unwrap();
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0].addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        drop(l);
        assert!(
            holders(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, |p| p == port)
                .unwrap()
                .is_empty()
        );
    }
}
