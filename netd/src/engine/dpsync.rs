//! Keeps the eBPF maps equal to the engine's state: configuration, endpoints, published port
//! ranges, link allowances, filters, host addresses and uplinks. Everything is derived from the
//! state on each change, so there is no second copy to drift.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netd_common::{
    CFG_F_ALLOWLIST, CFG_F_DENYLIST, CFG_F_FAST_PATH, CFG_F_ICC, CFG_F_MASQ, CFG_F_SNAT_IN_RANGE,
    DpConfig, EndpointInfo, LINK_PORT_RANGES, LinkKey, LinkPorts, NET_F_ICC, NET_F_INTERNAL,
    NET_F_MASQ, NetConfig, PORT_F_LOOPBACK, PORT_F_NO_RESERVE, PortEntry, PortPair,
    UPLINK_F_VLAN_PARENT, UplinkInfo,
};

use super::state::Endpoint;
use super::{Engine, EngineError};
use crate::dataplane::EndpointIpv6;
use crate::spec::{NetMode, Proto};

fn be(ip: Ipv4Addr) -> u32 {
    u32::from(ip).to_be()
}

impl Engine {
    fn dp_config(&self, bridge_ifindex: u32, bridge_mac: Option<[u8; 6]>) -> DpConfig {
        let mut flags = 0;
        if self.cfg.fast_path {
            flags |= CFG_F_FAST_PATH;
        }
        if self.cfg.icc {
            flags |= CFG_F_ICC;
        }
        if self.cfg.ip_masq {
            flags |= CFG_F_MASQ;
        }
        // --masq-ports is reserved from the host's own sockets (engine start).
        flags |= CFG_F_SNAT_IN_RANGE;
        if !self.state.filters.allow.is_empty() {
            flags |= CFG_F_ALLOWLIST;
        }
        if !self.state.filters.deny.is_empty() {
            flags |= CFG_F_DENYLIST;
        }
        let subnet = self.net.bridge_addr.trunc();
        DpConfig {
            flags,
            bridge_ifindex,
            bridge_ip: be(self.net.bridge_addr.addr()),
            subnet: be(subnet.network()),
            subnet_mask: be(subnet.netmask()),
            snat_port_min: self.cfg.masq_ports.0,
            snat_port_max: self.cfg.masq_ports.1,
            // Close to Linux's nf_conntrack defaults: syn_sent 120 s (here 60 s), established
            // 5 days (here 6 h), fin_wait/close_wait 120 s / 60 s, time_wait 120 s, close 10 s,
            // UDP unreplied 30 s / stream 120 s (here 60 s for either direction's idle time).
            ct_tcp_syn_s: 60,
            ct_tcp_established_s: 6 * 3600,
            ct_tcp_closing_s: 120,
            ct_tcp_time_wait_s: 120,
            ct_tcp_close_s: 10,
            ct_udp_s: 60,
            ct_icmp_s: 30,
            // Nothing answered: gone after 30 s (spoofed segments, scans, probes).
            ct_unreplied_s: 30,
            ct_src_max: self.cfg.ct_per_source_max,
            bridge_mac: bridge_mac.unwrap_or_default(),
            ..Default::default()
        }
    }

    fn port_entries(&self) -> Vec<PortEntry> {
        let mut out = Vec::new();
        for e in self.state.endpoints.values() {
            out.extend(Self::binding_entries(e, &e.ports));
        }
        out
    }

