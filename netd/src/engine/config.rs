//! The engine's configuration: the default network and the dataplane (the daemon's flags,
//! parsed by the CLI front end).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};

/// `--dataplane`: the eBPF programs, or wiring only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataplaneMode {
    Ebpf,
    None,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub uplinks: Vec<String>,
    /// `-b NAME`: adopt this bridge instead of creating one.
    pub adopt_bridge: Option<String>,
    pub bip: Option<Ipv4Net>,
    pub fixed_cidr: Option<Ipv4Net>,
    pub mtu: Option<u32>,
    pub icc: bool,
    /// The daemon's `--ip`; None: 0.0.0.0 and, for containers with IPv6, [::].
    pub ip: Option<IpAddr>,
    pub ip_forward: bool,
    pub ip_masq: bool,
    pub default_gateway: Option<Ipv4Addr>,
    /// `--ipv6`: the default network is dual stack (the bridge gets fe80::1/64, containers
    /// a link-local address from their MAC, and a global one with `--fixed-cidr-v6`).
    pub ipv6: bool,
    /// `--fixed-cidr-v6`: the containers' IPv6 subnet, routed to the bridge (a network
    /// address, /126 or shorter; checked by the front end).
    pub fixed_cidr_v6: Option<Ipv6Net>,
    /// `--default-gateway-v6`: the containers' IPv6 next hop instead of fe80::1 (inside
    /// `fixed_cidr_v6`).
    pub default_gateway_v6: Option<Ipv6Addr>,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub resolv_conf: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    /// `--ct-max`: size of the connection-tracking table.
    pub ct_max: u32,
    /// `--ct-per-source-max`: unreplied flows from outside one source may hold (0 = any).
    pub ct_per_source_max: u32,
    /// `--masq-ports`: the SNAT source port range (inclusive), reserved from the host's
    /// ephemeral port allocator.
    pub masq_ports: (u16, u16),
    pub cgroup: Option<PathBuf>,
    pub dataplane: DataplaneMode,
    /// `--tc-attach`, else `NETD_TC_ATTACH`, else auto.
    pub tc_attach: crate::dataplane::TcAttachMode,
    /// `--fast-path`: translated traffic is redirected between uplinks and containers.
    pub fast_path: bool,
}

pub const DEFAULT_BRIDGE: &str = "netd0";

impl Config {
    pub fn bridge_name(&self) -> &str {
        self.adopt_bridge.as_deref().unwrap_or(DEFAULT_BRIDGE)
    }
}
