//! IPv6 dual stack, the seed's "IPv6" sections: routed, not NATed.
//!
//! - The bridge gets `fe80::1/64`; with an IPv6 subnet (`--fixed-cidr-v6`, or a network's IPv6
//!   `--subnet`) a route to that subnet via the bridge, and IPv6 forwarding in the daemon's
//!   namespace (unless `--ip-forward false`). Uplinks that take their configuration from router
//!   advertisements (`accept_ra` 1) get `accept_ra` 2 first, so they keep it once forwarding is on.
//! - Each container: the EUI-64 link-local address of its MAC, a global address ending in the
//!   MAC when the subnet is a /80 or larger (else the lowest free one; `--ip6` to choose), and a
//!   default route via `--default-gateway-v6` or `fe80::1`.
//! - NDP proxying: when a container's global address lies inside an uplink's on-link prefix
//!   (the seed's `2001:db8::c008/125` inside `2001:db8::/64`), the uplink gets `proxy_ndp` 1 and
//!   a proxy entry for that address, added on attach and removed on detach.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::state::{Endpoint, Ipv6Lease};
use super::{Engine, EngineError};
use crate::spec::NetMode;
use crate::wiring::Netlink;

/// The bridge's link-local address, the containers' default IPv6 gateway.
pub const BRIDGE_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// A subnet this large (or larger) gives each container the address ending in its MAC.
pub const MAC_SUFFIX_MAX_PREFIX: u8 = 80;

/// What a network's endpoints get over IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment6 {
    /// Global addresses come from here (`None`: link-local only).
    pub subnet: Option<Ipv6Net>,
    /// The containers' default route's next hop.
    pub gateway: Ipv6Addr,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Ipam6Error {
    #[error(
        "--ip6 {ip}: this network has no IPv6 subnet (start the daemon with --ipv6 --fixed-cidr-v6, or create the network with --ipv6 --subnet)"
    )]
    NoSubnet { ip: Ipv6Addr },
    #[error("--ip6 {ip} is outside the container IPv6 subnet {subnet}")]
    OutsideRange { ip: Ipv6Addr, subnet: Ipv6Net },
    #[error("--ip6 {ip} is reserved (the subnet's network address or the IPv6 gateway)")]
    Reserved { ip: Ipv6Addr },
    #[error("IPv6 address {ip} is already in use by \"{owner}\"")]
    InUse { ip: Ipv6Addr, owner: String },
    #[error("no free IPv6 address left in {subnet}")]
    Exhausted { subnet: Ipv6Net },
}

/// The EUI-64 link-local address of a MAC: `02:42:ac:11:00:03` → `fe80::42:acff:fe11:3`.
pub fn link_local_from_mac(mac: [u8; 6]) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac;
    let id = [a ^ 0x02, b, c, 0xff, 0xfe, d, e, f];
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8..].copy_from_slice(&id);
    Ipv6Addr::from(o)
}

/// The subnet's address that ends in the MAC: `2001:db8:1::/64` and `02:42:ac:11:00:03` →
/// `2001:db8:1::242:ac11:3` (the subnet must be a /80 or larger).
pub fn addr_from_mac(subnet: Ipv6Net, mac: [u8; 6]) -> Ipv6Addr {
    let mut o = subnet.network().octets();
    o[10..].copy_from_slice(&mac);
    Ipv6Addr::from(o)
}

/// Chooses global IPv6 addresses in a subnet; what is in use is passed in.
pub struct Ipam6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
}

impl Ipam6 {
    fn reserved(&self, ip: Ipv6Addr) -> bool {
        ip == self.subnet.network() || ip == self.gateway
    }

    /// Checks a requested (`--ip6`) address.
    pub fn check(
        &self,
        ip: Ipv6Addr,
        in_use: &dyn Fn(Ipv6Addr) -> Option<String>,
    ) -> Result<(), Ipam6Error> {
        if !self.subnet.contains(&ip) {
            return Err(Ipam6Error::OutsideRange {
                ip,
                subnet: self.subnet,
            });
        }
        if self.reserved(ip) {
            return Err(Ipam6Error::Reserved { ip });
        }
        if let Some(owner) = in_use(ip) {
            return Err(Ipam6Error::InUse { ip, owner });
        }
        Ok(())
    }

