//! Kernel network configuration through rtnetlink: bridges, veth pairs, addresses, routes.
//!
//! One [`Netlink`] handle per network namespace: the socket is opened while the calling thread
//! is inside the target namespace, so every request on it acts there.
mod ipv6;
pub mod netns;
pub mod reaper;
mod retire;
pub mod rule;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkLayerType};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, IpVersion};

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("{op} failed: {source}")]
    Netlink {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} failed: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {0} does not exist")]
    NoSuchLink(String),
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> WiringError {
    let op = op.into();
    move |e| {
        let source = match &e {
            rtnetlink::Error::NetlinkError(m) => m.to_io(),
            other => std::io::Error::other(other.to_string()),
        };
        WiringError::Netlink { op, source }
    }
}

/// What netd needs to know about an interface.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    pub master: Option<u32>,
    pub is_bridge: bool,
    /// ARPHRD_ETHER: frames carry an Ethernet header (not loopback, tun, wireguard, ipip).
    pub ethernet: bool,
    /// The link kind, e.g. `veth`, `bridge`, `wireguard` (None for physical NICs).
    pub kind: Option<String>,
    /// For a VLAN device: the interface it is stacked on.
    pub vlan_parent: Option<u32>,
    /// For a veth: its peer's index (in the peer's namespace).
    pub veth_peer: Option<u32>,
}

/// A route's destination (IPv4 routes only).
#[derive(Debug, Clone)]
pub struct Route {
    pub dest: Ipv4Net,
    pub oif: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
}

pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A handle on the calling thread's current network namespace. Needs a tokio runtime.
    pub fn current() -> Result<Self, WiringError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| WiringError::Io {
            op: "opening a netlink socket".into(),
            source,
        })?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, WiringError> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(to_link(m))),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(nl(format!("looking up interface {name}"))(e)),
        }
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>, WiringError> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(to_link(m))),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(nl(format!("looking up interface #{index}"))(e)),
        }
    }

    pub async fn links(&self) -> Result<Vec<Link>, WiringError> {
        let s = self.handle.link().get().execute();
        let msgs: Vec<_> = s.try_collect().await.map_err(nl("listing interfaces"))?;
        Ok(msgs.into_iter().map(to_link).collect())
    }

    pub async fn require_link(&self, name: &str) -> Result<Link, WiringError> {
        self.link_by_name(name)
            .await?
            .ok_or_else(|| WiringError::NoSuchLink(name.to_string()))
    }

    pub async fn create_bridge(&self, name: &str) -> Result<Link, WiringError> {
        self.handle
            .link()
            .add()
            .bridge(name.to_string())
            .execute()
            .await
            .map_err(nl(format!("creating bridge {name}")))?;
        let link = self.require_link(name).await?;
        // A bridge without an address of its own takes its lowest port's MAC, so the
        // gateway's MAC would change when that container goes, and every other container's
        // neighbour entry for the gateway (ARP, and NDP for fe80::1) would point at nothing
        // until it is probed again (seconds). Docker gives docker0 a random MAC too.
        self.set_mac(link.index, random_bridge_mac()).await?;
        self.require_link(name).await
    }

    /// Creates a veth pair `host` <-> `peer`, both in this namespace.
    pub async fn create_veth(&self, host: &str, peer: &str) -> Result<(Link, Link), WiringError> {
        self.handle
            .link()
            .add()
            .veth(host.to_string(), peer.to_string())
            .execute()
            .await
            .map_err(nl(format!("creating veth pair {host}/{peer}")))?;
        Ok((
            self.require_link(host).await?,
            self.require_link(peer).await?,
        ))
    }

    /// Creates a veth pair whose container end is made straight inside the namespace open at
    /// `ns`, already named `peer` and with `peer_mac`; both ends get `mtu`. One request instead
    /// of create + move + rename + set MAC + two MTUs: moving an interface between namespaces
    /// waits for an RCU grace period (~10-20 ms under load). Returns the host end.
    pub async fn create_veth_into(
        &self,
        host: &str,
        peer: &str,
        ns: BorrowedFd<'_>,
        peer_mac: [u8; 6],
        mtu: u32,
    ) -> Result<Link, WiringError> {
        use futures::StreamExt as _;
        use netlink_packet_core::{
            NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
        };
        use netlink_packet_route::RouteNetlinkMessage;
        use netlink_packet_route::link::{InfoData, InfoVeth, LinkMessage};
        let op = || format!("creating veth pair {host}/{peer} (into the container's namespace)");
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        p.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        p.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
        p.attributes.push(LinkAttribute::Mtu(mtu));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewLink(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let mut handle = self.handle.clone();
        let mut resp = handle.request(req).map_err(nl(op()))?;
        while let Some(m) = resp.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                if e.code.is_some() {
                    return Err(nl(op())(rtnetlink::Error::NetlinkError(e)));
                }
            }
        }
        self.require_link(host).await
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), WiringError> {
        self.handle
            .link()
            .set(index)
            .mtu(mtu)
            .execute()
            .await
            .map_err(nl(format!("setting MTU {mtu} on interface #{index}")))
    }

    /// A bridge port marked isolated forwards only to ports that are not: with every container
    /// port isolated, containers on the bridge reach the host but not each other.
    pub async fn set_port_isolated(&self, index: u32, isolated: bool) -> Result<(), WiringError> {
        use futures::StreamExt as _;
        use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
        use netlink_packet_route::RouteNetlinkMessage;
        use netlink_packet_route::link::{InfoBridgePort, InfoPortData, InfoPortKind, LinkMessage};
        let op = || format!("setting bridge port isolation on interface #{index}");
        // Bridge-port options change through RTM_NEWLINK on the existing interface (what
        // `ip link set DEV type bridge_slave isolated on` sends); RTM_SETLINK ignores them.
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
                isolated,
            )])),
        ]));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewLink(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut handle = self.handle.clone();
        let mut resp = handle.request(req).map_err(nl(op()))?;
        while let Some(m) = resp.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                if e.code.is_some() {
                    return Err(nl(op())(rtnetlink::Error::NetlinkError(e)));
                }
            }
        }
        Ok(())
    }

    pub async fn set_master(&self, index: u32, master: u32) -> Result<(), WiringError> {
        self.handle
            .link()
            .set(index)
            .controller(master)
            .execute()
            .await
            .map_err(nl(format!(
                "enslaving interface #{index} to bridge #{master}"
            )))
    }

    pub async fn set_up(&self, index: u32) -> Result<(), WiringError> {
        self.handle
            .link()
            .set(index)
            .up()
            .execute()
            .await
            .map_err(nl(format!("bringing interface #{index} up")))
    }

    pub async fn set_name(&self, index: u32, name: &str) -> Result<(), WiringError> {
        self.handle
            .link()
            .set(index)
            .name(name.to_string())
            .execute()
            .await
            .map_err(nl(format!("renaming interface #{index} to {name}")))
    }

    pub async fn set_mac(&self, index: u32, mac: [u8; 6]) -> Result<(), WiringError> {
        self.handle
            .link()
            .set(index)
            .address(mac.to_vec())
            .execute()
            .await
            .map_err(nl(format!("setting the MAC address of interface #{index}")))
    }

    /// Moves an interface into the network namespace open at `ns`.
    pub async fn move_to_netns(&self, index: u32, ns: BorrowedFd<'_>) -> Result<(), WiringError> {
        self.handle
            .link()
            .set(index)
            .setns_by_fd(ns.as_raw_fd())
            .execute()
            .await
            .map_err(nl(format!(
                "moving interface #{index} into the container's namespace"
            )))
    }

    pub async fn delete_link(&self, index: u32) -> Result<(), WiringError> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(()),
            Err(e) => Err(nl(format!("deleting interface #{index}"))(e)),
        }
    }

    pub async fn add_address(
        &self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), WiringError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(ip), prefix)
            .execute()
            .await
            .map_err(nl(format!("adding {ip}/{prefix} to interface #{index}")))
    }

    /// Addresses of both families on one interface (or all) as (ifindex, network with the
    /// address in it); [`Netlink::addresses_v4`] and [`Netlink::addresses_v6`] pick a family.
    pub(super) async fn addresses(
        &self,
        index: Option<u32>,
    ) -> Result<Vec<(u32, IpNet)>, WiringError> {
        let mut req = self.handle.address().get();
        if let Some(i) = index {
            req = req.set_link_index_filter(i);
        }
        let msgs: Vec<_> = req
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing addresses"))?;
        let mut out = Vec::new();
        for m in msgs {
            let prefix = m.header.prefix_len;
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    if let Ok(net) = IpNet::new(*ip, prefix) {
                        out.push((m.header.index, net));
                    }
                }
            }
        }
        Ok(out)
    }

    /// IPv4 addresses as (ifindex, network with the address in it).
    pub async fn addresses_v4(
        &self,
        index: Option<u32>,
    ) -> Result<Vec<(u32, Ipv4Net)>, WiringError> {
        Ok(self
            .addresses(index)
            .await?
            .into_iter()
            .filter_map(|(i, n)| match n {
                IpNet::V4(n) => Some((i, n)),
                IpNet::V6(_) => None,
            })
            .collect())
    }

    pub async fn routes_v4(&self) -> Result<Vec<Route>, WiringError> {
        let msgs: Vec<_> = self
            .handle
            .route()
            .get(IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing routes"))?;
        let mut out = Vec::new();
        for m in msgs {
            let len = m.header.destination_prefix_length;
            let mut dest = Ipv4Addr::UNSPECIFIED;
            let mut oif = None;
            let mut gateway = None;
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dest = *d,
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
                    _ => {}
                }
            }
            if let Ok(dest) = Ipv4Net::new(dest, len) {
                out.push(Route { dest, oif, gateway });
            }
        }
        Ok(out)
    }

    pub async fn add_default_route(&self, gateway: Ipv4Addr) -> Result<(), WiringError> {
        self.handle
            .route()
            .add()
            .v4()
            .gateway(gateway)
            .execute()
            .await
            .map_err(nl(format!("adding the default route via {gateway}")))
    }

    /// A /32 (or other) route straight out of an interface, for point-to-point links.
    pub async fn add_device_route(&self, dest: Ipv4Net, index: u32) -> Result<(), WiringError> {
        self.handle
            .route()
            .add()
            .v4()
            .destination_prefix(dest.addr(), dest.prefix_len())
            .output_interface(index)
            .execute()
            .await
            .map_err(nl(format!(
                "adding a route to {dest} via interface #{index}"
            )))
    }
}

