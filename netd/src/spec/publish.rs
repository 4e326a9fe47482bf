//! `-p`/`--publish`: `[ip:][hostPort:]containerPort[/proto]`, ranges allowed.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::*;

// ---------------------------------------------------------------------------------------------
// -p / --publish

/// One `-p` mapping: host ports (on `host_ip`, or all addresses) to container ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "PublishSpecFields")]
pub struct PublishSpec {
    /// The host address to bind; `None` = all addresses (or the daemon's `--ip`).
    pub host_ip: Option<IpAddr>,
    /// `None` = one ephemeral port per container port. A range with a single container port
    /// means "any one free port from this range".
    pub host_ports: Option<PortRange>,
    pub container_ports: PortRange,
    pub proto: Proto,
}

/// What a serialized [`PublishSpec`] holds, before validation.
#[derive(Deserialize)]
struct PublishSpecFields {
    host_ip: Option<IpAddr>,
    host_ports: Option<PortRange>,
    container_ports: PortRange,
    proto: Proto,
}

impl TryFrom<PublishSpecFields> for PublishSpec {
    type Error = SpecError;

    fn try_from(f: PublishSpecFields) -> Result<Self, Self::Error> {
        Self::new(f.host_ip, f.host_ports, f.container_ports, f.proto)
    }
}

impl PublishSpec {
    /// A mapping, checked as `-p` checks it: host and container ranges of the same length, or a
    /// single container port.
    pub fn new(
        host_ip: Option<IpAddr>,
        host_ports: Option<PortRange>,
        container_ports: PortRange,
        proto: Proto,
    ) -> Result<Self, SpecError> {
        let spec = Self {
            host_ip,
            host_ports,
            container_ports,
            proto,
        };
        check_publish_lengths(host_ports, container_ports).map_err(|reason| {
            SpecError::Publish {
                input: spec.to_string(),
                reason,
            }
        })?;
        Ok(spec)
    }
}

impl fmt::Display for PublishSpec {
    /// The canonical form: `[IP:][HOSTPORTS:]CONTAINERPORTS/PROTO`, IPv6 in brackets,
    /// `IP::CONTAINERPORTS` for an ephemeral host port on one address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            None => {}
        }
        match self.host_ports {
            Some(ports) => write!(f, "{ports}:")?,
            None if self.host_ip.is_some() => f.write_str(":")?,
            None => {}
        }
        write!(f, "{}/{}", self.container_ports, self.proto)
    }
}

impl FromStr for PublishSpec {
    type Err = SpecError;

    /// Docker's `-p` grammar: `CONTAINER`, `HOST:CONTAINER`, `IP:HOST:CONTAINER`,
    /// `IP::CONTAINER`, each port a number or a range, an optional `/tcp` or `/udp`, and an IPv6
    /// address in brackets (`[::1]:8080:80`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| SpecError::Publish {
            input: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(fail(
                "it is empty; expected e.g. \"80\", \"8080:80\" or \"127.0.0.1:8080:80/udp\""
                    .to_owned(),
            ));
        }
        let (addr_and_ports, proto) = split_proto(s).map_err(fail)?;
        let parts = split_publish(addr_and_ports).map_err(fail)?;
        let host_ip = parts.host_ip.map(parse_host_ip).transpose().map_err(fail)?;
        let host_ports = parts
            .host_ports
            .map(|ports| parse_port_range("host port", ports))
            .transpose()
            .map_err(fail)?;
        let container_ports =
            parse_port_range("container port", parts.container_ports).map_err(fail)?;
        check_publish_lengths(host_ports, container_ports).map_err(fail)?;
        Ok(Self {
            host_ip,
            host_ports,
            container_ports,
            proto,
        })
    }
}

/// The text pieces of a `-p` spec, split at its colons but not yet parsed.
struct PublishParts<'a> {
    host_ip: Option<&'a str>,
    /// `None` when the host port is left out (`80`, `IP::80`).
    host_ports: Option<&'a str>,
    container_ports: &'a str,
}

const TOO_MANY_COLONS: &str =
    "it has too many \":\"; write an IPv6 host ip in brackets, e.g. [::1]:8080:80";

