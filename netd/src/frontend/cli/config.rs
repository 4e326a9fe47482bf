//! `netd daemon`'s flags → the engine's [`Config`]: every string is parsed and every flag
//! combination checked here, so the engine starts from typed values.

use crate::engine::config::{Config, DataplaneMode};
use crate::spec;

use super::args::{DaemonArgs, DataplaneArg};

/// `--fast-path` when the flag is not given (`NETD_FAST_PATH` overrides it, so a benchmark
/// can compare both without changing how it starts the daemon).
pub const DEFAULT_FAST_PATH: bool = true;

/// A daemon flag that cannot be used; the message names the flag and says why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

pub fn from_args(a: &DaemonArgs) -> Result<Config, ConfigError> {
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
        return Err(ConfigError(
            "-b/--bridge and --bip are mutually exclusive: an adopted bridge keeps its own address"
                .into(),
        ));
    }
    if let Some(b) = &a.bridge {
        if b.is_empty() || b.len() > 15 || b.contains('/') || b.contains(char::is_whitespace) {
            return Err(ConfigError(format!("invalid bridge name {b:?}")));
        }
    }
    if let Some(b) = bip {
        if b.addr() == b.network()
            || (b.prefix_len() < 31 && b.addr() == b.broadcast())
            || b.prefix_len() > 30
        {
            return Err(ConfigError(format!(
                "--bip {b} must be a host address inside a subnet of /30 or larger, e.g. 172.30.0.1/16"
            )));
        }
        if let Some(f) = fixed_cidr {
            if !b.trunc().contains(&f) {
                return Err(ConfigError(format!(
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
    let (fixed_cidr_v6, default_gateway_v6) = ipv6_flags(a)?;
    let dns = spec::parse_dns(&a.dns).map_err(|e| ConfigError(e.to_string()))?;
    for d in &a.dns_search {
        spec::validate_dns_search(d).map_err(|e| invalid("--dns-search", e))?;
    }
    Ok(Config {
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
        ipv6: a.ipv6,
        fixed_cidr_v6,
        default_gateway_v6,
        dns,
        dns_search: a.dns_search.clone(),
        resolv_conf: a.resolv_conf.clone(),
        state_dir: a.state_dir.clone(),
        bpffs: a.bpffs.clone(),
        ct_max: a.ct_max,
        cgroup: a.cgroup.clone(),
        dataplane: match a.dataplane {
            DataplaneArg::Ebpf => DataplaneMode::Ebpf,
            DataplaneArg::None => DataplaneMode::None,
        },
        masq_ports: parse_port_range(&a.masq_ports)
            .map_err(|e| ConfigError(format!("invalid --masq-ports {:?}: {e}", a.masq_ports)))?,
        tc_attach: tc_attach(a.tc_attach)?,
        fast_path: fast_path(a.fast_path)?,
    })
}

/// Longest IPv6 prefix `--fixed-cidr-v6` takes: a /126 still holds two containers.
pub const MAX_FIXED_CIDR_V6_PREFIX: u8 = 126;

/// `--fixed-cidr-v6` and `--default-gateway-v6`, checked as Docker checks them: both need
/// `--ipv6`, the subnet is a network address of /126 or shorter, the gateway lies inside it.
fn ipv6_flags(
    a: &DaemonArgs,
) -> Result<(Option<ipnet::Ipv6Net>, Option<std::net::Ipv6Addr>), ConfigError> {
    let cidr = a
        .fixed_cidr_v6
        .as_deref()
        .map(spec::parse_ipv6_net)
        .transpose()
        .map_err(|e| invalid("--fixed-cidr-v6", e))?;
    let gw = a
        .default_gateway_v6
        .as_deref()
        .map(spec::parse_ipv6)
        .transpose()
        .map_err(|e| invalid("--default-gateway-v6", e))?;
    if !a.ipv6 {
        for (set, flag, v) in [
            (
                cidr.is_some(),
                "--fixed-cidr-v6",
                a.fixed_cidr_v6.as_deref(),
            ),
            (
                gw.is_some(),
                "--default-gateway-v6",
                a.default_gateway_v6.as_deref(),
            ),
        ] {
            if set {
                return Err(ConfigError(format!(
                    "{flag} {} needs --ipv6: IPv6 is off without it",
                    v.unwrap_or_default()
                )));
            }
        }
    }
    if let Some(c) = cidr {
        if c.prefix_len() > MAX_FIXED_CIDR_V6_PREFIX {
            return Err(ConfigError(format!(
                "--fixed-cidr-v6 {c}: the prefix is longer than /{MAX_FIXED_CIDR_V6_PREFIX}; \
                 containers need a /{MAX_FIXED_CIDR_V6_PREFIX} or larger subnet (/80 or larger \
                 to get addresses from their MAC)"
            )));
        }
        if c.addr() != c.network() {
            return Err(ConfigError(format!(
                "--fixed-cidr-v6 {c} is not a network address (host bits are set): use {}",
                c.trunc()
            )));
        }
    }
    if let Some(g) = gw {
        match cidr {
            Some(c) if c.contains(&g) && g != c.network() => {}
            Some(c) => {
                return Err(ConfigError(format!(
                    "--default-gateway-v6 {g} is not a host address of the subnet {c} (--fixed-cidr-v6)"
                )));
            }
            None => {
                return Err(ConfigError(format!(
                    "--default-gateway-v6 {g} needs --fixed-cidr-v6: the gateway must lie in the containers' IPv6 subnet"
                )));
            }
        }
    }
    Ok((cidr, gw))
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

/// `--tc-attach`, else `NETD_TC_ATTACH`, else auto.
fn tc_attach(
    flag: Option<crate::dataplane::TcAttachMode>,
) -> Result<crate::dataplane::TcAttachMode, ConfigError> {
    if let Some(v) = flag {
        return Ok(v);
    }
    match std::env::var("NETD_TC_ATTACH") {
        Ok(v) => v
            .parse()
            .map_err(|e| ConfigError(format!("invalid NETD_TC_ATTACH {e}"))),
        Err(_) => Ok(crate::dataplane::TcAttachMode::Auto),
    }
}

/// `--fast-path`, else `NETD_FAST_PATH` (true/false), else [`DEFAULT_FAST_PATH`].
fn fast_path(flag: Option<bool>) -> Result<bool, ConfigError> {
    if let Some(v) = flag {
        return Ok(v);
    }
    match std::env::var("NETD_FAST_PATH") {
        Ok(v) => v.trim().parse().map_err(|_| {
            ConfigError(format!(
                "invalid NETD_FAST_PATH {v:?}: expected true or false"
            ))
        }),
        Err(_) => Ok(DEFAULT_FAST_PATH),
    }
}

fn invalid(flag: &str, e: spec::SpecError) -> ConfigError {
    ConfigError(format!("invalid {flag}: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::args::{Cli, Command};
    use super::*;

    fn config(flags: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["netd", "daemon"];
        argv.extend_from_slice(flags);
        let Command::Daemon(a) = Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        else {
            unreachable!("daemon subcommand");
        };
        from_args(&a).map_err(|e| e.to_string())
    }

    #[test]
    fn ipv6_flags_are_checked_as_docker_does() {
        let c = config(&["--ipv6", "--fixed-cidr-v6", "2001:db8:1::/64"]).unwrap();
        assert!(c.ipv6);
        assert_eq!(c.fixed_cidr_v6.unwrap().to_string(), "2001:db8:1::/64");
        assert!(!config(&[]).unwrap().ipv6);
        assert!(!config(&["--ipv6=false"]).unwrap().ipv6);
        for (flags, want) in [
            (
                &["--fixed-cidr-v6", "2001:db8:1::/64"][..],
                "--fixed-cidr-v6 2001:db8:1::/64 needs --ipv6",
            ),
            (
                &["--ipv6", "--fixed-cidr-v6", "2001:db8:1::/127"][..],
                "longer than /126",
            ),
            (
                &["--ipv6", "--fixed-cidr-v6", "2001:db8:1::1/64"][..],
                "2001:db8:1::1/64 is not a network address",
            ),
            (
                &[
                    "--ipv6",
                    "--fixed-cidr-v6",
                    "2001:db8:1::/64",
                    "--default-gateway-v6",
                    "2001:db8:1::",
                ][..],
                "--default-gateway-v6 2001:db8:1:: is not a host address",
            ),
            (
                &["--ipv6", "--default-gateway-v6", "10.0.0.1"][..],
                "\"10.0.0.1\"",
            ),
        ] {
            let e = config(flags).unwrap_err();
            assert!(e.contains(want), "{flags:?}: {e}");
        }
        // /126 is the longest accepted.
        assert!(config(&["--ipv6", "--fixed-cidr-v6", "2001:db8::c008/126"]).is_ok());
    }
}
