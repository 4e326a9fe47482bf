//! The NAT/policy dataplane's maps: configuration, endpoints, host addresses, published port
//! ranges, connection tracking, link allowances, source filters and drop reasons.
//!
//! Byte order: every address field is **network byte order** (as it sits in the packet); every
//! port in [`CtKey`]/[`CtEntry`] is network byte order too; port *ranges* used for comparisons
//! ([`PortEntry`], [`PortPair`]) are **host byte order**. Addresses are `[u32; 4]` in the
//! connection-tracking types so IPv6 is an addition: IPv4 sits in word 0, words 1-3 are zero.

use bytemuck::{Pod, Zeroable};

// ---------------------------------------------------------------------------------------------
// Map names (pinned at <pin_dir>/maps/<NAME>).

/// `Array<u32, DpConfig>`, one entry at index 0.
pub const MAP_CONFIG: &str = "NETD_CONFIG";
/// `HashMap<u32 ifindex, EndpointInfo>`: container host-side veths.
pub const MAP_ENDPOINTS: &str = "NETD_ENDPOINTS";
/// `HashMap<u32 ipv4 (nbo), EndpointInfo>`: the same endpoints by address.
pub const MAP_EP_BY_IP: &str = "NETD_EP_BY_IP";
/// `HashMap<u32 ipv4 (nbo), u32 ifindex>`: every local address of the host namespace.
pub const MAP_HOST_ADDRS: &str = "NETD_HOST_ADDRS";
/// `HashMap<u32 ifindex, UplinkInfo>`: uplinks and the address masquerade uses on each.
pub const MAP_UPLINKS: &str = "NETD_UPLINKS";
/// `HashMap<PortKey, PortTarget>` (`PORTS_MAX` entries): published host ports, one entry per
/// port (ranges expanded), plus the bind hook's [`PORT_FAMILY_ANY`] markers.
pub const MAP_PORTS: &str = "NETD_PORTS";
/// `PerCpuHashMap<u32 binding_id, Traffic>`: packets/bytes per published-port binding.
pub const MAP_PORT_STATS: &str = "NETD_PORT_STATS";
/// `HashMap<CtKey, CtEntry>` (preallocated, `--ct-max` entries): connection tracking and NAT
/// state, both directions.
pub const MAP_CT: &str = "NETD_CT";
/// `Array<u32, CtRingSlot>` with [`DpConfig::ct_ring_slots`] slots: the most recently created
/// flows, oldest first from [`CtRingPos::tail`]. Candidates for eviction when NETD_CT is full:
/// a BPF hash cannot be scanned per bucket like Linux's early drop, so new flows are remembered
/// here in creation order and the oldest one that is still unreplied goes first.
pub const MAP_CT_RING: &str = "NETD_CT_RING";
/// `Array<u32, CtRingPos>`, one entry: the ring's head and tail.
pub const MAP_CT_RING_POS: &str = "NETD_CT_RING_POS";
/// `HashMap<LinkKey, LinkPorts>`: `--link` allowances under `--icc false`.
pub const MAP_LINKS: &str = "NETD_LINKS";
/// `LpmTrie<u32 ipv4 (nbo), u32>`: source allow list (empty = everyone).
pub const MAP_FILTER_ALLOW: &str = "NETD_FILTER_ALLOW";
/// `LpmTrie<u32 ipv4 (nbo), u32>`: source deny list.
pub const MAP_FILTER_DENY: &str = "NETD_FILTER_DENY";
/// `PerCpuArray<u32 reason, u64>`: drops per [`DropReason`].
pub const MAP_DROPS: &str = "NETD_DROPS";
/// `LruHashMap<FragKey, FragPorts>`: the ports of fragmented datagrams, recorded from their
/// first fragment so later fragments (which carry no L4 header) find their flow.
pub const MAP_FRAGS: &str = "NETD_FRAGS";
/// `Array<u32 net_id, NetConfig>` with [`NETWORKS_MAX`] slots: the networks' options. Slot 0
/// is the default network, whose options the programs read from [`DpConfig`] (the agent
/// mirrors them here for tools).
pub const MAP_NETWORKS: &str = "NETD_NETWORKS";
/// `LpmTrie<u32 ipv4 (nbo), u32 net_id>`: each network's subnet → its id.
pub const MAP_NET_SUBNETS: &str = "NETD_NET_SUBNETS";