    /// The port-table entries of `bindings`, published by endpoint `e`: IPv4 host addresses
    /// to its IPv4 address, IPv6 ones (and `[::]` for [`PortBinding::also_v6`]) to its global
    /// IPv6 address.
    ///
    /// [`PortBinding::also_v6`]: super::state::PortBinding::also_v6
    fn binding_entries(e: &Endpoint, bindings: &[super::state::PortBinding]) -> Vec<PortEntry> {
        let Some(cip) = e.ip else { return Vec::new() };
        let cip6 = e.ipv6().and_then(|l| l.global);
        let mut out = Vec::new();
        for b in bindings {
            let mut flags = if b.host_ip.is_loopback() {
                PORT_F_LOOPBACK
            } else {
                0
            };
            if !e.reserve_ports {
                flags |= PORT_F_NO_RESERVE;
            }
            let base = PortEntry {
                proto: b.proto.number(),
                flags,
                host_port_start: b.host_port,
                host_port_end: b.host_port + (b.count - 1),
                container_port: b.container_port,
                binding_id: b.id,
                ..Default::default()
            };
            let v6 = |host: Ipv6Addr, c: Ipv6Addr| PortEntry {
                family: netd_common::AF_INET6,
                host_ip6: netd_common::in6_words(host.octets()),
                container_ip6: netd_common::in6_words(c.octets()),
                ..base
            };
            match (b.host_ip, cip6) {
                (IpAddr::V4(hip), _) => {
                    out.push(PortEntry {
                        host_ip: be(hip),
                        container_ip: be(cip),
                        ..base
                    });
                    if let (true, Some(c)) = (b.also_v6, cip6) {
                        out.push(v6(Ipv6Addr::UNSPECIFIED, c));
                    }
                }
                (IpAddr::V6(hip), Some(c)) => out.push(v6(hip, c)),
                // Refused when published; a container that lost its IPv6 address keeps only
                // its IPv4 bindings.
                (IpAddr::V6(_), None) => {}
            }
        }
        out
    }

    /// What a linked container may reach on its target: the target's exposed ports and the
    /// container side of its published ports (publishing implies exposing, as in Docker).
    fn link_ports(target: &Endpoint, proto: Proto) -> LinkPorts {
        let mut lp = LinkPorts::default();
        let ranges = target
            .exposed
            .iter()
            .filter(|x| x.proto == proto)
            .map(|x| (x.ports.start, x.ports.end))
            .chain(
                target
                    .ports
                    .iter()
                    .filter(|b| b.proto == proto)
                    .map(|b| (b.container_port, b.container_port + (b.count - 1))),
            );
        for (start, end) in ranges {
            if lp.ranges[..lp.count as usize]
                .iter()
                .any(|r| r.start == start && r.end == end)
            {
                continue;
            }
            if lp.count as usize == LINK_PORT_RANGES {
                tracing::warn!(target = %target.name, "more than {LINK_PORT_RANGES} exposed ranges: the rest are not reachable through links");
                break;
            }
            lp.ranges[lp.count as usize] = PortPair { start, end };
            lp.count += 1;
        }
        lp
    }

    fn links_map(&self) -> HashMap<LinkKey, LinkPorts> {
        let mut out = HashMap::new();
        for e in self.state.endpoints.values() {
            for l in &e.links {
                self.link_entries(e, &l.name, &mut out);
            }
        }
        out
    }

    /// The link allowances from and to endpoint `name` (what its attach adds and its detach
    /// removes): its own links, and other endpoints' links that name it. O(those links): the
    /// endpoints that name it come from the index, not from a scan.
    fn links_of(&self, name: &str) -> HashMap<LinkKey, LinkPorts> {
        let mut out = HashMap::new();
        if let Some(e) = self.state.endpoints.get(name) {
            for l in &e.links {
                self.link_entries(e, &l.name, &mut out);
            }
        }
        for src in self.index.linked_by(name) {
            let Some(e) = self.state.endpoints.get(src) else {
                continue;
            };
            for l in e.links.iter().filter(|l| l.name == name) {
                self.link_entries(e, &l.name, &mut out);
            }
        }
        out
    }

    /// The link allowances of endpoint `e`'s link to `target` into `out`.
    fn link_entries(&self, e: &Endpoint, target: &str, out: &mut HashMap<LinkKey, LinkPorts>) {
        let Some(src) = e.ip else { return };
        if e.net != NetMode::Bridge {
            return;
        }
        // Links hold within one network (a target that came back on another one is not
        // reachable through the link).
        let Some(t) = self
            .state
            .endpoints
            .get(target)
            .filter(|t| t.network == e.network)
        else {
            return;
        };
        let Some(dst) = t.ip else { return };
        for proto in [Proto::Tcp, Proto::Udp] {
            let lp = Self::link_ports(t, proto);
            if lp.count > 0 {
                let key = LinkKey {
                    src_ip: be(src),
                    dst_ip: be(dst),
                    proto: proto.number(),
                    _pad: [0; 3],
                };
                out.insert(key, lp);
            }
        }
    }

