//! Published host ports are reserved against host processes, one of two ways:
//!
//! - [`Mode::Hook`] (kernel >= 5.18): the socket object's bind hooks refuse a host socket that
//!   binds a published port (EADDRINUSE), the ports are added to the namespace's
//!   `ip_local_reserved_ports` so autobind never hands one out, and publishing checks with
//!   sock_diag that no live host socket already holds the port. No descriptor per port, so
//!   65 535 ports publish under a 20 000 `nofile` limit.
//! - [`Mode::Sockets`], the fallback where the hooks cannot load (or `NETD_PORT_RESERVE=socket`):
//!   the daemon holds a socket bound to each one, so a host process that binds the port gets
//!   EADDRINUSE (SO_REUSEADDR or not: the reservation does not set it), as with docker-proxy,
//!   but with no process per port.
//!
//! Packets to published ports are translated by the TC programs before socket lookup, and
//! host-local connections by the cgroup socket hooks; what still reaches the port (through an
//! interface netd does not serve, with `--uplink` narrowing it) finds no listener: a TCP
//! connection is reset at once instead of being accepted and never answered (UDP datagrams
//! queue unread).
//!
//! The IPv6 side of a binding whose container has no IPv6 address ([`PortBinding::relay46`])
//! is the NAT46 relay's listening socket ([`super::relay46`]), which is its reservation too:
//! started with the binding, dropped with it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use super::state::PortBinding;
use crate::spec::Proto;

/// How published host ports are kept from host processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    Hook,
    #[default]
    Sockets,
}

#[derive(Default)]
pub struct Reservations {
    mode: Mode,
    /// [`Mode::Sockets`]: the sockets of each binding.
    by_binding: HashMap<u32, Vec<OwnedFd>>,
    /// [`Mode::Hook`]: the reserving bindings, whose ports ip_local_reserved_ports lists.
    hooked: HashMap<u32, PortBinding>,
    /// ip_local_reserved_ports without netd's published ports (the admin's, --masq-ports).
    base: Vec<(u16, u16)>,
    /// What netd last wrote there.
    written: String,
    /// The NAT46 relays of each [`PortBinding::relay46`] binding.
    relays: HashMap<u32, Vec<super::relay46::Relay>>,
    /// Their limits and counters.
    relay: Arc<super::relay46::Shared>,
}

const RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// `a-b,c,...` ranges of a reserved-ports list (what does not parse is dropped).
fn parse_ranges(s: &str) -> Vec<(u16, u16)> {
    s.trim()
        .split(',')
        .filter_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect()
}

/// Sorted, merged ranges as the sysctl spells them.
fn format_ranges(mut v: Vec<(u16, u16)>) -> String {
    v.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match merged.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut out = String::new();
    for (a, b) in merged {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}-{b}"));
        }
    }
    out
}

/// `ranges` without any port of `remove`.
fn subtract(ranges: &[(u16, u16)], remove: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for &(a, b) in ranges {
        let mut pieces = vec![(a, b)];
        for &(ra, rb) in remove {
            pieces = pieces
                .into_iter()
                .flat_map(|(x, y)| {
                    let mut v = Vec::new();
                    if rb < x || ra > y {
                        v.push((x, y));
                    } else {
                        if ra > x {
                            v.push((x, ra - 1));
                        }
                        if rb < y {
                            v.push((rb + 1, y));
                        }
                    }
                    v
                })
                .collect();
        }
        out.extend(pieces);
    }
    out
}