/// NETD_PORTS entries: every TCP and UDP port of one address (2 x 65 535), or their markers
/// for the bind hook, with room to spare.
pub const PORTS_MAX: u32 = 262_144;
pub const ENDPOINTS_MAX: u32 = 16384;
pub const HOST_ADDRS_MAX: u32 = 1024;
pub const UPLINKS_MAX: u32 = 64;
pub const CT_MAX_DEFAULT: u32 = 262_144;
pub const LINKS_MAX: u32 = 65536;
pub const FILTER_MAX: u32 = 16384;
pub const PORT_STATS_MAX: u32 = 131_072;
/// Networks the dataplane knows (net ids 0..NETWORKS_MAX; 0 = the default network).
pub const NETWORKS_MAX: u32 = 256;
pub const FRAGS_MAX: u32 = 8192;

// ---------------------------------------------------------------------------------------------
// Configuration.

/// `--icc true`: containers on the bridge talk freely.
pub const CFG_F_ICC: u32 = 1 << 0;
/// `--ip-masq true`: masquerade container traffic leaving through an uplink.
pub const CFG_F_MASQ: u32 = 1 << 1;
/// The allow list is not empty: only listed sources may open connections to containers.
pub const CFG_F_ALLOWLIST: u32 = 1 << 2;
/// The deny list is not empty.
pub const CFG_F_DENYLIST: u32 = 1 << 3;
/// `--fast-path true`: translated packets skip the host's routing. From an uplink they go
/// straight into the container (`bpf_redirect_peer` to its veth's peer, Ethernet rewritten to
/// [`DpConfig::bridge_mac`] -> the container's MAC, TTL decremented); from a container, replies
/// and masqueraded traffic leaving by an uplink are translated at once and sent out with
/// `bpf_fib_lookup` + `bpf_redirect`/`bpf_redirect_neigh`. Whenever a lookup fails the packet
/// takes the stack's path, as without the flag.
pub const CFG_F_FAST_PATH: u32 = 1 << 4;
/// Translated source ports (masquerade, and the SNAT of a container reaching its own published
/// port) always lie in [`DpConfig::snat_port_min`, `DpConfig::snat_port_max`]: a container's
/// port is kept only when it is inside. The daemon reserves that range from its namespace's
/// ephemeral ports (`--masq-ports`), so a host socket opened later never has a masqueraded
/// flow's port. Without the flag a free original port is kept whatever it is.
pub const CFG_F_SNAT_IN_RANGE: u32 = 1 << 5;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DpConfig {
    /// `CFG_F_*`.
    pub flags: u32,
    pub bridge_ifindex: u32,
    /// The bridge's (gateway's) address, network byte order.
    pub bridge_ip: u32,
    /// The bridge subnet's network address, network byte order.
    pub subnet: u32,
    /// The bridge subnet's mask, network byte order.
    pub subnet_mask: u32,
    /// Unused since NETD_PORTS became a hash (was the live half and lengths of a sorted
    /// table); kept so the layout does not move.
    pub _pad_ports: [u32; 3],
    /// Masquerade source ports are probed in [snat_port_min, snat_port_max] (host order) when
    /// the original port is taken.
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    /// Idle timeouts, seconds.
    pub ct_tcp_syn_s: u32,
    pub ct_tcp_established_s: u32,
    pub ct_tcp_closing_s: u32,
    pub ct_udp_s: u32,
    pub ct_icmp_s: u32,
    /// Cap on the idle timeout of a flow whose other side never answered (any protocol):
    /// unreplied flows (scans, spoofed segments, a mid-stream ACK) go quickly. 0 = no cap.
    pub ct_unreplied_s: u32,
    /// The bridge's MAC address: the source of frames the fast path delivers to containers
    /// (what they would get from the bridge as their gateway). All zeroes = unknown: no fast
    /// path into containers.
    pub bridge_mac: [u8; 6],
    pub _pad2: u16,
    /// Idle timeout after a FIN from both sides (Linux's time_wait), seconds.
    pub ct_tcp_time_wait_s: u32,
    /// Idle timeout after an (in-window) RST, seconds.
    pub ct_tcp_close_s: u32,
    /// Slots of NETD_CT_RING (the agent writes the map's real size); 0 = no eviction.
    pub ct_ring_slots: u32,
}
const _: () = assert!(core::mem::size_of::<DpConfig>() == 80);

