//! Drop reasons (NETD_DROPS index). Every drop a program makes is counted under one of these.

/// `PerCpuArray<u32 reason, u64>`: drops per [`DropReason`].
pub const MAP_DROPS: &str = "NETD_DROPS";

pub const DROP_MALFORMED: u32 = 1;
pub const DROP_SPOOFED_IP: u32 = 2;
pub const DROP_SPOOFED_MAC: u32 = 3;
pub const DROP_ICC: u32 = 4;
pub const DROP_DIRECT_ACCESS: u32 = 5;
pub const DROP_FILTER_DENY: u32 = 6;
pub const DROP_FILTER_NOT_ALLOWED: u32 = 7;
pub const DROP_CT_FULL: u32 = 8;
pub const DROP_NO_SNAT_PORT: u32 = 9;
pub const DROP_FRAGMENT: u32 = 10;
pub const DROP_REWRITE_FAILED: u32 = 11;
pub const DROP_LOOPBACK_ONLY: u32 = 12;
/// A new flow's reply tuple is held by another live flow and cannot be moved (published ports
/// and links keep the client's port).
pub const DROP_CT_CLASH: u32 = 13;
/// A container sent a frame of an ethertype netd does not police (VLAN tags, anything but ARP,
/// IPv4 and IPv6).
pub const DROP_ETHERTYPE: u32 = 14;
/// Not a packet drop: an unreplied (or finished) flow was evicted from a full NETD_CT to make
/// room for a new one. Counted here so `netd stats` shows it beside `conntrack-full` (a new
/// flow refused because every entry belongs to a replied, live flow).
pub const DROP_CT_EVICTED: u32 = 15;
/// A TCP RST whose sequence number is outside its connection's window (a blind spoof): the
/// receiver would ignore it; dropping it keeps the flow's state.
pub const DROP_TCP_RST_WINDOW: u32 = 16;
/// A packet from an uplink with a source no outside host may use (0/8, 127/8, multicast,
/// 240/4, the bridge subnet and its gateway, the host's own addresses), towards a container or
/// a published port; or a packet routed to a container from a host interface that is no
/// uplink with a bridge-subnet source. The fast path skips the stack's martian and rp_filter
/// checks, so the programs make them.
pub const DROP_MARTIAN: u32 = 19;
/// A VLAN-tagged frame on an uplink that has no VLAN uplink on it, towards a container or a
/// published port: the kernel would discard it (no VLAN device takes the tag), so it is never
/// translated.
pub const DROP_VLAN: u32 = 20;
/// `--icc false`: a container's frame to a MAC that is neither the gateway's nor that of the
/// container owning the destination address (the bridge would deliver it by MAC to another
/// container whatever its IP destination).
pub const DROP_ICC_MAC: u32 = 21;
/// A container's packet to a container of another network (networks are isolated, as Docker's
/// user-defined networks; a published port on a host address is the way across).
pub const DROP_NET_ISOLATED: u32 = 22;
/// `--internal`: a packet between an internal network and an uplink (either way).
pub const DROP_NET_INTERNAL: u32 = 23;
/// Neighbour discovery that would claim another's address: a neighbour advertisement whose
/// target is not one of the container's addresses, or whose target link-layer address option
/// is not its MAC; a solicitation whose source link-layer address option is not its MAC, or a
/// duplicate address detection probe (source `::`) for an address that is not its own.
pub const DROP_ND_SPOOF: u32 = 24;
/// A router advertisement (ICMPv6 134) from a container: only the host routes.
pub const DROP_ROUTER_ADVERT: u32 = 25;
/// An ICMPv6 redirect (137) from a container.
pub const DROP_REDIRECT: u32 = 26;
/// IPv6 from an endpoint without IPv6 configuration other than neighbour discovery and MLD
/// from its MAC-derived link-local address (or `::`).
pub const DROP_IPV6_OFF: u32 = 27;
/// `--ct-per-source-max`: a new flow from outside whose source address already holds its
/// budget of unreplied flows (NETD_CT_SRC), or a packet that would keep such a flow alive past
/// its window while the source is over budget.
pub const DROP_CT_SOURCE_BUDGET: u32 = 28;

/// Size of NETD_DROPS: every reason above must be below it.
pub const DROP_REASONS: u32 = 32;
const _: () = assert!(DROP_NET_INTERNAL < DROP_REASONS);
const _: () = assert!(DROP_IPV6_OFF < DROP_REASONS);
const _: () = assert!(DROP_ICC_MAC < DROP_REASONS);
const _: () = assert!(DROP_CT_SOURCE_BUDGET < DROP_REASONS);

/// Name of a drop reason, for `netd stats` and the README.
pub fn drop_reason_name(r: u32) -> &'static str {
    match r {
        DROP_MALFORMED => "malformed-packet",
        DROP_SPOOFED_IP => "spoofed-source-ip",
        DROP_SPOOFED_MAC => "spoofed-source-mac",
        DROP_ICC => "icc-denied",
        DROP_DIRECT_ACCESS => "direct-access-to-container",
        DROP_FILTER_DENY => "source-denied",
        DROP_FILTER_NOT_ALLOWED => "source-not-allowed",
        DROP_CT_FULL => "conntrack-full",
        DROP_NO_SNAT_PORT => "no-free-snat-port",
        DROP_FRAGMENT => "untracked-fragment",
        DROP_REWRITE_FAILED => "rewrite-failed",
        DROP_LOOPBACK_ONLY => "loopback-only-binding",
        DROP_CT_CLASH => "conntrack-tuple-clash",
        DROP_ETHERTYPE => "unsupported-ethertype",
        DROP_CT_EVICTED => "conntrack-evicted-unreplied",
        DROP_TCP_RST_WINDOW => "tcp-rst-out-of-window",
        DROP_MARTIAN => "martian-source",
        DROP_VLAN => "vlan-tag-without-device",
        DROP_ICC_MAC => "icc-foreign-dst-mac",
        DROP_NET_ISOLATED => "other-network",
        DROP_NET_INTERNAL => "internal-network",
        DROP_ND_SPOOF => "nd-spoofed-address",
        DROP_ROUTER_ADVERT => "router-advertisement",
        DROP_REDIRECT => "icmpv6-redirect",
        DROP_IPV6_OFF => "ipv6-not-configured",
        DROP_CT_SOURCE_BUDGET => "conntrack-source-budget",
        _ => "unknown",
    }
}
