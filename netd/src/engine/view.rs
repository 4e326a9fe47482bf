//! What the engine answers: endpoints, status and statistics as plain serialisable values.
//! Front ends print them (the CLI) or send them as they are (the HTTP API).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::state::Endpoint;
use super::{DEFAULT_NETWORK, Engine};
use crate::spec::{self, NetMode};

/// One published port as `netd inspect` and `netd port` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub container_port: u16,
    pub proto: String,
    pub host_ip: String,
    pub host_port: u16,
    /// `::` when the port is published on `[::]` too (`-p 8080:80` without `--ip` takes
    /// 0.0.0.0 and `[::]`, as Docker does): `netd ls` lists both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip6: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposeView {
    pub port: String,
    pub proto: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    pub name: String,
    pub alias: String,
}

/// `netd inspect NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointView {
    pub name: String,
    pub netns: PathBuf,
    pub net: String,
    /// The network of a `--net bridge` container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The container's interface on the bridge (`--net bridge` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    pub ip: Option<String>,
    pub prefix_len: Option<u8>,
    pub mac: Option<String>,
    pub gateway: Option<String>,
    /// Docker's GlobalIPv6Address / GlobalIPv6PrefixLen / LinkLocalIPv6Address /
    /// IPv6Gateway (IPv6 networks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_ipv6_prefix_len: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_local_ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway: Option<String>,
    pub hostname: String,
    pub host_ifname: Option<String>,
    pub etc_dir: PathBuf,
    pub ports: Vec<PortView>,
    pub exposed: Vec<ExposeView>,
    pub links: Vec<LinkView>,
    pub p2p: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BridgeView {
    pub name: String,
    pub subnet: String,
    pub ip: String,
    pub pool: String,
    pub mtu: u32,
    pub owned: bool,
}

/// `netd status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// `reconciling` while a restarted daemon still reconciles its saved endpoints with the
    /// dataplane (reads are answered, changes wait), `ready` after.
    #[serde(default)]
    pub state: String,
    pub bridge: BridgeView,
    pub uplinks: Vec<String>,
    pub dataplane: String,
    pub endpoints: usize,
    pub icc: bool,
    pub ip_masq: bool,
    pub ip_forward: bool,
    /// Attached programs, maps and counters (empty with `--dataplane none`).
    #[serde(flatten)]
    pub ebpf: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DropCount {
    pub reason: String,
    pub code: u32,
    pub packets: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindingStats {
    pub container: String,
    pub proto: String,
    pub host_ip: String,
    pub host_port: String,
    pub container_port: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The NAT46 relay's counters (IPv6 clients of containers without IPv6), as `netd stats`
/// shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStats {
    /// Listening sockets (one per relayed port and protocol).
    pub listeners: u64,
    pub tcp_active: u64,
    pub tcp_total: u64,
    /// Connections closed at once: `relay46::TCP_MAX` were open.
    pub tcp_refused: u64,
    /// Connections the container did not accept (refused, timed out).
    pub tcp_failed: u64,
    pub udp_flows_active: u64,
    pub udp_flows_total: u64,
    /// Datagrams dropped: no flow could be made (`relay46::UDP_FLOWS_MAX`, no socket) or a socket
    /// buffer was full.
    pub udp_dropped: u64,
    /// Bytes relayed to the container and back: UDP payload as it goes, TCP when a connection
    /// ends with both directions closed cleanly (a reset one is not counted).
    pub bytes_to_container: u64,
    pub bytes_from_container: u64,
}

/// An outside source holding flows of its `--ct-per-source-max` budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CtSourceView {
    pub addr: String,
    /// Unanswered flows from outside counted in its current window.
    pub flows: u64,
}

/// `netd stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsView {
    pub drops: Vec<DropCount>,
    /// `--ct-per-source-max`: the budget (0 = none) and the sources holding the most of it.
    #[serde(default)]
    pub ct_per_source_max: u32,
    #[serde(default)]
    pub ct_sources: Vec<CtSourceView>,
    pub bindings: Vec<BindingStats>,
    pub interfaces: serde_json::Value,
    #[serde(default)]
    pub relay46: RelayStats,
}

