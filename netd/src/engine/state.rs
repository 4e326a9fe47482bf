//! Desired state: the records the engine keeps and persists (see [`super::store`] for how:
//! a snapshot plus a journal of changes). Fields added later carry serde defaults, so older
//! snapshots and journal records still load.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::spec::{ExposeSpec, LinkSpec, NetMode, Proto, PublishSpec};

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub network: Option<NetworkState>,
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Source filters for traffic from uplinks to containers (`netd filter`).
    #[serde(default)]
    pub filters: Filters,
    /// Networks created with `netd network create` (the default network is `network`).
    #[serde(default)]
    pub networks: BTreeMap<String, UserNetwork>,
    /// Next published-port binding id (NETD_PORT_STATS key); never reused while running.
    #[serde(default = "first_binding_id")]
    pub next_binding_id: u32,
    /// Addresses handed out by an IPAM front end (Docker's `IpamDriver.RequestAddress`) before
    /// any endpoint holds them, with who holds them: the allocator skips them.
    #[serde(default)]
    pub held: BTreeMap<Ipv4Addr, String>,
    /// The same for IPv6 addresses (Docker's IPv6 pools): the IPv6 allocator skips them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held6: BTreeMap<Ipv6Addr, String>,
    /// The generation of the journal that continues this snapshot (`state.journal`'s header);
    /// 0 in a state.json from before the journal. Kept by [`super::store::Store`].
    #[serde(default)]
    pub journal_gen: u64,
}

fn first_binding_id() -> u32 {
    1
}

/// `netd filter allow|deny`: IPv4 prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    pub allow: Vec<Ipv4Net>,
    pub deny: Vec<Ipv4Net>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            network: None,
            endpoints: BTreeMap::new(),
            filters: Filters::default(),
            networks: BTreeMap::new(),
            next_binding_id: first_binding_id(),
            held: BTreeMap::new(),
            held6: BTreeMap::new(),
            journal_gen: 0,
        }
    }
}

/// The bridge network as set up at daemon start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    pub bridge: String,
    /// The bridge's address with the subnet's prefix length.
    pub bridge_addr: Ipv4Net,
    /// Where container addresses come from (--fixed-cidr, else the subnet).
    pub pool: Ipv4Net,
    pub mtu: u32,
    /// netd created the bridge (false for `-b NAME`).
    pub owned: bool,
}

/// A network made with `netd network create`: its own bridge, subnet and pool, options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNetwork {
    pub name: String,
    pub bridge: String,
    /// The gateway (the bridge's address) with the subnet's prefix length.
    pub bridge_addr: Ipv4Net,
    /// Where container addresses come from (`--ip-range`, else the subnet).
    pub pool: Ipv4Net,
    pub mtu: u32,
    /// `-o com.docker.network.bridge.enable_icc`.
    pub icc: bool,
    /// `-o com.docker.network.bridge.enable_ip_masquerade`.
    pub ip_masq: bool,
    /// `--internal`: no traffic to or from the outside.
    pub internal: bool,
    /// The dataplane's id for it (NETD_NETWORKS index, 1..NETWORKS_MAX; 0 = not yet given:
    /// state written before networks had ids, numbered at start).
    #[serde(default)]
    pub id: u16,
    /// `--ipv6`: containers get IPv6 (link-local, and a global address from `subnet_v6`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv6: bool,
    /// The IPv6 `--subnet` (routed to the bridge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_v6: Option<Ipv6Net>,
    /// `-o com.docker.network.bridge.host_binding_ipv4`: the host address of published ports
    /// that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
}

/// One published port after allocation: host port range -> container port range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// NETD_PORT_STATS key (0 = not yet assigned).
    #[serde(default)]
    pub id: u32,
    pub proto: Proto,
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    /// Number of consecutive ports (1 for a single port).
    pub count: u16,
    /// Published on `[::]` too (the container's IPv6 address): no host address was given
    /// and the daemon has no `--ip`, so `-p 8080:80` takes 0.0.0.0 and [::], as Docker does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub also_v6: bool,
    /// The container has no IPv6 address: the IPv6 side (`[::]` for [`Self::also_v6`], or
    /// the IPv6 host address) is the daemon's NAT46 relay to its IPv4 address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relay46: bool,
}

/// What netd last wrote into each of the container's files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub hostname: String,
    pub hosts: String,
    pub resolv_conf: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub netns: PathBuf,
    pub net: NetMode,
    /// The network of a bridged endpoint: `None` is the default network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The container-side interface name (state from before it was chosen: eth0).
    #[serde(default = "default_ifname")]
    pub ifname: String,
    pub hostname: String,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
    pub gateway: Option<Ipv4Addr>,
    pub host_ifname: Option<String>,
    /// ifindex of the host-side veth (kept so syncing the maps needs no netlink round trip).
    #[serde(default)]
    pub host_ifindex: Option<u32>,
    pub etc_dir: PathBuf,
    pub publish: Vec<PublishSpec>,
    pub publish_all: bool,
    pub ports: Vec<PortBinding>,
    pub exposed: Vec<ExposeSpec>,
    pub links: Vec<LinkSpec>,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    /// Point-to-point peers: (peer name, our interface name in our namespace).
    #[serde(default)]
    pub p2p: Vec<(String, String)>,
    pub written: Written,
    /// false: the runtime holds the published host ports itself (rootful podman's conmon), so
    /// the daemon keeps no reservation sockets for them.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub reserve_ports: bool,
    /// Wired by hand-over (Docker's libnetwork moved the container end into `netns` itself,
    /// which may lie in another mount namespace): the host veth's presence says whether the
    /// endpoint lives, not the namespace path.
    #[serde(default)]
    pub handed_over: bool,
    /// IPv6 addresses and gateway (`--ipv6` networks only): see [`Endpoint::ipv6`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Lease>,
    /// Uplinks on which netd keeps an NDP proxy entry for the global IPv6 address (its
    /// subnet lies inside the uplink's on-link prefix); removed on detach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ndp_proxy: Vec<String>,
}

/// A container's IPv6 addresses, as the seed's "IPv6 with Docker" shows them:
/// `fe80::42:acff:fe11:3/64` from the MAC, `2001:db8:1::242:ac11:3/64` from the subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Lease {
    /// The EUI-64 link-local address of the container's MAC (prefix fe80::/64).
    pub link_local: Ipv6Addr,
    /// The global address (`--fixed-cidr-v6` / the network's IPv6 subnet, or `--ip6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Ipv6Addr>,
    /// The prefix length of the global address (its subnet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u8>,
    /// The default route's next hop (`--default-gateway-v6`, else fe80::1 on the bridge).
    pub gateway: Ipv6Addr,
}

fn default_ifname() -> String {
    super::DEFAULT_IFNAME.to_string()
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Endpoint {
    /// The endpoint's IPv6 addresses (link-local and global) and gateway, `None` when its
    /// network has no IPv6. This is what the dataplane's IPv6 policy needs per endpoint
    /// (anti-spoofing: the container may send from `link_local` and `global`).
    pub fn ipv6(&self) -> Option<&Ipv6Lease> {
        self.ipv6.as_ref()
    }

    /// resolv.conf follows the host's file (no --dns/--dns-search, here or on the daemon).
    pub fn follows_host_resolv(&self, daemon_dns: &[IpAddr], daemon_search: &[String]) -> bool {
        self.dns.is_empty()
            && self.dns_search.is_empty()
            && daemon_dns.is_empty()
            && daemon_search.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file {path} has version {found}, this netd reads version {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("state journal {path} is damaged at offset {offset}: {why}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
