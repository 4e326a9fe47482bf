//! The pure renderers of hostname, hosts and resolv.conf, and the resolv.conf reader.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `/etc/hostname`: the name and a newline.
pub fn render_hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// One `--link=NAME:ALIAS` entry in the recipient's `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsLink {
    pub alias: String,
    /// The linked container's name; written after the alias when it differs from it.
    pub name: String,
    pub ip: Ipv4Addr,
}

/// Docker's fixed loopback and IPv6 entries, in Docker's order.
const HOSTS_DEFAULTS: &str = "127.0.0.1\tlocalhost\n\
                              ::1\tlocalhost ip6-localhost ip6-loopback\n\
                              fe00::0\tip6-localnet\n\
                              ff00::0\tip6-mcastprefix\n\
                              ff02::1\tip6-allnodes\n\
                              ff02::2\tip6-allrouters\n";

/// `/etc/hosts`: the default entries, the container's own address under its hostname (absent
/// when it has no address, as with `--net none`), its global IPv6 address under the hostname
/// too (IPv6 networks), then one line per link sorted by alias (then name, then address) so
/// the same links always give the same bytes.
pub fn render_hosts(
    hostname: &str,
    ip: Option<Ipv4Addr>,
    ip6: Option<Ipv6Addr>,
    links: &[HostsLink],
) -> String {
    let mut out = String::from(HOSTS_DEFAULTS);
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    if let Some(ip6) = ip6 {
        out.push_str(&format!("{ip6}\t{hostname}\n"));
    }
    let mut links: Vec<&HostsLink> = links.iter().collect();
    links.sort_by(|a, b| {
        (a.alias.as_str(), a.name.as_str(), a.ip).cmp(&(b.alias.as_str(), b.name.as_str(), b.ip))
    });
    for link in links {
        if link.name == link.alias {
            out.push_str(&format!("{}\t{}\n", link.ip, link.alias));
        } else {
            out.push_str(&format!("{}\t{} {}\n", link.ip, link.alias, link.name));
        }
    }
    out
}

/// What a resolver takes from a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// The words of one resolv.conf line, up to a `#` or `;` comment.
fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split_whitespace()
        .take_while(|w| !w.starts_with(['#', ';']))
}

/// Reads a resolv.conf the way glibc does: every `nameserver` line adds a server (lines whose
/// address does not parse, such as `fe80::1%eth0`, are skipped), the last `search` or `domain`
/// line sets the search list, and `options` lines accumulate. Comments, unknown keywords and junk
/// are ignored.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let mut words = words(line);
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                    conf.nameservers.push(ip);
                }
            }
            Some("search") => conf.search = words.map(String::from).collect(),
            Some("domain") => conf.search = words.next().map(String::from).into_iter().collect(),
            Some("options") => conf.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    conf
}

/// What a container gets when the host's resolv.conf leaves it no usable nameserver.
const GOOGLE_DNS: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

/// True for a `nameserver` line naming an address in 127.0.0.0/8 or `::1` (with or without a
/// `%zone`, and IPv4-mapped forms too): the host's loopback is not the container's.
fn is_loopback_nameserver(line: &str) -> bool {
    let mut words = words(line);
    if words.next() != Some("nameserver") {
        return false;
    }
    let Some(addr) = words.next() else {
        return false;
    };
    let addr = addr.split_once('%').map_or(addr, |(addr, _zone)| addr);
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Docker's filter for a container that sets neither `--dns` nor `--dns-search`: the host's
/// file with its loopback nameserver lines dropped and every other line kept byte for byte;
/// Google's public servers are appended when no nameserver is left.
pub fn filter_host_resolv(host: &str) -> String {
    let mut out: String = host
        .split_inclusive('\n')
        .filter(|line| !is_loopback_nameserver(line))
        .collect();
    if parse_resolv_conf(&out).nameservers.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(GOOGLE_DNS);
    }
    out
}

