//! Field access on `struct bpf_sock_addr`. The verifier checks every context access by offset
//! and size: each field is read and written as one 4-byte access (volatile, so the compiler
//! neither merges nor splits them).

use aya_ebpf::{
    EbpfContext as _,
    bindings::bpf_sock_addr,
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};

#[inline(always)]
fn sa(ctx: &SockAddrContext) -> *mut bpf_sock_addr {
    ctx.sock_addr
}

/// `user_ip4`: the address the caller passed (connect/sendmsg) or is about to see
/// (recvmsg/getpeername), network byte order.
#[inline(always)]
pub fn ip4(ctx: &SockAddrContext) -> u32 {
    // SAFETY: the kernel passes a valid bpf_sock_addr; 4-byte read of a readable field.
    unsafe { core::ptr::read_volatile(&raw const (*sa(ctx)).user_ip4) }
}

#[inline(always)]
pub fn set_ip4(ctx: &SockAddrContext, ip: u32) {
    // SAFETY: user_ip4 is writable in every sock_addr hook; 4-byte write.
    unsafe { core::ptr::write_volatile(&raw mut (*sa(ctx)).user_ip4, ip) }
}

/// `user_ip6`, four words in network byte order.
#[inline(always)]
pub fn ip6(ctx: &SockAddrContext) -> [u32; 4] {
    // SAFETY: as ip4; four 4-byte reads inside user_ip6.
    unsafe {
        let p = &raw const (*sa(ctx)).user_ip6;
        [
            core::ptr::read_volatile(&raw const (*p)[0]),
            core::ptr::read_volatile(&raw const (*p)[1]),
            core::ptr::read_volatile(&raw const (*p)[2]),
            core::ptr::read_volatile(&raw const (*p)[3]),
        ]
    }
}

#[inline(always)]
pub fn set_ip6(ctx: &SockAddrContext, a: [u32; 4]) {
    // SAFETY: user_ip6 is writable in every sock_addr hook; four 4-byte writes.
    unsafe {
        let p = &raw mut (*sa(ctx)).user_ip6;
        core::ptr::write_volatile(&raw mut (*p)[0], a[0]);
        core::ptr::write_volatile(&raw mut (*p)[1], a[1]);
        core::ptr::write_volatile(&raw mut (*p)[2], a[2]);
        core::ptr::write_volatile(&raw mut (*p)[3], a[3]);
    }
}

/// `user_port`, network byte order (the kernel keeps it in the low 16 bits of the word).
#[inline(always)]
pub fn port(ctx: &SockAddrContext) -> u16 {
    // SAFETY: 4-byte read of a readable field.
    unsafe { core::ptr::read_volatile(&raw const (*sa(ctx)).user_port) as u16 }
}

#[inline(always)]
pub fn set_port(ctx: &SockAddrContext, port: u16) {
    // SAFETY: user_port is writable in every sock_addr hook; 4-byte write.
    unsafe { core::ptr::write_volatile(&raw mut (*sa(ctx)).user_port, port as u32) }
}

/// The socket's protocol (IPPROTO_TCP, IPPROTO_UDP, ...).
#[inline(always)]
pub fn protocol(ctx: &SockAddrContext) -> u8 {
    // SAFETY: 4-byte read of a readable field.
    unsafe { core::ptr::read_volatile(&raw const (*sa(ctx)).protocol) as u8 }
}

/// The socket's cookie: unique per boot and never reused, so it keys per-socket state.
#[inline(always)]
pub fn socket_cookie(ctx: &SockAddrContext) -> u64 {
    // SAFETY: bpf_get_socket_cookie accepts a sock_addr context (the kernel's
    // bpf_get_socket_cookie_sock_addr).
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// The cookie of the socket's network namespace.
#[inline(always)]
pub fn netns_cookie(ctx: &SockAddrContext) -> u64 {
    // SAFETY: bpf_get_netns_cookie accepts a sock_addr context (kernel >= 5.7, f318903c).
    unsafe { bpf_get_netns_cookie(ctx.as_ptr()) }
}

/// The socket's SO_PRIORITY (`ctx->sk->priority`: `sk` is always a valid socket in these
/// hooks).
#[inline(always)]
pub fn sk_priority(ctx: &SockAddrContext) -> u32 {
    // SAFETY: `sk` is an 8-byte readable field holding a PTR_TO_SOCKET (never null in
    // sock_addr programs); `priority` is a 4-byte readable field of bpf_sock.
    unsafe {
        let sk = core::ptr::read_volatile(&raw const (*sa(ctx)).__bindgen_anon_1.sk);
        core::ptr::read_volatile(&raw const (*sk).priority)
    }
}
