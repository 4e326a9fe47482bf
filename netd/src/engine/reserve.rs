//! Published host ports are reserved against host processes: the daemon holds a socket bound to
//! each one, so a host process that binds the port gets EADDRINUSE (SO_REUSEADDR or not: the
//! reservation does not set it), as with docker-proxy, but with no process per port. Packets to
//! published ports are translated by the TC programs before socket lookup, and host-local
//! connections by the cgroup socket hooks; what still reaches the port (through an interface
//! netd does not serve, with `--uplink` narrowing it) finds no listener: a TCP connection is
//! reset at once instead of being accepted and never answered (UDP datagrams queue unread).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::state::PortBinding;
use crate::spec::Proto;

#[derive(Default)]
pub struct Reservations {
    by_binding: HashMap<u32, Vec<OwnedFd>>,
}

fn bind_one(proto: Proto, ip: IpAddr, port: u16) -> std::io::Result<OwnedFd> {
    let (family, ty) = match (ip, proto) {
        (IpAddr::V4(_), Proto::Tcp) => (libc::AF_INET, libc::SOCK_STREAM),
        (IpAddr::V4(_), Proto::Udp) => (libc::AF_INET, libc::SOCK_DGRAM),
        (IpAddr::V6(_), Proto::Tcp) => (libc::AF_INET6, libc::SOCK_STREAM),
        (IpAddr::V6(_), Proto::Udp) => (libc::AF_INET6, libc::SOCK_DGRAM),
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = SocketAddr::new(ip, port);
    let (storage, len) = sockaddr(&addr);
    // SAFETY: storage holds a valid sockaddr of length len.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut s).cast(), sin) };
            (s, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut s).cast(), sin6) };
            (s, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

impl Reservations {
    /// Reserves every port of every binding, or none: the first port a host process already
    /// holds is the error.
    pub fn reserve_all(&mut self, bindings: &[PortBinding]) -> Result<(), String> {
        let mut got: HashMap<u32, Vec<OwnedFd>> = HashMap::new();
        for b in bindings {
            let mut fds = Vec::with_capacity(b.count as usize);
            for i in 0..b.count {
                let port = b.host_port + i;
                match bind_one(b.proto, b.host_ip, port) {
                    Ok(fd) => fds.push(fd),
                    Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
                        return Err(format!(
                            "port {port}/{} is already in use on the host ({}:{port}): a host process holds it",
                            b.proto, b.host_ip
                        ));
                    }
                    Err(e) => {
                        return Err(format!(
                            "cannot reserve {}:{port}/{}: {e}",
                            b.host_ip, b.proto
                        ));
                    }
                }
            }
            got.insert(b.id, fds);
        }
        self.by_binding.extend(got);
        Ok(())
    }

    pub fn release(&mut self, bindings: &[PortBinding]) {
        for b in bindings {
            self.by_binding.remove(&b.id);
        }
    }
}

/// Lets the daemon hold one socket per published port: raise the soft open-files limit to the
/// hard one.
pub fn raise_nofile_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
