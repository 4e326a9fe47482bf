//! API request bodies (strings as the user typed them) → the engine's typed requests. Every
//! string is parsed here, once; a bad one answers 400 with the parser's message.

use std::net::Ipv4Addr;

use super::types::{AttachRequest, FilterRequest, NetworkCreateRequest};
use crate::engine::{
    CtProto, CtQuery, DEFAULT_IFNAME, EndpointSpec, FilterAction, FilterChange, NetworkSpec,
};
use crate::spec::{self, NetMode, Proto, PublishSpec, SpecError};

/// A request the API cannot take; the text is the user's message (HTTP 400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

impl From<SpecError> for BadRequest {
    fn from(e: SpecError) -> Self {
        BadRequest(e.to_string())
    }
}

/// `--network`/`--net`: a mode (bridge, host, none, container:NAME), else a network's name.
fn net_and_network(s: &str) -> Result<(NetMode, Option<String>), BadRequest> {
    if s.is_empty() {
        return Ok((NetMode::Bridge, None));
    }
    match s.parse::<NetMode>() {
        Ok(m) => Ok((m, None)),
        Err(e) if s.contains(':') || spec::validate_container_name(s).is_err() => Err(e.into()),
        Err(_) => Ok((NetMode::Bridge, Some(s.to_string()))),
    }
}

/// `POST /v1/endpoints`.
pub fn endpoint_spec(req: AttachRequest) -> Result<EndpointSpec, BadRequest> {
    let (net, network) = net_and_network(&req.net)?;
    let netns_handle = req.netns_handle.map(netns_handle).transpose()?;
    Ok(EndpointSpec {
        netns_handle,
        net,
        network,
        ifname: req.ifname.unwrap_or_else(|| DEFAULT_IFNAME.to_string()),
        hostname: req.hostname,
        mac: req
            .mac_address
            .as_deref()
            .map(spec::parse_mac)
            .transpose()?,
        ip: req.ip.as_deref().map(spec::parse_ipv4).transpose()?,
        ip6: req.ip6.as_deref().map(spec::parse_ipv6).transpose()?,
        etc_dir: req.etc_dir,
        publish: publish_specs(&req.publish)?,
        publish_all: req.publish_all,
        expose: req
            .expose
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?,
        links: req
            .link
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?,
        dns: spec::parse_dns(&req.dns)?,
        dns_search: req.dns_search,
        reserve_ports: req.reserve_ports.unwrap_or(true),
        ..EndpointSpec::new(req.name, req.netns)
    })
}

/// Only a descriptor of another process is accepted as a handle (`/proc/<pid>/fd/<n>`), so
/// the field cannot name an arbitrary file.
fn netns_handle(p: std::path::PathBuf) -> Result<std::path::PathBuf, BadRequest> {
    let s = p.to_string_lossy();
    let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    let ok = s
        .strip_prefix("/proc/")
        .and_then(|r| r.split_once("/fd/"))
        .is_some_and(|(pid, fd)| digits(pid) && digits(fd));
    if !ok {
        return Err(BadRequest(format!(
            "netns_handle {s:?}: expected /proc/<pid>/fd/<n>"
        )));
    }
    Ok(p)
}

/// `-p` specs, for attach and `POST /v1/endpoints/NAME/ports`.
pub fn publish_specs(specs: &[String]) -> Result<Vec<PublishSpec>, BadRequest> {
    Ok(specs.iter().map(|p| p.parse()).collect::<Result<_, _>>()?)
}

/// `POST /v1/networks`.
pub fn network_spec(req: NetworkCreateRequest) -> Result<NetworkSpec, BadRequest> {
    if let Some(d) = req.driver.as_deref().filter(|d| *d != "bridge") {
        return Err(BadRequest(format!(
            "--driver {d}: netd has only the bridge driver"
        )));
    }
    let mut n = NetworkSpec::new(req.name);
    n.subnet = req
        .subnet
        .as_deref()
        .map(spec::parse_ipv4_net)
        .transpose()?;
    n.subnet_v6 = req
        .subnet_v6
        .as_deref()
        .map(spec::parse_ipv6_net)
        .transpose()?;
    n.ipv6 = req.ipv6;
    n.gateway = req.gateway.as_deref().map(spec::parse_ipv4).transpose()?;
    n.ip_range = req
        .ip_range
        .as_deref()
        .map(spec::parse_ipv4_net)
        .transpose()?;
    n.internal = req.internal;
    for (k, v) in &req.options {
        let flag = |v: &str| {
            v.parse::<bool>()
                .map_err(|_| BadRequest(format!("-o {k}={v}: expected true or false")))
        };
        match k.as_str() {
            "com.docker.network.bridge.enable_icc" => n.icc = flag(v)?,
            "com.docker.network.bridge.enable_ip_masquerade" => n.ip_masq = flag(v)?,
            "com.docker.network.bridge.name" => n.bridge = Some(v.clone()),
            "com.docker.network.bridge.host_binding_ipv4" => {
                n.host_ip = Some(
                    v.parse()
                        .map_err(|_| BadRequest(format!("-o {k}={v}: expected an IPv4 address")))?,
                )
            }
            "com.docker.network.driver.mtu" => {
                n.mtu = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|m| (68..=65535).contains(m))
                        .ok_or_else(|| {
                            BadRequest(format!("-o {k}={v}: expected an MTU from 68 to 65535"))
                        })?,
                )
            }
            _ => {
                return Err(BadRequest(format!(
                    "-o {k}: unknown option (netd knows com.docker.network.bridge.enable_icc, \
                     .enable_ip_masquerade, .name, .host_binding_ipv4 and \
                     com.docker.network.driver.mtu)"
                )));
            }
        }
    }
    Ok(n)
}