/// Splits `[IP:][HOST:]CONTAINER` (protocol already removed) at its colons.
fn split_publish(s: &str) -> Result<PublishParts<'_>, String> {
    if let Some(bracketed) = s.strip_prefix('[') {
        return split_bracketed_publish(bracketed);
    }
    let parts: Vec<&str> = s.split(':').collect();
    match parts[..] {
        [container_ports] => Ok(PublishParts {
            host_ip: None,
            host_ports: None,
            container_ports,
        }),
        [host_ports, container_ports] => {
            if host_ports.is_empty() {
                return Err(
                    "the host port before \":\" is empty; write the container port \
                     alone to get an ephemeral host port"
                        .to_owned(),
                );
            }
            if host_ports.parse::<IpAddr>().is_ok() {
                return Err(format!(
                    "{host_ports:?} is an IP address, not a host port; write \
                     {host_ports}:HOSTPORT:{container_ports} or {host_ports}::{container_ports}"
                ));
            }
            Ok(PublishParts {
                host_ip: None,
                host_ports: Some(host_ports),
                container_ports,
            })
        }
        [host_ip, host_ports, container_ports] => {
            if host_ip.is_empty() {
                return Err(
                    "the host ip before the first \":\" is empty; leave it out to \
                     publish on all addresses"
                        .to_owned(),
                );
            }
            Ok(PublishParts {
                host_ip: Some(host_ip),
                host_ports: Some(host_ports).filter(|p| !p.is_empty()),
                container_ports,
            })
        }
        _ => Err(TOO_MANY_COLONS.to_owned()),
    }
}

/// Splits `IP]:HOST:CONTAINER` or `IP]::CONTAINER`, what follows a leading `[`.
fn split_bracketed_publish(s: &str) -> Result<PublishParts<'_>, String> {
    let Some((host_ip, rest)) = s.split_once(']') else {
        return Err("the bracketed host ip has no closing \"]\"".to_owned());
    };
    let Some((host_ports, container_ports)) = rest
        .strip_prefix(':')
        .and_then(|ports| ports.split_once(':'))
    else {
        return Err(format!(
            "expected [{host_ip}]:HOSTPORT:CONTAINERPORT or [{host_ip}]::CONTAINERPORT"
        ));
    };
    if container_ports.contains(':') {
        return Err(TOO_MANY_COLONS.to_owned());
    }
    Ok(PublishParts {
        host_ip: Some(host_ip),
        host_ports: Some(host_ports).filter(|p| !p.is_empty()),
        container_ports,
    })
}

fn parse_host_ip(s: &str) -> Result<IpAddr, String> {
    if s.is_empty() {
        return Err("the host ip is empty".to_owned());
    }
    s.parse()
        .map_err(|_| format!("host ip {s:?} is not an IPv4 or IPv6 address"))
}

