//! `netd monitor`: the datapath's event stream. The programs emit one [`DropEvent`] into the
//! [`MAP_EVENTS`] ring buffer for every packet they drop, and a [`FlowEvent`] for every
//! conntrack flow they create or see closed (FIN/RST), but only while [`MAP_MONITOR`] holds a
//! non-zero switch at index 0: the daemon sets it while at least one monitor client is
//! connected, so nobody listening costs one array lookup on the drop path and nothing on the
//! others. A full ring loses the event (counted in [`MAP_MONITOR_LOST`]), never the verdict.

use bytemuck::{Pod, Zeroable};

/// `RingBuf` of [`DropEvent`]s, [`EVENTS_RING_BYTES`] bytes.
pub const MAP_EVENTS: &str = "NETD_EVENTS";
/// `Array<u32, u32>`, one entry: non-zero while a monitor client is connected.
pub const MAP_MONITOR: &str = "NETD_MONITOR";
/// `PerCpuArray<u32, u64>`, one entry: events lost because [`MAP_EVENTS`] was full.
pub const MAP_MONITOR_LOST: &str = "NETD_MONITOR_LOST";

/// Size of the ring buffer (a power of two, a multiple of the page size): about 1500 events.
pub const EVENTS_RING_BYTES: u32 = 256 * 1024;
/// Bytes of each dropped packet copied into its event (from the Ethernet header on).
pub const EVENT_HEAD_MAX: usize = 128;

/// [`DropEvent::kind`]: a packet was dropped.
pub const EV_DROP: u16 = 1;
/// [`FlowEvent::kind`]: a conntrack flow was created (its original-direction entry).
pub const EV_FLOW_NEW: u16 = 2;
/// [`FlowEvent::kind`]: a TCP flow closed (FIN both ways or RST; [`FlowEvent::cause`]).
pub const EV_FLOW_CLOSED: u16 = 3;

/// [`FlowEvent::cause`] of an [`EV_FLOW_CLOSED`]: FINs both ways (TIME_WAIT).
pub const FLOW_CLOSE_FIN: u32 = 1;
/// An RST (CLOSED).
pub const FLOW_CLOSE_RST: u32 = 2;

/// [`DropEvent::hook`]: TC ingress (from_uplink, from_container).
pub const HOOK_TC_INGRESS: u16 = 1;
/// TC egress (to_uplink, to_container).
pub const HOOK_TC_EGRESS: u16 = 2;
/// XDP (xdp_prefilter).
pub const HOOK_XDP: u16 = 3;

/// One datapath event. The 5-tuple is not parsed in the kernel: user space reads it from
/// `head`, the packet's first bytes, which `--pcap` writes as they are.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct DropEvent {
    /// `EV_*`.
    pub kind: u16,
    /// `HOOK_*`.
    pub hook: u16,
    /// `DROP_*`.
    pub reason: u32,
    /// The interface the program runs on (host byte order).
    pub ifindex: u32,
    /// The packet's length on the wire (bytes, L2 on).
    pub pkt_len: u32,
    /// Valid bytes in `head` (`min(pkt_len, EVENT_HEAD_MAX)`; 0 if they could not be read).
    pub cap_len: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the packet was dropped.
    pub ktime_ns: u64,
    /// The packet's first `cap_len` bytes.
    pub head: [u8; EVENT_HEAD_MAX],
}
const _: () = assert!(core::mem::size_of::<DropEvent>() == 32 + EVENT_HEAD_MAX);

/// A flow event: the conntrack entry's tuple (16-byte addresses: IPv4 in the first word, see
/// [`crate::CtKey`]) and its translation. `kind` sits where [`DropEvent::kind`] does, so a
/// reader tells the two apart by their first two bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowEvent {
    /// `EV_FLOW_*`.
    pub kind: u16,
    /// `CT_F_*` of the entry (LINK, HAIRPIN, MASQ, PUBLISHED, DNAT, SNAT).
    pub flags: u16,
    /// `FLOW_CLOSE_*` for a closed flow, 0 for a new one.
    pub cause: u32,
    /// Published-port binding of the flow (0 = none).
    pub binding_id: u32,
    /// Where the original direction is delivered, when known (host byte order).
    pub ifindex: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the event.
    pub ktime_ns: u64,
    /// When the flow was created (`bpf_ktime_get_ns()`): with `key`, names one flow.
    pub created_ns: u64,
    /// The flow's original-direction tuple.
    pub key: crate::CtKey,
    /// The tuple after translation (network byte order; equal to `key`'s where nothing changes).
    pub nat_saddr: [u32; 4],
    pub nat_daddr: [u32; 4],
    pub nat_sport: u16,
    pub nat_dport: u16,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 32 + 40 + 40);

#[cfg(feature = "user")]
// SAFETY: repr(C), derive(bytemuck::Pod): no padding, every bit pattern valid.
unsafe impl aya::Pod for DropEvent {}
#[cfg(feature = "user")]
// SAFETY: as for DropEvent.
unsafe impl aya::Pod for FlowEvent {}
