//! Map names and map value types.

use bytemuck::{Pod, Zeroable};

/// Per-interface packet and byte counters, indexed by ifindex (`u32`, host byte order).
pub const MAP_IF_STATS: &str = "NETD_IF_STATS";

/// Every map the eBPF object declares. The agent pins each one at `<pin_dir>/maps/<NAME>` so a
/// restarted agent reuses its state; a new map must be listed here to be pinned.
pub const ALL_MAPS: &[&str] = &[
    MAP_IF_STATS,
    crate::dp::MAP_CONFIG,
    crate::dp::MAP_ENDPOINTS,
    crate::dp::MAP_EP_BY_IP,
    crate::dp::MAP_HOST_ADDRS,
    crate::dp::MAP_UPLINKS,
    crate::dp::MAP_PORTS,
    crate::dp::MAP_PORT_STATS,
    crate::dp::MAP_CT,
    crate::dp::MAP_LINKS,
    crate::dp::MAP_FILTER_ALLOW,
    crate::dp::MAP_FILTER_DENY,
    crate::dp::MAP_DROPS,
    crate::dp::MAP_FRAGS,
];

/// Maximum number of interfaces tracked in [`MAP_IF_STATS`].
pub const IF_STATS_MAX: u32 = 4096;

/// Counters for one interface and direction pair. Per-CPU map value: user space sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IfStats {
    /// Packets the program saw arriving on the interface (TC ingress).
    pub rx_packets: u64,
    /// Bytes (L2 frame length) arriving on the interface.
    pub rx_bytes: u64,
    /// Packets the program saw leaving through the interface (TC egress).
    pub tx_packets: u64,
    /// Bytes leaving through the interface.
    pub tx_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<IfStats>() == 32);

impl IfStats {
    /// Adds another CPU's counters to these.
    pub fn accumulate(&mut self, other: &IfStats) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
    }
}

#[cfg(feature = "user")]
// SAFETY: IfStats is repr(C), Pod (no padding, every bit pattern valid).
unsafe impl aya::Pod for IfStats {}