/// Host and container ranges map 1:1, except that a host range may serve a single container
/// port (any one free port of the range is picked).
fn check_publish_lengths(host: Option<PortRange>, container: PortRange) -> Result<(), String> {
    let Some(host) = host else { return Ok(()) };
    let (host_len, container_len) = (host.len(), container.len());
    if container_len == 1 || host_len == container_len {
        Ok(())
    } else if host_len == 1 {
        // Suggest a host range of the right length starting at the given port, shifted down if
        // it would run past 65535.
        let end = (u32::from(host.start) + container_len - 1).min(u32::from(u16::MAX));
        let start = end + 1 - container_len;
        Err(format!(
            "host port {host} is a single port but container ports {container} are \
             {container_len}; give a host range of the same length, e.g. \
             {start}-{end}:{container}"
        ))
    } else {
        Err(format!(
            "host ports {host} ({host_len} ports) and container ports {container} \
             ({container_len} ports) must have the same length"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;

    // --- PublishSpec ---

    fn publish(
        host_ip: Option<&str>,
        host_ports: Option<PortRange>,
        container_ports: PortRange,
        proto: Proto,
    ) -> PublishSpec {
        PublishSpec {
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            host_ports,
            container_ports,
            proto,
        }
    }

    #[test]
    fn publish_parses_every_form() {
        let tcp = Proto::Tcp;
        let udp = Proto::Udp;
        let one = PortRange::single;
        let cases = [
            ("80", publish(None, None, one(80), tcp)),
            ("8080:80", publish(None, Some(one(8080)), one(80), tcp)),
            (
                "127.0.0.1:8080:80",
                publish(Some("127.0.0.1"), Some(one(8080)), one(80), tcp),
            ),
            (
                "127.0.0.1::80",
                publish(Some("127.0.0.1"), None, one(80), tcp),
            ),
            (
                "8000-8010:80-90",
                publish(None, Some(range(8000, 8010)), range(80, 90), tcp),
            ),
            (
                "8000-8010:80",
                publish(None, Some(range(8000, 8010)), one(80), tcp),
            ),
            ("80-90", publish(None, None, range(80, 90), tcp)),
            (
                "10.0.0.1::80-90/udp",
                publish(Some("10.0.0.1"), None, range(80, 90), udp),
            ),
            ("80/udp", publish(None, None, one(80), udp)),
            ("80/tcp", publish(None, None, one(80), tcp)),
            ("8080:80/UDP", publish(None, Some(one(8080)), one(80), udp)),
            (
                "[::1]:8080:80",
                publish(Some("::1"), Some(one(8080)), one(80), tcp),
            ),
            ("[::1]::80/udp", publish(Some("::1"), None, one(80), udp)),
            (
                "[fe80::1]:8000-8001:80-81",
                publish(Some("fe80::1"), Some(range(8000, 8001)), range(80, 81), tcp),
            ),
            (
                "[127.0.0.1]:8080:80",
                publish(Some("127.0.0.1"), Some(one(8080)), one(80), tcp),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<PublishSpec>().unwrap(), want, "{input}");
        }
    }

    #[test]
    fn publish_rejects_bad_ports_quoting_them() {
        assert_eq!(
            err("80:abc".parse::<PublishSpec>()),
            r#"invalid port spec "80:abc": container port "abc" is not a number between 1 and 65535"#
        );
        assert_eq!(
            err("abc:80".parse::<PublishSpec>()),
            r#"invalid port spec "abc:80": host port "abc" is not a number between 1 and 65535"#
        );
        assert_err("0:80".parse::<PublishSpec>(), &[r#"host port "0""#]);
        assert_err(
            "80:70000".parse::<PublishSpec>(),
            &[r#"container port "70000""#],
        );
        assert_err(
            "90-80".parse::<PublishSpec>(),
            &["container port range 90-80 ends before it starts; write 80-90"],
        );
        assert_err(
            "1.2.3.4:80-:80".parse::<PublishSpec>(),
            &[r#"host port "80-" is neither a port nor a range"#],
        );
    }

    #[test]
    fn publish_rejects_empty_parts() {
        assert_err(
            "".parse::<PublishSpec>(),
            &[r#"invalid port spec "": it is empty"#],
        );
        assert_err(
            ":80".parse::<PublishSpec>(),
            &[r#"":80""#, "host port before \":\" is empty"],
        );
        assert_err("80:".parse::<PublishSpec>(), &["container port is empty"]);
        assert_err(
            "1.2.3.4:80:".parse::<PublishSpec>(),
            &["container port is empty"],
        );
        assert_err(
            "::80".parse::<PublishSpec>(),
            &["host ip before the first \":\" is empty"],
        );
        assert_err("[]:80:80".parse::<PublishSpec>(), &["the host ip is empty"]);
        assert_err("/udp".parse::<PublishSpec>(), &["container port is empty"]);
    }

    #[test]
    fn publish_rejects_bad_ips_and_colons() {
        assert_err(
            "1:2:3:4".parse::<PublishSpec>(),
            &[r#""1:2:3:4""#, "too many \":\"", "[::1]:8080:80"],
        );
        assert_err("::1:8080:80".parse::<PublishSpec>(), &["too many \":\""]);
        assert_err(
            "[::1]:80:90:100".parse::<PublishSpec>(),
            &["too many \":\""],
        );
        assert_err(
            "300.1.1.1:80:80".parse::<PublishSpec>(),
            &[r#"host ip "300.1.1.1" is not an IPv4 or IPv6 address"#],
        );
        assert_err(
            "localhost:80:80".parse::<PublishSpec>(),
            &[r#"host ip "localhost""#],
        );
        assert_err(
            "1.2.3.4:80".parse::<PublishSpec>(),
            &[
                r#""1.2.3.4" is an IP address, not a host port"#,
                "1.2.3.4::80",
            ],
        );
        assert_err("[::1:8080:80".parse::<PublishSpec>(), &["no closing \"]\""]);
        assert_err(
            "[::1]:80".parse::<PublishSpec>(),
            &["expected [::1]:HOSTPORT:CONTAINERPORT or [::1]::CONTAINERPORT"],
        );
        assert_err("[::1]".parse::<PublishSpec>(), &["expected [::1]:HOSTPORT"]);
        assert_err(
            "[::1]x8080:80".parse::<PublishSpec>(),
            &["expected [::1]:HOSTPORT"],
        );
        assert_err("[zz]:80:80".parse::<PublishSpec>(), &[r#"host ip "zz""#]);
    }

    #[test]
    fn publish_rejects_bad_protocols() {
        assert_err(
            "80/sctp".parse::<PublishSpec>(),
            &[r#"invalid port spec "80/sctp": protocol "sctp" is not tcp or udp"#],
        );
        assert_err(
            "8080:80/".parse::<PublishSpec>(),
            &["the protocol after \"/\" is empty"],
        );
        assert_err(
            "80/tcp/udp".parse::<PublishSpec>(),
            &[r#"protocol "tcp/udp""#],
        );
    }

    #[test]
    fn publish_checks_range_lengths() {
        assert_eq!(
            err("8080:80-90".parse::<PublishSpec>()),
            "invalid port spec \"8080:80-90\": host port 8080 is a single port but container \
             ports 80-90 are 11; give a host range of the same length, e.g. 8080-8090:80-90"
        );
        assert_err(
            "65530:80-90".parse::<PublishSpec>(),
            &["e.g. 65525-65535:80-90"],
        );
        assert_err(
            "8000-8005:80-90".parse::<PublishSpec>(),
            &[
                "host ports 8000-8005 (6 ports) and container ports 80-90 (11 ports) must have \
               the same length",
            ],
        );
        // Equal lengths, a host range for one container port, and ephemeral host ports are fine.
        assert!("8000-8010:9000-9010".parse::<PublishSpec>().is_ok());
        assert!("8000-8010:80".parse::<PublishSpec>().is_ok());
        assert!("1.2.3.4::80-90".parse::<PublishSpec>().is_ok());
    }

    #[test]
    fn publish_display_is_canonical_and_round_trips() {
        for (input, canonical) in [
            ("80", "80/tcp"),
            ("80/UDP", "80/udp"),
            ("8080:80", "8080:80/tcp"),
            ("127.0.0.1:8080:80/udp", "127.0.0.1:8080:80/udp"),
            ("127.0.0.1::80", "127.0.0.1::80/tcp"),
            ("8000-8010:80-90", "8000-8010:80-90/tcp"),
            ("[::1]:8080:80", "[::1]:8080:80/tcp"),
            ("[0:0::1]::80-81", "[::1]::80-81/tcp"),
            ("[127.0.0.1]:8080:80", "127.0.0.1:8080:80/tcp"),
        ] {
            let spec: PublishSpec = input.parse().unwrap();
            assert_eq!(spec.to_string(), canonical, "{input}");
            assert_eq!(
                canonical.parse::<PublishSpec>().unwrap(),
                spec,
                "{canonical}"
            );
        }
    }

    #[test]
    fn publish_new_checks_lengths() {
        let ok = PublishSpec::new(None, Some(range(1, 2)), range(3, 4), Proto::Udp).unwrap();
        assert_eq!(ok.to_string(), "1-2:3-4/udp");
        assert_err(
            PublishSpec::new(None, Some(range(1, 2)), range(3, 5), Proto::Tcp),
            &[
                r#"invalid port spec "1-2:3-5/tcp""#,
                "must have the same length",
            ],
        );
    }

    #[test]
    fn publish_serde_round_trips_and_validates() {
        let spec: PublishSpec = "[::1]:8000-8001:80-81/udp".parse().unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            json,
            r#"{"host_ip":"::1","host_ports":{"start":8000,"end":8001},"container_ports":{"start":80,"end":81},"proto":"udp"}"#
        );
        assert_eq!(serde_json::from_str::<PublishSpec>(&json).unwrap(), spec);

        let minimal = r#"{"container_ports":{"start":80,"end":80},"proto":"tcp"}"#;
        assert_eq!(
            serde_json::from_str::<PublishSpec>(minimal).unwrap(),
            "80".parse().unwrap()
        );
        let mismatched = r#"{"host_ports":{"start":1,"end":1},"container_ports":{"start":80,"end":81},"proto":"tcp"}"#;
        let e = serde_json::from_str::<PublishSpec>(mismatched).unwrap_err();
        assert!(
            e.to_string().contains("host port 1 is a single port"),
            "{e}"
        );
    }
}
