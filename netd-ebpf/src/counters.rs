//! Counters: per interface ([`netd_common::MAP_IF_STATS`]), per drop reason
//! ([`netd_common::MAP_DROPS`]) and per published-port binding
//! ([`netd_common::MAP_PORT_STATS`]).

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, xdp_action::XDP_DROP},
    btf_maps::{PerCpuArray, PerCpuHashMap},
    macros::btf_map,
    programs::{TcContext, XdpContext},
};
use netd_common::{DROP_REASONS, IF_STATS_MAX, IfStats, PORT_STATS_MAX, Traffic};

/// Keyed by ifindex; a BTF map so `bpftool map dump` prints the field names.
#[btf_map]
static NETD_IF_STATS: PerCpuHashMap<u32, IfStats, { IF_STATS_MAX as usize }> = PerCpuHashMap::new();

/// Which half of [`IfStats`] a packet belongs to.
#[derive(Clone, Copy)]
pub enum Dir {
    /// Arriving on the interface (TC ingress).
    Rx,
    /// Leaving through the interface (TC egress).
    Tx,
}

#[inline(always)]
fn slot(ifindex: u32) -> Option<*mut IfStats> {
    if let Some(p) = NETD_IF_STATS.get_ptr_mut(ifindex) {
        return Some(p);
    }
    // A full map (IF_STATS_MAX interfaces) or a racing insert from another CPU only means this
    // packet goes uncounted; the lookup below settles which.
    let _ = NETD_IF_STATS.insert(ifindex, IfStats::default(), 0);
    NETD_IF_STATS.get_ptr_mut(ifindex)
}

/// Counts the packet in `ctx` against the interface the program is attached to.
#[inline(always)]
pub fn count(ctx: &TcContext, dir: Dir) {
    // SAFETY: ctx.skb.skb is the valid __sk_buff the kernel passed to this program.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    count_on(ifindex, ctx.len(), dir);
}

/// Counts a packet of `len` bytes against interface `ifindex`: for packets a program redirects
/// past that interface's own hook (`bpf_redirect_peer` skips the host-side veth's egress).
#[inline(always)]
pub fn count_on(ifindex: u32, len: u32, dir: Dir) {
    let Some(s) = slot(ifindex) else { return };
    let len = u64::from(len);
    // SAFETY: the pointer comes from a per-CPU map lookup, so no other CPU writes this slot, and
    // the program is not preempted while it holds it.
    let s = unsafe { &mut *s };
    match dir {
        Dir::Rx => {
            s.rx_packets += 1;
            s.rx_bytes += len;
        }
        Dir::Tx => {
            s.tx_packets += 1;
            s.tx_bytes += len;
        }
    }
}

/// Drops per reason (`netd_common::DROP_*`).
#[btf_map]
static NETD_DROPS: PerCpuArray<u64, { DROP_REASONS as usize }> = PerCpuArray::new();

/// Packets and bytes per published-port binding.
#[btf_map]
static NETD_PORT_STATS: PerCpuHashMap<u32, Traffic, { PORT_STATS_MAX as usize }> =
    PerCpuHashMap::new();

/// Counts one event under `reason` without dropping anything (conntrack evictions).
#[inline(always)]
pub fn count_drop(reason: u32) {
    if let Some(p) = NETD_DROPS.get_ptr_mut(reason) {
        // SAFETY: a per-CPU slot, written only by this CPU while the program runs.
        unsafe { *p += 1 };
    }
}

/// Counts a TC drop of `ctx`'s packet under `reason`, hands it to `netd monitor` when one
/// listens (`hook`: `netd_common::HOOK_TC_*`), and returns the verdict that drops the packet.
/// Every drop a TC program makes goes through here.
#[inline(always)]
pub fn tc_drop(ctx: &TcContext, hook: u16, reason: u32) -> i32 {
    count_drop(reason);
    crate::monitor::tc_event(ctx.skb.skb, hook, reason);
    TC_ACT_SHOT
}

/// The XDP twin of [`tc_drop`].
#[inline(always)]
pub fn xdp_drop(ctx: &XdpContext, reason: u32) -> u32 {
    count_drop(reason);
    crate::monitor::xdp_event(ctx.ctx, reason);
    XDP_DROP
}

/// Counts a translated packet of `len` bytes against published-port binding `binding_id`
/// (0 = none).
#[inline(always)]
pub fn count_binding(binding_id: u32, len: u32) {
    if binding_id == 0 {
        return;
    }
    let mut p = NETD_PORT_STATS.get_ptr_mut(binding_id);
    if p.is_none() {
        // Full map or a racing insert from another CPU: the lookup below settles which.
        let _ = NETD_PORT_STATS.insert(binding_id, Traffic::default(), 0);
        p = NETD_PORT_STATS.get_ptr_mut(binding_id);
    }
    if let Some(p) = p {
        // SAFETY: a per-CPU slot, written only by this CPU while the program runs.
        let t = unsafe { &mut *p };
        t.packets += 1;
        t.bytes += u64::from(len);
    }
}
