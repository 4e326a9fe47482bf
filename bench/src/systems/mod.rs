//! The systems under test, behind one trait. Each is installed on a freshly wired
//! [`Topology`](crate::topology::Topology) (netd wires bridge, veths and addresses; for S0–S2
//! with `--dataplane none`), measured, and torn down with the topology.
//!
//! - [`s0_floor`]: no NAT and no filtering; the outside routes to the container subnet.
//! - [`s1_iptables`]: the iptables ruleset Docker 20.10 writes (userland-proxy=false), with
//!   iptables-legacy or iptables-nft, inside the host namespace.
//! - [`s2_proxy`]: one real `docker-proxy` per published port in the host namespace.
//! - [`s3_netd`]: netd with `--dataplane ebpf`.
//! - [`s4_docker`]: dockerd 20.10 with netd as its network driver (P1, P2, P6).
//!
//! On the dual-stack topology of the IPv6 paths: S0 routes the container IPv6 prefix, S1 adds
//! Docker's ruleset for ip6tables, S2's docker-proxy (Go listens on `[::]` for `-host-ip
//! 0.0.0.0`) relays IPv6 clients to the container's IPv4 address, and netd translates to the
//! container's IPv6 address in eBPF (or, as `S3-nat46`, relays to its IPv4 address).

pub mod s0_floor;
pub mod s1_iptables;
pub mod s2_proxy;
pub mod s3_netd;
pub mod s4_docker;

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::paths::PathId;
use crate::topology::{TopoOpts, Topology};

/// How a path reaches the server under a system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Straight to the container's (or outside's) address and port.
    Direct,
    /// Through the published host port (host IP or 127.0.0.1).
    Published,
    /// The system does not handle this path (e.g. docker-proxy and container egress).
    NotApplicable,
}

/// Memory a system uses for what it publishes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Processes that implement the publications (netd: 1; docker-proxy: one per port).
    pub processes: u32,
    /// Summed VmRSS of those processes.
    pub rss_bytes: u64,
    /// BPF map memory (memlock of the maps the daemon holds).
    pub bpf_map_bytes: u64,
}

pub trait System {
    /// Short id used in results: S0, S1-legacy, S1-nft, S2, S3, S4.
    fn id(&self) -> &'static str;
    /// Why the system cannot run on this machine (e.g. dockerd is not installed), if so: its
    /// runs are then recorded as n/a with this note.
    fn unavailable(&self) -> Option<String> {
        None
    }
    /// How the topology must be wired for this system (`ipv6`: the dual-stack topology of the
    /// IPv6 paths).
    fn topo_opts(&self, icc: bool, ipv6: bool) -> TopoOpts;
    /// Installs the system on a wired topology (routes, rules, proxies).
    fn setup(&mut self, t: &Topology) -> Result<()>;
    /// Removes what `setup` installed that the topology's drop would not.
    fn teardown(&mut self, _t: &Topology) {}
    /// How `path` is reached under this system.
    fn route(&self, path: PathId) -> Route;
    /// Whether the system claims NAT and filtering (masquerade, client IP kept on DNAT,
    /// icc=false isolation); S0 (the floor) and S2 do not.
    fn nat_and_filters(&self) -> bool;
    /// Whether netd's eBPF dataplane carries the traffic (its BPF programs are accounted).
    fn netd_dataplane(&self) -> bool {
        false
    }
    /// Long-lived processes of the system (CPU and memory accounting).
    fn pids(&self, t: &Topology) -> Vec<u32>;
    /// Only these paths, if not all (e.g. a netd variant measured on a few paths only).
    fn only_paths(&self) -> Option<&'static [PathId]> {
        None
    }
    /// Publishes the topology's filler ports (the containers are attached, untimed); returns
    /// the time the publishing took.
    fn publish_fillers(&mut self, t: &Topology) -> Result<Duration>;
    /// Publishes [`ONE_MORE_PORT`](crate::topology::ONE_MORE_PORT) to the attached container
    /// "onemore" the way an operator would (a CLI call, docker-proxy start, iptables calls);
    /// returns the time taken.
    fn publish_one_more(&mut self, t: &Topology) -> Result<Duration>;
    /// The same through the system's API without a process start, where it has one (netd:
    /// one HTTP request on its socket).
    fn publish_one_more_api(&mut self, _t: &Topology) -> Result<Option<Duration>> {
        Ok(None)
    }
    /// Memory used for the publications now in place.
    fn memory(&self, t: &Topology) -> Option<Memory>;
}

/// All systems in their canonical order, then the netd variants: those the binary under test
/// offers (see [`fast_path_variants`]) and the NAT46 relay on the IPv6 paths; last S4, dockerd
/// with netd (n/a where dockerd is not installed).
pub fn all() -> Vec<Box<dyn System>> {
    let mut v: Vec<Box<dyn System>> = vec![
        Box::new(s0_floor::Floor),
        Box::new(s1_iptables::DockerRules::new(s1_iptables::Backend::Legacy)),
        Box::new(s1_iptables::DockerRules::new(s1_iptables::Backend::Nft)),
        Box::new(s2_proxy::DockerProxy::default()),
        Box::new(s3_netd::Netd::default()),
    ];
    for (id, args) in fast_path_variants(fast_path_support()) {
        v.push(Box::new(s3_netd::Netd::variant(id, args)));
    }
    v.push(Box::new(s3_netd::Netd::nat46()));
    v.push(Box::new(s4_docker::DockerNetd));
    v
}

