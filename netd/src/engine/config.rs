//! The engine's configuration: the default network and the dataplane (the daemon's flags,
//! parsed by the CLI front end).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::Ipv4Net;

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
    pub ip: IpAddr,
    pub ip_forward: bool,
    pub ip_masq: bool,
    pub default_gateway: Option<Ipv4Addr>,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub resolv_conf: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    /// `--ct-max`: size of the connection-tracking table.
    pub ct_max: u32,
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
