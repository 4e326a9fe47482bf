//! The bridge network: created (or adopted with `-b`) at daemon start, as in the seed's
//! "Customizing docker0" and "Building your own bridge".

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::EngineError;
use super::config::Config;
use super::state::NetworkState;
use crate::wiring::{Netlink, Route};

/// Subnets tried in order when no --bip is given (Docker's list, in spirit).
fn candidates() -> impl Iterator<Item = Ipv4Net> {
    let b16 = (17..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).unwrap());
    let a16 = (0..=255).map(|b| Ipv4Net::new(Ipv4Addr::new(10, b, 0, 0), 16).unwrap());
    let c24 = (0..=255).map(|b| Ipv4Net::new(Ipv4Addr::new(192, 168, b, 0), 24).unwrap());
    b16.chain(a16).chain(c24)
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first RFC 1918 subnet that overlaps no address or route of this namespace.
pub fn choose_subnet(addrs: &[(u32, Ipv4Net)], routes: &[Route]) -> Option<Ipv4Net> {
    let used: Vec<Ipv4Net> = addrs
        .iter()
        .map(|(_, n)| n.trunc())
        .chain(routes.iter().map(|r| r.dest).filter(|d| d.prefix_len() > 0))
        .collect();
    candidates().find(|c| !used.iter().any(|u| overlaps(c, u)))
}

fn first_host(subnet: Ipv4Net) -> Ipv4Net {
    Ipv4Net::new(
        Ipv4Addr::from(u32::from(subnet.network()) + 1),
        subnet.prefix_len(),
    )
    .unwrap()
}

/// MTU of the interface that holds the default route, else 1500.
async fn default_route_mtu(nl: &Netlink) -> Result<u32, EngineError> {
    let routes = nl.routes_v4().await?;
    if let Some(oif) = routes
        .iter()
        .find(|r| r.dest.prefix_len() == 0)
        .and_then(|r| r.oif)
    {
        if let Some(l) = nl.link_by_index(oif).await? {
            return Ok(l.mtu);
        }
    }
    Ok(1500)
}

/// Creates or adopts the bridge and returns what the engine keeps of it.
pub async fn setup(nl: &Netlink, cfg: &Config) -> Result<NetworkState, EngineError> {
    let name = cfg.bridge_name();
    let existing = nl.link_by_name(name).await?;
    if let Some(l) = &existing {
        if !l.is_bridge {
            return Err(EngineError::Invalid(format!(
                "interface {name} exists but is not a bridge"
            )));
        }
    }
    let (link, owned) = match (existing, &cfg.adopt_bridge) {
        (Some(l), Some(_)) => (l, false),
        (None, Some(b)) => {
            return Err(EngineError::Invalid(format!(
                "bridge {b} (-b) does not exist: create it first, e.g. `ip link add {b} type bridge`"
            )));
        }
        (Some(l), None) => (l, true),
        (None, None) => (nl.create_bridge(name).await?, true),
    };
    let current: Vec<Ipv4Net> = nl
        .addresses_v4(Some(link.index))
        .await?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let bridge_addr = match (current.first(), cfg.bip) {
        (Some(have), Some(want)) if !current.contains(&want) => {
            return Err(EngineError::Invalid(format!(
                "bridge {name} already has address {have}, but --bip asks for {want}; \
                 delete the bridge (ip link del {name}) or drop --bip"
            )));
        }
        (Some(have), _) => cfg.bip.unwrap_or(*have),
        (None, _) if !owned => {
            return Err(EngineError::Invalid(format!(
                "bridge {name} (-b) has no IPv4 address: give it one, e.g. `ip addr add 192.168.5.1/24 dev {name}`"
            )));
        }
        (None, Some(want)) => {
            nl.add_address(link.index, want.addr(), want.prefix_len())
                .await?;
            want
        }
        (None, None) => {
            let addrs = nl.addresses_v4(None).await?;
            let routes = nl.routes_v4().await?;
            let subnet = choose_subnet(&addrs, &routes).ok_or_else(|| {
                EngineError::Invalid("no free private subnet for the bridge: pass --bip".into())
            })?;
            let a = first_host(subnet);
            nl.add_address(link.index, a.addr(), a.prefix_len()).await?;
            a
        }
    };
    let subnet = bridge_addr.trunc();
    let pool = match cfg.fixed_cidr {
        Some(f) if !subnet.contains(&f) => {
            return Err(EngineError::Invalid(format!(
                "--fixed-cidr {f} is not inside the bridge subnet {subnet}"
            )));
        }
        Some(f) => f,
        None => subnet,
    };
    let mtu = match cfg.mtu {
        Some(m) => m,
        None if owned => default_route_mtu(nl).await?,
        None => link.mtu,
    };
    if link.mtu != mtu {
        nl.set_mtu(link.index, mtu).await?;
    }
    nl.set_up(link.index).await?;
    Ok(NetworkState {
        bridge: name.to_string(),
        bridge_addr,
        pool,
        mtu,
        owned,
    })
}

