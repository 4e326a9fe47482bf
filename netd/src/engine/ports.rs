//! Host port allocation for published ports (`-p`, `-P`).
//!
//! A binding maps a run of consecutive host ports to a run of container ports, so a published
//! range is one binding (and one dataplane entry), whatever its length.

use std::net::IpAddr;

use crate::spec::{EphemeralPorts, ExposeSpec, PortRange, Proto, PublishSpec};

use super::state::PortBinding;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("port {port}/{proto} is already allocated by \"{owner}\" on {host_ip}")]
    Allocated {
        port: u16,
        proto: Proto,
        owner: String,
        host_ip: IpAddr,
    },
    #[error("no free host port for {what}: every port in {range} is allocated")]
    NoFreePort { what: String, range: String },
}

/// Bindings already held, with their owners.
pub type Held<'a> = &'a [(&'a str, &'a PortBinding)];

fn ips_overlap(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

fn clash<'a>(
    held: Held<'a>,
    mine: &'a [PortBinding],
    me: &'a str,
    b: &PortBinding,
) -> Option<(u16, &'a str, IpAddr)> {
    let lo = b.host_port;
    let hi = b.host_port + (b.count - 1);
    let others = held
        .iter()
        .map(|(o, h)| (*o, *h))
        .chain(mine.iter().map(|h| (me, h)));
    for (owner, h) in others {
        if h.proto != b.proto || !ips_overlap(h.host_ip, b.host_ip) {
            continue;
        }
        let (hlo, hhi) = (h.host_port, h.host_port + (h.count - 1));
        if lo <= hhi && hlo <= hi {
            return Some((lo.max(hlo), owner, h.host_ip));
        }
    }
    None
}

/// Allocates every binding of one endpoint, or none (the first conflict is the error).
pub fn allocate(
    me: &str,
    publish: &[PublishSpec],
    publish_all: bool,
    exposed: &[ExposeSpec],
    default_ip: IpAddr,
    held: Held<'_>,
    ephemeral: &EphemeralPorts,
) -> Result<Vec<PortBinding>, PortError> {
    let mut out: Vec<PortBinding> = Vec::new();
    for spec in publish {
        let host_ip = spec.host_ip.unwrap_or(default_ip);
        let n = spec.container_ports.len() as u16;
        let base = PortBinding {
            id: 0,
            proto: spec.proto,
            host_ip,
            host_port: 0,
            container_port: spec.container_ports.start,
            count: n,
            also_v6: false,
            relay46: false,
        };
        let b = match spec.host_ports {
            Some(h) if h.len() == spec.container_ports.len() => {
                let b = PortBinding {
                    host_port: h.start,
                    ..base
                };
                if let Some((port, owner, host_ip)) = clash(held, &out, me, &b) {
                    return Err(PortError::Allocated {
                        port,
                        proto: b.proto,
                        owner: owner.to_string(),
                        host_ip,
                    });
                }
                b
            }
            // A host range for one container port: any free port of that range.
            Some(h) => {
                first_free(me, held, &out, base, h.start, h.end, |_| true).ok_or_else(|| {
                    PortError::NoFreePort {
                        what: spec.to_string(),
                        range: h.to_string(),
                    }
                })?
            }
            None => ephemeral_block(me, held, &out, base, ephemeral, &spec.to_string())?,
        };
        out.push(b);
    }
    if publish_all {
        for e in exposed {
            let already = out.iter().any(|b| {
                b.proto == e.proto
                    && b.container_port <= e.ports.start
                    && e.ports.end < b.container_port + b.count
            });
            if already {
                continue;
            }
            let base = PortBinding {
                id: 0,
                proto: e.proto,
                host_ip: default_ip,
                host_port: 0,
                container_port: e.ports.start,
                count: e.ports.len() as u16,
                also_v6: false,
                relay46: false,
            };
            let what = format!("exposed port {}/{}", e.ports, e.proto);
            let b = ephemeral_block(me, held, &out, base, ephemeral, &what)?;
            out.push(b);
        }
    }
    Ok(out)
}

fn ephemeral_block(
    me: &str,
    held: Held<'_>,
    mine: &[PortBinding],
    base: PortBinding,
    eph: &EphemeralPorts,
    what: &str,
) -> Result<PortBinding, PortError> {
    let (lo, hi) = eph.range;
    let n = base.count;
    first_free(me, held, mine, base, lo, hi, |p| {
        (p..p + n).all(|q| eph.is_usable(q))
    })
    .ok_or_else(|| PortError::NoFreePort {
        what: what.to_string(),
        range: PortRange { start: lo, end: hi }.to_string(),
    })
}

fn first_free(
    me: &str,
    held: Held<'_>,
    mine: &[PortBinding],
    base: PortBinding,
    lo: u16,
    hi: u16,
    ok: impl Fn(u16) -> bool,
) -> Option<PortBinding> {
    let n = base.count;
    let last = hi.checked_sub(n - 1)?;
    let mut p = lo;
    while p <= last {
        let b = PortBinding {
            host_port: p,
            ..base.clone()
        };
        if ok(p) && clash(held, mine, me, &b).is_none() {
            return Some(b);
        }
        p = p.checked_add(1)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eph() -> EphemeralPorts {
        EphemeralPorts {
            range: (40000, 40009),
            reserved: vec![PortRange {
                start: 40000,
                end: 40001,
            }],
        }
    }

    fn any() -> IpAddr {
        "0.0.0.0".parse().unwrap()
    }

    #[test]
    fn explicit_range_and_conflict() {
        let specs: Vec<PublishSpec> = vec!["8000-8002:80-82".parse().unwrap()];
        let b = allocate("a", &specs, false, &[], any(), &[], &eph()).unwrap();
        assert_eq!(b[0].host_port, 8000);
        assert_eq!(b[0].count, 3);
        let held = [("a", &b[0])];
        let other: Vec<PublishSpec> = vec!["127.0.0.1:8002:80".parse().unwrap()];
        let e = allocate("b", &other, false, &[], any(), &held, &eph()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port 8002/tcp is already allocated by \"a\" on 0.0.0.0"
        );
        // Another protocol or a disjoint address is fine.
        let udp: Vec<PublishSpec> = vec!["8002:80/udp".parse().unwrap()];
        assert!(allocate("b", &udp, false, &[], any(), &held, &eph()).is_ok());
    }

    #[test]
    fn ephemeral_skips_reserved_and_taken() {
        let specs: Vec<PublishSpec> = vec!["80".parse().unwrap(), "81".parse().unwrap()];
        let b = allocate("a", &specs, false, &[], any(), &[], &eph()).unwrap();
        assert_eq!((b[0].host_port, b[1].host_port), (40002, 40003));
    }

    #[test]
    fn publish_all_uses_exposed() {
        let exposed: Vec<ExposeSpec> = vec!["80".parse().unwrap(), "53/udp".parse().unwrap()];
        let b = allocate("a", &[], true, &exposed, any(), &[], &eph()).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].proto, Proto::Udp);
        assert!(b.iter().all(|x| (40002..=40009).contains(&x.host_port)));
    }

    #[test]
    fn exhausted_range_is_an_error() {
        let specs: Vec<PublishSpec> = vec![
            "9000-9001:80".parse().unwrap(),
            "9000-9001:81".parse().unwrap(),
            "9000-9001:82".parse().unwrap(),
        ];
        let e = allocate("a", &specs, false, &[], any(), &[], &eph()).unwrap_err();
        assert!(e.to_string().contains("no free host port"), "{e}");
    }
}
