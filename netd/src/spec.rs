//! Parsers and validators for every piece of user input the CLI and the HTTP API accept:
//! `-p`/`--publish`, `--expose`, `--link`, `--net`, `--mac-address`, `--name`, `-h`,
//! `--dns-search`, subnets and addresses, `netd port` queries, and the kernel's ephemeral port
//! range that `-P` draws from.
//!
//! Everything here is pure except [`read_ephemeral_ports`]. Every error quotes the bad input and
//! says what is wrong with it, so the CLI can print it as is.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Longest container name Docker accepts.
pub const MAX_CONTAINER_NAME_LEN: usize = 64;
/// Longest hostname Docker accepts (stricter than the 253 of RFC 1123).
pub const MAX_HOSTNAME_LEN: usize = 64;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;
/// Longest domain name in text form, without the trailing dot.
const MAX_DOMAIN_LEN: usize = 253;

/// The directory holding the host's ephemeral port settings. These sysctls are per network
/// namespace: read them from the host namespace.
pub const PROC_IPV4_DIR: &str = "/proc/sys/net/ipv4";
const LOCAL_PORT_RANGE_FILE: &str = "ip_local_port_range";
const LOCAL_RESERVED_PORTS_FILE: &str = "ip_local_reserved_ports";

/// A user input that netd cannot accept. Each message quotes the input and says why.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid protocol {input:?}: expected \"tcp\" or \"udp\"")]
    Proto { input: String },
    #[error("invalid port range {input:?}: {reason}")]
    PortRange { input: String, reason: String },
    #[error("invalid port spec {input:?}: {reason}")]
    Publish { input: String, reason: String },
    #[error("invalid expose spec {input:?}: {reason}")]
    Expose { input: String, reason: String },
    #[error("invalid link {input:?}: {reason}")]
    Link { input: String, reason: String },
    #[error("invalid network mode {input:?}: {reason}")]
    NetMode { input: String, reason: String },
    #[error("invalid MAC address {input:?}: {reason}")]
    Mac { input: String, reason: String },
    #[error("invalid container name {input:?}: {reason}")]
    ContainerName { input: String, reason: String },
    #[error("invalid hostname {input:?}: {reason}")]
    Hostname { input: String, reason: String },
    #[error("invalid DNS search domain {input:?}: {reason}")]
    DnsSearch { input: String, reason: String },
    #[error("malformed CIDR {input:?}: {reason}")]
    Cidr { input: String, reason: String },
    #[error("invalid IPv4 address {input:?}: {reason}")]
    Ipv4 { input: String, reason: String },
    #[error("invalid port {input:?}: {reason}")]
    PortQuery { input: String, reason: String },
    #[error("unexpected content {input:?} in {}: {reason}", .path.display())]
    ProcFile {
        path: PathBuf,
        input: String,
        reason: String,
    },
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// Protocols and port ranges

/// A transport protocol that can be exposed or published.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number (`IPPROTO_TCP` / `IPPROTO_UDP`).
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_proto(s).map_err(|_| SpecError::Proto {
            input: s.to_owned(),
        })
    }
}

/// Parses "tcp" or "udp" in any case; the error is a clause for a larger message.
fn parse_proto(s: &str) -> Result<Proto, String> {
    if s.eq_ignore_ascii_case("tcp") {
        Ok(Proto::Tcp)
    } else if s.eq_ignore_ascii_case("udp") {
        Ok(Proto::Udp)
    } else if s.is_empty() {
        Err("the protocol after \"/\" is empty; write tcp or udp".to_owned())
    } else {
        Err(format!("protocol {s:?} is not tcp or udp"))
    }
}

/// Splits an optional `/tcp` or `/udp` suffix off `s`; without one the protocol is TCP.
fn split_proto(s: &str) -> Result<(&str, Proto), String> {
    match s.split_once('/') {
        None => Ok((s, Proto::Tcp)),
        Some((rest, proto)) => Ok((rest, parse_proto(proto)?)),
    }
}

/// An inclusive range of ports, `1 <= start <= end <= 65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "PortRangeFields")]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

/// What a serialized [`PortRange`] holds, before validation.
#[derive(Deserialize)]
struct PortRangeFields {
    start: u16,
    end: u16,
}

impl TryFrom<PortRangeFields> for PortRange {
    type Error = SpecError;

    fn try_from(fields: PortRangeFields) -> Result<Self, Self::Error> {
        Self::new(fields.start, fields.end)
    }
}

impl PortRange {
    /// The range `start..=end`, checked.
    pub fn new(start: u16, end: u16) -> Result<Self, SpecError> {
        check_port_range("port", start, end).map_err(|reason| SpecError::PortRange {
            input: format!("{start}-{end}"),
            reason,
        })
    }

    /// The range holding only `port`.
    ///
    /// # Panics
    /// If `port` is 0, which is never a valid port.
    pub const fn single(port: u16) -> Self {
        assert!(port != 0, "port 0 is not a valid port");
        Self {
            start: port,
            end: port,
        }
    }

    /// How many ports the range holds.
    pub const fn len(&self) -> u32 {
        // Saturating so a range built by hand with start > end counts as empty.
        (self.end as u32 + 1).saturating_sub(self.start as u32)
    }

    /// Only a range built by hand with `start > end` is empty.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub const fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }

    /// Whether the two ranges share at least one port.
    pub const fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// The ports of the range, in order.
    pub const fn ports(&self) -> RangeInclusive<u16> {
        self.start..=self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl FromStr for PortRange {
    type Err = SpecError;

    /// Parses "80" or "8000-8010".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_port_range("port", s).map_err(|reason| SpecError::PortRange {
            input: s.to_owned(),
            reason,
        })
    }
}

/// Parses one port number, decimal digits only, 1..=65535. `role` names the port in the error
/// ("host port", "container port").
fn parse_port_number(role: &str, s: &str) -> Result<u16, String> {
    if s.is_empty() {
        return Err(format!("{role} is empty"));
    }
    // Digits only: `u16::from_str` would also take "+80".
    match s.parse::<u16>() {
        Ok(port) if port != 0 && is_decimal(s) => Ok(port),
        _ => Err(format!("{role} {s:?} is not a number between 1 and 65535")),
    }
}

