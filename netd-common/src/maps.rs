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
    crate::dp::MAP_CT_RING,
    crate::dp::MAP_CT_RING_POS,
    crate::dp::MAP_CT_SRC,
    crate::dp::MAP_LINKS,
    crate::dp::MAP_FILTER_ALLOW,
    crate::dp::MAP_FILTER_DENY,
    crate::dp::MAP_DROPS,
    crate::dp::MAP_FRAGS,
    crate::dp::MAP_NETWORKS,
    crate::dp::MAP_NET_SUBNETS,
    crate::dp6::MAP_EP6,
    crate::dp6::MAP_EP6_ADDRS,
    crate::dp6::MAP_FRAGS6,
    crate::dp6::MAP_HOST_ADDRS6,
    crate::programs::MAP_TAIL6,
    crate::monitor::MAP_EVENTS,
    crate::monitor::MAP_MONITOR,
    crate::monitor::MAP_MONITOR_LOST,
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

/// What a pinned map must look like to be reused: its layout version, kernel map type
/// (`BPF_MAP_TYPE_*`), key and value size. The version is part of the pin's name
/// (`maps/<NAME>` for version 1, `maps/<NAME>@v<N>` after), so an upgraded netd finds the
/// older pins beside its own and migrates them (see [`MAP_LAYOUT_HISTORY`]), and refuses pins
/// of a version newer than its own (a downgrade). A pin whose type or sizes differ from what
/// its version says is refused. netd/tests/dataplane.rs checks this table against the maps
/// the eBPF object really declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    pub name: &'static str,
    /// Bumped with every change of the map's key or value type (1 = never changed).
    pub version: u32,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
}

impl MapLayout {
    /// The same map at layout `version`.
    pub const fn v(self, version: u32) -> Self {
        MapLayout { version, ..self }
    }
}

const HASH: u32 = 1;
const ARRAY: u32 = 2;
const PROG_ARRAY: u32 = 3;
const PERCPU_HASH: u32 = 5;
const PERCPU_ARRAY: u32 = 6;
const LRU_HASH: u32 = 9;
const LPM_TRIE: u32 = 11;
const RINGBUF: u32 = 27;

const fn layout(name: &'static str, map_type: u32, key: usize, value: usize) -> MapLayout {
    MapLayout {
        name,
        version: 1,
        map_type,
        key_size: key as u32,
        value_size: value as u32,
    }
}

use core::mem::size_of;

use crate::dp6::{Ep6Info, Frag6Key, MAP_EP6, MAP_EP6_ADDRS, MAP_FRAGS6, MAP_HOST_ADDRS6};

use crate::dp::{
    CtEntry, CtKey, CtRingPos, CtRingSlot, CtSrc, DpConfig, EndpointInfo, FragKey, FragPorts,
    LinkKey, LinkPorts, MAP_CONFIG, MAP_CT, MAP_CT_RING, MAP_CT_RING_POS, MAP_CT_SRC, MAP_DROPS,
    MAP_ENDPOINTS, MAP_EP_BY_IP, MAP_FILTER_ALLOW, MAP_FILTER_DENY, MAP_FRAGS, MAP_HOST_ADDRS,
    MAP_LINKS, MAP_NET_SUBNETS, MAP_NETWORKS, MAP_PORT_STATS, MAP_PORTS, MAP_UPLINKS, NetConfig,
    PortKey, PortTarget, Traffic, UplinkInfo,
};

/// One entry per map of [`ALL_MAPS`].
pub const MAP_LAYOUTS: &[MapLayout] = &[
    layout(MAP_IF_STATS, PERCPU_HASH, 4, size_of::<IfStats>()),
    layout(MAP_CONFIG, ARRAY, 4, size_of::<DpConfig>()),
    layout(MAP_ENDPOINTS, HASH, 4, size_of::<EndpointInfo>()),
    layout(MAP_EP_BY_IP, HASH, 4, size_of::<EndpointInfo>()),
    layout(MAP_HOST_ADDRS, HASH, 4, 4),
    layout(MAP_UPLINKS, HASH, 4, size_of::<UplinkInfo>()),
    layout(
        MAP_PORTS,
        HASH,
        size_of::<PortKey>(),
        size_of::<PortTarget>(),
    ),
    layout(MAP_PORT_STATS, PERCPU_HASH, 4, size_of::<Traffic>()),
    layout(MAP_CT, HASH, size_of::<CtKey>(), size_of::<CtEntry>()).v(crate::CT_LAYOUT_VERSION),
    layout(MAP_CT_RING, ARRAY, 4, size_of::<CtRingSlot>()),
    layout(MAP_CT_RING_POS, ARRAY, 4, size_of::<CtRingPos>()),
    layout(MAP_CT_SRC, LRU_HASH, 16, size_of::<CtSrc>()),
    layout(
        MAP_LINKS,
        HASH,
        size_of::<LinkKey>(),
        size_of::<LinkPorts>(),
    ),
    // LPM keys are the prefix length (u32) followed by the address.
    layout(MAP_FILTER_ALLOW, LPM_TRIE, 8, 4),
    layout(MAP_FILTER_DENY, LPM_TRIE, 8, 4),
    layout(MAP_DROPS, PERCPU_ARRAY, 4, 8),
    layout(
        MAP_FRAGS,
        LRU_HASH,
        size_of::<FragKey>(),
        size_of::<FragPorts>(),
    ),
    layout(MAP_NETWORKS, ARRAY, 4, size_of::<NetConfig>()),
    layout(MAP_NET_SUBNETS, LPM_TRIE, 8, 4),
    layout(MAP_EP6, HASH, 4, size_of::<Ep6Info>()),
    layout(MAP_EP6_ADDRS, HASH, 16, 4),
    layout(
        MAP_FRAGS6,
        LRU_HASH,
        size_of::<Frag6Key>(),
        size_of::<FragPorts>(),
    ),
    layout(MAP_HOST_ADDRS6, HASH, 16, 4),
    layout(crate::programs::MAP_TAIL6, PROG_ARRAY, 4, 4),
    // A ring buffer has no key or value: its size is its max_entries.
    layout(crate::monitor::MAP_EVENTS, RINGBUF, 0, 0),
    layout(crate::monitor::MAP_MONITOR, ARRAY, 4, 4),
    layout(crate::monitor::MAP_MONITOR_LOST, PERCPU_ARRAY, 4, 8),
];
const _: () = assert!(MAP_LAYOUTS.len() == ALL_MAPS.len());

/// Earlier layouts of maps whose layout changed, which an upgraded netd migrates from (the
/// conversions are `netd/src/dataplane/migrate.rs`'s table, the old types in
/// [`crate::layouts`]).
pub const MAP_LAYOUT_HISTORY: &[MapLayout] = &[layout(
    MAP_CT,
    HASH,
    size_of::<CtKey>(),
    size_of::<crate::layouts::CtEntryV1>(),
)];

/// The current layout of map `name`, if netd has that map.
pub fn map_layout(name: &str) -> Option<&'static MapLayout> {
    MAP_LAYOUTS.iter().find(|l| l.name == name)
}
