//! MAC addresses, IPv4 addresses and subnets.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::*;

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

/// Parses an IPv6 CIDR such as "2001:db8:1::/64" (host bits may be set, as with IPv4).
pub fn parse_ipv6_net(s: &str) -> Result<Ipv6Net, SpecError> {
    let fail = |reason: String| SpecError::Cidr {
        input: s.to_owned(),
        reason,
    };
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(fail(
            "expected ADDRESS/PREFIX, like 2001:db8:1::/64".to_owned(),
        ));
    };
    let addr: Ipv6Addr = addr
        .parse()
        .map_err(|_| fail(format!("{addr:?} is not an IPv6 address")))?;
    let prefix = match prefix.parse::<u8>() {
        Ok(len) if len <= 128 && is_decimal(prefix) => len,
        _ => {
            return Err(fail(format!(
                "prefix length {prefix:?} is not a number between 0 and 128"
            )));
        }
    };
    Ipv6Net::new(addr, prefix).map_err(|e| fail(e.to_string()))
}

/// Parses an IPv6 address (`--ip6`, `--default-gateway-v6`).
pub fn parse_ipv6(s: &str) -> Result<Ipv6Addr, SpecError> {
    s.parse().map_err(|_| {
        let reason = if s.parse::<Ipv4Addr>().is_ok() {
            "it is an IPv4 address; an IPv6 address is needed here".to_owned()
        } else if let Some((addr, _)) = s.split_once('/') {
            format!("it has a prefix length; give the address alone, like {addr}")
        } else {
            "expected an IPv6 address like 2001:db8:1::242:ac11:3".to_owned()
        };
        SpecError::Ipv6 {
            input: s.to_owned(),
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;

    #[test]
    fn ipv6_nets_and_addresses() {
        let n = parse_ipv6_net("2001:db8::c008/125").unwrap();
        assert_eq!(n.prefix_len(), 125);
        assert_eq!(n.trunc().to_string(), "2001:db8::c008/125");
        assert_err(parse_ipv6_net("2001:db8::/129"), &["\"129\"", "0 and 128"]);
        assert_err(parse_ipv6_net("10.0.0.0/8"), &["not an IPv6 address"]);
        assert_eq!(
            parse_ipv6("2001:db8:1::242:ac11:3").unwrap().to_string(),
            "2001:db8:1::242:ac11:3"
        );
        assert_err(parse_ipv6("10.0.0.1"), &["\"10.0.0.1\"", "IPv4 address"]);
        assert_err(parse_ipv6("2001:db8::1/64"), &["prefix length"]);
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
    fn mac_format_round_trips() {
        let mac = [0x02, 0x42, 0xAC, 0x11, 0x00, 0x0a];
        assert_eq!(format_mac(&mac), "02:42:ac:11:00:0a");
        assert_eq!(parse_mac(&format_mac(&mac)).unwrap(), mac);
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
}
