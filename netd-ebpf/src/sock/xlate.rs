//! What each hook rewrites.
//!
//! Forward (connect, sendmsg): a destination that is host-local (loopback, 0.0.0.0, one of the
//! host's addresses; for IPv6 sockets `::1` and v4-mapped forms of those) and published goes to
//! the container instead; the socket's cookie remembers the published address. Reverse
//! (recvmsg, getpeername): an address that is the container a socket was redirected to reads as
//! the published address again, so the client never sees the translation, as with
//! docker-proxy.
//!
//! IPv6 sockets reach the IPv4 container through its v4-mapped address (`::ffff:a.b.c.d`):
//! TCP and connected UDP then run on the IPv4 path. Unconnected UDP `sendmsg` on an IPv6
//! socket cannot be sent there: udpv6_sendmsg refuses a v4-mapped destination written by a
//! hook (ENOTSUPP), so `[::1]` datagrams are left alone (a v4-mapped destination already takes
//! the IPv4 path, where `sendmsg4` handles it).

use aya_ebpf::programs::SockAddrContext;
use netd_common::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SockNat, v4_mapped, v6_as_v4};

use super::{ctx, maps};

/// Is this socket in the daemon's network namespace? The hooks see every process of the
/// cgroup, in every namespace; another namespace's `127.0.0.1:8080` is not ours to take.
#[inline(always)]
pub(crate) fn ours(c: &SockAddrContext) -> bool {
    let want = maps::netns_cookie();
    want != 0 && ctx::netns_cookie(c) == want
}

/// The socket's protocol if the hooks handle it (TCP or UDP).
#[inline(always)]
pub(crate) fn l4(c: &SockAddrContext) -> Option<u8> {
    match ctx::protocol(c) {
        p @ (IPPROTO_TCP | IPPROTO_UDP) => Some(p),
        _ => None,
    }
}

/// The redirection for (proto, dst, dport) if a published port takes it; `addr` and `family`
/// are the destination as the socket's family spells it.
#[inline(always)]
fn redirection(proto: u8, dst: u32, dport: u16, addr: [u32; 4], family: u8) -> Option<SockNat> {
    let (backend_ip, backend_port) = maps::published(proto, dst, dport)?;
    Some(SockNat {
        addr,
        port: dport,
        family,
        _pad: 0,
        backend_ip,
        backend_port,
        _pad2: 0,
    })
}

/// The published address of `nat` for an AF_INET socket.
#[inline(always)]
fn published_v4(nat: &SockNat) -> Option<u32> {
    if nat.family == AF_INET {
        Some(nat.addr[0])
    } else {
        v6_as_v4(nat.addr)
    }
}

/// The published address of `nat` for an AF_INET6 socket.
#[inline(always)]
fn published_v6(nat: &SockNat) -> [u32; 4] {
    if nat.family == AF_INET {
        v4_mapped(nat.addr[0])
    } else {
        nat.addr
    }
}

#[inline(always)]
pub fn connect4(c: &SockAddrContext) {
    let Some(proto) = l4(c) else { return };
    if !ours(c) {
        return;
    }
    let (dst, dport) = (ctx::ip4(c), ctx::port(c));
    let Some(nat) = redirection(proto, dst, dport, [dst, 0, 0, 0], AF_INET) else {
        return;
    };
    ctx::set_ip4(c, nat.backend_ip);
    ctx::set_port(c, nat.backend_port);
    remember_connected(c, proto, &nat);
}

#[inline(always)]
pub fn sendmsg4(c: &SockAddrContext) {
    if l4(c) != Some(IPPROTO_UDP) || !ours(c) {
        return;
    }
    let (dst, dport) = (ctx::ip4(c), ctx::port(c));
    let Some(nat) = redirection(IPPROTO_UDP, dst, dport, [dst, 0, 0, 0], AF_INET) else {
        return;
    };
    ctx::set_ip4(c, nat.backend_ip);
    ctx::set_port(c, nat.backend_port);
    maps::set_revnat(ctx::socket_cookie(c), &nat);
}

#[inline(always)]
pub fn recvmsg4(c: &SockAddrContext) {
    if !ours(c) {
        return;
    }
    let (src, sport) = (ctx::ip4(c), ctx::port(c));
    let Some(nat) = maps::revnat(ctx::socket_cookie(c), src, sport) else {
        return;
    };
    let Some(ip) = published_v4(&nat) else { return };
    ctx::set_ip4(c, ip);
    ctx::set_port(c, nat.port);
}

#[inline(always)]
pub fn getpeername4(c: &SockAddrContext) {
    if !ours(c) {
        return;
    }
    let Some(nat) = maps::orig(ctx::socket_cookie(c)) else {
        return;
    };
    // The socket may have been connected elsewhere since (UDP reconnects).
    if nat.backend_ip != ctx::ip4(c) || nat.backend_port != ctx::port(c) {
        return;
    }
    let Some(ip) = published_v4(&nat) else { return };
    ctx::set_ip4(c, ip);
    ctx::set_port(c, nat.port);
}

#[inline(always)]
pub fn connect6(c: &SockAddrContext) {
    let Some(proto) = l4(c) else { return };
    if !ours(c) {
        return;
    }
    let dst6 = ctx::ip6(c);
    let Some(dst) = v6_as_v4(dst6) else { return };
    let dport = ctx::port(c);
    let Some(nat) = redirection(proto, dst, dport, dst6, AF_INET6) else {
        return;
    };
    ctx::set_ip6(c, v4_mapped(nat.backend_ip));
    ctx::set_port(c, nat.backend_port);
    remember_connected(c, proto, &nat);
}

#[inline(always)]
pub fn recvmsg6(c: &SockAddrContext) {
    if !ours(c) {
        return;
    }
    // IPv4 datagrams on an IPv6 socket carry their source v4-mapped.
    let src6 = ctx::ip6(c);
    if src6[0] != 0 || src6[1] != 0 || src6[2] != 0xffffu32.to_be() {
        return;
    }
    let Some(nat) = maps::revnat(ctx::socket_cookie(c), src6[3], ctx::port(c)) else {
        return;
    };
    ctx::set_ip6(c, published_v6(&nat));
    ctx::set_port(c, nat.port);
}

#[inline(always)]
pub fn getpeername6(c: &SockAddrContext) {
    if !ours(c) {
        return;
    }
    let Some(nat) = maps::orig(ctx::socket_cookie(c)) else {
        return;
    };
    if ctx::ip6(c) != v4_mapped(nat.backend_ip) || nat.backend_port != ctx::port(c) {
        return;
    }
    ctx::set_ip6(c, published_v6(&nat));
    ctx::set_port(c, nat.port);
}

/// A connected socket keeps its redirection for getpeername; a connected UDP socket also
/// for the source of what it receives.
#[inline(always)]
fn remember_connected(c: &SockAddrContext, proto: u8, nat: &SockNat) {
    let cookie = ctx::socket_cookie(c);
    maps::set_orig(cookie, nat);
    if proto == IPPROTO_UDP {
        maps::set_revnat(cookie, nat);
    }
}