/// Whether `s` is a non-empty run of ASCII digits.
fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses "80" or "8000-8010"; `role` names the ports in the error.
fn parse_port_range(role: &str, s: &str) -> Result<PortRange, String> {
    let Some((start, end)) = s.split_once('-') else {
        let port = parse_port_number(role, s)?;
        return Ok(PortRange::single(port));
    };
    if start.is_empty() || end.is_empty() || end.contains('-') {
        return Err(format!(
            "{role} {s:?} is neither a port nor a range like 8000-8010"
        ));
    }
    let start = parse_port_number(role, start)?;
    let end = parse_port_number(role, end)?;
    check_port_range(role, start, end)
}

fn check_port_range(role: &str, start: u16, end: u16) -> Result<PortRange, String> {
    if start == 0 || end == 0 {
        Err(format!("{role} 0 is not a number between 1 and 65535"))
    } else if start > end {
        Err(format!(
            "{role} range {start}-{end} ends before it starts; write {end}-{start}"
        ))
    } else {
        Ok(PortRange { start, end })
    }
}

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

// ---------------------------------------------------------------------------------------------
// --expose and `netd port` queries

/// One `--expose` (or Dockerfile `EXPOSE`) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExposeSpec {
    pub ports: PortRange,
    pub proto: Proto,
}

impl fmt::Display for ExposeSpec {
    /// The canonical form, `PORTS/PROTO`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ports, self.proto)
    }
}

impl FromStr for ExposeSpec {
    type Err = SpecError;

    /// Parses "80", "80/udp" or "8000-8010/tcp".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| SpecError::Expose {
            input: s.to_owned(),
            reason,
        };
        let (ports, proto) = split_proto(s).map_err(fail)?;
        let ports = parse_port_range("port", ports).map_err(fail)?;
        Ok(Self { ports, proto })
    }
}

/// Parses the port argument of `netd port NAME 80/tcp`: "80", "80/tcp" or "80/udp". The
/// protocol is `None` when left out.
pub fn parse_port_query(s: &str) -> Result<(u16, Option<Proto>), SpecError> {
    let fail = |reason: String| SpecError::PortQuery {
        input: s.to_owned(),
        reason,
    };
    let (port, proto) = match s.split_once('/') {
        None => (s, None),
        Some((port, proto)) => (port, Some(parse_proto(proto).map_err(fail)?)),
    };
    let port = parse_port_number("port", port).map_err(|_| {
        fail(
            "expected a port number between 1 and 65535, optionally followed by /tcp or /udp"
                .to_owned(),
        )
    })?;
    Ok((port, proto))
}

// ---------------------------------------------------------------------------------------------
// --link and --net

/// One `--link NAME[:ALIAS]`: the linked container and the hostname it gets in this one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "LinkSpecFields")]
pub struct LinkSpec {
    pub name: String,
    pub alias: String,
}

/// What a serialized [`LinkSpec`] holds, before validation.
#[derive(Deserialize)]
struct LinkSpecFields {
    name: String,
    alias: String,
}

impl TryFrom<LinkSpecFields> for LinkSpec {
    type Error = SpecError;

    fn try_from(f: LinkSpecFields) -> Result<Self, Self::Error> {
        Self::new(f.name, f.alias)
    }
}

impl LinkSpec {
    /// A link, checked: `name` a container name, `alias` a container name and a hostname.
    pub fn new(name: String, alias: String) -> Result<Self, SpecError> {
        check_link(&name, &alias).map_err(|reason| SpecError::Link {
            input: format!("{name}:{alias}"),
            reason,
        })?;
        Ok(Self { name, alias })
    }
}

impl fmt::Display for LinkSpec {
    /// The canonical form, `NAME:ALIAS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.alias)
    }
}

impl FromStr for LinkSpec {
    type Err = SpecError;

    /// Parses "NAME" (the alias is the name) or "NAME:ALIAS".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| SpecError::Link {
            input: s.to_owned(),
            reason,
        };
        let (name, alias) = s.split_once(':').unwrap_or((s, s));
        if alias.contains(':') {
            return Err(fail(
                "it has more than one \":\"; write NAME or NAME:ALIAS".to_owned(),
            ));
        }
        check_link(name, alias).map_err(fail)?;
        Ok(Self {
            name: name.to_owned(),
            alias: alias.to_owned(),
        })
    }
}

fn check_link(name: &str, alias: &str) -> Result<(), String> {
    check_container_name(name).map_err(|r| format!("container name {name:?} {r}"))?;
    check_container_name(alias).map_err(|r| format!("alias {alias:?} {r}"))?;
    check_hostname(alias).map_err(|r| {
        let hint = if alias == name {
            format!("; give the link an alias that is one, as in {name}:ALIAS")
        } else {
            String::new()
        };
        format!("alias {alias:?} is not a valid hostname: it {r}{hint}")
    })
}

/// The `--net` mode of a container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NetMode {
    /// A veth pair into the netd bridge (Docker's default).
    #[default]
    Bridge,
    /// The host's own network namespace.
    Host,
    /// A namespace with only loopback.
    None,
    /// The network namespace of another container, by name or id.
    Container(String),
}

impl fmt::Display for NetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bridge => f.write_str("bridge"),
            Self::Host => f.write_str("host"),
            Self::None => f.write_str("none"),
            Self::Container(name) => write!(f, "container:{name}"),
        }
    }
}

impl FromStr for NetMode {
    type Err = SpecError;

    /// Parses "bridge", "host", "none" or "container:NAME" (lower case, as Docker does).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| SpecError::NetMode {
            input: s.to_owned(),
            reason,
        };
        match s {
            "bridge" => Ok(Self::Bridge),
            "host" => Ok(Self::Host),
            "none" => Ok(Self::None),
            _ => {
                let Some(name) = s.strip_prefix("container:") else {
                    return Err(fail(
                        "expected bridge, host, none or container:NAME".to_owned(),
                    ));
                };
                check_container_name(name)
                    .map_err(|r| fail(format!("container name {name:?} {r}")))?;
                Ok(Self::Container(name.to_owned()))
            }
        }
    }
}

