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
        ct_per_source_max: ct_per_source_max(a)?,
        cgroup: a.cgroup.clone(),
        dataplane: match a.dataplane {
            DataplaneArg::Ebpf => DataplaneMode::Ebpf,
            DataplaneArg::None => DataplaneMode::None,
        },
        masq_ports: masq_ports(&a.masq_ports)?,
        tc_attach: tc_attach(a.tc_attach)?,
        fast_path: fast_path(a.fast_path)?,
    })
}

/// `--ct-per-source-max`: at most the flows `--ct-max` holds (two entries each), so that a
/// typo is not taken for "no budget" in disguise.
fn ct_per_source_max(a: &DaemonArgs) -> Result<u32, ConfigError> {
    let flows = a.ct_max / 2;
    if a.ct_per_source_max > flows {
        return Err(ConfigError(format!(
            "invalid --ct-per-source-max {}: more than the {flows} flows --ct-max {} holds; \
             use 0 for no per-source budget",
            a.ct_per_source_max, a.ct_max
        )));
    }
    Ok(a.ct_per_source_max)
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

/// `--masq-ports`: `auto` ([`auto_masq_ports`] of this namespace's ip_local_port_range), or
/// `MIN-MAX`.
fn masq_ports(v: &str) -> Result<(u16, u16), ConfigError> {
    if v.trim() == "auto" {
        let eph = spec::read_ephemeral_ports().map_err(|e| {
            ConfigError(format!(
                "--masq-ports auto needs the host's ephemeral port range: {e}"
            ))
        })?;
        return Ok(auto_masq_ports(eph.range));
    }
    parse_port_range(v).map_err(|e| ConfigError(format!("invalid --masq-ports {v:?}: {e}")))
}

/// The range used when no ephemeral-free one is big enough, carved out of the top of Linux's
/// default ephemeral range (32768-60999 leaves 61000-65535 free anyway).
pub const MASQ_PORTS_FALLBACK: (u16, u16) = (61000, 65535);

/// `--masq-ports auto`: the larger run of unprivileged ports outside the host's ephemeral range
/// `lo-hi` (with Linux's default 32768-60999: 1024-32767, 31 744 ports), where the kernel never
/// gives a host socket a port, so masqueraded flows and host sockets cannot collide (the daemon
/// still reserves it, so a later change of ip_local_port_range keeps it so). When neither run
/// holds as many ports as [`MASQ_PORTS_FALLBACK`], that range (reserved from the ephemeral
/// range).
pub fn auto_masq_ports((lo, hi): (u16, u16)) -> (u16, u16) {
    let below = (lo > 1024).then(|| (1024, lo - 1));
    let above = (hi < u16::MAX).then(|| (hi.max(1023) + 1, u16::MAX));
    let len = |r: Option<(u16, u16)>| r.map_or(0, |(a, b)| u32::from(b) - u32::from(a) + 1);
    let best = if len(below) >= len(above) {
        below
    } else {
        above
    };
    let fallback = len(Some(MASQ_PORTS_FALLBACK));
    match best {
        Some(r) if len(best) >= fallback => r,
        _ => MASQ_PORTS_FALLBACK,
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
    fn the_per_source_budget_is_off_by_default_and_at_most_the_table() {
        assert_eq!(config(&[]).unwrap().ct_per_source_max, 0);
        let c = config(&["--ct-per-source-max", "64"]).unwrap();
        assert_eq!(c.ct_per_source_max, 64);
        let c = config(&["--ct-max", "4096", "--ct-per-source-max", "2048"]).unwrap();
        assert_eq!(c.ct_per_source_max, 2048);
        let e = config(&["--ct-max", "4096", "--ct-per-source-max", "2049"]).unwrap_err();
        assert!(
            e.contains("invalid --ct-per-source-max 2049: more than the 2048 flows --ct-max 4096")
                && e.contains("use 0 for no per-source budget"),
            "{e}"
        );
        let e = config(&["--ct-per-source-max=-3"]).unwrap_err();
        assert!(
            e.contains("invalid value '-3' for '--ct-per-source-max <N>'"),
            "{e}"
        );
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

#[cfg(test)]
mod masq_ports_tests {
    use super::*;

    #[test]
    fn auto_takes_the_larger_ephemeral_free_run() {
        // Linux's default.
        assert_eq!(auto_masq_ports((32768, 60999)), (1024, 32767));
        // A range at the bottom leaves the top.
        assert_eq!(auto_masq_ports((1024, 20000)), (20001, 65535));
        // Whole port space ephemeral, or too little left: the reserved fallback.
        assert_eq!(auto_masq_ports((1024, 65535)), MASQ_PORTS_FALLBACK);
        assert_eq!(auto_masq_ports((2000, 64000)), MASQ_PORTS_FALLBACK);
        assert_eq!(auto_masq_ports((5000, 65535)), MASQ_PORTS_FALLBACK);
        assert_eq!(auto_masq_ports((6000, 65535)), (1024, 5999));
        assert_eq!(masq_ports("40000-40999").unwrap(), (40000, 40999));
        assert!(masq_ports("80-90").is_err());
    }
}