impl DpConfig {
    /// Is `ip` (network byte order) inside the bridge subnet?
    #[inline(always)]
    pub fn in_subnet(&self, ip: u32) -> bool {
        self.subnet_mask != 0 && ip & self.subnet_mask == self.subnet
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints, host addresses, uplinks.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct EndpointInfo {
    /// The container's address, network byte order.
    pub ip: u32,
    /// ifindex of the container's host-side veth (in the host namespace).
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// The endpoint's network (index of NETD_NETWORKS; 0 = the default network).
    pub net_id: u16,
}
const _: () = assert!(core::mem::size_of::<EndpointInfo>() == 16);

/// `enable_icc=true`: the network's containers talk freely.
pub const NET_F_ICC: u32 = 1 << 0;
/// `enable_ip_masquerade=true`: its traffic leaving by an uplink is masqueraded.
pub const NET_F_MASQ: u32 = 1 << 1;
/// `--internal`: no traffic to or from the outside (uplinks) at all.
pub const NET_F_INTERNAL: u32 = 1 << 2;

/// One network's options (NETD_NETWORKS). Addresses network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NetConfig {
    /// `NET_F_*`.
    pub flags: u32,
    pub bridge_ifindex: u32,
    /// The gateway (the bridge's address), network byte order.
    pub bridge_ip: u32,
    /// The subnet's network address and mask, network byte order.
    pub subnet: u32,
    pub subnet_mask: u32,
    /// The bridge's MAC (all zeroes: unknown).
    pub bridge_mac: [u8; 6],
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<NetConfig>() == 28);

impl NetConfig {
    /// Is `ip` (network byte order) inside the network's subnet?
    #[inline(always)]
    pub fn in_subnet(&self, ip: u32) -> bool {
        self.subnet_mask != 0 && ip & self.subnet_mask == self.subnet
    }
}

/// Another uplink is a VLAN device on this one: its VLAN-tagged frames are that uplink's to
/// translate (its own hooks see them untagged), not this one's to refuse.
pub const UPLINK_F_VLAN_PARENT: u32 = 1 << 0;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct UplinkInfo {
    /// Source address for masqueraded traffic leaving here, network byte order (0 = none).
    pub ip: u32,
    /// `UPLINK_F_*`.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<UplinkInfo>() == 8);

// ---------------------------------------------------------------------------------------------
// Published ports: a hash keyed by (proto, family, host address, host port), ranges expanded
// into one entry per port. A change writes and deletes only the ports it changes, a lookup is
// one or two hash probes (exact address, then the wildcard), and there is no whole-table flip.
// Ranges are expanded rather than kept in a side list: 65 535 entries of 44 bytes are cheap,
// while a range list needs a search the programs (and their verifier budget) pay for on every
// new flow.

/// The binding accepts traffic only from the host itself (host_ip is a loopback address).
pub const PORT_F_LOOPBACK: u8 = 1 << 0;
/// The container's runtime holds the host port itself (`reserve_ports: false`, e.g. podman's
/// conmon): the bind hook lets host sockets bind it.
pub const PORT_F_NO_RESERVE: u8 = 1 << 1;

/// [`PortKey::family`] of the per-port marker the writer keeps for the bind hook: "some
/// reserving binding holds this (proto, port) on some address" (addr is zero). A bind to the
/// wildcard address conflicts with every address's bindings; the TC programs never look these
/// up (they ask for `AF_INET`).
pub const PORT_FAMILY_ANY: u8 = 0;

/// NETD_PORTS key. `addr` is network byte order, zero = the wildcard address; IPv4 sits in
/// word 0, words 1-3 are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct PortKey {
    pub addr: [u32; 4],
    /// Host port, host byte order.
    pub port: u16,
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub proto: u8,
    /// AF_INET, AF_INET6, or [`PORT_FAMILY_ANY`].
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<PortKey>() == 20);

impl PortKey {
    /// The key of an IPv4 binding; `addr_nbo` 0 = the wildcard.
    #[inline(always)]
    pub const fn v4(proto: u8, addr_nbo: u32, port: u16) -> Self {
        Self {
            addr: [addr_nbo, 0, 0, 0],
            port,
            proto,
            family: AF_INET,
        }
    }

    /// The bind hook's marker for (proto, port) on any address.
    #[inline(always)]
    pub const fn any(proto: u8, port: u16) -> Self {
        Self {
            addr: [0; 4],
            port,
            proto,
            family: PORT_FAMILY_ANY,
        }
    }
}

/// NETD_PORTS value: where one published host port goes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PortTarget {
    /// The container's address, network byte order (IPv4 in word 0).
    pub container_ip: [u32; 4],
    /// Container port, host byte order.
    pub container_port: u16,
    /// `PORT_F_*`.
    pub flags: u8,
    pub _pad: u8,
    /// Key into NETD_PORT_STATS; stable for the binding's life.
    pub binding_id: u32,
}
const _: () = assert!(core::mem::size_of::<PortTarget>() == 24);

