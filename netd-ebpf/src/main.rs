//! netd's eBPF programs. This file holds only entry points and the panic handler; the logic
//! lives in one module per concern, Cilium-style:
//!
//! - `parse`: bounds-checked Ethernet/IPv4/L4 header access.
//! - `csum`: address/port rewrites with incremental checksum updates.
//! - `ct`: connection tracking (NETD_CT), both directions per flow.
//! - `nat`: published ports (DNAT), hairpin, masquerade (SNAT with port allocation).
//! - `frag`: ports of fragmented datagrams for their later fragments (NETD_FRAGS).
//! - `icmp`: ICMP errors quoting translated flows.
//! - `ip6`: the IPv6 header and the extension-header walk `policy6` and `ct6` share.
//! - `nat6`, `ct6`, `icmp6`: IPv6 published ports on the uplinks (DNAT6 and its replies,
//!   IPv6 flows in NETD_CT, ICMPv6 errors quoting them).
//! - `policy`: anti-spoofing, network isolation and icc per network with `--link`.
//! - `policy6`: the same for IPv6 (NETD_EP6, NETD_EP6_ADDRS), neighbour discovery, router
//!   advertisements and redirects, extension headers and fragments (NETD_FRAGS6).
//! - `redirect`: the fast path (`bpf_redirect_peer` into containers, FIB lookup + redirect to
//!   uplinks) that skips the host's routing.
//! - `filter`: source allow/deny lists at XDP.
//! - `maps`: the maps the agent programs (networks by id: NETD_NETWORKS, NETD_NET_SUBNETS);
//!   `counters`: interface, drop and binding counters.
//!
//! Hooks: `*_uplink` run on the host's uplink (Cilium's bpf_host, in `uplink`), `*_container`
//! on a container's host-side veth (Cilium's bpf_lxc, in `container`), `xdp_prefilter` on
//! uplinks. Names are the `netd_common::PROG_*` constants. Every drop is counted under its
//! reason (`netd_common::DROP_*`) by `counters::tc_drop`/`xdp_drop`, which also hand it to
//! `netd monitor` (`monitor`: the NETD_EVENTS ring buffer) while a monitor client listens.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod container;
mod counters;
mod csum;
mod ct;
mod ct6;
mod filter;
mod frag;
mod icmp;
mod icmp6;
mod ip6;
mod maps;
mod monitor;
mod nat;
mod nat6;
mod parse;
mod policy;
mod policy6;
mod redirect;
mod uplink;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use counters::Dir;
use netd_common::{HOOK_TC_EGRESS, HOOK_TC_INGRESS};

#[inline(always)]
fn tc_verdict(ctx: &TcContext, hook: u16, r: Result<i32, u32>) -> i32 {
    match r {
        Ok(v) => v,
        Err(reason) => counters::tc_drop(ctx, hook, reason),
    }
}

/// An uplink program's verdict for its body's result `r`. A new flow the body could not track
/// because NETD_CT was full has already had its room made and been tracked on this packet
/// where that was possible (`nat::create`); here the ring write and the close report run,
/// outside the body's deep stack. `v6`: does the body translate IPv6 flows itself
/// (`monitor::tcp_close`)?
#[inline(always)]
fn uplink_verdict(ctx: &TcContext, hook: u16, v6: bool, r: Result<i32, u32>) -> i32 {
    ct::remember_new();
    monitor::tcp_close(ctx.skb.skb, v6);
    tc_verdict(ctx, hook, r)
}

/// Ingress on an uplink: traffic arriving from outside.
#[classifier]
// Inlined into the entry point the macro wraps it in: as a subprogram it is one more frame,
// which Linux 6.1 rounds up to 32 bytes of the 512-byte combined stack.
#[inline(always)]
pub fn from_uplink(ctx: TcContext) -> i32 {
    counters::count(&ctx, Dir::Rx);
    uplink_verdict(&ctx, HOOK_TC_INGRESS, true, uplink::from_uplink(&ctx))
}

/// Egress on an uplink: traffic leaving for outside.
#[classifier]
#[inline(always)] // as from_uplink
pub fn to_uplink(ctx: TcContext) -> i32 {
    counters::count(&ctx, Dir::Tx);
    // Its IPv6 frames go on in to_uplink6 (a tail call), which reports their flows' closes.
    uplink_verdict(&ctx, HOOK_TC_EGRESS, false, uplink::to_uplink(&ctx))
}

/// Egress on an uplink, IPv6: tail-called by `to_uplink` for frames that are not IPv4
/// (`nat6`); counted there.
#[classifier]
pub fn to_uplink6(ctx: TcContext) -> i32 {
    let v = tc_verdict(&ctx, HOOK_TC_EGRESS, nat6::verdict(nat6::to_uplink(&ctx)));
    // It never creates flows (only from_uplink does for IPv6): no ring write, but a reply
    // closing a published flow is its to report.
    monitor::tcp_close(ctx.skb.skb, true);
    v
}

/// Ingress on a container's host-side veth: traffic sent by the container.
#[classifier]
pub fn from_container(ctx: TcContext) -> i32 {
    counters::count(&ctx, Dir::Rx);
    // A new flow refused for a full table makes room for its retransmission (the uplink
    // programs make room and track it at once, `nat::WhenFull`).
    let r = container::from_container(&ctx);
    let v = tc_verdict(&ctx, HOOK_TC_INGRESS, r);
    if r == Err(netd_common::DROP_CT_FULL) {
        ct::make_room();
    }
    ct::remember_new();
    // IPv6 from containers is policed statelessly (`policy6`): only IPv4 flows close here.
    monitor::tcp_close(ctx.skb.skb, false);
    v
}

/// Ingress on a container's host-side veth, IPv6: tail-called by `from_container` (counted
/// there) for IPv6 frames. A published flow's reply it translates reports its close here.
#[classifier]
pub fn from_container6(ctx: TcContext) -> i32 {
    let v = tc_verdict(&ctx, HOOK_TC_INGRESS, container::from_container6(&ctx));
    monitor::tcp_close(ctx.skb.skb, true);
    v
}

/// Egress on a container's host-side veth: traffic delivered to the container.
#[classifier]
pub fn to_container(ctx: TcContext) -> i32 {
    counters::count(&ctx, Dir::Tx);
    tc_verdict(&ctx, HOOK_TC_EGRESS, container::to_container(&ctx))
}

/// XDP on an uplink: source allow/deny lists for connections to containers.
#[xdp]
pub fn xdp_prefilter(ctx: XdpContext) -> u32 {
    match filter::prefilter(&ctx) {
        Ok(v) => v,
        Err(reason) => counters::xdp_drop(&ctx, reason),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
