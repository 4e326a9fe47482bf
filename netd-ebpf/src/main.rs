//! netd's eBPF programs. This file holds only entry points and the panic handler; the logic
//! lives in one module per concern, Cilium-style:
//!
//! - `counters`: per-interface packet/byte counters (NETD_IF_STATS).
//!
//! Modules for the work that follows slot in beside it: `parse` (bounds-checked Ethernet/IPv4/
//! L4 header access), `csum`, `ct` (connection tracking in LRU maps), `nat` (SNAT/DNAT for
//! published ports and masquerade), `policy` (ICC and link rules).
//!
//! Hooks: `*_uplink` run on the host's uplink (Cilium's bpf_host), `*_container` on a container's
//! host-side veth (Cilium's bpf_lxc). Names are the `netd_common::PROG_*` constants.
#![no_std]
#![no_main]

mod counters;

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use counters::Dir;

/// Ingress on an uplink: traffic arriving from outside.
#[classifier]
pub fn from_uplink(ctx: TcContext) -> i32 {
    counters::count(&ctx, Dir::Rx);
    TC_ACT_OK
}

/// Egress on an uplink: traffic leaving for outside.
#[classifier]
pub fn to_uplink(ctx: TcContext) -> i32 {
    counters::count(&ctx, Dir::Tx);
    TC_ACT_OK
}

/// Ingress on a container's host-side veth: traffic sent by the container.
#[classifier]
pub fn from_container(ctx: TcContext) -> i32 {
    counters::count(&ctx, Dir::Rx);
    TC_ACT_OK
}

/// Egress on a container's host-side veth: traffic delivered to the container.
#[classifier]
pub fn to_container(ctx: TcContext) -> i32 {
    counters::count(&ctx, Dir::Tx);
    TC_ACT_OK
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