/// One published binding as the agent describes it: a range of host ports on one address
/// mapped 1:1 onto container ports. The map holds it expanded ([`PortEntry::expand`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PortEntry {
    /// Bound host address, network byte order; 0 = every address of the host.
    pub host_ip: u32,
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub proto: u8,
    /// `PORT_F_*`.
    pub flags: u8,
    pub _pad: u16,
    /// First and last host port of the range, host byte order.
    pub host_port_start: u16,
    pub host_port_end: u16,
    /// Container port that `host_port_start` maps to, host byte order; the range maps 1:1.
    pub container_port: u16,
    pub _pad2: u16,
    /// The container's address, network byte order.
    pub container_ip: u32,
    /// Key into NETD_PORT_STATS; stable for the binding's life.
    pub binding_id: u32,
    /// [`AF_INET6`]: an IPv6 binding, whose addresses are `host_ip6` and `container_ip6`
    /// (`host_ip`/`container_ip` unused); anything else: IPv4.
    pub family: u8,
    pub _pad3: [u8; 3],
    /// IPv6 host address (all zero: `[::]`, every IPv6 address of the host), network order.
    pub host_ip6: [u32; 4],
    /// The container's IPv6 address, network order.
    pub container_ip6: [u32; 4],
}
const _: () = assert!(core::mem::size_of::<PortEntry>() == 60);

impl PortEntry {
    /// The host address as NETD_PORTS keys hold it (IPv4 in word 0).
    #[inline(always)]
    pub fn host_addr(&self) -> [u32; 4] {
        if self.family == AF_INET6 {
            self.host_ip6
        } else {
            [self.host_ip, 0, 0, 0]
        }
    }

    /// The container port for `host_port` (host order), if the range holds it.
    #[inline(always)]
    pub fn translate(&self, host_port: u16) -> Option<u16> {
        if host_port >= self.host_port_start && host_port <= self.host_port_end {
            Some(
                self.container_port
                    .wrapping_add(host_port - self.host_port_start),
            )
        } else {
            None
        }
    }

    /// The NETD_PORTS entry of `host_port`, which the range must hold.
    #[inline(always)]
    pub fn entry(&self, host_port: u16) -> (PortKey, PortTarget) {
        let v6 = self.family == AF_INET6;
        (
            if v6 {
                PortKey::v6(self.proto, self.host_ip6, host_port)
            } else {
                PortKey::v4(self.proto, self.host_ip, host_port)
            },
            PortTarget {
                container_ip: if v6 {
                    self.container_ip6
                } else {
                    [self.container_ip, 0, 0, 0]
                },
                container_port: self
                    .container_port
                    .wrapping_add(host_port.wrapping_sub(self.host_port_start)),
                flags: self.flags,
                _pad: 0,
                binding_id: self.binding_id,
            },
        )
    }

    /// Every NETD_PORTS entry of the range, one per host port.
    pub fn expand(&self) -> impl Iterator<Item = (PortKey, PortTarget)> + '_ {
        (self.host_port_start..=self.host_port_end).map(|p| self.entry(p))
    }

    /// Does this binding reserve its host ports from host sockets (the bind hook's business)?
    #[inline(always)]
    pub fn reserves(&self) -> bool {
        self.flags & PORT_F_NO_RESERVE == 0
    }
}

/// The published-port lookup shared by the eBPF programs and the agent's tests: the exact
/// address first, then the wildcard binding of the same (proto, port). `get` reads NETD_PORTS.
/// Returns the entry and whether it is the wildcard one.
#[inline(always)]
pub fn find_port(
    get: impl Fn(&PortKey) -> Option<PortTarget>,
    proto: u8,
    host_ip_nbo: u32,
    port: u16,
) -> Option<(PortTarget, bool)> {
    if let Some(t) = get(&PortKey::v4(proto, host_ip_nbo, port)) {
        return Some((t, host_ip_nbo == 0));
    }
    if host_ip_nbo != 0 {
        return get(&PortKey::v4(proto, 0, port)).map(|t| (t, true));
    }
    None
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Traffic>() == 16);

impl Traffic {
    pub fn accumulate(&mut self, o: &Traffic) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

// ---------------------------------------------------------------------------------------------
// Connection tracking.

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// A flow as seen in one direction. For ICMP echo, sport and dport both hold the echo id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct CtKey {
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
    /// Network byte order.
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// AF_INET or AF_INET6.
    pub family: u8,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<CtKey>() == 40);