/// `POST /v1/filters`: a bare address means that one host.
pub fn filter_change(req: FilterRequest) -> Result<FilterChange, BadRequest> {
    let action = match req.action.as_str() {
        "allow" => FilterAction::Allow,
        "deny" => FilterAction::Deny,
        "rm" => FilterAction::Rm,
        other => {
            return Err(BadRequest(format!(
                "unknown filter action {other:?}: use allow, deny or rm"
            )));
        }
    };
    let cidrs = req
        .cidrs
        .iter()
        .map(|c| {
            if c.contains('/') {
                spec::parse_ipv4_net(c)
            } else {
                spec::parse_ipv4_net(&format!("{c}/32"))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(FilterChange { action, cidrs })
}

/// `GET /v1/ct?ip=&proto=&port=`.
pub fn ct_query(
    ip: Option<&str>,
    proto: Option<&str>,
    port: Option<&str>,
) -> Result<CtQuery, BadRequest> {
    let ip = ip
        .map(|s| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| BadRequest(format!("invalid ip filter {s:?}")))
        })
        .transpose()?;
    let proto = proto
        .map(|s| match s {
            "icmp" => Ok(CtProto::Icmp),
            s => s.parse::<Proto>().map(|p| match p {
                Proto::Tcp => CtProto::Tcp,
                Proto::Udp => CtProto::Udp,
            }),
        })
        .transpose()?;
    let port = port
        .map(|s| {
            s.parse::<u16>()
                .map_err(|_| BadRequest(format!("invalid port filter {s:?}")))
        })
        .transpose()?;
    Ok(CtQuery { ip, proto, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_request_is_parsed_once_into_typed_values() {
        let req = AttachRequest {
            name: "web".into(),
            netns: "/run/netns/web".into(),
            publish: vec!["127.0.0.1:8080:80".into(), "53/udp".into()],
            link: vec!["db:database".into()],
            mac_address: Some("02:42:AC:11:00:09".into()),
            ..Default::default()
        };
        let s = endpoint_spec(req).unwrap();
        assert_eq!(s.net, NetMode::Bridge);
        assert_eq!(s.ifname, "eth0");
        assert_eq!(s.publish.len(), 2);
        assert_eq!(s.publish[0].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(s.publish[1].proto, Proto::Udp);
        assert_eq!(s.links[0].alias, "database");
        assert_eq!(s.mac, Some([0x02, 0x42, 0xac, 0x11, 0x00, 0x09]));
        let bad = AttachRequest {
            name: "web".into(),
            publish: vec!["80:80:80:80".into()],
            ..Default::default()
        };
        assert!(endpoint_spec(bad).unwrap_err().0.contains("80:80:80:80"));
    }

    #[test]
    fn netns_handle_must_be_a_proc_fd() {
        let spec = |h: &str| {
            endpoint_spec(AttachRequest {
                name: "c".into(),
                netns: "/run/netns/c".into(),
                netns_handle: Some(h.into()),
                ..Default::default()
            })
        };
        let s = spec("/proc/4242/fd/3").unwrap();
        assert_eq!(s.netns_handle.unwrap().to_str(), Some("/proc/4242/fd/3"));
        assert_eq!(s.netns.to_str(), Some("/run/netns/c"));
        for bad in [
            "/etc/shadow",
            "/proc/self/fd/3",
            "/proc/1/fd/",
            "/proc/1/fd/3/x",
        ] {
            assert!(
                spec(bad).unwrap_err().0.contains("/proc/<pid>/fd/<n>"),
                "{bad}"
            );
        }
    }

    #[test]
    fn network_modes_and_names() {
        let spec = |net: &str| {
            endpoint_spec(AttachRequest {
                name: "c".into(),
                net: net.into(),
                ..Default::default()
            })
        };
        let s = spec("blue").unwrap();
        assert_eq!(
            (s.net, s.network.as_deref()),
            (NetMode::Bridge, Some("blue"))
        );
        let s = spec("host").unwrap();
        assert_eq!((s.net, s.network), (NetMode::Host, None));
        assert!(spec("container:").is_err());
        let mut req = NetworkCreateRequest {
            name: "blue".into(),
            subnet: Some("10.77.0.0/24".into()),
            ..Default::default()
        };
        req.options.insert(
            "com.docker.network.bridge.enable_icc".into(),
            "false".into(),
        );
        let n = network_spec(req.clone()).unwrap();
        assert!(!n.icc && n.ip_masq && !n.internal);
        assert_eq!(n.subnet.unwrap().to_string(), "10.77.0.0/24");
        req.options.insert("com.example.x".into(), "1".into());
        assert!(network_spec(req).unwrap_err().0.contains("com.example.x"));
    }

    #[test]
    fn filter_and_ct_requests() {
        let f = filter_change(FilterRequest {
            action: "deny".into(),
            cidrs: vec!["198.51.100.7".into(), "203.0.113.0/24".into()],
        })
        .unwrap();
        assert_eq!(f.action, FilterAction::Deny);
        assert_eq!(f.cidrs[0].to_string(), "198.51.100.7/32");
        let e = filter_change(FilterRequest {
            action: "drop".into(),
            cidrs: vec![],
        })
        .unwrap_err();
        assert_eq!(e.0, "unknown filter action \"drop\": use allow, deny or rm");
        let q = ct_query(Some("10.0.0.1"), Some("icmp"), Some("80")).unwrap();
        assert_eq!(q.proto, Some(CtProto::Icmp));
        assert_eq!(q.port, Some(80));
        assert!(ct_query(None, None, Some("x")).is_err());
    }
}
