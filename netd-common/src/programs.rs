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

/// XDP on an uplink: the source allow/deny filter, before anything else is spent on a packet.
pub const PROG_XDP_PREFILTER: &str = "xdp_prefilter";