fn span(b: &PortBinding) -> (u16, u16) {
    (b.host_port, b.host_port + (b.count - 1))
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

pub(super) fn sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
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
    /// [`Mode::Hook`] reservations, adopting `published` (the reserving bindings of the state:
    /// a restarted daemon's ports stay reserved). Whatever ip_local_reserved_ports lists now
    /// but those ports is kept.
    pub fn hooked(published: &[PortBinding]) -> Self {
        let cur =
            crate::spec::read_sysctl(std::path::Path::new(RESERVED_PORTS)).unwrap_or_default();
        let ours: Vec<(u16, u16)> = published.iter().map(span).collect();
        let mut r = Self {
            mode: Mode::Hook,
            base: subtract(&parse_ranges(&cur), &ours),
            written: cur.trim().to_owned(),
            ..Default::default()
        };
        r.hooked = published.iter().map(|b| (b.id, b.clone())).collect();
        r.write_reserved_ports();
        r
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Reserves every port of every binding, or none: the first port a host process already
    /// holds is the error.
    pub fn reserve_all(&mut self, bindings: &[PortBinding]) -> Result<(), String> {
        match self.mode {
            Mode::Sockets => self.reserve_sockets(bindings),
            Mode::Hook => {
                check_free(bindings)?;
                for b in bindings {
                    self.hooked.insert(b.id, b.clone());
                }
                self.write_reserved_ports();
                Ok(())
            }
        }
    }

    pub fn release(&mut self, bindings: &[PortBinding]) {
        let mut stopping = vec![];
        for b in bindings {
            self.by_binding.remove(&b.id);
            stopping.extend(self.relays.remove(&b.id).unwrap_or_default());
        }
        // The relays' ports are free when this returns (see relay46::stop_all).
        super::relay46::stop_all(stopping);
        if self.mode == Mode::Hook {
            let before = self.hooked.len();
            for b in bindings {
                self.hooked.remove(&b.id);
            }
            if self.hooked.len() != before {
                self.write_reserved_ports();
            }
        }
    }

    /// Keeps ip_local_reserved_ports = base + the published ports, so autobind (connect,
    /// listen without bind) never picks one. A failure is logged, not fatal: explicit binds are
    /// still refused by the hook.
    fn write_reserved_ports(&mut self) {
        let want = format_ranges(
            self.base
                .iter()
                .copied()
                .chain(self.hooked.values().map(span))
                .collect(),
        );
        if want == self.written {
            return;
        }
        match std::fs::write(RESERVED_PORTS, &want) {
            Ok(()) => self.written = want,
            Err(e) => tracing::warn!(
                "cannot write {RESERVED_PORTS} ({} bytes): {e}; autobind may pick a published port",
                want.len()
            ),
        }
    }

    /// Starts the NAT46 relays of the [`PortBinding::relay46`] bindings of `bindings`, to the
    /// container at `target`, or none: the first port a host socket holds is the error.
    /// Must run inside the tokio runtime.
    pub fn start_relays(
        &mut self,
        bindings: &[PortBinding],
        target: Ipv4Addr,
    ) -> Result<(), String> {
        let mut got: HashMap<u32, Vec<super::relay46::Relay>> = HashMap::new();
        for b in bindings.iter().filter(|b| b.relay46) {
            raise_nofile_limit();
            let listen_ip = match b.host_ip {
                IpAddr::V6(ip) => ip,
                IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
            };
            let mut relays = Vec::with_capacity(b.count as usize);
            for i in 0..b.count {
                let (port, cport) = (b.host_port + i, b.container_port + i);
                let listen = SocketAddr::new(IpAddr::V6(listen_ip), port);
                let to = SocketAddrV4::new(target, cport);
                let e = match super::relay46::Relay::start(&self.relay, b.proto, listen, to) {
                    Ok(r) => {
                        relays.push(r);
                        continue;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => format!(
                        "port {port}/{} is already in use on the host ([{listen_ip}]:{port}): a host process holds it",
                        b.proto
                    ),
                    Err(e) => format!(
                        "cannot relay [{listen_ip}]:{port}/{} to {to} (NAT46): {e}",
                        b.proto
                    ),
                };
                // None: the ports already relayed are free again when this returns.
                super::relay46::stop_all(got.into_values().flatten().chain(relays).collect());
                return Err(e);
            }
            got.insert(b.id, relays);
        }
        self.relays.extend(got);
        Ok(())
    }

    /// The NAT46 relays' counters.
    pub fn relay_stats(&self) -> super::relay46::RelayStats {
        self.relay.stats()
    }

    fn reserve_sockets(&mut self, bindings: &[PortBinding]) -> Result<(), String> {
        let mut got: HashMap<u32, Vec<OwnedFd>> = HashMap::new();
        // An IPv6 host address of a relayed binding is held by its relay's own socket.
        for b in bindings
            .iter()
            .filter(|b| !(b.relay46 && b.host_ip.is_ipv6()))
        {
            let mut fds = Vec::with_capacity(b.count as usize);
            for i in 0..b.count {
                let port = b.host_port + i;
                match bind_one(b.proto, b.host_ip, port) {
                    Ok(fd) => {
                        fds.push(fd);
                        crate::ops::progress::STEPS.step();
                    }
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
}

/// Refuses bindings whose port a live host socket of this namespace holds (sock_diag), as the
/// reservation socket's bind would have.
fn check_free(bindings: &[PortBinding]) -> Result<(), String> {
    for proto in [Proto::Tcp, Proto::Udp] {
        let mine: Vec<&PortBinding> = bindings.iter().filter(|b| b.proto == proto).collect();
        if mine.is_empty() {
            continue;
        }
        let wanted = |p: u16| {
            mine.iter()
                .any(|b| p >= b.host_port && p - b.host_port < b.count)
        };
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let held = super::sockdiag::holders(family, proto.number(), wanted)
                .map_err(|e| format!("cannot list the host's {proto} sockets (sock_diag): {e}"))?;
            for h in held {
                if let Some(b) = mine.iter().find(|b| {
                    h.port >= b.host_port
                        && h.port - b.host_port < b.count
                        && super::sockdiag::overlaps(h.addr, b.host_ip)
                }) {
                    return Err(format!(
                        "port {}/{proto} is already in use on the host ({}:{}): a host process holds it (socket inode {})",
                        h.port, b.host_ip, h.port, h.inode
                    ));
                }
            }
        }
    }
    Ok(())
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
