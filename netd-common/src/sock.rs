//! The socket-hook object (`netd-sock`): cgroup socket-address programs that replace
//! docker-proxy. A host process's `connect`/`sendmsg` to a published port (on a loopback or host
//! address) is rewritten to the container's address before any packet exists, and
//! `recvmsg`/`getpeername` show the published address again. The programs read the dataplane's
//! NETD_CONFIG, NETD_PORTS and NETD_HOST_ADDRS (the same pins as the TC object) and own the maps
//! below.
//!
//! Byte order: every address and port here is **network byte order**.

use bytemuck::{Pod, Zeroable};

/// `Array<u32, SockConfig>`, one entry at index 0.
pub const MAP_SOCK_CONFIG: &str = "NETD_SOCK_CONFIG";
/// `LruHashMap<u64 socket cookie, SockNat>`: the published address a connected socket was
/// redirected from, for `getpeername` and connected-UDP `recvmsg`.
pub const MAP_SOCK_ORIG: &str = "NETD_SOCK_ORIG";
/// `LruHashMap<SockRevKey, SockNat>`: per (socket, container address) the published address
/// an unconnected UDP socket sent to, for `recvmsg`.
pub const MAP_SOCK_REVNAT: &str = "NETD_SOCK_REVNAT";

/// The maps the socket-hook object owns (pinned at `<pin_dir>/maps/<NAME>` next to the TC
/// object's [`crate::ALL_MAPS`], which it shares: NETD_PORTS, NETD_HOST_ADDRS).
pub const SOCK_MAPS: &[&str] = &[MAP_SOCK_CONFIG, MAP_SOCK_ORIG, MAP_SOCK_REVNAT];

/// Maps of [`crate::ALL_MAPS`] the socket-hook object reads.
pub const SOCK_SHARED_MAPS: &[&str] = &[crate::MAP_PORTS, crate::MAP_HOST_ADDRS];

pub const SOCK_ORIG_MAX: u32 = 65536;
pub const SOCK_REVNAT_MAX: u32 = 65536;

// Program names (the `netd-sock` object's entry points); each is pinned as a cgroup link.
pub const PROG_SOCK_CONNECT4: &str = "sock_connect4";
pub const PROG_SOCK_SENDMSG4: &str = "sock_sendmsg4";
pub const PROG_SOCK_RECVMSG4: &str = "sock_recvmsg4";
pub const PROG_SOCK_GETPEERNAME4: &str = "sock_getpeername4";
pub const PROG_SOCK_CONNECT6: &str = "sock_connect6";
pub const PROG_SOCK_RECVMSG6: &str = "sock_recvmsg6";
pub const PROG_SOCK_GETPEERNAME6: &str = "sock_getpeername6";
pub const PROG_SOCK_BIND4: &str = "sock_bind4";
pub const PROG_SOCK_BIND6: &str = "sock_bind6";

/// The bind hooks, attached beside [`ALL_SOCK_PROGRAMS`] when the daemon reserves published
/// host ports with them (kernel >= 5.18 for bpf_set_retval) instead of one socket per port.
pub const BIND_SOCK_PROGRAMS: &[&str] = &[PROG_SOCK_BIND4, PROG_SOCK_BIND6];

/// Every program of the socket-hook object. There is no `sendmsg6`: udpv6_sendmsg refuses a
/// v4-mapped destination written by a hook (ENOTSUPP), so unconnected UDP from an IPv6 socket
/// to `[::1]` cannot be sent to an IPv4 container (TCP and connected UDP can, via `connect6`).
pub const ALL_SOCK_PROGRAMS: &[&str] = &[
    PROG_SOCK_CONNECT4,
    PROG_SOCK_SENDMSG4,
    PROG_SOCK_RECVMSG4,
    PROG_SOCK_GETPEERNAME4,
    PROG_SOCK_CONNECT6,
    PROG_SOCK_RECVMSG6,
    PROG_SOCK_GETPEERNAME6,
];

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SockConfig {
    /// The network namespace the daemon serves (SO_NETNS_COOKIE); the programs act only on
    /// sockets of this namespace. 0: not configured, the programs do nothing.
    pub netns_cookie: u64,
}
const _: () = assert!(core::mem::size_of::<SockConfig>() == 8);

