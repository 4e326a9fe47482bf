//! Protocols, port ranges, `--expose` and `netd port` queries.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::*;

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
pub(super) fn split_proto(s: &str) -> Result<(&str, Proto), String> {
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
pub(super) fn parse_port_number(role: &str, s: &str) -> Result<u16, String> {
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
pub(super) fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses "80" or "8000-8010"; `role` names the ports in the error.
pub(super) fn parse_port_range(role: &str, s: &str) -> Result<PortRange, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;

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
}