    /// The address ending in `mac` for a /80 or larger, else the lowest free one.
    pub fn allocate(
        &self,
        mac: [u8; 6],
        in_use: &dyn Fn(Ipv6Addr) -> Option<String>,
    ) -> Result<Ipv6Addr, Ipam6Error> {
        if self.subnet.prefix_len() <= MAC_SUFFIX_MAX_PREFIX {
            let ip = addr_from_mac(self.subnet, mac);
            if let Some(owner) = in_use(ip) {
                return Err(Ipam6Error::InUse { ip, owner });
            }
            return Ok(ip);
        }
        let start = u128::from(self.subnet.network());
        let end = u128::from(self.subnet.broadcast());
        // Only addresses in use or reserved are skipped, so the search ends quickly.
        (start..=end)
            .map(Ipv6Addr::from)
            .find(|ip| !self.reserved(*ip) && in_use(*ip).is_none())
            .ok_or(Ipam6Error::Exhausted {
                subnet: self.subnet,
            })
    }
}

/// An address in use or none left is a conflict; the rest is a bad request.
fn ipam6_error(e: Ipam6Error) -> EngineError {
    match e {
        Ipam6Error::InUse { .. } | Ipam6Error::Exhausted { .. } => {
            EngineError::Conflict(e.to_string())
        }
        e => EngineError::Invalid(e.to_string()),
    }
}

/// Writes a sysctl of the daemon's own namespace unless it already holds `value`.
pub(super) fn set_sysctl(path: &str, value: &str) -> Result<(), EngineError> {
    let cur = std::fs::read_to_string(path).unwrap_or_default();
    if cur.trim() != value {
        std::fs::write(path, value)
            .map_err(|e| EngineError::Internal(format!("cannot set {path} to {value}: {e}")))?;
    }
    Ok(())
}

fn conf6(ifname: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv6/conf/{ifname}/{key}")
}

/// The bridge side: IPv6 on, `fe80::1/64`, and a route to the containers' subnet.
pub(super) async fn setup_bridge(
    nl: &Netlink,
    bridge: &str,
    subnet: Option<Ipv6Net>,
) -> Result<(), EngineError> {
    let link = nl.require_link(bridge).await?;
    set_sysctl(&conf6(bridge, "disable_ipv6"), "0")?;
    nl.add_address6(link.index, BRIDGE_LINK_LOCAL, 64).await?;
    if let Some(s) = subnet {
        nl.replace_device_route6(s, link.index).await?;
    }
    Ok(())
}

/// `--ip-forward` for IPv6: uplinks that accept router advertisements (`accept_ra` 1) get 2,
/// so they keep their own configuration, then forwarding goes on (never off).
pub(super) fn enable_forwarding(uplinks: &[String]) -> Result<(), EngineError> {
    for u in uplinks {
        let p = conf6(u, "accept_ra");
        if std::fs::read_to_string(&p).is_ok_and(|v| v.trim() == "1") {
            set_sysctl(&p, "2")?;
        }
    }
    set_sysctl(&conf6("default", "forwarding"), "1")?;
    set_sysctl(&conf6("all", "forwarding"), "1")
}

impl Engine {
    /// The IPv6 side of a network (`None`: IPv4 only).
    pub(super) fn segment6(&self, network: Option<&str>) -> Option<Segment6> {
        match network.and_then(|n| self.state.networks.get(n)) {
            Some(n) => n.ipv6.then_some(Segment6 {
                subnet: n.subnet_v6,
                gateway: BRIDGE_LINK_LOCAL,
            }),
            None => self.cfg.ipv6.then_some(Segment6 {
                subnet: self.cfg.fixed_cidr_v6,
                gateway: self.cfg.default_gateway_v6.unwrap_or(BRIDGE_LINK_LOCAL),
            }),
        }
    }

    /// Who has `ip`: an endpoint's lease, or a hold ([`Engine::hold_address6`]).
    fn owner_of_ip6(&self, ip: Ipv6Addr) -> Option<String> {
        self.index
            .owner6(ip)
            .map(str::to_owned)
            .or_else(|| self.state.held6.get(&ip).cloned())
    }

