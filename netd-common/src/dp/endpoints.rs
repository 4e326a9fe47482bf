//! Endpoints (containers' host-side veths), the host's addresses, uplinks and networks.

use bytemuck::{Pod, Zeroable};

/// `HashMap<u32 ifindex, EndpointInfo>`: container host-side veths.
pub const MAP_ENDPOINTS: &str = "NETD_ENDPOINTS";
/// `HashMap<u32 ipv4 (nbo), EndpointInfo>`: the same endpoints by address.
pub const MAP_EP_BY_IP: &str = "NETD_EP_BY_IP";
/// `HashMap<u32 ipv4 (nbo), u32 ifindex>`: every local address of the host namespace.
pub const MAP_HOST_ADDRS: &str = "NETD_HOST_ADDRS";
/// `HashMap<u32 ifindex, UplinkInfo>`: uplinks and the address masquerade uses on each.
pub const MAP_UPLINKS: &str = "NETD_UPLINKS";
/// `Array<u32 net_id, NetConfig>` with [`NETWORKS_MAX`] slots: the networks' options. Slot 0
/// is the default network, whose options the programs read from [`DpConfig`](super::DpConfig) (the agent
/// mirrors them here for tools).
pub const MAP_NETWORKS: &str = "NETD_NETWORKS";
/// `LpmTrie<u32 ipv4 (nbo), u32 net_id>`: each network's subnet → its id.
pub const MAP_NET_SUBNETS: &str = "NETD_NET_SUBNETS";

pub const ENDPOINTS_MAX: u32 = 16384;
pub const HOST_ADDRS_MAX: u32 = 1024;
pub const UPLINKS_MAX: u32 = 64;
/// Networks the dataplane knows (net ids 0..NETWORKS_MAX; 0 = the default network).
pub const NETWORKS_MAX: u32 = 256;

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