/// A random locally administered unicast MAC in Docker's 02:42 range.
fn random_bridge_mac() -> [u8; 6] {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        b = (std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos())
        .to_le_bytes();
    }
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

fn to_link(m: netlink_packet_route::link::LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mtu: 1500,
        mac: None,
        master: None,
        is_bridge: false,
        ethernet: m.header.link_layer_type == LinkLayerType::Ether,
        kind: None,
        vlan_parent: None,
        veth_peer: None,
    };
    let mut lower = None;
    let mut is_vlan = false;
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Mtu(v) => link.mtu = v,
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&a);
                link.mac = Some(mac);
            }
            LinkAttribute::Controller(i) => link.master = Some(i),
            LinkAttribute::Link(i) => lower = Some(i),
            LinkAttribute::LinkInfo(infos) => {
                link.is_bridge = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge)));
                link.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Some(k.to_string().to_lowercase()),
                    _ => None,
                });
                is_vlan = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vlan)));
            }
            _ => {}
        }
    }
    if is_vlan {
        link.vlan_parent = lower;
    }
    if link.kind.as_deref() == Some("veth") {
        link.veth_peer = lower;
    }
    link
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};

    use super::to_link;

    fn msg(kind: InfoKind, lower: u32) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = 9;
        m.attributes = vec![
            LinkAttribute::IfName("x".into()),
            LinkAttribute::Link(lower),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]),
        ];
        m
    }

    #[test]
    fn a_vlan_device_names_its_parent_and_a_veth_its_peer() {
        assert_eq!(to_link(msg(InfoKind::Vlan, 3)).vlan_parent, Some(3));
        // A veth's IFLA_LINK is its peer, no parent.
        assert_eq!(to_link(msg(InfoKind::Veth, 3)).vlan_parent, None);
        assert_eq!(to_link(msg(InfoKind::Veth, 3)).veth_peer, Some(3));
        assert_eq!(to_link(msg(InfoKind::Vlan, 3)).veth_peer, None);
    }
}
