//! Parsers and validators for every piece of user input the CLI and the HTTP API accept:
//! `-p`/`--publish`, `--expose`, `--link`, `--net`, `--mac-address`, `--name`, `-h`,
//! `--dns-search`, subnets and addresses, `netd port` queries, and the kernel's ephemeral port
//! range that `-P` draws from.
//!
//! Everything here is pure except [`read_ephemeral_ports`]. Every error quotes the bad input and
//! says what is wrong with it, so the CLI can print it as is.

use std::io;
use std::path::PathBuf;

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
    #[error("invalid interface name {input:?}: {reason}")]
    Ifname { input: String, reason: String },
    #[error("invalid hostname {input:?}: {reason}")]
    Hostname { input: String, reason: String },
    #[error("invalid --dns {input:?}: not an IP address")]
    Dns { input: String },
    #[error("invalid DNS search domain {input:?}: {reason}")]
    DnsSearch { input: String, reason: String },
    #[error("malformed CIDR {input:?}: {reason}")]
    Cidr { input: String, reason: String },
    #[error("invalid IPv4 address {input:?}: {reason}")]
    Ipv4 { input: String, reason: String },
    #[error("invalid IPv6 address {input:?}: {reason}")]
    Ipv6 { input: String, reason: String },
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

mod addr;
mod dns;
mod ephemeral;
mod names;
mod net;
mod ports;
mod publish;

pub use addr::*;
pub use dns::*;
pub use ephemeral::*;
pub use names::*;
pub use net::*;
pub use ports::*;
pub use publish::*;

#[cfg(test)]
pub(crate) mod test_util {
    use std::fmt;

    use super::*;

    /// The error text of a result that must fail.
    pub(crate) fn err<T: fmt::Debug>(result: Result<T, SpecError>) -> String {
        result.expect_err("input must be rejected").to_string()
    }

    /// Asserts that parsing fails and that the message holds each of `parts`.
    #[track_caller]
    pub(crate) fn assert_err<T: fmt::Debug>(result: Result<T, SpecError>, parts: &[&str]) {
        let text = err(result);
        for part in parts {
            assert!(text.contains(part), "{text:?} does not contain {part:?}");
        }
    }

    pub(crate) fn range(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }
}
