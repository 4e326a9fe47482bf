//! Program (entry point) names, as the eBPF crate exports them and the agent pins their links.

/// TC ingress on an uplink: traffic arriving from outside.
pub const PROG_FROM_UPLINK: &str = "from_uplink";
/// TC egress on an uplink: traffic leaving for outside.
pub const PROG_TO_UPLINK: &str = "to_uplink";
/// TC ingress on a container's host-side veth: traffic the container sends.
pub const PROG_FROM_CONTAINER: &str = "from_container";
/// TC egress on a container's host-side veth: traffic delivered to the container.
pub const PROG_TO_CONTAINER: &str = "to_container";

/// Every TC program in the eBPF object; the agent loads all of them at start.
pub const ALL_TC_PROGRAMS: &[&str] = &[
    PROG_FROM_UPLINK,
    PROG_TO_UPLINK,
    PROG_FROM_CONTAINER,
    PROG_TO_CONTAINER,
];

/// TC egress on an uplink, IPv6: `to_uplink` tail-calls it (NETD_TAIL6 slot
/// [`TAIL_TO_UPLINK6`]) for every frame that is not IPv4, so IPv6 costs to_uplink's verifier
/// budget (close to its 1M limit) nothing. Loaded at start, never attached.
pub const PROG_TO_UPLINK6: &str = "to_uplink6";
/// `BPF_MAP_TYPE_PROG_ARRAY` of the programs the TC programs tail-call, by slot.
pub const MAP_TAIL6: &str = "NETD_TAIL6";
pub const TAIL_TO_UPLINK6: u32 = 0;
/// TC ingress on a container's host-side veth, IPv6: `from_container` tail-calls it (slot
/// [`TAIL_FROM_CONTAINER6`]) for IPv6 frames: the IPv6 policy, and on the fast path a
/// published flow's reply routed, translated and sent to its uplink from there, on a stack
/// of its own. Loaded at start, never attached.
pub const PROG_FROM_CONTAINER6: &str = "from_container6";
pub const TAIL_FROM_CONTAINER6: u32 = 1;
pub const TAIL6_SLOTS: u32 = 4;
/// The tail-called programs and their NETD_TAIL6 slots.
pub const ALL_TAIL_PROGRAMS: &[(&str, u32)] = &[
    (PROG_TO_UPLINK6, TAIL_TO_UPLINK6),
    (PROG_FROM_CONTAINER6, TAIL_FROM_CONTAINER6),
];

/// XDP on an uplink: the source allow/deny filter, before anything else is spent on a packet.
pub const PROG_XDP_PREFILTER: &str = "xdp_prefilter";
