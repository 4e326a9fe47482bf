//! libnetwork's options and port maps → the engine's typed requests.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;

use super::protocol::{Options, PortBinding, TransportPort};
use crate::engine::NetworkSpec;
use crate::spec::{ExposeSpec, LinkSpec, PortRange, Proto, PublishSpec};

/// `-o` options of `docker network create` (libnetwork `netlabel.GenericData`).
pub const GENERIC: &str = "com.docker.network.generic";
pub const PORTMAP: &str = "com.docker.network.portmap";
pub const INTERNAL: &str = "com.docker.network.internal";
pub const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
/// The netd name of a network (`-o netd.name=N`) or endpoint (`driver-opt=netd.name=N`).
pub const NETD_NAME: &str = "netd.name";
pub const GATEWAY_REQUEST: &str = "com.docker.network.gateway";
/// Link allowances of an endpoint (`driver-opt=netd.link=NAME[:ALIAS][+NAME[:ALIAS]...]`).
pub const NETD_LINK: &str = "netd.link";
/// The container's exposed ports (`--expose`, `-p`, the image's `EXPOSE`), in CreateEndpoint's
/// options (first non-internal network only) and Join's (the sandbox's, on every network).
pub const EXPOSED_PORTS: &str = "com.docker.network.endpoint.exposedports";

const ICC: &str = "com.docker.network.bridge.enable_icc";
const MASQ: &str = "com.docker.network.bridge.enable_ip_masquerade";
const HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
const BRIDGE_NAME: &str = "com.docker.network.bridge.name";
const MTU: &str = "com.docker.network.driver.mtu";

fn as_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// The string options of a request: the top-level string values and those under
/// [`GENERIC`] (where `-o` and `--driver-opt` strings arrive), the latter winning.
pub fn string_options(options: Option<&Options>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(o) = options else { return out };
    for (k, v) in o {
        if let Value::String(s) = v {
            out.insert(k.clone(), s.clone());
        }
    }
    if let Some(Value::Object(g)) = o.get(GENERIC) {
        for (k, v) in g {
            out.insert(k.clone(), as_string(v));
        }
    }
    out
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("-o {key}={v}: expected true or false")),
    }
}

/// An address as libnetwork writes it, `ip/len` or a bare `ip`.
pub fn parse_addr(s: &str) -> Result<Ipv4Addr, String> {
    let ip = s.split('/').next().unwrap_or(s);
    ip.parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address (netd's IPAM serves IPv4 only)"))
}

/// An IPv6 address as libnetwork writes it, `ip/len` or a bare `ip`.
pub fn parse_addr6(s: &str) -> Result<Ipv6Addr, String> {
    let ip = s.split('/').next().unwrap_or(s);
    ip.parse()
        .map_err(|_| format!("{s:?} is not an IPv6 address"))
}

/// The engine's request for a `CreateNetwork` whose pools netd's IPAM handed out
/// (`subnet_v6`: the IPv6 pool of a `--ipv6` network).
pub fn network_spec(
    name: String,
    options: Option<&Options>,
    subnet: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    ip_range: Option<Ipv4Net>,
    subnet_v6: Option<Ipv6Net>,
) -> Result<NetworkSpec, String> {
    let ipv6 = truthy(options.and_then(|o| o.get(ENABLE_IPV6)));
    if ipv6 && subnet_v6.is_none() {
        return Err(
            "--ipv6: add an IPv6 --subnet with --ipam-driver netd (netd's IPAM picks no IPv6 prefix)"
                .into(),
        );
    }
    let mut spec = NetworkSpec::new(name);
    spec.ipv6 = subnet_v6.is_some();
    spec.subnet_v6 = subnet_v6;
    spec.subnet = Some(subnet);
    spec.gateway = gateway;
    spec.ip_range = ip_range;
    spec.internal = truthy(options.and_then(|o| o.get(INTERNAL)));
    for (k, v) in string_options(options) {
        match k.as_str() {
            ICC => spec.icc = parse_bool(&k, &v)?,
            MASQ => spec.ip_masq = parse_bool(&k, &v)?,
            BRIDGE_NAME => spec.bridge = Some(v),
            MTU => {
                spec.mtu = Some(
                    v.parse()
                        .map_err(|_| format!("-o {MTU}={v}: expected a number"))?,
                )
            }
            HOST_BINDING => {
                spec.host_ip = Some(
                    v.parse()
                        .map_err(|_| format!("-o {HOST_BINDING}={v}: expected an IPv4 address"))?,
                )
            }
            _ => {}
        }
    }
    Ok(spec)
}

/// `driver-opt=netd.link=...` → the endpoint's links, in the order given (repeats dropped).
/// Links are separated by `+` (which survives the CSV parsing of `docker run --network
/// name=N,driver-opt=...`) or `,` (for the API and compose's `driver_opts`); each is
/// `NAME[:ALIAS]` as in `netd attach --link`, NAME being the target's `netd.name`. A driver
/// option is one key of a map: a repeated `driver-opt=netd.link=` keeps only the last.
pub fn link_specs(options: Option<&Options>) -> Result<Vec<LinkSpec>, String> {
    match string_options(options).get(NETD_LINK) {
        None => Ok(Vec::new()),
        Some(v) => parse_links(v),
    }
}

/// The value of a `netd.link` driver option (see [`link_specs`]).
pub fn parse_links(v: &str) -> Result<Vec<LinkSpec>, String> {
    let mut out: Vec<LinkSpec> = Vec::new();
    for item in v.split(['+', ',']) {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "driver-opt {NETD_LINK}={v}: an empty link; write NAME[:ALIAS], several joined by '+'"
            ));
        }
        let l: LinkSpec = item
            .parse()
            .map_err(|e| format!("driver-opt {NETD_LINK}={v}: {e}"))?;
        if !out.contains(&l) {
            out.push(l);
        }
    }
    Ok(out)
}