impl CtKey {
    #[inline(always)]
    pub fn v4(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> Self {
        CtKey {
            saddr: [saddr, 0, 0, 0],
            daddr: [daddr, 0, 0, 0],
            sport,
            dport,
            proto,
            family: AF_INET,
            _pad: 0,
        }
    }

    /// The same flow seen from the other end.
    #[inline(always)]
    pub fn reversed(&self) -> Self {
        CtKey {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }
}

/// This direction's destination is rewritten (published port; reply of a masqueraded flow).
pub const CT_F_DNAT: u16 = 1 << 0;
/// This direction's source is rewritten (masquerade; reply of a published-port flow).
pub const CT_F_SNAT: u16 = 1 << 1;
/// This entry is the reply direction of its flow.
pub const CT_F_REPLY: u16 = 1 << 2;
/// A reply has been seen (the flow is bidirectional).
pub const CT_F_SEEN_REPLY: u16 = 1 << 3;
/// Allowed by a `--link` rule under `--icc false`.
pub const CT_F_LINK: u16 = 1 << 4;
/// Hairpin: a container reached a published port through a host address.
pub const CT_F_HAIRPIN: u16 = 1 << 5;
/// Masquerade flow (container -> outside).
pub const CT_F_MASQ: u16 = 1 << 6;
/// Published-port flow (outside or hairpin -> container).
pub const CT_F_PUBLISHED: u16 = 1 << 7;
/// This direction has sent a FIN.
pub const CT_F_FIN: u16 = 1 << 8;
/// [`CtEntry::td_seq`] holds a sequence number this direction sent.
pub const CT_F_TD_SEEN: u16 = 1 << 9;

pub const CT_TCP_NONE: u8 = 0;
/// Opened (a SYN, or a segment picked up mid-stream) and not answered yet.
pub const CT_TCP_SYN_SENT: u8 = 1;
pub const CT_TCP_ESTABLISHED: u8 = 2;
/// One side sent a FIN (Linux's fin_wait / close_wait): the other may still send for long.
pub const CT_TCP_CLOSING: u8 = 3;
/// An in-window RST ended the connection.
pub const CT_TCP_CLOSED: u8 = 4;
/// Both sides sent a FIN.
pub const CT_TCP_TIME_WAIT: u8 = 5;

/// An RST is believed only when its sequence number lies within this distance of the last
/// one its sender used (what the receiver's window could hold; one GSO/BIG TCP segment ahead,
/// retransmissions behind). A blind spoofer must guess within 2 * 2^22 of 2^32.
pub const CT_RST_WINDOW: u32 = 1 << 22;

/// Does `seq` (host order) lie within [`CT_RST_WINDOW`] of `last` (wrapping)?
#[inline(always)]
pub fn seq_in_window(seq: u32, last: u32) -> bool {
    let d = seq.wrapping_sub(last) as i32;
    d.unsigned_abs() <= CT_RST_WINDOW
}

/// NETD_CT's value, layout version [`CT_LAYOUT_VERSION`]. Version 2 puts the fields every
/// packet writes (last_seen_ns, the counters, td_seq, flags, tcp_state) first and the ones set
/// once at creation after them; version 1 (netd up to 4521f4f) is
/// [`crate::layouts::CtEntryV1`], migrated at start-up (the kernel's key and value sizes are
/// the same, so only the version in the pin name tells them apart).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtEntry {
    /// bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the last packet.
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// TCP: the last sequence number this direction sent (host order), valid with
    /// [`CT_F_TD_SEEN`]; an RST must be near it ([`seq_in_window`]).
    pub td_seq: u32,
    /// `CT_F_*`.
    pub flags: u16,
    /// `CT_TCP_*` (TCP only).
    pub tcp_state: u8,
    pub _pad: u8,
    /// The tuple after translation: what the packet's addresses and ports become (equal to
    /// the key's where nothing changes). Network byte order.
    pub nat_saddr: [u32; 4],
    pub nat_daddr: [u32; 4],
    pub nat_sport: u16,
    pub nat_dport: u16,
    /// Published-port binding this flow uses (0 = none): NETD_PORT_STATS key.
    pub binding_id: u32,
    /// Where packets of this direction are delivered after translation, when known (the
    /// container's host-side veth): lets a program redirect without a route lookup.
    pub ifindex: u32,
    pub _pad2: u32,
    pub created_ns: u64,
    /// The other direction's key, so both go together (GC, detach).
    pub peer: CtKey,
}
/// Layout version of [`CtEntry`] (and so of NETD_CT): bump it with every change of the type,
/// and add the previous layout and its conversion to [`crate::layouts`].
pub const CT_LAYOUT_VERSION: u32 = 2;
const _: () = assert!(core::mem::size_of::<CtEntry>() == 128);

/// A flow in NETD_CT_RING: its original-direction key and when it was created (a slot whose
/// key now names a newer flow of the same tuple is stale).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtRingSlot {
    pub key: CtKey,
    pub created_ns: u64,
}
const _: () = assert!(core::mem::size_of::<CtRingSlot>() == 48);

