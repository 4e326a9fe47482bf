//! IPv6 (the seed's "IPv6"): addresses without duplicate address detection, device routes,
//! link-local gateways and NDP proxy entries.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use netlink_packet_route::address::AddressAttribute;

use super::{Netlink, WiringError, nl};

/// IPv6 (the seed's "IPv6"): addresses without duplicate address detection (netd owns the
/// addresses it gives, and a tentative address would hold traffic back for seconds), device
/// routes, gateways that may be link-local, and NDP proxy entries.
impl Netlink {
    /// Adds `ip/prefix` with `nodad`; an address that is already there is fine.
    pub async fn add_address6(
        &self,
        index: u32,
        ip: Ipv6Addr,
        prefix: u8,
    ) -> Result<(), WiringError> {
        use netlink_packet_route::address::AddressFlag;
        let mut req = self.handle.address().add(index, IpAddr::V6(ip), prefix);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(vec![AddressFlag::Nodad]));
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(nl(format!("adding {ip}/{prefix} to interface #{index}"))(e)),
        }
    }

    /// IPv6 addresses of one interface (or all) as (ifindex, network with the address in it).
    pub async fn addresses_v6(
        &self,
        index: Option<u32>,
    ) -> Result<Vec<(u32, Ipv6Net)>, WiringError> {
        Ok(self
            .addresses(index)
            .await?
            .into_iter()
            .filter_map(|(i, n)| match n {
                IpNet::V6(n) => Some((i, n)),
                IpNet::V4(_) => None,
            })
            .collect())
    }

    /// `ip -6 route replace DEST dev IF` (idempotent).
    pub async fn replace_device_route6(
        &self,
        dest: Ipv6Net,
        index: u32,
    ) -> Result<(), WiringError> {
        self.handle
            .route()
            .add()
            .v6()
            .destination_prefix(dest.network(), dest.prefix_len())
            .output_interface(index)
            .replace()
            .execute()
            .await
            .map_err(nl(format!(
                "adding a route to {dest} via interface #{index}"
            )))
    }

    /// `ip -6 route add default via GW dev IF` (a link-local gateway needs the interface).
    pub async fn add_default_route6(
        &self,
        gateway: Ipv6Addr,
        index: u32,
    ) -> Result<(), WiringError> {
        self.handle
            .route()
            .add()
            .v6()
            .gateway(gateway)
            .output_interface(index)
            .execute()
            .await
            .map_err(nl(format!(
                "adding the IPv6 default route via {gateway} on interface #{index}"
            )))
    }

    /// `ip -6 neigh replace proxy IP dev IF`: the kernel answers neighbour solicitations for
    /// `ip` on that interface (with proxy_ndp on).
    pub async fn add_proxy_neighbour(&self, index: u32, ip: Ipv6Addr) -> Result<(), WiringError> {
        use netlink_packet_route::neighbour::NeighbourFlag;
        self.handle
            .neighbours()
            .add(index, IpAddr::V6(ip))
            .flags(vec![NeighbourFlag::Proxy])
            .replace()
            .execute()
            .await
            .map_err(nl(format!(
                "adding an NDP proxy entry for {ip} on interface #{index}"
            )))
    }

    /// `ip -6 neigh del proxy IP dev IF`; an entry that is not there is fine.
    pub async fn del_proxy_neighbour(&self, index: u32, ip: Ipv6Addr) -> Result<(), WiringError> {
        use netlink_packet_route::AddressFamily;
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlag, NeighbourMessage,
        };
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.ifindex = index;
        m.header.flags = vec![NeighbourFlag::Proxy];
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)));
        match self.handle.neighbours().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -libc::ENOENT || e.raw_code() == -libc::ENODEV =>
            {
                Ok(())
            }
            Err(e) => Err(nl(format!(
                "deleting the NDP proxy entry for {ip} on interface #{index}"
            ))(e)),
        }
    }
}
