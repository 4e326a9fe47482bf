//! `--dns` servers and `--dns-search` domains.

use std::net::IpAddr;

use super::*;

/// Parses `--dns` servers: IPv4 or IPv6 addresses.
pub fn parse_dns(list: &[String]) -> Result<Vec<IpAddr>, SpecError> {
    list.iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| SpecError::Dns { input: s.clone() })
        })
        .collect()
}

/// Checks a `--dns-search` entry: a domain name (hostname labels, at most 253 characters, a
/// trailing dot allowed), or exactly "." for no search domain.
pub fn validate_dns_search(domain: &str) -> Result<(), SpecError> {
    check_dns_search(domain).map_err(|r| SpecError::DnsSearch {
        input: domain.to_owned(),
        reason: format!("it {r}"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;

    #[test]
    fn dns_servers() {
        assert_eq!(
            parse_dns(&["8.8.8.8".into(), "2001:db8::1".into()]).unwrap(),
            [
                "8.8.8.8".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(
            err(parse_dns(&["8.8.8".into()])),
            r#"invalid --dns "8.8.8": not an IP address"#
        );
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
}