/// NETD_CT_RING's positions: flows are written at `head % slots`, eviction looks from
/// `tail`. Both change only atomically: the head by fetch-and-add, so CPUs creating flows at
/// once each get their own slot; the tail by fetch-and-add too, one claim per slot eviction
/// looks at (CPUs evicting at once never look at the same slot), and by compare-and-exchange
/// when it has fallen more than the ring's size behind the head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtRingPos {
    pub head: u64,
    pub tail: u64,
}
const _: () = assert!(core::mem::size_of::<CtRingPos>() == 16);

/// May this entry's flow be evicted to make room for a new one? Only when the other side never
/// answered, or a TCP connection is over (RST, FIN both ways): a replied, live flow never is.
#[inline(always)]
pub fn ct_evictable(e: &CtEntry, proto: u8) -> bool {
    e.flags & CT_F_SEEN_REPLY == 0
        || proto == IPPROTO_TCP && (e.tcp_state == CT_TCP_CLOSED || e.tcp_state == CT_TCP_TIME_WAIT)
}

/// Is this TCP entry's connection over (both FINs seen, or an in-window RST), so that a new SYN
/// may take its tuple at once instead of waiting out the timeout? Linux conntrack reopens a
/// TIME_WAIT or CLOSE entry on a SYN the same way (and nf_nat treats such a reply tuple as free
/// for a SYN). Only TCP: a UDP or ICMP flow has no end a packet announces.
#[inline(always)]
pub fn ct_reusable(e: &CtEntry, proto: u8) -> bool {
    proto == IPPROTO_TCP && (e.tcp_state == CT_TCP_TIME_WAIT || e.tcp_state == CT_TCP_CLOSED)
}

/// Idle timeout of an entry, nanoseconds. Shared by the eBPF side (which refreshes entries) and
/// the agent's garbage collector (which removes expired pairs). 0 (timeouts not configured) means
/// "never expires": the programs then rely on LRU eviction alone.
#[inline(always)]
pub fn ct_timeout_ns(e: &CtEntry, proto: u8, cfg: &DpConfig) -> u64 {
    let mut s = match proto {
        IPPROTO_TCP => match e.tcp_state {
            CT_TCP_ESTABLISHED => cfg.ct_tcp_established_s,
            CT_TCP_CLOSING => cfg.ct_tcp_closing_s,
            CT_TCP_TIME_WAIT => cfg.ct_tcp_time_wait_s,
            CT_TCP_CLOSED => cfg.ct_tcp_close_s,
            _ => cfg.ct_tcp_syn_s,
        },
        IPPROTO_UDP => cfg.ct_udp_s,
        _ => cfg.ct_icmp_s,
    };
    // Unreplied: at most the short cap (a timeout of 0, "never", is capped too).
    if e.flags & CT_F_SEEN_REPLY == 0
        && cfg.ct_unreplied_s != 0
        && (s == 0 || s > cfg.ct_unreplied_s)
    {
        s = cfg.ct_unreplied_s;
    }
    s as u64 * 1_000_000_000
}

// ---------------------------------------------------------------------------------------------
// Fragments.

/// A fragmented IPv4 datagram as its fragments arrive at one hook (before translation).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FragKey {
    /// Network byte order.
    pub saddr: u32,
    pub daddr: u32,
    /// The IPv4 identification field, network byte order.
    pub id: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<FragKey>() == 12);

/// The L4 ports of a fragmented datagram (its first fragment's), network byte order; the echo
/// id in both for ICMP echo.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FragPorts {
    pub sport: u16,
    pub dport: u16,
}
const _: () = assert!(core::mem::size_of::<FragPorts>() == 4);

// ---------------------------------------------------------------------------------------------
// Links (ICC exceptions).

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct LinkKey {
    /// The linking container (client), network byte order.
    pub src_ip: u32,
    /// The linked container (server), network byte order.
    pub dst_ip: u32,
    pub proto: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<LinkKey>() == 12);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PortPair {
    /// Host byte order, inclusive.
    pub start: u16,
    pub end: u16,
}

pub const LINK_PORT_RANGES: usize = 16;

/// The target's exposed port ranges the linking container may reach.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LinkPorts {
    pub count: u32,
    pub _pad: u32,
    pub ranges: [PortPair; LINK_PORT_RANGES],
}
const _: () = assert!(core::mem::size_of::<LinkPorts>() == 72);

