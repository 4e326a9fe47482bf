//! The dataplane's configuration: NETD_CONFIG's one [`DpConfig`] and its `CFG_F_*` flags.

use bytemuck::{Pod, Zeroable};

/// `Array<u32, DpConfig>`, one entry at index 0.
pub const MAP_CONFIG: &str = "NETD_CONFIG";

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
    /// `--ct-per-source-max`: how many unreplied flows opened from outside (published ports,
    /// IPv4 and IPv6) one source address may hold at once (NETD_CT_SRC); 0 = no budget.
    /// (Was the first word of an unused `[u32; 3]`: the layout does not move.)
    pub ct_src_max: u32,
    /// Unused since NETD_PORTS became a hash (was the live half and lengths of a sorted
    /// table); kept so the layout does not move.
    pub _pad_ports: [u32; 2],
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