/// `netd network inspect NAME` (and one row of `netd network ls`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkView {
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    pub ip_range: String,
    /// The IPv6 subnet of a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_v6: Option<String>,
    /// `--ipv6` (`--ipv6` on the daemon for the default network).
    #[serde(default)]
    pub ipv6: bool,
    pub mtu: u32,
    pub icc: bool,
    pub ip_masq: bool,
    pub internal: bool,
    /// `-o com.docker.network.bridge.host_binding_ipv4`: the default host address of its
    /// published ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_binding_ipv4: Option<String>,
    /// The network the daemon's flags describe (it cannot be removed).
    pub default: bool,
    /// Attached containers.
    pub endpoints: Vec<String>,
}

/// `e` as `netd inspect` shows it; `prefix_len` is its network's.
pub(super) fn endpoint_view(e: &Endpoint, prefix_len: u8) -> EndpointView {
    let bridged = e.ip.is_some() && !matches!(e.net, NetMode::Host | NetMode::None);
    EndpointView {
        name: e.name.clone(),
        netns: e.netns.clone(),
        // A created network shows by its name, as Docker's NetworkMode does.
        net: match (&e.net, &e.network) {
            (NetMode::Bridge, Some(n)) => n.clone(),
            _ => e.net.to_string(),
        },
        network: bridged.then(|| {
            e.network
                .clone()
                .unwrap_or_else(|| DEFAULT_NETWORK.to_string())
        }),
        ifname: bridged.then(|| e.ifname.clone()),
        ip: e.ip.map(|i| i.to_string()),
        prefix_len: bridged.then_some(prefix_len),
        mac: e.mac.as_ref().map(spec::format_mac),
        gateway: e.gateway.map(|g| g.to_string()),
        global_ipv6: e.ipv6().and_then(|l| l.global).map(|a| a.to_string()),
        global_ipv6_prefix_len: e.ipv6().and_then(|l| l.prefix_len),
        link_local_ipv6: e.ipv6().map(|l| l.link_local.to_string()),
        ipv6_gateway: e.ipv6().map(|l| l.gateway.to_string()),
        hostname: e.hostname.clone(),
        host_ifname: e.host_ifname.clone(),
        etc_dir: e.etc_dir.clone(),
        ports: super::port_views(&e.ports),
        exposed: e
            .exposed
            .iter()
            .map(|x| ExposeView {
                port: x.ports.to_string(),
                proto: x.proto.to_string(),
            })
            .collect(),
        links: e
            .links
            .iter()
            .map(|l| LinkView {
                name: l.name.clone(),
                alias: l.alias.clone(),
            })
            .collect(),
        p2p: e.p2p.iter().map(|(peer, _)| peer.clone()).collect(),
        dns: e.dns.iter().map(IpAddr::to_string).collect(),
        dns_search: e.dns_search.clone(),
    }
}

/// The saved endpoints, for reads answered while the engine is busy (a restarted daemon's
/// reconcile holds it for seconds): a copy of their records, made into views only when asked
/// (the views of 65 000 published ports take longer to make than the records to copy).
pub struct SavedEndpoints {
    endpoints: BTreeMap<String, Endpoint>,
    /// Prefix length by network name (None: the default network).
    prefix_lens: HashMap<Option<String>, u8>,
}

impl SavedEndpoints {
    fn view(&self, e: &Endpoint) -> EndpointView {
        let prefix_len = self
            .prefix_lens
            .get(&e.network)
            .or_else(|| self.prefix_lens.get(&None))
            .copied()
            .unwrap_or_default();
        endpoint_view(e, prefix_len)
    }

    /// What [`Engine::list`] answered when the copy was taken.
    pub fn list(&self) -> Vec<EndpointView> {
        self.endpoints.values().map(|e| self.view(e)).collect()
    }

    /// What [`Engine::inspect`] answered for `name`, None for an unknown name.
    pub fn inspect(&self, name: &str) -> Option<EndpointView> {
        self.endpoints.get(name).map(|e| self.view(e))
    }
}

impl Engine {
    /// A copy of the endpoints for [`SavedEndpoints`]' answers.
    pub fn saved_endpoints(&self) -> SavedEndpoints {
        let mut prefix_lens: HashMap<Option<String>, u8> = self
            .state
            .networks
            .keys()
            .map(|n| {
                (
                    Some(n.clone()),
                    self.segment(Some(n)).bridge_addr.prefix_len(),
                )
            })
            .collect();
        prefix_lens.insert(None, self.segment(None).bridge_addr.prefix_len());
        SavedEndpoints {
            endpoints: self.state.endpoints.clone(),
            prefix_lens,
        }
    }
}