/// `com.docker.network.endpoint.exposedports` → the endpoint's exposed ports (what a link to it
/// reaches), repeats dropped. SCTP is refused as for `-p`.
pub fn expose_specs(options: Option<&Options>) -> Result<Vec<ExposeSpec>, String> {
    let Some(v) = options.and_then(|o| o.get(EXPOSED_PORTS)) else {
        return Ok(Vec::new());
    };
    if v.is_null() {
        return Ok(Vec::new());
    }
    let ports: Vec<TransportPort> =
        serde_json::from_value(v.clone()).map_err(|e| format!("invalid {EXPOSED_PORTS}: {e}"))?;
    let mut out: Vec<ExposeSpec> = Vec::new();
    for p in ports {
        let proto = match p.proto {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            132 => {
                return Err(format!(
                    "--expose {}/sctp: netd exposes tcp and udp only",
                    p.port
                ));
            }
            n => return Err(format!("--expose {}: unknown protocol number {n}", p.port)),
        };
        let ports = PortRange::new(p.port, p.port).map_err(|e| format!("--expose: {e}"))?;
        let e = ExposeSpec { ports, proto };
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// `com.docker.network.portmap` → publish requests: host port 0 lets netd pick, a host range
/// with one container port means one free port of it.
pub fn publish_specs(options: Option<&Options>) -> Result<Vec<PublishSpec>, String> {
    let Some(v) = options.and_then(|o| o.get(PORTMAP)) else {
        return Ok(Vec::new());
    };
    if v.is_null() {
        return Ok(Vec::new());
    }
    let map: Vec<PortBinding> =
        serde_json::from_value(v.clone()).map_err(|e| format!("invalid {PORTMAP}: {e}"))?;
    map.iter().map(publish_spec).collect()
}

fn publish_spec(b: &PortBinding) -> Result<PublishSpec, String> {
    let proto = match b.proto {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        132 => {
            return Err(format!(
                "-p {}/sctp: netd publishes tcp and udp only",
                b.port
            ));
        }
        n => return Err(format!("-p {}: unknown protocol number {n}", b.port)),
    };
    let host_ip = match b.host_ip.as_str() {
        "" => None,
        s => Some(
            s.parse::<IpAddr>()
                .map_err(|_| format!("-p: host address {s:?} is not an IP address"))?,
        ),
    };
    let container = PortRange::new(b.port, b.port).map_err(|e| e.to_string())?;
    let host = match (b.host_port, b.host_port_end) {
        (0, _) => None,
        (s, e) if e <= s => Some(PortRange::new(s, s).map_err(|e| e.to_string())?),
        (s, e) => Some(PortRange::new(s, e).map_err(|e| e.to_string())?),
    };
    PublishSpec::new(host_ip, host, container, proto).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(j: &str) -> Options {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn network_options_from_generic() {
        let o = opts(
            r#"{"com.docker.network.enable_ipv6":false,"com.docker.network.internal":true,
                "com.docker.network.generic":{"com.docker.network.bridge.enable_icc":"false",
                "com.docker.network.bridge.enable_ip_masquerade":"false",
                "com.docker.network.bridge.name":"dk0","com.docker.network.driver.mtu":"1400",
                "netd.name":"web"}}"#,
        );
        let s = network_spec(
            "n".into(),
            Some(&o),
            "10.9.0.0/24".parse().unwrap(),
            Some("10.9.0.254".parse().unwrap()),
            Some("10.9.0.128/25".parse().unwrap()),
            None,
        )
        .unwrap();
        assert!(!s.icc && !s.ip_masq && s.internal);
        assert_eq!(s.bridge.as_deref(), Some("dk0"));
        assert_eq!(s.mtu, Some(1400));
        assert_eq!(s.gateway, Some("10.9.0.254".parse().unwrap()));
        assert_eq!(s.ip_range, Some("10.9.0.128/25".parse().unwrap()));
        assert_eq!(string_options(Some(&o))["netd.name"], "web");
    }

    #[test]
    fn network_options_refused_with_reason() {
        let v6 = opts(r#"{"com.docker.network.enable_ipv6":true}"#);
        let e = network_spec(
            "n".into(),
            Some(&v6),
            "10.9.0.0/24".parse().unwrap(),
            None,
            None,
            None,
        );
        assert!(e.unwrap_err().contains("add an IPv6 --subnet"));
        let s = network_spec(
            "n".into(),
            Some(&v6),
            "10.9.0.0/24".parse().unwrap(),
            None,
            None,
            Some("2001:db8:5::/64".parse().unwrap()),
        )
        .unwrap();
        assert!(s.ipv6);
        assert_eq!(s.subnet_v6, Some("2001:db8:5::/64".parse().unwrap()));
        let bad = opts(
            r#"{"com.docker.network.generic":{"com.docker.network.bridge.enable_icc":"maybe"}}"#,
        );
        let e = network_spec(
            "n".into(),
            Some(&bad),
            "10.9.0.0/24".parse().unwrap(),
            None,
            None,
            None,
        );
        assert!(e.unwrap_err().contains("enable_icc=maybe"));
        // Docker's per-network default host address for published ports.
        let hb = opts(
            r#"{"com.docker.network.generic":{"com.docker.network.bridge.host_binding_ipv4":"127.0.0.1"}}"#,
        );
        let spec = network_spec(
            "n".into(),
            Some(&hb),
            "10.9.0.0/24".parse().unwrap(),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(spec.host_ip, Some(Ipv4Addr::LOCALHOST));
        let bad_hb = opts(
            r#"{"com.docker.network.generic":{"com.docker.network.bridge.host_binding_ipv4":"::1"}}"#,
        );
        let e = network_spec(
            "n".into(),
            Some(&bad_hb),
            "10.9.0.0/24".parse().unwrap(),
            None,
            None,
            None,
        );
        assert!(
            e.unwrap_err()
                .contains("host_binding_ipv4=::1: expected an IPv4 address")
        );
    }

    #[test]
    fn every_portmap_form() {
        // -p 8080:80, -p 127.0.0.1:8081:80/udp, -p 80 (HostPort 0), -p 8000-8002:80
        let o = opts(
            r#"{"com.docker.network.portmap":[
                {"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},
                {"Proto":17,"IP":"","Port":80,"HostIP":"127.0.0.1","HostPort":8081,"HostPortEnd":8081},
                {"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":0,"HostPortEnd":0},
                {"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8000,"HostPortEnd":8002}]}"#,
        );
        let s: Vec<String> = publish_specs(Some(&o))
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            s,
            [
                "8080:80/tcp",
                "127.0.0.1:8081:80/udp",
                "80/tcp",
                "8000-8002:80/tcp"
            ]
        );
        assert!(publish_specs(None).unwrap().is_empty());
        let sctp = opts(r#"{"com.docker.network.portmap":[{"Proto":132,"Port":80}]}"#);
        assert!(publish_specs(Some(&sctp)).unwrap_err().contains("sctp"));
    }

    #[test]
    fn link_option_parses_one_or_several_links() {
        let names = |v: &str| -> Vec<String> {
            parse_links(v)
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(names("db"), ["db:db"]);
        assert_eq!(names("db:dbalias"), ["db:dbalias"]);
        assert_eq!(
            names("db:dbalias+cache+web.1:web"),
            ["db:dbalias", "cache:cache", "web.1:web"]
        );
        // ',' as the API or compose's driver_opts may send it; repeats are one link.
        assert_eq!(names("db:a, cache ,db:a"), ["db:a", "cache:cache"]);
        // As dockerd sends driver options: top-level strings of CreateEndpoint's Options.
        let o = opts(r#"{"netd.name":"web","netd.link":"db:dbalias+cache"}"#);
        let l = link_specs(Some(&o)).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].name.as_str(), l[0].alias.as_str()), ("db", "dbalias"));
        assert_eq!(
            (l[1].name.as_str(), l[1].alias.as_str()),
            ("cache", "cache")
        );
        assert!(
            link_specs(Some(&opts(r#"{"netd.name":"web"}"#)))
                .unwrap()
                .is_empty()
        );
        assert!(link_specs(None).unwrap().is_empty());
    }

    #[test]
    fn link_option_refused_naming_the_option() {
        let err = |v: &str| parse_links(v).unwrap_err();
        for (v, want) in [
            ("", "driver-opt netd.link=: an empty link"),
            ("db++cache", "driver-opt netd.link=db++cache: an empty link"),
            ("db+", "driver-opt netd.link=db+: an empty link"),
            ("db:a:b", "driver-opt netd.link=db:a:b: invalid link "),
            (
                "db:my_alias",
                "driver-opt netd.link=db:my_alias: invalid link ",
            ),
            ("/db", "driver-opt netd.link=/db: invalid link "),
            (":x", "driver-opt netd.link=:x: invalid link "),
        ] {
            let e = err(v);
            assert!(e.starts_with(want), "{v:?}: {e}");
        }
        let o = opts(r#"{"netd.link":"db:"}"#);
        let e = link_specs(Some(&o)).unwrap_err();
        assert!(
            e.contains("driver-opt netd.link=db:") && e.contains("alias"),
            "{e}"
        );
    }

    #[test]
    fn exposed_ports_from_libnetwork() {
        // --expose 80 --expose 53/udp -p 8080:80 (80/tcp twice: once).
        let o = opts(
            r#"{"com.docker.network.endpoint.exposedports":[
                {"Proto":6,"Port":80},{"Proto":17,"Port":53},{"Proto":6,"Port":80}]}"#,
        );
        let e: Vec<String> = expose_specs(Some(&o))
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(e, ["80/tcp", "53/udp"]);
        assert!(expose_specs(None).unwrap().is_empty());
        let empty = opts(r#"{"com.docker.network.endpoint.exposedports":[]}"#);
        assert!(expose_specs(Some(&empty)).unwrap().is_empty());
        let null = opts(r#"{"com.docker.network.endpoint.exposedports":null}"#);
        assert!(expose_specs(Some(&null)).unwrap().is_empty());
        let sctp = opts(r#"{"com.docker.network.endpoint.exposedports":[{"Proto":132,"Port":9}]}"#);
        assert_eq!(
            expose_specs(Some(&sctp)).unwrap_err(),
            "--expose 9/sctp: netd exposes tcp and udp only"
        );
        let zero = opts(r#"{"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":0}]}"#);
        assert!(
            expose_specs(Some(&zero))
                .unwrap_err()
                .starts_with("--expose: ")
        );
        let bad = opts(r#"{"com.docker.network.endpoint.exposedports":"80"}"#);
        assert!(
            expose_specs(Some(&bad))
                .unwrap_err()
                .starts_with("invalid com.docker.network.endpoint.exposedports")
        );
    }

    #[test]
    fn addresses_with_or_without_prefix() {
        assert_eq!(
            parse_addr("10.0.0.2/24").unwrap(),
            Ipv4Addr::new(10, 0, 0, 2)
        );
        assert_eq!(parse_addr("10.0.0.2").unwrap(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(parse_addr("fd00::1/64").is_err());
        assert_eq!(
            parse_addr6("2001:db8::5/64").unwrap(),
            "2001:db8::5".parse::<Ipv6Addr>().unwrap()
        );
        assert!(parse_addr6("10.0.0.2/24").is_err());
    }
}
