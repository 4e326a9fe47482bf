//! IPv4 address allocation from the pool.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("IP address {ip} is outside the container range {pool}")]
    OutsideRange { ip: Ipv4Addr, pool: Ipv4Net },
    #[error("IP address {ip} is reserved (network, broadcast or the gateway)")]
    Reserved { ip: Ipv4Addr },
    #[error("IP address {ip} is already in use by \"{owner}\"")]
    InUse { ip: Ipv4Addr, owner: String },
    #[error("no free IP address left in {pool}")]
    Exhausted { pool: Ipv4Net },
}

/// Docker's MAC for a container address: `02:42` followed by the four address bytes.
pub fn mac_from_ipv4(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

/// Chooses addresses; what is in use is passed in (derived from the endpoints), so there is no
/// second copy of the leases to drift.
pub struct Ipam {
    pub subnet: Ipv4Net,
    pub pool: Ipv4Net,
    pub reserved: BTreeSet<Ipv4Addr>,
}

impl Ipam {
    pub fn new(bridge_addr: Ipv4Net, pool: Ipv4Net, gateway: Option<Ipv4Addr>) -> Self {
        let subnet = bridge_addr.trunc();
        let mut reserved =
            BTreeSet::from([bridge_addr.addr(), subnet.network(), subnet.broadcast()]);
        if let Some(g) = gateway {
            reserved.insert(g);
        }
        Self {
            subnet,
            pool,
            reserved,
        }
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        // The pool's own network/broadcast addresses are fine unless they are the subnet's.
        self.pool.contains(&ip) && self.subnet.contains(&ip) && !self.reserved.contains(&ip)
    }

    /// Checks a requested address.
    pub fn check(
        &self,
        ip: Ipv4Addr,
        in_use: &dyn Fn(Ipv4Addr) -> Option<String>,
    ) -> Result<(), IpamError> {
        if !self.pool.contains(&ip) || !self.subnet.contains(&ip) {
            return Err(IpamError::OutsideRange {
                ip,
                pool: self.pool,
            });
        }
        if self.reserved.contains(&ip) {
            return Err(IpamError::Reserved { ip });
        }
        if let Some(owner) = in_use(ip) {
            return Err(IpamError::InUse { ip, owner });
        }
        Ok(())
    }

    /// The lowest free address of the pool.
    pub fn allocate(
        &self,
        in_use: &dyn Fn(Ipv4Addr) -> Option<String>,
    ) -> Result<Ipv4Addr, IpamError> {
        let start = u32::from(self.pool.network());
        let end = u32::from(self.pool.broadcast());
        (start..=end)
            .map(Ipv4Addr::from)
            .find(|ip| self.usable(*ip) && in_use(*ip).is_none())
            .ok_or(IpamError::Exhausted { pool: self.pool })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: Ipv4Addr) -> Option<String> {
        None
    }

    #[test]
    fn skips_gateway_network_and_broadcast() {
        let ipam = Ipam::new(
            "172.30.0.1/24".parse().unwrap(),
            "172.30.0.0/24".parse().unwrap(),
            None,
        );
        assert_eq!(ipam.allocate(&none).unwrap(), Ipv4Addr::new(172, 30, 0, 2));
        assert_eq!(
            ipam.check(Ipv4Addr::new(172, 30, 0, 255), &none),
            Err(IpamError::Reserved {
                ip: Ipv4Addr::new(172, 30, 0, 255)
            })
        );
    }

    #[test]
    fn fixed_cidr_and_exhaustion() {
        let ipam = Ipam::new(
            "10.9.0.1/16".parse().unwrap(),
            "10.9.4.0/30".parse().unwrap(),
            None,
        );
        let used = |ip: Ipv4Addr| (ip.octets()[3] < 3).then(|| "x".to_string());
        assert_eq!(ipam.allocate(&used).unwrap(), Ipv4Addr::new(10, 9, 4, 3));
        let all = |_: Ipv4Addr| Some("x".to_string());
        assert!(matches!(
            ipam.allocate(&all),
            Err(IpamError::Exhausted { .. })
        ));
        assert!(matches!(
            ipam.check(Ipv4Addr::new(10, 9, 5, 1), &none),
            Err(IpamError::OutsideRange { .. })
        ));
    }

    #[test]
    fn docker_mac_derivation() {
        let derived = mac_from_ipv4(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(derived, [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!(crate::spec::format_mac(&derived), "02:42:ac:11:00:02");
        assert_eq!(
            crate::spec::format_mac(&mac_from_ipv4(Ipv4Addr::new(10, 255, 0, 1))),
            "02:42:0a:ff:00:01"
        );
        assert!(crate::spec::parse_mac(&crate::spec::format_mac(&derived)).is_ok());
    }

    #[test]
    fn in_use_names_owner() {
        let ipam = Ipam::new(
            "10.9.0.1/24".parse().unwrap(),
            "10.9.0.0/24".parse().unwrap(),
            None,
        );
        let used = |ip: Ipv4Addr| (ip == Ipv4Addr::new(10, 9, 0, 7)).then(|| "web".to_string());
        assert_eq!(
            ipam.check(Ipv4Addr::new(10, 9, 0, 7), &used)
                .unwrap_err()
                .to_string(),
            "IP address 10.9.0.7 is already in use by \"web\""
        );
    }
}
