//! Host-port reservation without sockets: the bind hooks refuse a host socket of the daemon's
//! network namespace that binds a published port, with EADDRINUSE (bpf_set_retval, kernel 5.18
//! or later), as the socket the daemon used to hold per port did. Autobind (port 0) never gets
//! a published port either: the agent adds them to the namespace's ip_local_reserved_ports.

use aya_ebpf::{helpers::generated::bpf_set_retval, programs::SockAddrContext};
use netd_common::RELAY_SOCK_PRIORITY;

use super::{ctx, maps};
use crate::sock::xlate::{l4, ours};

const EADDRINUSE: i32 = 98;

/// Should this bind be refused? `addr` is the IPv4 address bound (0 = the wildcard).
#[inline(always)]
fn refuse(c: &SockAddrContext, addr: u32) -> bool {
    let Some(proto) = l4(c) else { return false };
    ours(c) && maps::reserved(proto, addr, ctx::port(c))
}

/// Sets the error the refused bind returns; the program then returns 0.
#[inline(always)]
fn in_use() {
    // SAFETY: bpf_set_retval is allowed in cgroup sock_addr programs (kernel >= 5.18).
    unsafe { bpf_set_retval(-EADDRINUSE) };
}

/// `bind()` on an AF_INET socket: true = allow.
#[inline(always)]
pub fn bind4(c: &SockAddrContext) -> bool {
    if refuse(c, ctx::ip4(c)) {
        in_use();
        return false;
    }
    true
}

/// `bind()` on an AF_INET6 socket: `[::]` takes the IPv4 wildcard too (a dual-stack socket
/// would hold every IPv4 address's port), `::ffff:a.b.c.d` is that IPv4 address; other IPv6
/// addresses hold no published IPv4 port. The daemon's NAT46 relay binds `[::]` IPV6_V6ONLY
/// for those very ports, marked with [`RELAY_SOCK_PRIORITY`] while it binds: let it through.
#[inline(always)]
pub fn bind6(c: &SockAddrContext) -> bool {
    let a = ctx::ip6(c);
    let v4 = if a == [0; 4] {
        if ctx::sk_priority(c) == RELAY_SOCK_PRIORITY {
            return true;
        }
        0
    } else if a[0] == 0 && a[1] == 0 && a[2] == 0xffffu32.to_be() {
        a[3]
    } else {
        return true;
    };
    if refuse(c, v4) {
        in_use();
        return false;
    }
    true
}