impl TryFrom<String> for NetMode {
    type Error = SpecError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NetMode> for String {
    fn from(mode: NetMode) -> Self {
        mode.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// MAC addresses

/// Parses `--mac-address`: six two-digit hex bytes separated by colons, in any case. Multicast
/// and all-zero addresses cannot be given to an interface and are rejected.
pub fn parse_mac(s: &str) -> Result<[u8; 6], SpecError> {
    let fail = |reason: String| SpecError::Mac {
        input: s.to_owned(),
        reason,
    };
    let mac = parse_mac_bytes(s).ok_or_else(|| {
        fail(
            "expected six two-digit hex bytes separated by \":\", like 02:42:ac:11:00:02"
                .to_owned(),
        )
    })?;
    if mac[0] & 1 == 1 {
        return Err(fail(format!(
            "it is a multicast address (the lowest bit of the first byte, {:02x}, is set); \
             use a unicast address such as 02:42:ac:11:00:02",
            mac[0]
        )));
    }
    if mac == [0; 6] {
        return Err(fail(
            "the all-zero address cannot be assigned to an interface".to_owned(),
        ));
    }
    Ok(mac)
}

fn parse_mac_bytes(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The lower-case colon form, `02:42:ac:11:00:02`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Docker's MAC for a container address: `02:42` followed by the four address bytes.
pub fn mac_from_ipv4(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

// ---------------------------------------------------------------------------------------------
// Names

/// Checks a container name against Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, 1 to 64 characters.
pub fn validate_container_name(name: &str) -> Result<(), SpecError> {
    check_container_name(name).map_err(|r| SpecError::ContainerName {
        input: name.to_owned(),
        reason: format!("it {r}"),
    })
}

/// Checks a hostname: RFC 1123 labels (letters, digits and "-", not at either end, 1 to 63
/// characters) joined by dots, at most 64 characters in all as Docker allows.
pub fn validate_hostname(name: &str) -> Result<(), SpecError> {
    check_hostname(name).map_err(|r| SpecError::Hostname {
        input: name.to_owned(),
        reason: format!("it {r}"),
    })
}

/// Checks a `--dns-search` entry: a domain name (hostname labels, at most 253 characters, a
/// trailing dot allowed), or exactly "." for no search domain.
pub fn validate_dns_search(domain: &str) -> Result<(), SpecError> {
    check_dns_search(domain).map_err(|r| SpecError::DnsSearch {
        input: domain.to_owned(),
        reason: format!("it {r}"),
    })
}

// The `check_*` helpers return the problem as a clause ("is empty", "contains '/'") that the
// caller puts after a subject.

fn check_container_name(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("is empty".to_owned());
    };
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "starts with {first:?}; a name must start with a letter or digit"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "contains {bad:?}; only letters, digits, '_', '.' and '-' are allowed"
        ));
    }
    check_length(name, MAX_CONTAINER_NAME_LEN)
}

fn check_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    check_labels(name)?;
    check_length(name, MAX_HOSTNAME_LEN)
}

fn check_dns_search(domain: &str) -> Result<(), String> {
    if domain == "." {
        return Ok(());
    }
    if domain.is_empty() {
        return Err("is empty; use \".\" for no search domain".to_owned());
    }
    let name = domain.strip_suffix('.').unwrap_or(domain);
    check_labels(name)?;
    check_length(name, MAX_DOMAIN_LEN)
}

/// Checks each dot-separated label of `name`.
fn check_labels(name: &str) -> Result<(), String> {
    name.split('.').try_for_each(check_label)
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(
            "has an empty label (a dot at the start or end, or two dots in a row)".to_owned(),
        );
    }
    if let Some(bad) = label
        .chars()
        .find(|&c| !c.is_ascii_alphanumeric() && c != '-')
    {
        return Err(format!(
            "contains {bad:?}; only letters, digits, '-' and '.' are allowed"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "has a label {label:?} that starts or ends with '-'"
        ));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "has a label of {} characters; the limit is {MAX_LABEL_LEN}",
            label.len()
        ));
    }
    Ok(())
}

/// Checks the length of an all-ASCII name.
fn check_length(name: &str, max: usize) -> Result<(), String> {
    if name.len() > max {
        Err(format!(
            "is {} characters long; the limit is {max}",
            name.len()
        ))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses and subnets

/// Parses an IPv4 CIDR such as "172.17.0.0/16". Host bits may be set: "192.168.1.5/24" keeps
/// the address 192.168.1.5 (a bridge address together with its subnet).
pub fn parse_ipv4_net(s: &str) -> Result<Ipv4Net, SpecError> {
    let fail = |reason: String| SpecError::Cidr {
        input: s.to_owned(),
        reason,
    };
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(fail(
            "expected ADDRESS/PREFIX, like 172.17.0.0/16".to_owned(),
        ));
    };
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| fail(format!("{addr:?} is not an IPv4 address")))?;
    let prefix = match prefix.parse::<u8>() {
        Ok(len) if len <= 32 && is_decimal(prefix) => len,
        _ => {
            return Err(fail(format!(
                "prefix length {prefix:?} is not a number between 0 and 32"
            )));
        }
    };
    Ipv4Net::new(addr, prefix).map_err(|e| fail(e.to_string()))
}