/// A redirection: the published address the client used and the container address it went to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SockNat {
    /// The published address, as the client's socket family sees it: for AF_INET the IPv4
    /// address in word 0 (words 1-3 zero); for AF_INET6 the IPv6 address (`::1`, or
    /// `::ffff:a.b.c.d`).
    pub addr: [u32; 4],
    pub port: u16,
    /// AF_INET or AF_INET6 (of `addr`).
    pub family: u8,
    pub _pad: u8,
    /// The container's IPv4 address and port the socket was redirected to.
    pub backend_ip: u32,
    pub backend_port: u16,
    pub _pad2: u16,
}
const _: () = assert!(core::mem::size_of::<SockNat>() == 28);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SockRevKey {
    /// bpf_get_socket_cookie() of the client's socket (unique per boot, never reused).
    pub cookie: u64,
    /// The container's IPv4 address and port.
    pub backend_ip: u32,
    pub backend_port: u16,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<SockRevKey>() == 16);

/// The SO_PRIORITY the daemon's NAT46 relay sets on its `[::]:PORT` (IPV6_V6ONLY) listeners
/// while it binds them, and clears right after: the bind hooks, which refuse `[::]` for a
/// published IPv4 port (a dual-stack socket would take it), let that bind through. The hook
/// cannot read IPV6_V6ONLY; setting a priority above 6 takes CAP_NET_ADMIN, which could
/// bind around the hooks anyway.
pub const RELAY_SOCK_PRIORITY: u32 = 0x6e64_3436;

/// Is `ip` (IPv4, network byte order) in 127.0.0.0/8?
#[inline(always)]
pub fn is_loopback_v4(ip: u32) -> bool {
    u32::from_be(ip) >> 24 == 127
}

/// The IPv4 address a host-local IPv6 destination stands for: `::1` is 127.0.0.1,
/// `::ffff:a.b.c.d` is a.b.c.d; anything else is `None`. Words are network byte order.
#[inline(always)]
pub fn v6_as_v4(a: [u32; 4]) -> Option<u32> {
    if a[0] != 0 || a[1] != 0 {
        return None;
    }
    if a[2] == 0 && a[3] == 1u32.to_be() {
        Some(0x7f00_0001u32.to_be())
    } else if a[2] == 0xffffu32.to_be() {
        Some(a[3])
    } else {
        None
    }
}

/// `::ffff:a.b.c.d` for an IPv4 address, words in network byte order.
#[inline(always)]
pub fn v4_mapped(ip: u32) -> [u32; 4] {
    [0, 0, 0xffffu32.to_be(), ip]
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY (all): repr(C), derive(bytemuck::Pod): no padding, every bit pattern valid.
    unsafe impl aya::Pod for SockConfig {}
    unsafe impl aya::Pod for SockNat {}
    unsafe impl aya::Pod for SockRevKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    #[test]
    fn loopback_and_v6_forms() {
        assert!(is_loopback_v4(be([127, 0, 0, 1])));
        assert!(is_loopback_v4(be([127, 9, 8, 7])));
        assert!(!is_loopback_v4(be([128, 0, 0, 1])));
        let one = [0, 0, 0, 1u32.to_be()];
        assert_eq!(v6_as_v4(one), Some(be([127, 0, 0, 1])));
        let mapped = v4_mapped(be([198, 51, 100, 1]));
        assert_eq!(v6_as_v4(mapped), Some(be([198, 51, 100, 1])));
        // ::ffff:198.51.100.1 in bytes.
        let bytes: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 1];
        let words: [u32; 4] = bytemuck::cast(bytes);
        assert_eq!(words, mapped);
        assert_eq!(v6_as_v4([0x20010db8u32.to_be(), 0, 0, 1u32.to_be()]), None);
        assert_eq!(v6_as_v4([0, 0, 0, 0]), None);
    }
}
