//! Which interfaces netd serves as uplinks (published ports DNAT'd on them, masquerade for what
//! leaves by them). With `--uplink` only those; without, like Docker, every interface except
//! loopback, netd's bridge, ports of any bridge or bond, container veths and p2p veths, and
//! devices without an Ethernet header (tun, wireguard, ipip: skipped, the TC programs parse
//! Ethernet frames).
//! Interfaces that appear or go later are followed: the host-event watcher
//! ([`super::host_events`]) calls [`Engine::refresh_uplinks`] for link changes that are not
//! netd's own, and the daemon's ten-second tick as a safety net.

use std::collections::HashSet;

use super::{Engine, EngineError};
use crate::wiring::Link;

/// The served set out of `links`, sorted. `bridges` are netd's bridges (the default network's
/// and every created network's), `endpoints` the host-side names of container veths.
///
/// An interface with a master (a port of netd's bridge, of another bridge or of a bond) is
/// left to its master: another bridge (say br0 holding eth0) is served itself, and serving
/// both would translate a packet twice.
pub fn auto_uplinks(
    links: &[Link],
    bridges: &HashSet<&str>,
    endpoints: &HashSet<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = links
        .iter()
        .filter(|l| {
            l.ethernet
                && !bridges.contains(l.name.as_str())
                && l.master.is_none()
                && !endpoints.contains(l.name.as_str())
                // p2p veths exist in this namespace only while a p2p link is being wired.
                && !l.name.starts_with("p2p")
        })
        .map(|l| l.name.clone())
        .collect();
    out.sort();
    out
}

impl Engine {
    /// The interfaces served now.
    pub fn uplinks(&self) -> &[String] {
        &self.uplinks
    }

    /// What should be served now: `--uplink`'s list, else every eligible interface.
    pub(super) async fn wanted_uplinks(&self) -> Result<Vec<String>, EngineError> {
        if !self.cfg.uplinks.is_empty() {
            return Ok(self.cfg.uplinks.clone());
        }
        let links = self.nl.links().await?;
        let endpoints: HashSet<&str> = self
            .state
            .endpoints
            .values()
            .filter_map(|e| e.host_ifname.as_deref())
            .collect();
        let mut bridges: HashSet<&str> = self
            .state
            .networks
            .values()
            .map(|n| n.bridge.as_str())
            .collect();
        bridges.insert(self.net.bridge.as_str());
        Ok(auto_uplinks(&links, &bridges, &endpoints))
    }

    /// Follows the interfaces: serves those that became eligible, stops serving those that
    /// went away or stopped being eligible, then refreshes the host and masquerade addresses.
    pub async fn refresh_uplinks(&mut self) -> Result<(), EngineError> {
        let want = self.wanted_uplinks().await?;
        if self.apply_uplinks(want)? && self.dp.is_some() {
            // The uplink map and the pre-filter follow the uplinks.
            return self.sync_dataplane().await;
        }
        self.refresh_addresses().await
    }

    /// Attaches the uplink programs to the interfaces of `want` not served yet and detaches
    /// them from served ones not in it; returns whether the served set changed. Without
    /// `--uplink`, an interface that cannot be attached is logged and left out (and retried on
    /// the next refresh), never fatal.
    pub(super) fn apply_uplinks(&mut self, want: Vec<String>) -> Result<bool, EngineError> {
        if want == self.uplinks {
            return Ok(false);
        }
        let explicit = !self.cfg.uplinks.is_empty();
        let Some(dp) = self.dp.as_mut() else {
            self.uplinks = want;
            return Ok(true);
        };
        for gone in self.uplinks.iter().filter(|u| !want.contains(u)) {
            match dp.detach(gone) {
                Ok(()) => tracing::info!(ifname = %gone, "no longer serving"),
                Err(e) => tracing::warn!(ifname = %gone, "detaching: {e}"),
            }
        }
        let mut served = Vec::new();
        for u in want {
            if self.uplinks.contains(&u) {
                served.push(u);
                continue;
            }
            match dp.attach_uplink(&u) {
                Ok(()) => {
                    tracing::info!(ifname = %u, "serving as an uplink");
                    served.push(u);
                }
                Err(e) if explicit => return Err(e.into()),
                Err(e) => tracing::warn!(ifname = %u, "not serving: {e}"),
            }
        }
        let changed = served != self.uplinks;
        self.uplinks = served;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, master: Option<u32>) -> Link {
        Link {
            index,
            name: name.into(),
            mtu: 1500,
            mac: None,
            master,
            is_bridge: name.starts_with("br") || name == "netd0",
            ethernet: true,
            kind: None,
            vlan_parent: None,
            veth_peer: None,
        }
    }

    #[test]
    fn serves_every_interface_but_loopback_bridges_ports_and_tunnels() {
        let mut lo = link(1, "lo", None);
        lo.ethernet = false;
        let mut wg = link(7, "wg0", None);
        wg.ethernet = false;
        let links = vec![
            lo,
            link(2, "eth0", None),
            link(3, "netd0", None),
            link(4, "vethab12", Some(3)),
            link(5, "vethnew", None),
            link(6, "eth1", None),
            wg,
            link(8, "p2pa1234", None),
            link(9, "br-other", None),
            link(10, "bond-port", Some(11)),
        ];
        let endpoints: HashSet<&str> = ["vethnew"].into();
        assert_eq!(
            auto_uplinks(&links, &HashSet::from(["netd0"]), &endpoints),
            ["br-other", "eth0", "eth1"]
        );
    }
}
