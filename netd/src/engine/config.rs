//! Daemon configuration, validated from the command line.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::Ipv4Net;

use super::EngineError;
use crate::cli::{DaemonArgs, DataplaneMode};
use crate::spec;

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
    /// `--fast-path`: translated traffic is redirected between uplinks and containers.
    pub fast_path: bool,
}

/// `--fast-path` when the flag is not given (`NETD_FAST_PATH` overrides it, so a benchmark
/// can compare both without changing how it starts the daemon).
pub const DEFAULT_FAST_PATH: bool = true;

pub const DEFAULT_BRIDGE: &str = "netd0";

impl Config {
    pub fn from_args(a: &DaemonArgs) -> Result<Self, EngineError> {
        let bip = a
            .bip
            .as_deref()
            .map(spec::parse_ipv4_net)
            .transpose()
            .map_err(|e| invalid("--bip", e))?;
        let fixed_cidr = a
            .fixed_cidr
            .as_deref()
            .map(spec::parse_ipv4_net)
            .transpose()
            .map_err(|e| invalid("--fixed-cidr", e))?
            .map(|n| n.trunc());
        if a.bridge.is_some() && bip.is_some() {
            return Err(EngineError::Invalid(
                "-b/--bridge and --bip are mutually exclusive: an adopted bridge keeps its own address".into(),
            ));
        }
        if let Some(b) = &a.bridge {
            if b.is_empty() || b.len() > 15 || b.contains('/') || b.contains(char::is_whitespace) {
                return Err(EngineError::Invalid(format!("invalid bridge name {b:?}")));
            }
        }
        if let Some(b) = bip {
            if b.addr() == b.network()
                || (b.prefix_len() < 31 && b.addr() == b.broadcast())
                || b.prefix_len() > 30
            {
                return Err(EngineError::Invalid(format!(
                    "--bip {b} must be a host address inside a subnet of /30 or larger, e.g. 172.30.0.1/16"
                )));
            }
            if let Some(f) = fixed_cidr {
                if !b.trunc().contains(&f) {
                    return Err(EngineError::Invalid(format!(
                        "--fixed-cidr {f} is not inside the bridge subnet {}",
                        b.trunc()
                    )));
                }
            }
        }
        let default_gateway = a
            .default_gateway
            .as_deref()
            .map(spec::parse_ipv4)
            .transpose()
            .map_err(|e| invalid("--default-gateway", e))?;
        let dns = parse_dns(&a.dns)?;
        for d in &a.dns_search {
            spec::validate_dns_search(d).map_err(|e| invalid("--dns-search", e))?;
        }
        Ok(Self {
            uplinks: a.uplinks.clone(),
            adopt_bridge: a.bridge.clone(),
            bip,
            fixed_cidr,
            mtu: a.mtu,
            icc: a.icc,
            ip: a.ip,
            ip_forward: a.ip_forward,
            ip_masq: a.ip_masq,
            default_gateway,
            dns,
            dns_search: a.dns_search.clone(),
            resolv_conf: a.resolv_conf.clone(),
            state_dir: a.state_dir.clone(),
            bpffs: a.bpffs.clone(),
            ct_max: a.ct_max,
            masq_ports: parse_port_range(&a.masq_ports).map_err(|e| {
                EngineError::Invalid(format!("invalid --masq-ports {:?}: {e}", a.masq_ports))
            })?,
            cgroup: a.cgroup.clone(),
            dataplane: a.dataplane,
            fast_path: fast_path(a.fast_path)?,
        })
    }

    pub fn bridge_name(&self) -> &str {
        self.adopt_bridge.as_deref().unwrap_or(DEFAULT_BRIDGE)
    }
}

/// `MIN-MAX` (or one port), 1024 <= MIN <= MAX.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number"))
    };
    let (lo, hi) = (port(lo)?, port(hi)?);
    if lo < 1024 {
        return Err(format!(
            "{lo} is a privileged port (the range must start at 1024 or above)"
        ));
    }
    if hi < lo {
        return Err(format!("{lo}-{hi} is empty"));
    }
    Ok((lo, hi))
}

pub fn parse_dns(list: &[String]) -> Result<Vec<IpAddr>, EngineError> {
    list.iter()
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| {
                EngineError::Invalid(format!("invalid --dns {s:?}: not an IP address"))
            })
        })
        .collect()
}

/// `--fast-path`, else `NETD_FAST_PATH` (true/false), else [`DEFAULT_FAST_PATH`].
fn fast_path(flag: Option<bool>) -> Result<bool, EngineError> {
    if let Some(v) = flag {
        return Ok(v);
    }
    match std::env::var("NETD_FAST_PATH") {
        Ok(v) => v.trim().parse().map_err(|_| {
            EngineError::Invalid(format!(
                "invalid NETD_FAST_PATH {v:?}: expected true or false"
            ))
        }),
        Err(_) => Ok(DEFAULT_FAST_PATH),
    }
}

fn invalid(flag: &str, e: spec::SpecError) -> EngineError {
    EngineError::Invalid(format!("invalid {flag}: {e}"))
}