    /// Holds the IPv6 address `ip` of network `network` for `holder` (an IPAM front end hands
    /// it out before the endpoint exists, as [`Engine::hold_address`] does for IPv4): refused
    /// when the network has no IPv6 subnet, or the address is outside it, reserved or in use.
    /// Automatic addressing skips it until [`Engine::release_address6`].
    pub fn hold_address6(
        &mut self,
        network: &str,
        ip: Ipv6Addr,
        holder: &str,
    ) -> Result<(), EngineError> {
        let key = self.resolve_network(Some(network))?;
        let Some((subnet, gateway)) = self
            .segment6(key.as_deref())
            .and_then(|s| Some((s.subnet?, s.gateway)))
        else {
            return Err(EngineError::Invalid(format!(
                "IPv6 address {ip}: network {network} has no IPv6 subnet"
            )));
        };
        let ipam = Ipam6 { subnet, gateway };
        ipam.check(ip, &|i| self.owner_of_ip6(i))
            .map_err(ipam6_error)?;
        self.state.held6.insert(ip, holder.to_string());
        if let Err(e) = self.persist(&[]) {
            self.state.held6.remove(&ip);
            return Err(e);
        }
        Ok(())
    }

    /// Releases a held IPv6 address; true when it was held.
    pub fn release_address6(&mut self, ip: Ipv6Addr) -> Result<bool, EngineError> {
        let Some(holder) = self.state.held6.remove(&ip) else {
            return Ok(false);
        };
        if let Err(e) = self.persist(&[]) {
            self.state.held6.insert(ip, holder);
            return Err(e);
        }
        Ok(true)
    }

    /// Who holds the IPv6 address `ip` (see [`Engine::hold_address6`]).
    pub fn holder_of6(&self, ip: Ipv6Addr) -> Option<&str> {
        self.state.held6.get(&ip).map(String::as_str)
    }

    /// The IPv6 addresses a new bridged endpoint gets on `network` (`None` without IPv6;
    /// `--ip6` there is an error).
    pub(super) fn plan_ipv6(
        &self,
        network: Option<&str>,
        mac: [u8; 6],
        ip6: Option<Ipv6Addr>,
    ) -> Result<Option<Ipv6Lease>, EngineError> {
        let Some(seg) = self.segment6(network) else {
            return match ip6 {
                Some(ip) => Err(EngineError::Invalid(format!(
                    "--ip6 {ip}: IPv6 is off on this network (start the daemon with --ipv6, or create the network with --ipv6)"
                ))),
                None => Ok(None),
            };
        };
        let owner = |i: Ipv6Addr| self.owner_of_ip6(i);
        let conflict = ipam6_error;
        let global = match (seg.subnet, ip6) {
            (None, Some(ip)) => return Err(conflict(Ipam6Error::NoSubnet { ip })),
            (None, None) => None,
            (Some(subnet), want) => {
                let ipam = Ipam6 {
                    subnet,
                    gateway: seg.gateway,
                };
                Some(match want {
                    Some(ip) => {
                        ipam.check(ip, &owner).map_err(conflict)?;
                        ip
                    }
                    None => ipam.allocate(mac, &owner).map_err(conflict)?,
                })
            }
        };
        Ok(Some(Ipv6Lease {
            link_local: link_local_from_mac(mac),
            global,
            prefix_len: global.and(seg.subnet.map(|s| s.prefix_len())),
            gateway: seg.gateway,
        }))
    }

    /// At start: every network with IPv6 has its bridge side, and forwarding is on.
    pub(super) async fn setup_ipv6(&self) -> Result<(), EngineError> {
        let mut routed = false;
        if self.cfg.ipv6 {
            setup_bridge(&self.nl, &self.net.bridge, self.cfg.fixed_cidr_v6).await?;
            routed |= self.cfg.fixed_cidr_v6.is_some();
        }
        for n in self.state.networks.values().filter(|n| n.ipv6) {
            setup_bridge(&self.nl, &n.bridge, n.subnet_v6).await?;
            routed |= n.subnet_v6.is_some();
        }
        if routed && self.cfg.ip_forward {
            enable_forwarding(&self.uplinks)?;
        }
        Ok(())
    }