    /// Every bridged endpoint's map entry, and the IPv6 addresses of those that have a lease
    /// (the others keep to their MAC-derived link-local address in `policy6`).
    async fn endpoint_infos(&self) -> Result<(Vec<EndpointInfo>, Vec<EndpointIpv6>), EngineError> {
        let mut out = Vec::new();
        let mut v6 = Vec::new();
        for e in self.state.endpoints.values() {
            let (Some(h), Some(ip), Some(mac)) = (&e.host_ifname, e.ip, e.mac) else {
                continue;
            };
            let ifindex = match e.host_ifindex {
                Some(i) => i,
                // State written before the ifindex was kept.
                None => match self.nl.link_by_name(h).await? {
                    Some(l) => l.index,
                    None => continue,
                },
            };
            out.push(EndpointInfo {
                ip: be(ip),
                ifindex,
                mac,
                net_id: self.network_id(e.network.as_deref()),
            });
            if let Some(l) = e.ipv6() {
                v6.push(EndpointIpv6 {
                    ifindex,
                    link_local: l.link_local,
                    global: l.global,
                });
            }
        }
        Ok((out, v6))
    }

    /// Every network's options by dataplane id: the default network (0, a mirror of DpConfig:
    /// the programs read its options there) and the created ones. A created network whose
    /// bridge is gone is left out (its containers are unreachable anyway).
    async fn network_configs(
        &self,
        default: &DpConfig,
    ) -> Result<Vec<(u16, NetConfig)>, EngineError> {
        let mut flags = 0;
        if self.cfg.icc {
            flags |= NET_F_ICC;
        }
        if self.cfg.ip_masq {
            flags |= NET_F_MASQ;
        }
        let mut out = vec![(
            0,
            NetConfig {
                flags,
                bridge_ifindex: default.bridge_ifindex,
                bridge_ip: default.bridge_ip,
                subnet: default.subnet,
                subnet_mask: default.subnet_mask,
                bridge_mac: default.bridge_mac,
                _pad: 0,
            },
        )];
        for n in self.state.networks.values() {
            let Some(l) = self.nl.link_by_name(&n.bridge).await? else {
                tracing::warn!(network = %n.name, bridge = %n.bridge, "bridge missing: network left out of the dataplane");
                continue;
            };
            let mut flags = 0;
            if n.icc {
                flags |= NET_F_ICC;
            }
            if n.ip_masq && !n.internal {
                flags |= NET_F_MASQ;
            }
            if n.internal {
                flags |= NET_F_INTERNAL;
            }
            let subnet = n.bridge_addr.trunc();
            out.push((
                n.id,
                NetConfig {
                    flags,
                    bridge_ifindex: l.index,
                    bridge_ip: be(n.bridge_addr.addr()),
                    subnet: be(subnet.network()),
                    subnet_mask: be(subnet.netmask()),
                    bridge_mac: l.mac.unwrap_or_default(),
                    _pad: 0,
                },
            ));
        }
        Ok(out)
    }

    /// Host addresses and uplink masquerade addresses, read from the kernel.
    pub async fn refresh_addresses(&mut self) -> Result<(), EngineError> {
        if self.dp.is_none() {
            return Ok(());
        }
        let addrs = self.nl.addresses_v4(None).await?;
        let host: HashMap<u32, u32> = addrs.iter().map(|(i, n)| (be(n.addr()), *i)).collect();
        let mut uplinks = HashMap::new();
        let mut vlan_parents = Vec::new();
        for u in &self.uplinks {
            if let Some(l) = self.nl.link_by_name(u).await? {
                let ip = addrs
                    .iter()
                    .find(|(i, _)| *i == l.index)
                    .map(|(_, n)| be(n.addr()))
                    .unwrap_or(0);
                uplinks.insert(l.index, UplinkInfo { ip, flags: 0 });
                if let Some(p) = l.vlan_parent {
                    vlan_parents.push(p);
                }
            }
        }
        mark_vlan_parents(&mut uplinks, &vlan_parents);
        let host6 = self.nl.addresses_v6(None).await?;
        let dp = self.dp.as_mut().expect("checked");
        dp.set_host_addrs(&host)?;
        dp.set_host_addrs6(&host6)?;
        dp.set_uplinks(&uplinks)?;
        Ok(())
    }

