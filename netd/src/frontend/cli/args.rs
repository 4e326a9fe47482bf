//! The command line's grammar (clap): `netd daemon` and the client subcommands that talk to it.

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
    /// No progress output (it is shown only on a terminal anyway, on stderr).
    #[arg(long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum DockerPluginCommand {
    /// Write DIR/netd.spec holding the daemon's API socket URL (-H).
    Install {
        /// Docker's plugin spec directory.
        #[arg(long, value_name = "DIR", default_value = "/etc/docker/plugins")]
        dest: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: bridge, endpoints, eBPF dataplane and the API.
    Daemon(Box<DaemonArgs>),
    /// Check this host for what netd needs (kernel features, mounts, sysctls) and for other
    /// TC/XDP programs or firewall rules that would interfere; exits 1 when something must be
    /// fixed.
    Doctor {
        /// Interface to check for other programs (repeatable; default: every interface).
        #[arg(long = "uplink", value_name = "IFACE")]
        interfaces: Vec<String>,
        /// netd's bpffs directory.
        #[arg(long = "bpffs", value_name = "DIR", default_value = "/sys/fs/bpf/netd")]
        bpffs: PathBuf,
        /// cgroup v2 directory for the socket hooks (default: the cgroup v2 mount).
        #[arg(long = "cgroup", value_name = "DIR")]
        cgroup: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `netd completion bash > /etc/bash_completion.d/netd`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Version, the git commit it was built from, and the embedded eBPF objects' SHA-256.
    Version {
        #[arg(long)]
        json: bool,
    },
    /// Write man pages (netd.1, netd-SUBCOMMAND.1) into DIR (what `cargo xtask man` runs).
    #[command(hide = true)]
    Man {
        #[arg(long, value_name = "DIR")]
        dest: PathBuf,
    },
    /// CNI (podman): install the netd-cni plugin and a conflist for a netd network.
    Cni {
        #[command(subcommand)]
        action: CniAction,
    },
    /// Write the systemd unit (netd.service, Type=notify) for this binary into a directory.
    InstallUnit {
        /// Directory to write netd.service into.
        #[arg(long, value_name = "DIR", default_value = crate::ops::unit::DEFAULT_UNIT_DIR)]
        dest: PathBuf,
        /// The netd binary the unit starts (default: this one).
        #[arg(long, value_name = "PATH")]
        bin: Option<PathBuf>,
        /// Replace an existing netd.service.
        #[arg(long)]
        force: bool,
    },
    /// Docker integration: `netd docker-plugin install` writes the spec file (netd.spec, the
    /// API socket's URL) through which dockerd finds netd as network and IPAM driver `netd`.
    DockerPlugin {
        #[command(subcommand)]
        command: DockerPluginCommand,
    },
    /// Wire a container's network namespace to netd.
    // `-h` is --hostname, as in `docker run`; help stays on --help.
    #[command(disable_help_flag = true)]
    Attach(Box<AttachArgs>),
    /// Remove a container's networking (veth, address lease, files, port bindings).
    Detach { name: String },
    /// List attached containers.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one container as JSON.
    Inspect { name: String },
    /// Show a container's published ports, like `docker port`.
    Port {
        name: String,
        /// Only this container port, e.g. 80 or 80/udp.
        port: Option<String>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Publish more ports on an attached container (same SPEC grammar as `attach -p`).
    Publish {
        name: String,
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<String>,
    },
    /// Networks: create, remove, list, inspect (Docker's `docker network` verbs and flags).
    Network {
        #[command(subcommand)]
        action: NetworkAction,
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
    /// Live datapath events: every dropped packet with its reason, interface, container and
    /// 5-tuple, like `cilium monitor` (Ctrl-C to stop).
    Monitor(MonitorArgs),
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

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Event types to show: drop, flow (new, closed, expired conntrack flows), verdict (the
    /// rule that let a new flow in), or all (repeatable; default: drop).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only drops for this reason (a `netd stats` name or its number; repeatable).
    #[arg(long = "reason", value_name = "REASON")]
    pub reasons: Vec<String>,
    /// Only drops of this container (its interface, or its address at either end).
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// Only packets with this source or destination port.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Print each event as one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Also write the dropped packets' first bytes to FILE as a pcap (tcpdump -r FILE).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Stop after N events (drops, flows, verdicts).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum CniAction {
    /// Copy netd-cni into a CNI plugin dir and write DIR/NAME.conflist for a netd network
    /// (the plugin talks to the daemon at -H).
    Install {
        /// CNI plugin directory (podman: cni_plugin_dirs).
        #[arg(long, value_name = "DIR", default_value = "/usr/local/lib/cni")]
        dir: PathBuf,
        /// CNI config directory (podman: network_config_dir).
        #[arg(
            long = "conf-dir",
            value_name = "DIR",
            default_value = "/etc/cni/net.d"
        )]
        conf_dir: PathBuf,
        /// The netd network (`netd network create NAME`).
        #[arg(long, value_name = "NAME")]
        network: String,
        /// The CNI network name podman shows (default: the netd network's).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The plugin binary (default: netd-cni next to this netd).
        #[arg(long, value_name = "PATH")]
        plugin: Option<PathBuf>,
        /// Replace an existing conflist.
        #[arg(long)]
        force: bool,
        /// The runtime holds published host ports itself (podman with
        /// enable_port_reservation=true, its default): netd then keeps no reservation.
        #[arg(long = "runtime-reserves-ports")]
        runtime_reserves_ports: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NetworkAction {
    /// Create a network with its own bridge and subnet.
    Create {
        name: String,
        /// Only `bridge`.
        #[arg(short = 'd', long, value_name = "DRIVER", default_value = "bridge")]
        driver: String,
        /// The network's subnet (default: the first free private one); repeat it with an
        /// IPv6 subnet for a dual-stack network (with --ipv6).
        #[arg(long, value_name = "CIDR")]
        subnet: Vec<String>,
        /// Dual stack: containers get IPv6 addresses (from the IPv6 --subnet).
        #[arg(long)]
        ipv6: bool,
        /// The bridge's address (default: the subnet's first host).
        #[arg(long, value_name = "IP")]
        gateway: Option<String>,
        /// Where container addresses come from (default: the subnet).
        #[arg(long = "ip-range", value_name = "CIDR")]
        ip_range: Option<String>,
        /// Driver option, e.g. com.docker.network.bridge.enable_icc=false (repeatable).
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
        /// No traffic to or from the outside.
        #[arg(long)]
        internal: bool,
        /// The `-o` keys as flags (--icc, --ip-masq, --mtu, --bridge).
        #[command(flatten)]
        flags: super::netopts::NetworkFlags,
    },
    /// Remove networks (refused while containers are attached, and for the default network).
    Rm {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// List networks.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one network as JSON.
    Inspect { name: String },
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
    Ls {
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneArg {
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
    /// Default host address for published ports (without it: 0.0.0.0, and [::] too for
    /// containers with an IPv6 address, as Docker publishes).
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    /// Enable IPv4 forwarding in the daemon's network namespace.
    #[arg(long = "ip-forward", value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub ip_forward: bool,
    /// Masquerade container traffic leaving through the uplinks.
    #[arg(long = "ip-masq", value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub ip_masq: bool,
    /// Default gateway given to containers instead of the bridge address.
    #[arg(long = "default-gateway", value_name = "IP")]
    pub default_gateway: Option<String>,
    /// IPv4/IPv6 dual stack: the bridge gets fe80::1/64, containers a link-local address
    /// from their MAC (and a global one with --fixed-cidr-v6).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    #[serde(default)]
    pub ipv6: bool,
    /// The containers' IPv6 subnet (routed to the bridge), e.g. 2001:db8:1::/64; needs --ipv6.
    #[arg(long = "fixed-cidr-v6", value_name = "CIDR")]
    #[serde(default)]
    pub fixed_cidr_v6: Option<String>,
    /// IPv6 default gateway given to containers instead of fe80::1 (inside --fixed-cidr-v6).
    #[arg(long = "default-gateway-v6", value_name = "IP")]
    #[serde(default)]
    pub default_gateway_v6: Option<String>,
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
    /// Connection-tracking table size (entries, two per flow); a full table evicts unreplied
    /// flows, and refuses new ones only when every flow is replied.
    /// Takes effect when the table is created (a pinned table keeps its size).
    #[arg(long = "ct-max", value_name = "N", default_value_t = netd_common::CT_MAX_DEFAULT,
          value_parser = clap::value_parser!(u32).range(2..))]
    #[serde(default = "default_ct_max")]
    pub ct_max: u32,
    /// Budget of unreplied flows one outside source address may hold that it opened (to
    /// published ports, IPv4 and IPv6); a new flow beyond it is refused and counted as
    /// `conntrack-source-budget`. Answered flows never count. 0 = no budget.
    #[arg(long = "ct-per-source-max", value_name = "N", default_value_t = 0)]
    #[serde(default)]
    pub ct_per_source_max: u32,
    /// Source ports masquerade (and the SNAT of a container reaching its own published port)
    /// translate into, MIN-MAX, or `auto`: the larger run of ports (>= 1024) outside the
    /// daemon namespace's ip_local_port_range (1024-32767 with Linux's default), or
    /// 61000-65535 when that run is smaller. Reserved in the daemon's network namespace
    /// (net.ipv4.ip_local_reserved_ports), so host sockets never get them from the kernel and
    /// never collide with a masqueraded flow.
    #[arg(
        long = "masq-ports",
        value_name = "MIN-MAX|auto",
        default_value = "auto"
    )]
    #[serde(default = "default_masq_ports")]
    pub masq_ports: String,
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
    pub dataplane: DataplaneArg,
    /// Translated traffic skips the host's routing (redirected between uplinks and
    /// containers); default: $NETD_FAST_PATH, else true.
    #[arg(long = "fast-path", value_name = "BOOL", action = ArgAction::Set)]
    #[serde(default)]
    pub fast_path: Option<bool>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// Group that owns the API socket (mode 0660); default `netd` if that group exists, else
    /// root.
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    #[serde(default)]
    pub group: Option<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics (off by default), e.g. 127.0.0.1:9423.
    #[arg(long = "metrics-addr", value_name = "HOST:PORT")]
    #[serde(default)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Settings file whose keys are these flags' long names (default /etc/netd/daemon.json,
    /// read if it exists); SIGHUP reloads it.
    #[arg(long = "config-file", value_name = "PATH")]
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// Only these sources may open connections to containers (repeatable; like
    /// `netd filter allow`, but owned by the daemon's settings: a reload replaces them).
    #[arg(long = "filter-allow", value_name = "CIDR")]
    #[serde(default)]
    pub filter_allow: Vec<String>,
    /// These sources may not open connections to containers (repeatable; see --filter-allow).
    #[arg(long = "filter-deny", value_name = "CIDR")]
    #[serde(default)]
    pub filter_deny: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// Container name (unique).
    pub name: String,
    /// The container's network namespace, e.g. /var/run/netns/web or /proc/PID/ns/net.
    #[arg(long, value_name = "PATH")]
    pub netns: PathBuf,
    /// Network mode, or a network made with `netd network create` (`bridge` is the default
    /// network).
    #[arg(
        long = "network",
        visible_alias = "net",
        value_name = "bridge|host|none|container:NAME|NETWORK",
        default_value = "bridge"
    )]
    pub net: String,
    /// Name of the container's interface on the bridge.
    #[arg(long, value_name = "NAME", default_value = "eth0")]
    pub ifname: String,
    /// Hostname of the container (default: its name), written to its hostname and hosts files.
    #[arg(long, short = 'h', value_name = "H")]
    pub hostname: Option<String>,
    /// MAC address of the container's interface (default: 02:42 followed by the four bytes of the IP).
    #[arg(long = "mac-address", value_name = "MAC")]
    pub mac_address: Option<String>,
    /// IPv4 address from the container range (default: the lowest free one).
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// IPv6 address from the network's IPv6 subnet (default: the subnet's prefix and the MAC
    /// for a /80 or larger, else the lowest free one).
    #[arg(long, value_name = "IPV6")]
    pub ip6: Option<String>,
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

fn default_masq_ports() -> String {
    "auto".to_owned()
}

fn default_ct_max() -> u32 {
    netd_common::CT_MAX_DEFAULT
}