    /// NDP proxying for one endpoint: an entry on every uplink whose on-link prefix holds the
    /// endpoint's global address. Returns the uplinks that got one.
    pub(super) async fn add_ndp_proxy(&self, ep: &Endpoint) -> Result<Vec<String>, EngineError> {
        let Some(ip) = ep.ipv6.as_ref().and_then(|l| l.global) else {
            return Ok(Vec::new());
        };
        if matches!(ep.net, NetMode::Container(_)) {
            return Ok(Vec::new());
        }
        let mut done = Vec::new();
        for u in &self.uplinks {
            let Some(link) = self.nl.link_by_name(u).await? else {
                continue;
            };
            let on_link = self
                .nl
                .addresses_v6(Some(link.index))
                .await?
                .into_iter()
                .any(|(_, a)| {
                    // Link-local prefixes and host routes (/128) hold no neighbours to answer.
                    !a.addr().is_unicast_link_local()
                        && a.prefix_len() < 128
                        && a.trunc().contains(&ip)
                });
            if !on_link {
                continue;
            }
            set_sysctl(&conf6(u, "proxy_ndp"), "1")?;
            self.nl.add_proxy_neighbour(link.index, ip).await?;
            tracing::info!(container = %ep.name, uplink = %u, %ip, "NDP proxy entry added");
            done.push(u.clone());
        }
        Ok(done)
    }

    /// Removes the endpoint's NDP proxy entries (errors are returned as text, for detach's
    /// list).
    pub(super) async fn del_ndp_proxy(&self, ep: &Endpoint) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(ip) = ep.ipv6.as_ref().and_then(|l| l.global) else {
            return errors;
        };
        for u in &ep.ndp_proxy {
            match self.nl.link_by_name(u).await {
                Ok(Some(l)) => {
                    if let Err(e) = self.nl.del_proxy_neighbour(l.index, ip).await {
                        errors.push(e.to_string());
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x03];

    fn none(_: Ipv6Addr) -> Option<String> {
        None
    }

    #[test]
    fn addresses_from_the_mac_as_the_seed_shows() {
        assert_eq!(link_local_from_mac(MAC).to_string(), "fe80::42:acff:fe11:3");
        let s: Ipv6Net = "2001:db8:1::/64".parse().unwrap();
        assert_eq!(addr_from_mac(s, MAC).to_string(), "2001:db8:1::242:ac11:3");
        let ipam = Ipam6 {
            subnet: "2001:db8:23:42:1::/80".parse().unwrap(),
            gateway: BRIDGE_LINK_LOCAL,
        };
        assert_eq!(
            ipam.allocate(MAC, &none).unwrap().to_string(),
            "2001:db8:23:42:1:242:ac11:3"
        );
    }

    #[test]
    fn small_subnets_are_taken_in_order() {
        // The seed's NDP proxying example: the first container is 2001:db8::c009.
        let ipam = Ipam6 {
            subnet: "2001:db8::c008/125".parse().unwrap(),
            gateway: BRIDGE_LINK_LOCAL,
        };
        assert_eq!(
            ipam.allocate(MAC, &none).unwrap().to_string(),
            "2001:db8::c009"
        );
        let used = |ip: Ipv6Addr| (ip.segments()[7] < 0xc00f).then(|| "x".to_string());
        assert_eq!(
            ipam.allocate(MAC, &used).unwrap().to_string(),
            "2001:db8::c00f"
        );
        let all = |_: Ipv6Addr| Some("x".to_string());
        assert!(matches!(
            ipam.allocate(MAC, &all),
            Err(Ipam6Error::Exhausted { .. })
        ));
    }

    #[test]
    fn requested_addresses_are_checked() {
        let ipam = Ipam6 {
            subnet: "2001:db8:1::/64".parse().unwrap(),
            gateway: "2001:db8:1::fffe".parse().unwrap(),
        };
        let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert!(ipam.check(ip("2001:db8:1::10"), &none).is_ok());
        assert_eq!(
            ipam.check(ip("2001:db8:2::10"), &none)
                .unwrap_err()
                .to_string(),
            "--ip6 2001:db8:2::10 is outside the container IPv6 subnet 2001:db8:1::/64"
        );
        assert!(matches!(
            ipam.check(ip("2001:db8:1::fffe"), &none),
            Err(Ipam6Error::Reserved { .. })
        ));
        assert!(matches!(
            ipam.check(ip("2001:db8:1::"), &none),
            Err(Ipam6Error::Reserved { .. })
        ));
        let web = |i: Ipv6Addr| (i == ip("2001:db8:1::10")).then(|| "web".to_string());
        assert_eq!(
            ipam.check(ip("2001:db8:1::10"), &web)
                .unwrap_err()
                .to_string(),
            "IPv6 address 2001:db8:1::10 is already in use by \"web\""
        );
    }
}
