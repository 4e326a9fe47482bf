//! Per-interface counters.

use aya_ebpf::{btf_maps::PerCpuHashMap, macros::btf_map, programs::TcContext};
use netd_common::{IF_STATS_MAX, IfStats};

#[btf_map]
static NETD_IF_STATS: PerCpuHashMap<u32, IfStats, { IF_STATS_MAX as usize }> =
    PerCpuHashMap::new();

#[inline(always)]
fn slot(ifindex: u32) -> Option<*mut IfStats> {
    if let Some(p) = NETD_IF_STATS.get_ptr_mut(ifindex) {
        return Some(p);
    }
    let _ = NETD_IF_STATS.insert(ifindex, IfStats::default(), 0);
    NETD_IF_STATS.get_ptr_mut(ifindex)
}

/// Counts a packet arriving on the interface the program is attached to.
#[inline(always)]
pub fn count_rx(ctx: &TcContext) {
    // SAFETY: the pointer comes from a per-CPU map lookup, so no other CPU writes this slot.
    if let Some(s) = slot(unsafe { (*ctx.skb.skb).ifindex }) {
        unsafe {
            (*s).rx_packets += 1;
            (*s).rx_bytes += u64::from(ctx.len());
        }
    }
}

/// Counts a packet leaving through the interface the program is attached to.
#[inline(always)]
pub fn count_tx(ctx: &TcContext) {
    // SAFETY: as in count_rx.
    if let Some(s) = slot(unsafe { (*ctx.skb.skb).ifindex }) {
        unsafe {
            (*s).tx_packets += 1;
            (*s).tx_bytes += u64::from(ctx.len());
        }
    }
}