impl LinkPorts {
    /// Does the allowance cover `port` (host order)?
    #[inline(always)]
    pub fn allows(&self, port: u16) -> bool {
        let mut i = 0;
        while i < LINK_PORT_RANGES {
            if (i as u32) < self.count && port >= self.ranges[i].start && port <= self.ranges[i].end
            {
                return true;
            }
            i += 1;
        }
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Drop reasons (NETD_DROPS index). Every drop a program makes is counted under one of these.

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

/// Size of NETD_DROPS: every reason above must be below it.
pub const DROP_REASONS: u32 = 32;
const _: () = assert!(DROP_NET_INTERNAL < DROP_REASONS);
const _: () = assert!(DROP_IPV6_OFF < DROP_REASONS);
const _: () = assert!(DROP_ICC_MAC < DROP_REASONS);

/// Is `ip` (network byte order) a source no host may send from: 0.0.0.0/8 ("this network"),
/// 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved, and the limited
/// broadcast)? The stack calls these martians; the bridge subnet and the host's own addresses
/// are checked besides, against the configuration.
#[inline(always)]
pub fn is_martian_source(ip: u32) -> bool {
    let first = u32::from_be(ip) >> 24;
    first == 0 || first == 127 || first >= 224
}

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
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// aya::Pod for user space.

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY (all): repr(C), derive(bytemuck::Pod): no padding, every bit pattern valid.
    unsafe impl aya::Pod for DpConfig {}
    unsafe impl aya::Pod for EndpointInfo {}
    unsafe impl aya::Pod for NetConfig {}
    unsafe impl aya::Pod for UplinkInfo {}
    unsafe impl aya::Pod for PortEntry {}
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for PortTarget {}
    unsafe impl aya::Pod for Traffic {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtEntry {}
    unsafe impl aya::Pod for crate::layouts::CtEntryV1 {}
    unsafe impl aya::Pod for CtRingSlot {}
    unsafe impl aya::Pod for CtRingPos {}
    unsafe impl aya::Pod for LinkKey {}
    unsafe impl aya::Pod for LinkPorts {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for FragPorts {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn entry(proto: u8, ip: [u8; 4], start: u16, end: u16, cport: u16) -> PortEntry {
        PortEntry {
            host_ip: u32::from_ne_bytes(ip),
            proto,
            host_port_start: start,
            host_port_end: end,
            container_port: cport,
            container_ip: u32::from_ne_bytes([172, 30, 0, 2]),
            binding_id: start as u32,
            ..Default::default()
        }
    }

    #[test]
    fn lookup_finds_expanded_ranges_exact_then_wildcard() {
        let mut v: Vec<PortEntry> = std::vec![
            entry(IPPROTO_TCP, [0, 0, 0, 0], 80, 80, 8080),
            entry(IPPROTO_TCP, [0, 0, 0, 0], 8000, 8999, 80),
            entry(IPPROTO_TCP, [127, 0, 0, 1], 9000, 9000, 90),
            entry(IPPROTO_UDP, [0, 0, 0, 0], 53, 53, 5353),
            // The specific address wins over the wildcard on the same port.
            entry(IPPROTO_TCP, [198, 51, 100, 1], 8100, 8100, 7),
        ];
        for i in 0..2000u16 {
            v.push(entry(
                IPPROTO_TCP,
                [198, 51, 100, 1],
                20000 + 2 * i,
                20000 + 2 * i,
                1,
            ));
        }
        let map: std::collections::HashMap<PortKey, PortTarget> =
            v.iter().flat_map(PortEntry::expand).collect();
        assert_eq!(map.len(), 1 + 1000 + 1 + 1 + 1 + 2000);
        let get = |k: &PortKey| map.get(k).copied();
        let host = u32::from_ne_bytes([198, 51, 100, 1]);
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let port = |ip, proto, p| find_port(get, proto, ip, p).map(|(t, w)| (t.container_port, w));
        assert_eq!(port(host, IPPROTO_TCP, 8500), Some((580, true)));
        assert_eq!(port(host, IPPROTO_TCP, 80), Some((8080, true)));
        assert_eq!(port(host, IPPROTO_TCP, 8100), Some((7, false)));
        assert_eq!(port(lo, IPPROTO_TCP, 8100), Some((180, true)));
        assert_eq!(
            port(host, IPPROTO_TCP, 9000),
            None,
            "bound to 127.0.0.1 only"
        );
        assert_eq!(port(lo, IPPROTO_TCP, 9000), Some((90, false)));
        assert_eq!(port(host, IPPROTO_UDP, 80), None);
        assert_eq!(port(host, IPPROTO_UDP, 53), Some((5353, true)));
        assert_eq!(port(host, IPPROTO_TCP, 20001), None);
        assert_eq!(port(host, IPPROTO_TCP, 23998), Some((1, false)));
        assert_eq!(port(0, IPPROTO_TCP, 80), Some((8080, true)));
        assert_eq!(port(0, IPPROTO_TCP, 9000), None);
        let t = map[&PortKey::v4(IPPROTO_TCP, 0, 8999)];
        assert_eq!((t.container_ip[0], t.binding_id), (v[1].container_ip, 8000));
    }

    #[test]
    fn martian_sources() {
        let m = |a: [u8; 4]| is_martian_source(u32::from_ne_bytes(a));
        for a in [
            [0, 0, 0, 0],
            [0, 1, 2, 3],
            [127, 0, 0, 1],
            [127, 255, 0, 9],
            [224, 0, 0, 1],
            [239, 255, 255, 250],
            [240, 0, 0, 1],
            [255, 255, 255, 255],
        ] {
            assert!(m(a), "{a:?} is a martian source");
        }
        for a in [
            [1, 0, 0, 1],
            [126, 1, 1, 1],
            [128, 0, 0, 1],
            [203, 0, 113, 7],
            [223, 255, 255, 255],
        ] {
            assert!(!m(a), "{a:?} is a valid source");
        }
    }

    #[test]
    fn timeouts_eviction_and_the_rst_window() {
        let cfg = DpConfig {
            ct_tcp_syn_s: 60,
            ct_tcp_established_s: 3600,
            ct_tcp_closing_s: 120,
            ct_tcp_time_wait_s: 100,
            ct_tcp_close_s: 10,
            ct_udp_s: 60,
            ct_icmp_s: 0,
            ct_unreplied_s: 30,
            ..Default::default()
        };
        let s = 1_000_000_000;
        let mut e = CtEntry {
            tcp_state: CT_TCP_ESTABLISHED,
            ..Default::default()
        };
        // Unreplied: capped, even a "never" timeout.
        assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), 30 * s);
        assert_eq!(ct_timeout_ns(&e, IPPROTO_ICMP, &cfg), 30 * s);
        assert!(ct_evictable(&e, IPPROTO_TCP));
        e.flags |= CT_F_SEEN_REPLY;
        assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), 3600 * s);
        assert_eq!(ct_timeout_ns(&e, IPPROTO_ICMP, &cfg), 0);
        assert!(!ct_evictable(&e, IPPROTO_TCP));
        for (state, t, evictable) in [
            (CT_TCP_CLOSING, 120, false),
            (CT_TCP_TIME_WAIT, 100, true),
            (CT_TCP_CLOSED, 10, true),
        ] {
            e.tcp_state = state;
            assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), t * s);
            assert_eq!(ct_evictable(&e, IPPROTO_TCP), evictable);
        }
        assert!(!ct_evictable(&e, IPPROTO_UDP), "replied UDP stays");
        for (state, reusable) in [
            (CT_TCP_SYN_SENT, false),
            (CT_TCP_ESTABLISHED, false),
            (CT_TCP_CLOSING, false),
            (CT_TCP_CLOSED, true),
            (CT_TCP_TIME_WAIT, true),
        ] {
            e.tcp_state = state;
            assert_eq!(ct_reusable(&e, IPPROTO_TCP), reusable, "state {state}");
            assert!(!ct_reusable(&e, IPPROTO_UDP), "UDP never");
        }
        assert!(seq_in_window(1000, 1000));
        assert!(seq_in_window(5, u32::MAX - 5), "wraps");
        assert!(seq_in_window(1000 + CT_RST_WINDOW, 1000));
        assert!(!seq_in_window(1001 + CT_RST_WINDOW, 1000));
        assert!(!seq_in_window(1000u32.wrapping_add(0x8000_0000), 1000));
    }

    #[test]
    fn link_ports_and_ct_reverse() {
        let mut lp = LinkPorts {
            count: 2,
            ..Default::default()
        };
        lp.ranges[0] = PortPair { start: 80, end: 80 };
        lp.ranges[1] = PortPair {
            start: 8000,
            end: 8010,
        };
        lp.ranges[2] = PortPair { start: 22, end: 22 };
        assert!(lp.allows(80) && lp.allows(8005) && !lp.allows(22) && !lp.allows(81));
        let k = CtKey::v4(1, 2, 3, 4, IPPROTO_TCP);
        assert_eq!(k.reversed().reversed(), k);
        assert_eq!(k.reversed().saddr[0], 2);
    }
}
