//! Per-interface packet and byte counters ([`netd_common::MAP_IF_STATS`]).

use aya_ebpf::{btf_maps::PerCpuHashMap, macros::btf_map, programs::TcContext};
use netd_common::{IF_STATS_MAX, IfStats};

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
    let Some(s) = slot(ifindex) else { return };
    let len = u64::from(ctx.len());
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