/// Parses an IPv4 address in dotted-quad form.
pub fn parse_ipv4(s: &str) -> Result<Ipv4Addr, SpecError> {
    s.parse().map_err(|_| {
        let reason = if s.parse::<Ipv6Addr>().is_ok() {
            "it is an IPv6 address; an IPv4 address is needed here".to_owned()
        } else if let Some((addr, _)) = s.split_once('/') {
            format!("it has a prefix length; give the address alone, like {addr}")
        } else {
            "expected four numbers from 0 to 255 separated by dots, like 172.17.0.1".to_owned()
        };
        SpecError::Ipv4 {
            input: s.to_owned(),
            reason,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Ephemeral ports for -P

/// The host's ephemeral port settings, which `-P` allocates from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphemeralPorts {
    /// `ip_local_port_range`: lowest and highest port, inclusive.
    pub range: (u16, u16),
    /// `ip_local_reserved_ports`: ports the kernel never hands out, nor does netd.
    pub reserved: Vec<PortRange>,
}

impl EphemeralPorts {
    /// Whether `port` is in the range and not reserved.
    pub fn is_usable(&self, port: u16) -> bool {
        (self.range.0..=self.range.1).contains(&port)
            && !self.reserved.iter().any(|r| r.contains(port))
    }

    /// The usable ports, in order.
    pub fn usable(&self) -> impl Iterator<Item = u16> + '_ {
        (self.range.0..=self.range.1).filter(|&port| self.is_usable(port))
    }
}

/// Parses the content of `/proc/sys/net/ipv4/ip_local_port_range`, e.g. "32768\t60999\n".
pub fn parse_local_port_range(content: &str) -> Result<(u16, u16), SpecError> {
    parse_local_port_range_at(
        &Path::new(PROC_IPV4_DIR).join(LOCAL_PORT_RANGE_FILE),
        content,
    )
}

/// Parses the content of `/proc/sys/net/ipv4/ip_local_reserved_ports`: empty, or a comma
/// separated list of ports and ranges such as "8080,9000-9010\n".
pub fn parse_reserved_ports(content: &str) -> Result<Vec<PortRange>, SpecError> {
    parse_reserved_ports_at(
        &Path::new(PROC_IPV4_DIR).join(LOCAL_RESERVED_PORTS_FILE),
        content,
    )
}

/// Reads the ephemeral port settings of the calling thread's network namespace.
pub fn read_ephemeral_ports() -> Result<EphemeralPorts, SpecError> {
    read_ephemeral_ports_from(Path::new(PROC_IPV4_DIR))
}

/// Reads `ip_local_port_range` and `ip_local_reserved_ports` from `dir` (normally
/// [`PROC_IPV4_DIR`]). A missing reserved-ports file means no reserved ports.
pub fn read_ephemeral_ports_from(dir: &Path) -> Result<EphemeralPorts, SpecError> {
    let range_path = dir.join(LOCAL_PORT_RANGE_FILE);
    let content = fs::read_to_string(&range_path).map_err(|source| SpecError::Read {
        path: range_path.clone(),
        source,
    })?;
    let range = parse_local_port_range_at(&range_path, &content)?;

    let reserved_path = dir.join(LOCAL_RESERVED_PORTS_FILE);
    let reserved = match fs::read_to_string(&reserved_path) {
        Ok(content) => parse_reserved_ports_at(&reserved_path, &content)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(SpecError::Read {
                path: reserved_path,
                source,
            });
        }
    };
    Ok(EphemeralPorts { range, reserved })
}

fn parse_local_port_range_at(path: &Path, content: &str) -> Result<(u16, u16), SpecError> {
    let fail = |reason: String| SpecError::ProcFile {
        path: path.to_owned(),
        input: content.to_owned(),
        reason,
    };
    let fields: Vec<&str> = content.split_whitespace().collect();
    let [low, high] = fields[..] else {
        return Err(fail(
            "expected two port numbers, the lowest and the highest ephemeral port".to_owned(),
        ));
    };
    let low = parse_port_number("the lowest port", low).map_err(fail)?;
    let high = parse_port_number("the highest port", high).map_err(fail)?;
    if low > high {
        return Err(fail(format!(
            "the lowest port {low} is above the highest port {high}"
        )));
    }
    Ok((low, high))
}

fn parse_reserved_ports_at(path: &Path, content: &str) -> Result<Vec<PortRange>, SpecError> {
    let content_trimmed = content.trim();
    if content_trimmed.is_empty() {
        return Ok(Vec::new());
    }
    content_trimmed
        .split(',')
        .map(|entry| {
            parse_port_range("reserved port", entry.trim()).map_err(|reason| SpecError::ProcFile {
                path: path.to_owned(),
                input: content.to_owned(),
                reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error text of a result that must fail.
    fn err<T: fmt::Debug>(result: Result<T, SpecError>) -> String {
        result.expect_err("input must be rejected").to_string()
    }

    /// Asserts that parsing fails and that the message holds each of `parts`.
    #[track_caller]
    fn assert_err<T: fmt::Debug>(result: Result<T, SpecError>, parts: &[&str]) {
        let text = err(result);
        for part in parts {
            assert!(text.contains(part), "{text:?} does not contain {part:?}");
        }
    }

    fn range(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }

    // --- Proto ---

    #[test]
    fn proto_parses_any_case() {
        for (input, want) in [
            ("tcp", Proto::Tcp),
            ("TCP", Proto::Tcp),
            ("Udp", Proto::Udp),
            ("udp", Proto::Udp),
        ] {
            assert_eq!(input.parse::<Proto>().unwrap(), want, "{input}");
        }
    }

    #[test]
    fn proto_rejects_other_names() {
        assert_eq!(
            err("sctp".parse::<Proto>()),
            r#"invalid protocol "sctp": expected "tcp" or "udp""#
        );
        assert_err("".parse::<Proto>(), &[r#"invalid protocol """#]);
        assert_err(" tcp".parse::<Proto>(), &[r#"" tcp""#]);
    }

    #[test]
    fn proto_display_number_and_serde() {
        assert_eq!(Proto::Tcp.to_string(), "tcp");
        assert_eq!(Proto::Udp.to_string(), "udp");
        assert_eq!(Proto::Tcp.number(), 6);
        assert_eq!(Proto::Udp.number(), 17);
        assert_eq!(serde_json::to_string(&Proto::Udp).unwrap(), r#""udp""#);
        assert_eq!(
            serde_json::from_str::<Proto>(r#""tcp""#).unwrap(),
            Proto::Tcp
        );
        assert!(serde_json::from_str::<Proto>(r#""sctp""#).is_err());
    }

    // --- PortRange ---

    #[test]
    fn port_range_parses_single_ports_and_ranges() {
        for (input, want) in [
            ("80", range(80, 80)),
            ("1", range(1, 1)),
            ("65535", range(65535, 65535)),
            ("8000-8010", range(8000, 8010)),
            ("1-65535", range(1, 65535)),
            ("80-80", range(80, 80)),
            ("080", range(80, 80)),
        ] {
            assert_eq!(input.parse::<PortRange>().unwrap(), want, "{input}");
        }
    }

    #[test]
    fn port_range_rejects_bad_numbers() {
        assert_eq!(
            err("abc".parse::<PortRange>()),
            r#"invalid port range "abc": port "abc" is not a number between 1 and 65535"#
        );
        for bad in ["0", "65536", "+80", " 80", "80 ", "1e3", "99999999999"] {
            assert_err(
                bad.parse::<PortRange>(),
                &[&format!("{bad:?}"), "is not a number between 1 and 65535"],
            );
        }
        assert_err(
            "80-abc".parse::<PortRange>(),
            &[r#"port "abc" is not a number"#],
        );
        assert_err(
            "0-80".parse::<PortRange>(),
            &[r#"port "0" is not a number"#],
        );
        assert_err("".parse::<PortRange>(), &["port is empty"]);
    }

    #[test]
    fn port_range_rejects_malformed_ranges() {
        for bad in ["80-", "-80", "80-90-100", "-", "80--90"] {
            assert_err(
                bad.parse::<PortRange>(),
                &[&format!("{bad:?}"), "neither a port nor a range"],
            );
        }
        assert_eq!(
            err("8010-8000".parse::<PortRange>()),
            r#"invalid port range "8010-8000": port range 8010-8000 ends before it starts; write 8000-8010"#
        );
    }

    #[test]
    fn port_range_display_round_trips() {
        assert_eq!(range(80, 80).to_string(), "80");
        assert_eq!(range(8000, 8010).to_string(), "8000-8010");
        for input in ["80", "1", "65535", "8000-8010", "1-65535"] {
            let parsed: PortRange = input.parse().unwrap();
            assert_eq!(parsed.to_string(), input);
            assert_eq!(parsed.to_string().parse::<PortRange>().unwrap(), parsed);
        }
    }

    #[test]
    fn port_range_queries() {
        assert_eq!(range(80, 80).len(), 1);
        assert_eq!(range(8000, 8010).len(), 11);
        assert_eq!(range(1, 65535).len(), 65535);
        assert!(!range(80, 80).is_empty());
        assert!(range(9, 8).is_empty());

        let r = range(8000, 8010);
        assert!(r.contains(8000) && r.contains(8005) && r.contains(8010));
        assert!(!r.contains(7999) && !r.contains(8011));

        assert!(r.overlaps(&range(8010, 9000)));
        assert!(r.overlaps(&range(7000, 8000)));
        assert!(r.overlaps(&range(8003, 8004)));
        assert!(range(8003, 8004).overlaps(&r));
        assert!(!r.overlaps(&range(8011, 9000)));
        assert!(!r.overlaps(&range(1, 7999)));

        assert_eq!(PortRange::single(443), range(443, 443));
        assert_eq!(range(5, 7).ports().collect::<Vec<_>>(), [5, 6, 7]);
    }

    #[test]
    #[should_panic(expected = "port 0")]
    fn port_range_single_rejects_zero() {
        let _ = PortRange::single(0);
    }

    #[test]
    fn port_range_new_checks() {
        assert_eq!(PortRange::new(1, 2).unwrap(), range(1, 2));
        assert_err(
            PortRange::new(0, 2),
            &[r#""0-2""#, "port 0 is not a number"],
        );
        assert_err(PortRange::new(3, 2), &["ends before it starts; write 2-3"]);
    }

    #[test]
    fn port_range_serde_round_trips_and_validates() {
        let r = range(8000, 8010);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"start":8000,"end":8010}"#);
        assert_eq!(serde_json::from_str::<PortRange>(&json).unwrap(), r);
        let e = serde_json::from_str::<PortRange>(r#"{"start":9,"end":8}"#).unwrap_err();
        assert!(e.to_string().contains("ends before it starts"), "{e}");
        assert!(serde_json::from_str::<PortRange>(r#"{"start":0,"end":8}"#).is_err());
    }

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

    // --- ExposeSpec ---

    #[test]
    fn expose_parses_ports_and_protocols() {
        for (input, ports, proto) in [
            ("80", range(80, 80), Proto::Tcp),
            ("80/udp", range(80, 80), Proto::Udp),
            ("8000-8010/tcp", range(8000, 8010), Proto::Tcp),
            ("8000-8010/UDP", range(8000, 8010), Proto::Udp),
        ] {
            assert_eq!(
                input.parse::<ExposeSpec>().unwrap(),
                ExposeSpec { ports, proto },
                "{input}"
            );
        }
    }

    #[test]
    fn expose_rejects_bad_input() {
        assert_eq!(
            err("abc".parse::<ExposeSpec>()),
            r#"invalid expose spec "abc": port "abc" is not a number between 1 and 65535"#
        );
        assert_err(
            "".parse::<ExposeSpec>(),
            &[r#"invalid expose spec """#, "port is empty"],
        );
        assert_err("80/sctp".parse::<ExposeSpec>(), &[r#"protocol "sctp""#]);
        assert_err(
            "8080:80".parse::<ExposeSpec>(),
            &[r#""8080:80" is not a number"#],
        );
        assert_err("90-80/udp".parse::<ExposeSpec>(), &["write 80-90"]);
    }

    #[test]
    fn expose_display_round_trips_and_serde() {
        let spec: ExposeSpec = "8000-8010/udp".parse().unwrap();
        assert_eq!(spec.to_string(), "8000-8010/udp");
        assert_eq!("80".parse::<ExposeSpec>().unwrap().to_string(), "80/tcp");
        assert_eq!(spec.to_string().parse::<ExposeSpec>().unwrap(), spec);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(json, r#"{"ports":{"start":8000,"end":8010},"proto":"udp"}"#);
        assert_eq!(serde_json::from_str::<ExposeSpec>(&json).unwrap(), spec);
    }

    // --- LinkSpec ---

    fn link(name: &str, alias: &str) -> LinkSpec {
        LinkSpec {
            name: name.to_owned(),
            alias: alias.to_owned(),
        }
    }

    #[test]
    fn link_parses_name_and_alias() {
        assert_eq!("db".parse::<LinkSpec>().unwrap(), link("db", "db"));
        assert_eq!("db:mysql".parse::<LinkSpec>().unwrap(), link("db", "mysql"));
        assert_eq!(
            "my_db.1:db-1".parse::<LinkSpec>().unwrap(),
            link("my_db.1", "db-1")
        );
        assert_eq!(
            "0123abcd:cache.local".parse::<LinkSpec>().unwrap(),
            link("0123abcd", "cache.local")
        );
    }

    #[test]
    fn link_rejects_bad_names_and_aliases() {
        assert_err(
            "".parse::<LinkSpec>(),
            &[r#"invalid link "": container name "" is empty"#],
        );
        assert_err(
            "a:b:c".parse::<LinkSpec>(),
            &["more than one \":\"; write NAME or NAME:ALIAS"],
        );
        assert_err(
            "_db:x".parse::<LinkSpec>(),
            &[r#"container name "_db" starts with '_'"#],
        );
        assert_err(":x".parse::<LinkSpec>(), &[r#"container name "" is empty"#]);
        assert_err("db:".parse::<LinkSpec>(), &[r#"alias "" is empty"#]);
        assert_err(
            "db:a/b".parse::<LinkSpec>(),
            &[r#"alias "a/b" contains '/'"#],
        );
        assert_eq!(
            err("db:my_alias".parse::<LinkSpec>()),
            "invalid link \"db:my_alias\": alias \"my_alias\" is not a valid hostname: it \
             contains '_'; only letters, digits, '-' and '.' are allowed"
        );
        assert_err(
            "my_db".parse::<LinkSpec>(),
            &[
                r#"alias "my_db" is not a valid hostname"#,
                "as in my_db:ALIAS",
            ],
        );
        assert_err("db:web-".parse::<LinkSpec>(), &["starts or ends with '-'"]);
        let long = "a".repeat(65);
        assert_err(
            format!("{long}:db").parse::<LinkSpec>(),
            &["is 65 characters long; the limit is 64"],
        );
    }

    #[test]
    fn link_display_round_trips_and_serde() {
        let l: LinkSpec = "db".parse().unwrap();
        assert_eq!(l.to_string(), "db:db");
        let l: LinkSpec = "web.1:web".parse().unwrap();
        assert_eq!(l.to_string(), "web.1:web");
        assert_eq!(l.to_string().parse::<LinkSpec>().unwrap(), l);

        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, r#"{"name":"web.1","alias":"web"}"#);
        assert_eq!(serde_json::from_str::<LinkSpec>(&json).unwrap(), l);
        let e = serde_json::from_str::<LinkSpec>(r#"{"name":"db","alias":"a_b"}"#).unwrap_err();
        assert!(e.to_string().contains("not a valid hostname"), "{e}");
        assert!(LinkSpec::new("db".into(), "cache".into()).is_ok());
        assert_err(
            LinkSpec::new("/db".into(), "cache".into()),
            &[r#"invalid link "/db:cache""#],
        );
    }

    // --- NetMode ---

    #[test]
    fn net_mode_parses_each_mode() {
        assert_eq!("bridge".parse::<NetMode>().unwrap(), NetMode::Bridge);
        assert_eq!("host".parse::<NetMode>().unwrap(), NetMode::Host);
        assert_eq!("none".parse::<NetMode>().unwrap(), NetMode::None);
        assert_eq!(
            "container:web_1".parse::<NetMode>().unwrap(),
            NetMode::Container("web_1".to_owned())
        );
        assert_eq!(NetMode::default(), NetMode::Bridge);
    }

    #[test]
    fn net_mode_rejects_unknown_modes_and_bad_names() {
        assert_eq!(
            err("nat".parse::<NetMode>()),
            r#"invalid network mode "nat": expected bridge, host, none or container:NAME"#
        );
        for bad in ["", "Host", "bridged", "container", " host"] {
            assert_err(
                bad.parse::<NetMode>(),
                &[&format!("{bad:?}"), "expected bridge"],
            );
        }
        assert_err(
            "container:".parse::<NetMode>(),
            &[r#"container name "" is empty"#],
        );
        assert_err(
            "container:a:b".parse::<NetMode>(),
            &[r#"container name "a:b" contains ':'"#],
        );
    }

    #[test]
    fn net_mode_display_round_trips_and_serde() {
        for input in ["bridge", "host", "none", "container:db"] {
            let mode: NetMode = input.parse().unwrap();
            assert_eq!(mode.to_string(), input);
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{input}\""));
            assert_eq!(serde_json::from_str::<NetMode>(&json).unwrap(), mode);
        }
        let e = serde_json::from_str::<NetMode>(r#""container:-x""#).unwrap_err();
        assert!(e.to_string().contains("starts with '-'"), "{e}");
    }

    // --- MAC addresses ---

    #[test]
    fn mac_parses_any_case() {
        let want = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
        assert_eq!(parse_mac("02:42:ac:11:00:02").unwrap(), want);
        assert_eq!(parse_mac("02:42:AC:11:00:02").unwrap(), want);
        assert_eq!(parse_mac("02:42:Ac:11:00:02").unwrap(), want);
        assert_eq!(
            parse_mac("fe:ff:ff:ff:ff:ff").unwrap(),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn mac_rejects_malformed_input() {
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "02:42:ac:11:00:02:",
            "02-42-ac-11-00-02",
            "0242.ac11.0002",
            "02:42:ac:11:0:2",
            "02:42:ac:11:00:zz",
            "+2:42:ac:11:00:02",
            "002:42:ac:11:00:02",
        ] {
            assert_err(
                parse_mac(bad),
                &[
                    &format!("invalid MAC address {bad:?}"),
                    "six two-digit hex bytes",
                ],
            );
        }
    }

    #[test]
    fn mac_rejects_multicast_and_zero() {
        assert_eq!(
            err(parse_mac("01:00:5e:00:00:01")),
            "invalid MAC address \"01:00:5e:00:00:01\": it is a multicast address (the lowest \
             bit of the first byte, 01, is set); use a unicast address such as 02:42:ac:11:00:02"
        );
        assert_err(
            parse_mac("ff:ff:ff:ff:ff:ff"),
            &["multicast", "first byte, ff"],
        );
        assert_err(parse_mac("03:42:ac:11:00:02"), &["multicast"]);
        assert_err(parse_mac("00:00:00:00:00:00"), &["all-zero address"]);
    }

    #[test]
    fn mac_format_and_docker_derivation() {
        let mac = [0x02, 0x42, 0xAC, 0x11, 0x00, 0x0a];
        assert_eq!(format_mac(&mac), "02:42:ac:11:00:0a");
        assert_eq!(parse_mac(&format_mac(&mac)).unwrap(), mac);
        let derived = mac_from_ipv4(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(derived, [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!(format_mac(&derived), "02:42:ac:11:00:02");
        assert_eq!(
            format_mac(&mac_from_ipv4(Ipv4Addr::new(10, 255, 0, 1))),
            "02:42:0a:ff:00:01"
        );
        assert!(parse_mac(&format_mac(&derived)).is_ok());
    }

    // --- Container names, hostnames, DNS search domains ---

    #[test]
    fn container_names() {
        for good in ["a", "7", "web", "Web_1.2-x", "0123abcd", &"a".repeat(64)] {
            assert!(validate_container_name(good).is_ok(), "{good}");
        }
        assert_eq!(
            err(validate_container_name("web/1")),
            "invalid container name \"web/1\": it contains '/'; only letters, digits, '_', '.' \
             and '-' are allowed"
        );
        assert_err(validate_container_name(""), &[r#"name "": it is empty"#]);
        for bad in ["_web", ".web", "-web", "/web"] {
            assert_err(
                validate_container_name(bad),
                &["must start with a letter or digit"],
            );
        }
        assert_err(validate_container_name("we b"), &["contains ' '"]);
        assert_err(validate_container_name("wéb"), &["contains 'é'"]);
        assert_err(
            validate_container_name(&"a".repeat(65)),
            &["is 65 characters long; the limit is 64"],
        );
    }

    #[test]
    fn hostnames() {
        let max = format!("{}.{}", "a".repeat(31), "b".repeat(32));
        assert_eq!(max.len(), 64);
        for good in [
            "a",
            "web",
            "web-1",
            "Web-1",
            "my.host.example",
            "123",
            "a-b-c",
            &max,
        ] {
            assert!(validate_hostname(good).is_ok(), "{good}");
        }
        assert_eq!(
            err(validate_hostname("a_b")),
            "invalid hostname \"a_b\": it contains '_'; only letters, digits, '-' and '.' are \
             allowed"
        );
        assert_err(validate_hostname(""), &["it is empty"]);
        assert_err(
            validate_hostname(&format!("{max}b")),
            &["is 65 characters long; the limit is 64"],
        );
        for bad in ["-web", "web-", "a.-b", "a.b-"] {
            assert_err(validate_hostname(bad), &["starts or ends with '-'"]);
        }
        for bad in ["a..b", ".a", "a."] {
            assert_err(validate_hostname(bad), &["empty label"]);
        }
        assert_err(
            validate_hostname(&"a".repeat(64)),
            &["has a label of 64 characters; the limit is 63"],
        );
        assert_err(validate_hostname("a b"), &["contains ' '"]);
    }

    #[test]
    fn dns_search_domains() {
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        for good in [
            ".",
            "example.com",
            "example.com.",
            "corp",
            "a-b.example",
            &long,
        ] {
            assert!(validate_dns_search(good).is_ok(), "{good}");
        }
        assert!(validate_dns_search(&format!("{long}.")).is_ok());
        assert_eq!(
            err(validate_dns_search("")),
            r#"invalid DNS search domain "": it is empty; use "." for no search domain"#
        );
        for bad in ["..", "example..com", ".example.com", "example.com.."] {
            assert_err(
                validate_dns_search(bad),
                &[&format!("{bad:?}"), "empty label"],
            );
        }
        assert_err(validate_dns_search("-x.com"), &["starts or ends with '-'"]);
        assert_err(validate_dns_search("a_b.com"), &["contains '_'"]);
        assert_err(
            validate_dns_search(&format!("{long}e")),
            &["is 254 characters long; the limit is 253"],
        );
    }

    // --- Addresses and subnets ---

    #[test]
    fn cidr_parses_and_keeps_host_bits() {
        let net = parse_ipv4_net("172.17.0.0/16").unwrap();
        assert_eq!(net.addr(), Ipv4Addr::new(172, 17, 0, 0));
        assert_eq!(net.prefix_len(), 16);

        let net = parse_ipv4_net("192.168.1.5/24").unwrap();
        assert_eq!(net.addr(), Ipv4Addr::new(192, 168, 1, 5));
        assert_eq!(net.network(), Ipv4Addr::new(192, 168, 1, 0));
        assert_eq!(net.prefix_len(), 24);

        assert_eq!(parse_ipv4_net("0.0.0.0/0").unwrap().prefix_len(), 0);
        assert_eq!(parse_ipv4_net("10.0.0.1/32").unwrap().prefix_len(), 32);
    }

    #[test]
    fn cidr_rejects_malformed_input() {
        assert_eq!(
            err(parse_ipv4_net("10.0.0.0")),
            r#"malformed CIDR "10.0.0.0": expected ADDRESS/PREFIX, like 172.17.0.0/16"#
        );
        assert_err(parse_ipv4_net(""), &[r#"malformed CIDR """#]);
        assert_err(
            parse_ipv4_net("10.0.0/8"),
            &[r#"malformed CIDR "10.0.0/8": "10.0.0" is not an IPv4 address"#],
        );
        assert_err(
            parse_ipv4_net("::1/64"),
            &[r#""::1" is not an IPv4 address"#],
        );
        for bad_prefix in ["33", "", "abc", "+8", "-1", "256"] {
            let input = format!("10.0.0.0/{bad_prefix}");
            assert_err(
                parse_ipv4_net(&input),
                &[
                    &format!("malformed CIDR {input:?}"),
                    &format!("prefix length {bad_prefix:?} is not a number between 0 and 32"),
                ],
            );
        }
    }

    #[test]
    fn ipv4_addresses() {
        assert_eq!(
            parse_ipv4("172.17.0.1").unwrap(),
            Ipv4Addr::new(172, 17, 0, 1)
        );
        assert_eq!(parse_ipv4("0.0.0.0").unwrap(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            err(parse_ipv4("256.1.1.1")),
            "invalid IPv4 address \"256.1.1.1\": expected four numbers from 0 to 255 separated \
             by dots, like 172.17.0.1"
        );
        for bad in ["", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "a.b.c.d"] {
            assert_err(parse_ipv4(bad), &[&format!("{bad:?}"), "four numbers"]);
        }
        assert_err(parse_ipv4("::1"), &["it is an IPv6 address"]);
        assert_err(
            parse_ipv4("1.2.3.4/24"),
            &["it has a prefix length; give the address alone, like 1.2.3.4"],
        );
    }

    // --- `netd port` queries ---

    #[test]
    fn port_queries() {
        assert_eq!(parse_port_query("80").unwrap(), (80, None));
        assert_eq!(parse_port_query("80/udp").unwrap(), (80, Some(Proto::Udp)));
        assert_eq!(
            parse_port_query("443/TCP").unwrap(),
            (443, Some(Proto::Tcp))
        );
        assert_eq!(
            err(parse_port_query("abc")),
            "invalid port \"abc\": expected a port number between 1 and 65535, optionally \
             followed by /tcp or /udp"
        );
        for bad in ["", "0", "65536", "80-90", "/tcp", "80:80"] {
            assert_err(
                parse_port_query(bad),
                &[&format!("{bad:?}"), "expected a port"],
            );
        }
        assert_err(
            parse_port_query("80/sctp"),
            &[r#"protocol "sctp" is not tcp or udp"#],
        );
        assert_err(parse_port_query("80/"), &["protocol after \"/\" is empty"]);
    }

    // --- Ephemeral ports ---

    #[test]
    fn local_port_range_content() {
        assert_eq!(
            parse_local_port_range("32768\t60999\n").unwrap(),
            (32768, 60999)
        );
        assert_eq!(parse_local_port_range("1024 65535").unwrap(), (1024, 65535));
        assert_eq!(
            parse_local_port_range("5000\t5000\n").unwrap(),
            (5000, 5000)
        );
        assert_eq!(
            err(parse_local_port_range("60999\t32768\n")),
            "unexpected content \"60999\\t32768\\n\" in /proc/sys/net/ipv4/ip_local_port_range: \
             the lowest port 60999 is above the highest port 32768"
        );
        for bad in ["", "\n", "32768", "1 2 3"] {
            assert_err(parse_local_port_range(bad), &["expected two port numbers"]);
        }
        assert_err(
            parse_local_port_range("abc 60999"),
            &[r#"the lowest port "abc" is not a number"#],
        );
        assert_err(
            parse_local_port_range("0 100"),
            &[r#"the lowest port "0" is not a number"#],
        );
        assert_err(
            parse_local_port_range("1 70000"),
            &[r#"the highest port "70000" is not a number"#],
        );
    }

    #[test]
    fn reserved_ports_content() {
        assert_eq!(parse_reserved_ports("").unwrap(), []);
        assert_eq!(parse_reserved_ports("\n").unwrap(), []);
        assert_eq!(parse_reserved_ports("8080\n").unwrap(), [range(8080, 8080)]);
        assert_eq!(
            parse_reserved_ports("8080,9000-9010\n").unwrap(),
            [range(8080, 8080), range(9000, 9010)]
        );
        assert_err(
            parse_reserved_ports("8080,,9000\n"),
            &["ip_local_reserved_ports", "reserved port is empty"],
        );
        assert_err(
            parse_reserved_ports("abc"),
            &[r#"reserved port "abc" is not a number"#],
        );
        assert_err(
            parse_reserved_ports("9010-9000"),
            &["reserved port range 9010-9000 ends before it starts"],
        );
    }

    #[test]
    fn ephemeral_port_usability() {
        let ports = EphemeralPorts {
            range: (32768, 32800),
            reserved: vec![range(32770, 32770), range(32790, 32799)],
        };
        assert!(!ports.is_usable(32767));
        assert!(ports.is_usable(32768));
        assert!(ports.is_usable(32769));
        assert!(!ports.is_usable(32770));
        assert!(!ports.is_usable(32790));
        assert!(!ports.is_usable(32799));
        assert!(ports.is_usable(32800));
        assert!(!ports.is_usable(32801));
        assert_eq!(ports.usable().count(), 33 - 1 - 10);
        assert_eq!(
            ports.usable().take(3).collect::<Vec<_>>(),
            [32768, 32769, 32771]
        );

        let json = serde_json::to_string(&ports).unwrap();
        assert_eq!(
            serde_json::from_str::<EphemeralPorts>(&json).unwrap(),
            ports
        );
    }

    /// A scratch directory removed on drop, even when the test fails.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("netd-spec-test-{}-{name}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_ephemeral_ports_from_a_directory() {
        let dir = TempDir::new("read");
        fs::write(dir.0.join("ip_local_port_range"), "40000\t40100\n").unwrap();
        fs::write(dir.0.join("ip_local_reserved_ports"), "40050-40059\n").unwrap();
        let ports = read_ephemeral_ports_from(&dir.0).unwrap();
        assert_eq!(ports.range, (40000, 40100));
        assert_eq!(ports.reserved, [range(40050, 40059)]);

        // Without the reserved list nothing is reserved.
        fs::remove_file(dir.0.join("ip_local_reserved_ports")).unwrap();
        assert_eq!(read_ephemeral_ports_from(&dir.0).unwrap().reserved, []);

        // Parse errors name the file that was read.
        fs::write(dir.0.join("ip_local_port_range"), "garbage\n").unwrap();
        let text = err(read_ephemeral_ports_from(&dir.0));
        assert!(
            text.contains(&dir.0.join("ip_local_port_range").display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn reading_a_missing_range_file_names_it() {
        let dir = TempDir::new("missing");
        let e = read_ephemeral_ports_from(&dir.0).unwrap_err();
        let SpecError::Read { path, source } = &e else {
            panic!("expected a read error, got {e:?}");
        };
        assert_eq!(path, &dir.0.join("ip_local_port_range"));
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().starts_with("cannot read "), "{e}");
    }

    #[test]
    fn reads_the_hosts_ephemeral_ports() {
        let ports = read_ephemeral_ports().unwrap();
        assert!(
            ports.range.0 >= 1 && ports.range.0 <= ports.range.1,
            "{ports:?}"
        );
    }
}