/// `/etc/resolv.conf` for a container. Without `--dns` and `--dns-search` it is
/// [`filter_host_resolv`] of the host's file. Otherwise it is built: the `--dns` servers, or the
/// filtered host's servers; the `--dns-search` domains, or the host's search list (`.` entries
/// are dropped, so `--dns-search=.` writes no search line and does not fall back to the host's);
/// and the host's options.
pub fn render_resolv_conf(dns: &[IpAddr], dns_search: &[String], host: &str) -> String {
    if dns.is_empty() && dns_search.is_empty() {
        return filter_host_resolv(host);
    }
    let host_conf = parse_resolv_conf(host);
    let nameservers = if dns.is_empty() {
        parse_resolv_conf(&filter_host_resolv(host)).nameservers
    } else {
        dns.to_vec()
    };
    let search: Vec<&str> = if dns_search.is_empty() {
        host_conf.search.iter().map(String::as_str).collect()
    } else {
        dns_search
            .iter()
            .map(String::as_str)
            .filter(|d| *d != ".")
            .collect()
    };

    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in &nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !host_conf.options.is_empty() {
        out.push_str(&format!("options {}\n", host_conf.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn link(alias: &str, name: &str, ip: [u8; 4]) -> HostsLink {
        HostsLink {
            alias: alias.into(),
            name: name.into(),
            ip: Ipv4Addr::from(ip),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn hostname_is_the_name_and_a_newline() {
        assert_eq!(render_hostname("web"), "web\n");
    }

    #[test]
    fn hosts_list_the_global_ipv6_address() {
        let h = render_hosts(
            "web",
            Some(Ipv4Addr::new(172, 17, 0, 3)),
            Some("2001:db8:1::242:ac11:3".parse().unwrap()),
            &[],
        );
        assert!(h.starts_with(HOSTS_DEFAULTS), "{h}");
        assert!(
            h.ends_with("172.17.0.3\tweb\n2001:db8:1::242:ac11:3\tweb\n"),
            "{h}"
        );
    }

    #[test]
    fn hosts_with_address_and_sorted_links() {
        let links = [
            link("db", "db", [172, 17, 0, 3]),
            link("cache", "redis1", [172, 17, 0, 4]),
        ];
        assert_eq!(
            render_hosts("a1b2c3", Some(Ipv4Addr::new(172, 17, 0, 2)), None, &links),
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\n\
             ff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n\
             172.17.0.2\ta1b2c3\n\
             172.17.0.4\tcache redis1\n\
             172.17.0.3\tdb\n"
        );
    }

    #[test]
    fn hosts_without_address_has_only_the_defaults() {
        assert_eq!(render_hosts("box", None, None, &[]), HOSTS_DEFAULTS);
        assert!(!HOSTS_DEFAULTS.contains("box"));
    }

    #[test]
    fn hosts_do_not_depend_on_link_order() {
        let a = link("a", "x", [10, 0, 0, 1]);
        let b = link("b", "b", [10, 0, 0, 2]);
        let ab = render_hosts("h", None, None, &[a.clone(), b.clone()]);
        let ba = render_hosts("h", None, None, &[b, a]);
        assert_eq!(ab, ba);
        assert!(ab.ends_with("10.0.0.1\ta x\n10.0.0.2\tb\n"), "{ab}");
    }

    #[test]
    fn parse_reads_servers_search_and_options_and_skips_junk() {
        let conf = parse_resolv_conf(
            "# generated\n\
             ; also a comment\n\
             nameserver 10.0.0.2 # office\n\
             nameserver 2001:db8::53\n\
             nameserver fe80::1%eth0\n\
             nameserver not-an-address\n\
             nameserver\n\
             domain corp.example\n\
             search a.example b.example ; trailing\n\
             options ndots:2\n\
             options timeout:1 rotate\n\
             sortlist 10.0.0.0/255.0.0.0\n\
             \tgarbage line \x07\n",
        );
        assert_eq!(
            conf,
            ResolvConf {
                nameservers: vec![ip("10.0.0.2"), ip("2001:db8::53")],
                search: strings(&["a.example", "b.example"]),
                options: strings(&["ndots:2", "timeout:1", "rotate"]),
            }
        );
    }

    #[test]
    fn parse_takes_the_last_of_search_and_domain() {
        let conf = parse_resolv_conf("search a.example b.example\ndomain corp.example\n");
        assert_eq!(conf.search, strings(&["corp.example"]));
    }

    #[test]
    fn filter_replaces_a_localhost_only_host_with_google() {
        assert_eq!(
            filter_host_resolv("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"),
            "options edns0 trust-ad\nsearch lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(filter_host_resolv(""), GOOGLE_DNS);
        assert_eq!(
            filter_host_resolv("nameserver 127.0.1.1"),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            filter_host_resolv("search lan"),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn filter_drops_v4_and_v6_loopback_and_keeps_everything_else() {
        let host = "# managed by hand\n\
                    nameserver 127.0.0.1\n\
                    nameserver ::1\n\
                    nameserver 10.0.0.2\n\
                    \n\
                    nameserver   127.255.0.9   # dnsmasq\n\
                    nameserver 2001:4860:4860::8888\n\
                    nameserver ::ffff:127.0.0.1\n\
                    nameserver 128.0.0.1\n\
                    search example.com\n\
                    options ndots:3";
        assert_eq!(
            filter_host_resolv(host),
            "# managed by hand\n\
             nameserver 10.0.0.2\n\
             \n\
             nameserver 2001:4860:4860::8888\n\
             nameserver 128.0.0.1\n\
             search example.com\n\
             options ndots:3"
        );
    }

    #[test]
    fn filter_falls_back_when_only_unusable_servers_remain() {
        assert_eq!(
            filter_host_resolv("nameserver ::1\nnameserver fe80::1%eth0\n"),
            "nameserver fe80::1%eth0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    const HOST: &str = "nameserver 127.0.0.53\n\
                        nameserver 192.168.1.1\n\
                        search home.example\n\
                        options ndots:2 edns0\n";

    #[test]
    fn resolv_without_flags_is_the_filtered_host_file() {
        assert_eq!(render_resolv_conf(&[], &[], HOST), filter_host_resolv(HOST));
        assert_eq!(
            render_resolv_conf(&[], &[], HOST),
            "nameserver 192.168.1.1\nsearch home.example\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn resolv_with_dns_only_keeps_host_search_and_options() {
        assert_eq!(
            render_resolv_conf(&[ip("1.1.1.1"), ip("2606:4700:4700::1111")], &[], HOST),
            "search home.example\n\
             nameserver 1.1.1.1\n\
             nameserver 2606:4700:4700::1111\n\
             options ndots:2 edns0\n"
        );
    }

    #[test]
    fn resolv_with_dns_search_only_uses_filtered_host_servers() {
        assert_eq!(
            render_resolv_conf(&[], &strings(&["a.example", "b.example"]), HOST),
            "search a.example b.example\nnameserver 192.168.1.1\noptions ndots:2 edns0\n"
        );
        assert_eq!(
            render_resolv_conf(&[], &strings(&["a.example"]), "nameserver 127.0.0.1\n"),
            "search a.example\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn resolv_with_dns_search_dot_has_no_search_line() {
        assert_eq!(
            render_resolv_conf(&[], &strings(&["."]), HOST),
            "nameserver 192.168.1.1\noptions ndots:2 edns0\n"
        );
        assert_eq!(
            render_resolv_conf(&[ip("9.9.9.9")], &strings(&["."]), HOST),
            "nameserver 9.9.9.9\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn resolv_with_both_flags_and_no_host_options() {
        assert_eq!(
            render_resolv_conf(
                &[IpAddr::V6(Ipv6Addr::LOCALHOST)],
                &strings(&["x.example"]),
                "nameserver 10.0.0.1\nsearch ignored.example\n"
            ),
            "search x.example\nnameserver ::1\n"
        );
    }
}
