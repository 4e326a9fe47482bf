//! The maps the agent programs (configuration, endpoints, host addresses, uplinks, published
//! ports, links, source filters) and small typed accessors for them. Connection tracking lives
//! in `ct`, fragments in `frag`, counters in `counters`.

use aya_ebpf::{
    btf_maps::{Array, HashMap, LpmTrie, lpm_trie::Key},
    macros::btf_map,
};
use netd_common::{
    CFG_F_ICC, CFG_F_MASQ, DpConfig, ENDPOINTS_MAX, EndpointInfo, FILTER_MAX, HOST_ADDRS_MAX,
    LINKS_MAX, LinkKey, LinkPorts, NET_F_ICC, NET_F_MASQ, NETWORKS_MAX, NetConfig, PORTS_MAX,
    PortKey, PortTarget, UPLINKS_MAX, UplinkInfo, find_port,
};

#[btf_map]
static NETD_CONFIG: Array<DpConfig, 1> = Array::new();

#[btf_map]
static NETD_ENDPOINTS: HashMap<u32, EndpointInfo, { ENDPOINTS_MAX as usize }> = HashMap::new();

#[btf_map]
static NETD_EP_BY_IP: HashMap<u32, EndpointInfo, { ENDPOINTS_MAX as usize }> = HashMap::new();

#[btf_map]
static NETD_HOST_ADDRS: HashMap<u32, u32, { HOST_ADDRS_MAX as usize }> = HashMap::new();

#[btf_map]
static NETD_UPLINKS: HashMap<u32, UplinkInfo, { UPLINKS_MAX as usize }> = HashMap::new();

#[btf_map]
static NETD_PORTS: HashMap<PortKey, PortTarget, { PORTS_MAX as usize }> = HashMap::new();

#[btf_map]
static NETD_LINKS: HashMap<LinkKey, LinkPorts, { LINKS_MAX as usize }> = HashMap::new();

#[btf_map]
static NETD_FILTER_ALLOW: LpmTrie<u32, u32, { FILTER_MAX as usize }> = LpmTrie::new();

#[btf_map]
static NETD_FILTER_DENY: LpmTrie<u32, u32, { FILTER_MAX as usize }> = LpmTrie::new();

#[btf_map]
static NETD_NETWORKS: Array<NetConfig, { NETWORKS_MAX as usize }> = Array::new();

#[btf_map]
static NETD_NET_SUBNETS: LpmTrie<u32, u32, { NETWORKS_MAX as usize }> = LpmTrie::new();

/// No network holds the address.
pub const NO_NET: u32 = u32::MAX;

/// The id of the network whose subnet holds `ip` (network byte order), [`NO_NET`] if none.
/// The default network (0) is also found by DpConfig's subnet, so a dataplane whose agent
/// wrote no NETD_NET_SUBNETS knows its one network.
#[inline(always)]
pub fn net_id(cfg: &DpConfig, ip: u32) -> u32 {
    if let Some(id) = NETD_NET_SUBNETS.get(&lpm_key(ip)) {
        return *id;
    }
    if cfg.in_subnet(ip) { 0 } else { NO_NET }
}

/// Is `ip` (network byte order) inside some network's subnet (a container address)?
#[inline(always)]
pub fn in_networks(cfg: &DpConfig, ip: u32) -> bool {
    net_id(cfg, ip) != NO_NET
}

/// A created network's options (None for the default network, whose options are DpConfig's,
/// and for an id out of range).
#[inline(always)]
pub fn network(id: u32) -> Option<&'static NetConfig> {
    if id == 0 { None } else { NETD_NETWORKS.get(id) }
}

/// `NET_F_*` of network `id` (the default network's from DpConfig's flags).
#[inline(always)]
pub fn net_flags(cfg: &DpConfig, id: u32) -> u32 {
    if id == 0 {
        let mut f = 0;
        if cfg.flags & CFG_F_ICC != 0 {
            f |= NET_F_ICC;
        }
        if cfg.flags & CFG_F_MASQ != 0 {
            f |= NET_F_MASQ;
        }
        return f;
    }
    network(id).map_or(0, |n| n.flags)
}

/// The gateway address of network `id` (network byte order), 0 if unknown.
#[inline(always)]
pub fn net_gateway(cfg: &DpConfig, id: u32) -> u32 {
    match network(id) {
        Some(n) => n.bridge_ip,
        None if id == 0 => cfg.bridge_ip,
        None => 0,
    }
}

/// The bridge MAC of network `id` (all zeroes if unknown).
#[inline(always)]
pub fn net_bridge_mac(cfg: &DpConfig, id: u32) -> [u8; 6] {
    match network(id) {
        Some(n) => n.bridge_mac,
        None if id == 0 => cfg.bridge_mac,
        None => [0; 6],
    }
}

