//! netd's socket-hook object (Cilium's bpf_sock): cgroup socket-address programs that replace
//! docker-proxy. A host process that connects or sends to a published port on a loopback or
//! host address is sent straight to the container: the destination is rewritten in the
//! syscall, before any packet exists, so there is no proxy process and no extra copy. The reply
//! side (`recvmsg`, `getpeername`) shows the published address again.
//!
//! Every program acts only on sockets of the daemon's own network namespace (its netns cookie
//! is in NETD_SOCK_CONFIG): the hooks run for every process of the cgroup, in every namespace.
//! Programs never refuse a call but the bind hooks (a published port: EADDRINUSE): the others
//! return 1 (allow) whatever happens.
//!
//! There is no `sendmsg6` program: the only IPv6 destination it could redirect is `[::1]`, to a
//! v4-mapped container address, and udpv6_sendmsg refuses a v4-mapped address written by a
//! hook (ENOTSUPP). Unconnected UDP from an IPv6 socket to `[::1]` is therefore not redirected;
//! TCP and connected UDP are (`connect6`), and so are datagrams sent to `::ffff:127.0.0.1`
//! (the kernel takes the IPv4 path and `sendmsg4` runs).
//!
//! Logic lives in `sock/` (`maps`: the maps and the published-port lookup; `xlate`: the
//! rewrites); this file holds only entry points, named by the `netd_common::PROG_SOCK_*`
//! constants.
#![no_std]
#![no_main]

#[path = "../sock/mod.rs"]
mod sock;

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

/// The verdict every hook returns: let the call proceed (recvmsg/getpeername must return 1).
const ALLOW: i32 = 1;

/// `connect()` on an AF_INET socket (TCP, and UDP that connects).
#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    sock::xlate::connect4(&ctx);
    ALLOW
}

/// `sendto()`/`sendmsg()` with an address on an AF_INET UDP socket (and on an AF_INET6 one
/// sending to a v4-mapped address: the kernel takes the IPv4 path).
#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::xlate::sendmsg4(&ctx);
    ALLOW
}

/// `recvfrom()`/`recvmsg()` on an AF_INET UDP socket: the source address it reports.
#[cgroup_sock_addr(recvmsg4)]
pub fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::xlate::recvmsg4(&ctx);
    ALLOW
}

/// `getpeername()` on an AF_INET socket.
#[cgroup_sock_addr(getpeername4)]
pub fn sock_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::xlate::getpeername4(&ctx);
    ALLOW
}

/// `bind()` on an AF_INET socket: a published port is refused with EADDRINUSE (the only
/// programs that refuse: 0 with the error set by bpf_set_retval). Attached only when host
/// ports are reserved by the hooks (not the reservation-socket fallback).
#[cgroup_sock_addr(bind4)]
pub fn sock_bind4(ctx: SockAddrContext) -> i32 {
    if sock::reserve::bind4(&ctx) { ALLOW } else { 0 }
}

/// `bind()` on an AF_INET6 socket (`[::]` and v4-mapped addresses hold IPv4 ports).
#[cgroup_sock_addr(bind6)]
pub fn sock_bind6(ctx: SockAddrContext) -> i32 {
    if sock::reserve::bind6(&ctx) { ALLOW } else { 0 }
}

/// `connect()` on an AF_INET6 socket: `[::1]` and v4-mapped host addresses go to the IPv4
/// container through its v4-mapped address.
#[cgroup_sock_addr(connect6)]
pub fn sock_connect6(ctx: SockAddrContext) -> i32 {
    sock::xlate::connect6(&ctx);
    ALLOW
}

/// `recvfrom()`/`recvmsg()` on an AF_INET6 UDP socket.
#[cgroup_sock_addr(recvmsg6)]
pub fn sock_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::xlate::recvmsg6(&ctx);
    ALLOW
}

/// `getpeername()` on an AF_INET6 socket.
#[cgroup_sock_addr(getpeername6)]
pub fn sock_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::xlate::getpeername6(&ctx);
    ALLOW
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