    /// Makes the maps equal to the state.
    pub(super) async fn sync_dataplane(&mut self) -> Result<(), EngineError> {
        if self.dp.is_none() {
            return Ok(());
        }
        let mut t = super::timing::Phases::new();
        let bridge = self.nl.require_link(&self.net.bridge).await?;
        let cfg = self.dp_config(bridge.index, bridge.mac);
        let (eps, eps6) = self.endpoint_infos().await?;
        let nets = self.network_configs(&cfg).await?;
        let ports = self.port_entries();
        let links = self.links_map();
        t.mark("derive");
        let allow: Vec<_> = self
            .state
            .filters
            .allow
            .iter()
            .map(|n| (be(n.network()), n.prefix_len()))
            .collect();
        let deny: Vec<_> = self
            .state
            .filters
            .deny
            .iter()
            .map(|n| (be(n.network()), n.prefix_len()))
            .collect();
        self.refresh_addresses().await?;
        t.mark("addresses");
        let dp = self.dp.as_mut().expect("checked");
        // Filter entries are added before the config may switch a list on, and removed after
        // it switched one off: no moment drops everyone or lets a denied source through.
        dp.add_filters(&allow, &deny)?;
        dp.set_config(&cfg)?;
        // Networks before the endpoints that name them.
        dp.set_networks(&nets)?;
        // The XDP pre-filter runs only while there is something to filter.
        let filtering = !allow.is_empty() || !deny.is_empty();
        dp.set_prefilter(&self.uplinks, filtering)?;
        t.mark("config");
        dp.set_endpoints(&eps)?;
        dp.set_endpoints_ipv6(&eps6)?;
        t.mark("endpoints");
        let change = dp.set_ports(ports)?;
        t.mark("ports");
        dp.set_links(&links)?;
        dp.prune_filters(&allow, &deny)?;
        t.mark("links");
        t.log(
            "maps",
            &format!(
                "{} endpoints, {} ports written, {} deleted",
                eps.len(),
                change.written,
                change.deleted
            ),
        );
        Ok(())
    }

    /// An attach's map change, after the endpoint `name` went into the state: its port
    /// bindings and the links from and to it. Its endpoint entries and IPv6 addresses were
    /// written before its veth came up. O(this endpoint), whatever the number of others: the
    /// full diff ([`Engine::sync_dataplane`]) runs only at start and for daemon-wide changes.
    pub(super) fn publish_endpoint(&mut self, name: &str) -> Result<(), EngineError> {
        if self.dp.is_none() {
            return Ok(());
        }
        let Some(e) = self.state.endpoints.get(name) else {
            return Ok(());
        };
        let ports = e.ports.clone();
        let links = self.links_of(name);
        self.sync_added_ports(name, &ports)?;
        let dp = self.dp.as_mut().expect("checked");
        dp.update_links(&[], &links)?;
        Ok(())
    }

    /// What [`Engine::unpublish_endpoint`] needs of an endpoint, taken while it is still in
    /// the state: the link allowances from and to it.
    pub(super) fn endpoint_link_keys(&self, name: &str) -> Vec<LinkKey> {
        self.links_of(name).into_keys().collect()
    }

