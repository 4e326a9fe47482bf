//! What front ends ask the engine for, already parsed: the engine never sees a string it has
//! to parse (the CLI's and the HTTP API's grammars live in [`crate::spec`] and the front ends).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::spec::{ExposeSpec, LinkSpec, NetMode, Proto, PublishSpec};

/// The container-side interface name when the front end names none (Docker's).
pub const DEFAULT_IFNAME: &str = "eth0";

/// One endpoint to create (`netd attach`, the API's `POST /v1/endpoints`).
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    /// Unique container name.
    pub name: String,
    /// The container's network namespace (a bind-mounted netns or /proc/PID/ns/net).
    pub netns: PathBuf,
    /// Where to open the namespace for this request instead of `netns`: a
    /// `/proc/<pid>/fd/<n>` of a client that holds it open until the answer (the CNI plugin,
    /// whose `CNI_NETNS` is a bind mount in another mount namespace). Only `netns` is kept.
    pub netns_handle: Option<PathBuf>,
    pub net: NetMode,
    /// With `--net bridge`: a network made with `netd network create` (`None`: the default).
    pub network: Option<String>,
    /// Name of the interface inside the container ([`DEFAULT_IFNAME`] unless asked otherwise).
    pub ifname: String,
    /// Default: the container name (the host's name with `--net host`, the target's with
    /// `--net container:NAME`).
    pub hostname: Option<String>,
    /// Default: derived from the address ([`super::ipam::mac_from_ipv4`]).
    pub mac: Option<[u8; 6]>,
    /// Default: the lowest free address of the pool.
    pub ip: Option<Ipv4Addr>,
    /// `--ip6`. Default (on an IPv6 network with a subnet): the subnet's prefix and the MAC
    /// for a /80 or larger, else the lowest free address.
    pub ip6: Option<Ipv6Addr>,
    /// Default: `<state dir>/containers/<name>`.
    pub etc_dir: Option<PathBuf>,
    pub publish: Vec<PublishSpec>,
    pub publish_all: bool,
    pub expose: Vec<ExposeSpec>,
    pub links: Vec<LinkSpec>,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    /// Hold a socket on each published host port against host processes (default). false:
    /// the runtime holds them itself (rootful podman with `enable_port_reservation`).
    pub reserve_ports: bool,
    /// Leave the container end of the veth pair in the daemon's namespace under its temporary
    /// name (the engine's [`super::handover_peer_name`]) instead of moving it into `netns`:
    /// Docker's libnetwork moves, renames and addresses it itself after `Join`.
    pub hand_over: bool,
}

impl EndpointSpec {
    /// A `--net bridge` endpoint with every option at its default.
    pub fn new(name: impl Into<String>, netns: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            netns: netns.into(),
            netns_handle: None,
            net: NetMode::Bridge,
            network: None,
            ifname: DEFAULT_IFNAME.to_string(),
            hostname: None,
            mac: None,
            ip: None,
            ip6: None,
            etc_dir: None,
            publish: Vec::new(),
            publish_all: false,
            expose: Vec::new(),
            links: Vec::new(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            reserve_ports: true,
            hand_over: false,
        }
    }
}

/// `netd filter allow|deny|rm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    Allow,
    Deny,
    Rm,
}

impl FilterAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterAction::Allow => "allow",
            FilterAction::Deny => "deny",
            FilterAction::Rm => "rm",
        }
    }
}

/// A change to the source filters: one action on a list of prefixes.
#[derive(Debug, Clone)]
pub struct FilterChange {
    pub action: FilterAction,
    pub cidrs: Vec<Ipv4Net>,
}

/// Protocols of tracked flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtProto {
    Tcp,
    Udp,
    Icmp,
}

impl CtProto {
    pub fn number(self) -> u8 {
        match self {
            CtProto::Tcp => Proto::Tcp.number(),
            CtProto::Udp => Proto::Udp.number(),
            CtProto::Icmp => 1,
        }
    }
}

/// `netd ct`: which tracked flows to show (every field that is set must match).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtQuery {
    /// An address of the flow, before or after translation.
    pub ip: Option<Ipv4Addr>,
    pub proto: Option<CtProto>,
    /// A port of the flow, before or after translation.
    pub port: Option<u16>,
}

/// `netd network create` (Docker's `docker network create` flags and `-o` options).
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub name: String,
    /// `--subnet` (default: the first free private subnet).
    pub subnet: Option<Ipv4Net>,
    /// `--gateway`: the bridge's address (default: the subnet's first host).
    pub gateway: Option<Ipv4Addr>,
    /// `--ip-range`: where container addresses come from (default: the subnet).
    pub ip_range: Option<Ipv4Net>,
    /// `-o com.docker.network.bridge.name` (default: br-<random>).
    pub bridge: Option<String>,
    /// `-o com.docker.network.bridge.enable_icc` (default true).
    pub icc: bool,
    /// `-o com.docker.network.bridge.enable_ip_masquerade` (default true).
    pub ip_masq: bool,
    /// `-o com.docker.network.driver.mtu` (default: the default network's).
    pub mtu: Option<u32>,
    /// `--internal`.
    pub internal: bool,
    /// `--ipv6`: dual stack (containers get IPv6 addresses).
    pub ipv6: bool,
    /// The IPv6 `--subnet` (needs `ipv6`).
    pub subnet_v6: Option<Ipv6Net>,
    /// `-o com.docker.network.bridge.host_binding_ipv4`: the host address of its containers'
    /// published ports that name none (default: the daemon's `--ip`, else 0.0.0.0 and [::]).
    pub host_ip: Option<Ipv4Addr>,
}

impl NetworkSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            subnet: None,
            gateway: None,
            ip_range: None,
            bridge: None,
            icc: true,
            ip_masq: true,
            mtu: None,
            internal: false,
            ipv6: false,
            subnet_v6: None,
            host_ip: None,
        }
    }
}
