//! netd's eBPF programs. This file holds only entry points and the panic handler; the logic
//! lives in one module per concern.
#![no_std]
#![no_main]

mod counters;

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};

/// Ingress on an uplink: traffic arriving from outside.
#[classifier]
pub fn from_uplink(ctx: TcContext) -> i32 {
    counters::count_rx(&ctx);
    TC_ACT_OK
}

/// Egress on an uplink: traffic leaving for outside.
#[classifier]
pub fn to_uplink(ctx: TcContext) -> i32 {
    counters::count_tx(&ctx);
    TC_ACT_OK
}

/// Ingress on a container's host-side veth: traffic sent by the container.
#[classifier]
pub fn from_container(ctx: TcContext) -> i32 {
    counters::count_rx(&ctx);
    TC_ACT_OK
}

/// Egress on a container's host-side veth: traffic delivered to the container.
#[classifier]
pub fn to_container(ctx: TcContext) -> i32 {
    counters::count_tx(&ctx);
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