    /// A detach's (or a failed attach's) map change, after `ep` left the state: its port
    /// bindings, the `links` [`Engine::endpoint_link_keys`] found, its IPv6 addresses and its
    /// endpoint entries go, and links other endpoints still hold to it are rewritten (none
    /// when it left; a rollback of a re-attach leaves them as the full set has them).
    /// Everything is attempted; the errors are returned together.
    pub(super) fn unpublish_endpoint(&mut self, ep: &Endpoint, links: &[LinkKey]) -> Vec<String> {
        let mut errors = Vec::new();
        if self.dp.is_none() {
            return errors;
        }
        let entries = Self::binding_entries(ep, &ep.ports);
        let still = self.links_of(&ep.name);
        let dp = self.dp.as_mut().expect("checked");
        match dp.update_ports(&entries, &[]) {
            Ok(Some(_)) => {}
            // The writer does not know the table yet: the whole of it (O(published ports),
            // so only then).
            Ok(None) => {
                if let Err(e) = self.sync_ports() {
                    errors.push(format!("dataplane: {e}"));
                }
            }
            Err(e) => errors.push(format!("dataplane: {e}")),
        }
        let dp = self.dp.as_mut().expect("checked");
        if let Err(e) = dp.update_links(links, &still) {
            errors.push(format!("dataplane: {e}"));
        }
        if let (Some(ifindex), Some(ip), Some(mac)) = (ep.host_ifindex, ep.ip, ep.mac) {
            if ep.net == NetMode::Bridge {
                if let Err(e) = dp.clear_endpoint_ipv6(ifindex) {
                    errors.push(format!("dataplane: {e}"));
                }
                let info = EndpointInfo {
                    ip: be(ip),
                    ifindex,
                    mac,
                    net_id: 0,
                };
                if let Err(e) = dp.remove_endpoint(&info) {
                    errors.push(format!("dataplane: {e}"));
                }
            }
        }
        errors
    }

    /// Adds `added` (bindings of endpoint `name`, already in the state) to the port table,
    /// writing only their ports: `netd publish`'s path, O(published ports) nowhere. Falls back
    /// to [`Engine::sync_ports`] while the writer does not know the table yet.
    pub(super) fn sync_added_ports(
        &mut self,
        name: &str,
        added: &[super::state::PortBinding],
    ) -> Result<(), EngineError> {
        let entries = match self.state.endpoints.get(name) {
            Some(e) => Self::binding_entries(e, added),
            None => return self.sync_ports(),
        };
        if let Some(dp) = self.dp.as_mut() {
            if dp.update_ports(&[], &entries)?.is_none() {
                return self.sync_ports();
            }
        }
        Ok(())
    }

    /// Rewrites only the published-port table (the cheap path of `netd publish`).
    pub(super) fn sync_ports(&mut self) -> Result<(), EngineError> {
        let ports = self.port_entries();
        if let Some(dp) = self.dp.as_mut() {
            dp.set_ports(ports)?;
        }
        Ok(())
    }

    /// Rewrites only the link allowances (after a linked container's ports changed).
    pub(super) fn sync_links(&mut self) -> Result<(), EngineError> {
        let links = self.links_map();
        if let Some(dp) = self.dp.as_mut() {
            dp.set_links(&links)?;
        }
        Ok(())
    }

    /// A conntrack garbage collector on its own handles (None without the eBPF dataplane).
    pub fn ct_gc(&self) -> Result<Option<crate::dataplane::CtGc>, EngineError> {
        match self.dp {
            Some(_) => Ok(Some(crate::dataplane::CtGc::open(&self.cfg.bpffs)?)),
            None => Ok(None),
        }
    }
}

/// An uplink carrying a VLAN uplink leaves its tagged frames to that one: it gets
/// `UPLINK_F_VLAN_PARENT` (a VLAN uplink on an interface that is no uplink changes nothing).
fn mark_vlan_parents(uplinks: &mut HashMap<u32, UplinkInfo>, vlan_parents: &[u32]) {
    for p in vlan_parents {
        if let Some(u) = uplinks.get_mut(p) {
            u.flags |= UPLINK_F_VLAN_PARENT;
        }
    }
}

#[cfg(test)]
mod vlan_tests {
    use super::*;

    #[test]
    fn only_uplinks_under_a_vlan_uplink_are_marked() {
        let mut u: HashMap<u32, UplinkInfo> = [(2, 1), (5, 2), (7, 3)]
            .into_iter()
            .map(|(i, ip)| (i, UplinkInfo { ip, flags: 0 }))
            .collect();
        mark_vlan_parents(&mut u, &[2, 40]);
        assert_eq!(u[&2].flags, UPLINK_F_VLAN_PARENT);
        assert_eq!(u[&5].flags, 0);
        assert_eq!(u[&7].flags, 0);
        assert_eq!(u.len(), 3, "no entry for the interface that is no uplink");
    }
}