/// Whether `netd daemon` has `--fast-path BOOL`, and its default if the help shows one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastPath {
    Absent,
    Present { default: Option<bool> },
}

/// [`FastPath`] of the netd under test (`netd daemon --help`, asked once).
pub fn fast_path_support() -> FastPath {
    static ONCE: std::sync::OnceLock<FastPath> = std::sync::OnceLock::new();
    *ONCE.get_or_init(|| {
        let bin = match crate::topology::catch("netd binary", netd_tests::daemon::netd_bin) {
            Ok(b) => b,
            Err(_) => return FastPath::Absent,
        };
        let fp = match std::process::Command::new(bin)
            .args(["daemon", "--help"])
            .output()
        {
            Ok(o) => parse_fast_path(&String::from_utf8_lossy(&o.stdout)),
            Err(_) => FastPath::Absent,
        };
        // The daemons inherit the bench's environment, where $NETD_FAST_PATH sets the default.
        match (fp, std::env::var("NETD_FAST_PATH").ok().as_deref()) {
            (FastPath::Present { .. }, Some("true")) => FastPath::Present {
                default: Some(true),
            },
            (FastPath::Present { .. }, Some("false")) => FastPath::Present {
                default: Some(false),
            },
            _ => fp,
        }
    })
}

/// Finds `--fast-path` in `netd daemon --help` and the default its entry states (`[default:
/// X]`, or netd's own wording `default: $NETD_FAST_PATH, else X`).
pub fn parse_fast_path(help: &str) -> FastPath {
    let lines: Vec<&str> = help.lines().collect();
    let Some(at) = lines.iter().position(|l| l.contains("--fast-path")) else {
        return FastPath::Absent;
    };
    let mut default = None;
    for (i, l) in lines[at..].iter().enumerate() {
        // The entry ends where the next option starts.
        if i > 0 && l.trim_start().starts_with('-') {
            break;
        }
        let stated = l
            .split("[default: ")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .or_else(|| {
                l.split("else ")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| !c.is_ascii_alphabetic()).next())
            });
        if let Some(v) = stated {
            default = match v.trim() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            };
            break;
        }
    }
    FastPath::Present { default }
}

/// The netd variants to add: the non-default fast-path setting (S3 is the default daemon), or
/// both settings when the default is unknown.
pub fn fast_path_variants(fp: FastPath) -> Vec<(&'static str, &'static [&'static str])> {
    const ON: (&str, &[&str]) = ("S3-fastpath-on", &["--fast-path", "true"]);
    const OFF: (&str, &[&str]) = ("S3-fastpath-off", &["--fast-path", "false"]);
    match fp {
        FastPath::Absent => vec![],
        FastPath::Present {
            default: Some(true),
        } => vec![OFF],
        FastPath::Present {
            default: Some(false),
        } => vec![ON],
        FastPath::Present { default: None } => vec![ON, OFF],
    }
}

/// `items` rotated left by `k` (the order systems run in on repetition `k`).
pub fn rotated<T>(mut items: Vec<T>, k: usize) -> Vec<T> {
    if !items.is_empty() {
        let n = k % items.len();
        items.rotate_left(n);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_flag_and_default_from_help() {
        assert_eq!(parse_fast_path("  --mtu <N>\n"), FastPath::Absent);
        let help = "      --icc <BOOL>  [default: true]\n      --fast-path <BOOL>\n          Redirect between veths\n          \n          [default: true]\n      --log-level <L>  [default: info]\n";
        assert_eq!(
            parse_fast_path(help),
            FastPath::Present {
                default: Some(true)
            }
        );
        let help = "      --fast-path <BOOL>  skip routing [default: false]\n";
        assert_eq!(
            parse_fast_path(help),
            FastPath::Present {
                default: Some(false)
            }
        );
        let help = "      --dataplane <D>  eBPF [default: ebpf]\n      --fast-path <BOOL>       Translated traffic skips the host's routing (redirected between uplinks and containers); default: $NETD_FAST_PATH, else true [possible values: true, false]\n      --log-level <LEVEL>  [default: info]\n";
        assert_eq!(
            parse_fast_path(help),
            FastPath::Present {
                default: Some(true)
            }
        );
        // The next option's default is not taken for ours.
        let help =
            "      --fast-path <BOOL>  skip routing\n      --log-level <L>  [default: info]\n";
        assert_eq!(parse_fast_path(help), FastPath::Present { default: None });
        assert_eq!(
            fast_path_variants(FastPath::Present {
                default: Some(true)
            })[0]
                .0,
            "S3-fastpath-off"
        );
        assert_eq!(
            fast_path_variants(FastPath::Present { default: None }).len(),
            2
        );
        assert!(fast_path_variants(FastPath::Absent).is_empty());
    }

    #[test]
    fn rotation_changes_who_goes_first() {
        assert_eq!(super::rotated(vec![0, 1, 2], 0), [0, 1, 2]);
        assert_eq!(super::rotated(vec![0, 1, 2], 1), [1, 2, 0]);
        assert_eq!(super::rotated(vec![0, 1, 2], 5), [2, 0, 1]);
    }
}
