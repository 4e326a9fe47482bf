//! The command line: `netd daemon` and the client subcommands that talk to it.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

/// Default API socket, as Docker's `-H unix:///var/run/docker.sock`.
pub const DEFAULT_HOST: &str = "unix:///run/netd/netd.sock";

#[derive(Debug, Parser)]
#[command(
    name = "netd",
    version,
    about = "eBPF-accelerated container networking"
)]
pub struct Cli {
    /// API socket of the daemon to talk to.
    #[arg(short = 'H', long = "host", global = true, default_value = DEFAULT_HOST, value_name = "unix:///PATH")]
    pub host: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: bridge, endpoints, eBPF dataplane and the API.
    Daemon(Box<DaemonArgs>),
    /// Wire a container's network namespace to netd.
    // `-h` is --hostname, as in `docker run`; help stays on --help.
    #[command(disable_help_flag = true)]
    Attach(Box<AttachArgs>),
    /// Remove a container's networking (veth, address lease, files, port bindings).
    Detach { name: String },
    /// List attached containers.
    Ls,
    /// Show one container as JSON.
    Inspect { name: String },
    /// Show a container's published ports, like `docker port`.
    Port {
        name: String,
        /// Only this container port, e.g. 80 or 80/udp.
        port: Option<String>,
    },
    /// Publish more ports on an attached container (same SPEC grammar as `attach -p`).
    Publish {
        name: String,
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<String>,
    },
    /// Join two attached containers with a direct veth pair and /32 routes.
    P2p { name1: String, name2: String },
    /// Show the bridge, uplinks, attached programs, counters and map usage as JSON.
    Status,
    /// Source filters for traffic from the uplinks to containers (XDP).
    Filter {
        #[command(subcommand)]
        action: FilterAction,
    },
    /// Drops per reason and traffic per published port.
    Stats {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Connection-tracking entries (both directions of each flow).
    Ct {
        /// Only flows with this address (before or after translation).
        #[arg(long)]
        ip: Option<String>,
        /// Only tcp, udp or icmp.
        #[arg(long)]
        proto: Option<String>,
        /// Only flows with this port (before or after translation).
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FilterAction {
    /// Only these sources may open connections to containers (an empty list allows all).
    Allow {
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
    },
    /// These sources may not open connections to containers.
    Deny {
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
    },
    /// Remove prefixes from either list.
    Rm {
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
    },
    /// Show both lists.
    Ls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneMode {
    Ebpf,
    None,
}

#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct DaemonArgs {
    /// Interface that faces the outside world (repeatable; default: every interface but lo,
    /// the bridge, bridge/bond ports, container veths and non-Ethernet devices, followed).
    #[arg(long = "uplink", value_name = "IFACE")]
    pub uplinks: Vec<String>,
    /// Use this existing bridge instead of creating netd0.
    #[arg(short = 'b', long = "bridge", value_name = "NAME")]
    pub bridge: Option<String>,
    /// Bridge address and subnet, e.g. 172.30.0.1/16.
    #[arg(long, value_name = "CIDR")]
    pub bip: Option<String>,
    /// Range inside the bridge subnet that container addresses come from.
    #[arg(long = "fixed-cidr", value_name = "CIDR")]
    pub fixed_cidr: Option<String>,
    /// MTU of the bridge and container interfaces.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub mtu: Option<u32>,
    /// Inter-container communication.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub icc: bool,
    /// Default host address for published ports.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub ip: IpAddr,
    /// Enable IPv4 forwarding in the daemon's network namespace.
    #[arg(long = "ip-forward", value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub ip_forward: bool,
    /// Masquerade container traffic leaving through the uplinks.
    #[arg(long = "ip-masq", value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub ip_masq: bool,
    /// Default gateway given to containers instead of the bridge address.
    #[arg(long = "default-gateway", value_name = "IP")]
    pub default_gateway: Option<String>,
    /// DNS server for containers (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS search domain for containers (repeatable; "." for none).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// The host resolv.conf that containers' copies follow.
    #[arg(
        long = "resolv-conf",
        value_name = "PATH",
        default_value = "/etc/resolv.conf"
    )]
    pub resolv_conf: PathBuf,
    /// Where desired state is kept.
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        default_value = "/var/lib/netd"
    )]
    pub state_dir: PathBuf,
    /// bpffs directory for pinned maps and links (mounted when it is not a bpffs).
    #[arg(long = "bpffs", value_name = "DIR", default_value = "/sys/fs/bpf/netd")]
    pub bpffs: PathBuf,
    /// Connection-tracking table size (entries, two per flow); a full table refuses new flows.
    /// Takes effect when the table is created (a pinned table keeps its size).
    #[arg(long = "ct-max", value_name = "N", default_value_t = netd_common::CT_MAX_DEFAULT,
          value_parser = clap::value_parser!(u32).range(2..))]
    #[serde(default = "default_ct_max")]
    pub ct_max: u32,
    /// cgroup v2 directory for socket hooks (default: the cgroup v2 mount).
    #[arg(long = "cgroup", value_name = "DIR")]
    pub cgroup: Option<PathBuf>,
    /// How TC programs are attached: tcx (kernel >= 6.6), netlink (clsact filters) or auto
    /// (tcx when the kernel has it); default: $NETD_TC_ATTACH, else auto.
    #[arg(long = "tc-attach", value_name = "auto|tcx|netlink", value_enum)]
    #[serde(default)]
    pub tc_attach: Option<crate::dataplane::TcAttachMode>,
    /// eBPF dataplane, or none (wiring only).
    #[arg(long, value_enum, default_value = "ebpf")]
    pub dataplane: DataplaneMode,
    /// Translated traffic skips the host's routing (redirected between uplinks and
    /// containers); default: $NETD_FAST_PATH, else true.
    #[arg(long = "fast-path", value_name = "BOOL", action = ArgAction::Set)]
    #[serde(default)]
    pub fast_path: Option<bool>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// Container name (unique).
    pub name: String,
    /// The container's network namespace, e.g. /var/run/netns/web or /proc/PID/ns/net.
    #[arg(long, value_name = "PATH")]
    pub netns: PathBuf,
    /// Network mode.
    #[arg(
        long,
        value_name = "bridge|host|none|container:NAME",
        default_value = "bridge"
    )]
    pub net: String,
    /// Hostname of the container (default: its name), written to its hostname and hosts files.
    #[arg(long, short = 'h', value_name = "H")]
    pub hostname: Option<String>,
    /// MAC address of eth0 (default: 02:42 followed by the four bytes of the IP).
    #[arg(long = "mac-address", value_name = "MAC")]
    pub mac_address: Option<String>,
    /// IPv4 address from the container range (default: the lowest free one).
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Where the container's hostname, hosts and resolv.conf are written.
    #[arg(long = "etc-dir", value_name = "DIR")]
    pub etc_dir: Option<PathBuf>,
    /// Publish a container port: [ip:][hostPort:]containerPort[/proto], ranges allowed.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every exposed port on an ephemeral host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or range to linked containers.
    #[arg(long, value_name = "PORT[-PORT][/PROTO]")]
    pub expose: Vec<String>,
    /// Link to another container: NAME[:ALIAS].
    #[arg(long, value_name = "NAME[:ALIAS]")]
    pub link: Vec<String>,
    /// DNS server for this container's resolv.conf (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS search domain for this container (repeatable; "." for none).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

impl Cli {
    /// The socket path from `-H unix:///PATH`.
    pub fn socket_path(host: &str) -> Result<PathBuf, String> {
        match host.strip_prefix("unix://") {
            Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
            _ => Err(format!(
                "invalid -H {host:?}: expected unix:///absolute/path (only Unix sockets are served)"
            )),
        }
    }
}

fn default_ct_max() -> u32 {
    netd_common::CT_MAX_DEFAULT
}