/// `--ip-forward`: turn IPv4 forwarding on in the daemon's own namespace (never off).
pub fn enable_ip_forward() -> Result<(), EngineError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    let cur = std::fs::read_to_string(path).unwrap_or_default();
    if cur.trim() != "1" {
        std::fs::write(path, "1")
            .map_err(|e| EngineError::Internal(format!("cannot enable {path}: {e}")))?;
    }
    Ok(())
}

/// `--masq-ports`: keep the host's own sockets out of the masquerade port range, in the
/// daemon's network namespace: adds the range to net.ipv4.ip_local_reserved_ports (what was
/// reserved before stays). Host sockets then never get such a port from the kernel (an explicit
/// bind still can), so a masqueraded flow's reply tuple never belongs to a host socket.
pub fn reserve_masq_ports((lo, hi): (u16, u16)) -> Result<(), EngineError> {
    let path = "/proc/sys/net/ipv4/ip_local_reserved_ports";
    let cur = crate::spec::read_sysctl(std::path::Path::new(path))
        .map_err(|e| EngineError::Internal(format!("cannot read {path}: {e}")))?;
    let want = reserved_ports_with(cur.trim(), lo, hi);
    if want != cur.trim() {
        std::fs::write(path, &want).map_err(|e| {
            EngineError::Internal(format!("cannot reserve ports {lo}-{hi} in {path}: {e}"))
        })?;
    }
    Ok(())
}

/// The ip_local_reserved_ports list `cur` with `lo-hi` added (unless already covered).
fn reserved_ports_with(cur: &str, lo: u16, hi: u16) -> String {
    let range = |r: &str| -> Option<(u16, u16)> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    };
    let covered = cur
        .split(',')
        .filter_map(range)
        .any(|(a, b)| a <= lo && hi <= b);
    if covered {
        return cur.to_owned();
    }
    let add = format!("{lo}-{hi}");
    if cur.is_empty() {
        add
    } else {
        format!("{cur},{add}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_ports_are_added_once() {
        use super::reserved_ports_with as w;
        assert_eq!(w("", 61000, 65535), "61000-65535");
        assert_eq!(
            w("8080,9000-9100", 61000, 65535),
            "8080,9000-9100,61000-65535"
        );
        assert_eq!(w("60000-65535", 61000, 65535), "60000-65535");
    }

    use super::*;

    #[test]
    fn chooses_first_free_subnet() {
        let addrs = vec![
            (2, "172.17.0.5/16".parse().unwrap()),
            (3, "198.51.100.1/24".parse().unwrap()),
        ];
        let routes = vec![Route {
            dest: "172.18.3.0/24".parse().unwrap(),
            oif: Some(3),
            gateway: None,
        }];
        assert_eq!(
            choose_subnet(&addrs, &routes),
            Some("172.19.0.0/16".parse().unwrap())
        );
        // A default route does not block anything.
        let routes = vec![Route {
            dest: "0.0.0.0/0".parse().unwrap(),
            oif: Some(3),
            gateway: None,
        }];
        assert_eq!(
            choose_subnet(&[], &routes),
            Some("172.17.0.0/16".parse().unwrap())
        );
        assert_eq!(
            first_host("172.17.0.0/16".parse().unwrap()).to_string(),
            "172.17.0.1/16"
        );
    }
}