/// The configuration; all zeroes (nothing enabled, no subnet) until the agent writes it. An
/// array slot: always present, and the agent rewrites it in place.
#[inline(always)]
pub fn config() -> Option<&'static DpConfig> {
    NETD_CONFIG.get(0)
}

/// The endpoint whose host-side veth is `ifindex`.
#[inline(always)]
pub fn endpoint(ifindex: u32) -> Option<EndpointInfo> {
    // SAFETY: copied out at once; the agent replaces entries whole.
    unsafe { NETD_ENDPOINTS.get(ifindex).copied() }
}

/// The endpoint whose host-side veth is `ifindex`, in the map (nothing copied to the stack).
#[inline(always)]
pub fn endpoint_ref(ifindex: u32) -> Option<&'static EndpointInfo> {
    // SAFETY: read in place; the agent replaces entries whole.
    unsafe { NETD_ENDPOINTS.get(ifindex) }
}

/// ifindex of the host-side veth of the container at `ip` (network byte order), 0 if unknown.
#[inline(always)]
pub fn endpoint_ifindex(ip: u32) -> u32 {
    // SAFETY: copied out at once.
    unsafe { NETD_EP_BY_IP.get(ip).map_or(0, |e| e.ifindex) }
}

/// The endpoint (container) at `ip` (network byte order).
#[inline(always)]
pub fn endpoint_by_ip(ip: u32) -> Option<EndpointInfo> {
    // SAFETY: copied out at once; the agent replaces entries whole.
    unsafe { NETD_EP_BY_IP.get(ip).copied() }
}

/// Is `ifindex` one of the uplinks?
#[inline(always)]
pub fn is_uplink(ifindex: u32) -> bool {
    NETD_UPLINKS.get_ptr(ifindex).is_some()
}

/// `UPLINK_F_*` of uplink `ifindex` (0 if it is none).
#[inline(always)]
pub fn uplink_flags(ifindex: u32) -> u32 {
    // SAFETY: copied out at once.
    unsafe { NETD_UPLINKS.get(ifindex).map_or(0, |u| u.flags) }
}

/// Is `ip` (network byte order) one of the host namespace's own addresses?
#[inline(always)]
pub fn is_host_addr(ip: u32) -> bool {
    NETD_HOST_ADDRS.get_ptr(ip).is_some()
}

/// The masquerade address of uplink `ifindex`, 0 if none.
#[inline(always)]
pub fn uplink_ip(ifindex: u32) -> u32 {
    // SAFETY: copied out at once.
    unsafe { NETD_UPLINKS.get(ifindex).map_or(0, |u| u.ip) }
}

/// The published-port binding that takes (proto, dst, dport) packets, if any. `dst` and `dport`
/// are network byte order. Wildcard bindings (host_ip 0) only take the host's own addresses;
/// specific ones take their address.
#[inline(always)]
pub fn published_port(proto: u8, dst: u32, dport: u16) -> Option<PortTarget> {
    // SAFETY: copied out at once; the agent replaces entries whole.
    let get = |k: &PortKey| unsafe { NETD_PORTS.get(k).copied() };
    let (t, wildcard) = find_port(get, proto, dst, u16::from_be(dport))?;
    if wildcard && !is_host_addr(dst) {
        return None;
    }
    Some(t)
}

/// The NETD_PORTS entry of `k` itself (no wildcard fallback): IPv6 lookups (`nat6`).
#[inline(always)]
pub fn port_entry(k: &PortKey) -> Option<PortTarget> {
    // SAFETY: copied out at once; the agent replaces entries whole.
    unsafe { NETD_PORTS.get(k).copied() }
}

/// Does a `--link` allowance let `src` reach `dst` on (proto, dport)? `dport` network order.
#[inline(always)]
pub fn link_allows(src: u32, dst: u32, proto: u8, dport: u16) -> bool {
    let key = LinkKey {
        src_ip: src,
        dst_ip: dst,
        proto,
        _pad: [0; 3],
    };
    // SAFETY: read at once; the agent replaces entries whole.
    unsafe { NETD_LINKS.get(key) }.is_some_and(|l| l.allows(u16::from_be(dport)))
}

#[inline(always)]
fn lpm_key(ip: u32) -> Key<u32> {
    Key::new(32, ip)
}

/// Does the source deny list hold `ip` (network byte order)?
#[inline(always)]
pub fn denied(ip: u32) -> bool {
    NETD_FILTER_DENY.get(&lpm_key(ip)).is_some()
}

/// Does the source allow list hold `ip` (network byte order)?
#[inline(always)]
pub fn allowed(ip: u32) -> bool {
    NETD_FILTER_ALLOW.get(&lpm_key(ip)).is_some()
}
