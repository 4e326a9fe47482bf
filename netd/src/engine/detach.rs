//! Detach and point-to-point links.

use std::os::fd::AsFd;

use ipnet::Ipv4Net;

use super::attach::{handover_peer_name, random_hex7};
use super::state::Endpoint;
use super::{Engine, EngineError, Touched, not_found};
use crate::spec::NetMode;
use crate::wiring::netns;

impl Engine {
    /// `netd detach`: removes the veth (its peer goes with it), the lease, the files, the
    /// port bindings and the dataplane attachment; a vanished namespace is fine.
    pub async fn detach(&mut self, name: &str) -> Result<(), EngineError> {
        let mut t = super::timing::Phases::new();
        let ep = self
            .state
            .endpoints
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))?;
        if let Some(j) = self
            .state
            .endpoints
            .values()
            .find(|e| e.net == NetMode::Container(name.to_string()))
        {
            return Err(EngineError::Conflict(format!(
                "container {name} is joined by {} (--net container:{name}); detach {} first",
                j.name, j.name
            )));
        }
        let mut errors = Vec::new();
        self.forget_deleted_veths();
        let tcx = self
            .dp
            .as_ref()
            .is_some_and(|dp| dp.container_veth_attach() == crate::dataplane::TcAttach::Tcx);
        if let (Some(h), Some(ifindex), false) = (&ep.host_ifname, ep.host_ifindex, tcx) {
            // Retired now (off the bridge; in the container: down, no addresses, renamed), so
            // its name, address and routes are free when detach returns; deleted off the
            // request path (its filters stay until then, and the maps forget it below, so
            // its traffic is dropped meanwhile). What cannot be retired is deleted here.
            // Its last events (off the bridge, deleted) are netd's own.
            self.recent_links.mark(ifindex);
            match self.retire_veth(&ep, ifindex, &mut t).await {
                Ok(()) => {
                    self.reaper.queue(crate::wiring::reaper::Doomed {
                        ifindex,
                        ifname: h.clone(),
                    });
                    t.mark("veth_queued");
                }
                Err(e) => {
                    tracing::info!(container = %name, ifname = %h, "cannot retire the veth ({e}); deleting it now");
                    if let Err(e) = self.nl.delete_link(ifindex).await {
                        errors.push(e.to_string());
                    }
                    t.mark("veth_delete");
                    if let Some(dp) = self.dp.as_mut() {
                        if let Err(e) = dp.forget_counters(&[ifindex]) {
                            errors.push(format!("dataplane: {e}"));
                        }
                    }
                }
            }
            if let Some(dp) = self.dp.as_mut() {
                if let Err(e) = dp.forget_interface(h) {
                    errors.push(format!("dataplane: {e}"));
                }
            }
            t.mark("programs");
        } else if let Some(h) = &ep.host_ifname {
            // The veth goes first (its peer in the container with it), then the programs: the
            // interface is never up without them. (TCX links: unregistering a veth with links
            // waits for more RCU grace periods; kept synchronous, as before.)
            match self.nl.link_by_name(h).await {
                Ok(Some(l)) => {
                    if let Err(e) = self.nl.delete_link(l.index).await {
                        errors.push(e.to_string());
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
            t.mark("veth_delete");
            if let Some(dp) = self.dp.as_mut() {
                if let Err(e) = dp.detach(h) {
                    errors.push(format!("dataplane: {e}"));
                }
            }
            t.mark("programs");
        }
        errors.extend(self.del_ndp_proxy(&ep).await);
        for (peer, _) in &ep.p2p {
            if let Err(e) = self.drop_p2p(name, peer).await {
                errors.push(e.to_string());
            }
        }
        if let Err(e) = crate::dnsfiles::EtcFiles::new(ep.etc_dir.clone()).remove() {
            errors.push(format!("removing {}: {e}", ep.etc_dir.display()));
        }
        t.mark("etc_files");
        let links = self.endpoint_link_keys(name);
        self.take_endpoint(name);
        self.reserved.release(&ep.ports);
        if ep.host_ifname.is_some() && ep.host_ifindex.is_none() {
            // State written before the ifindex was kept: only the full diff finds its entries.
            if let Err(e) = self.sync_dataplane().await {
                errors.push(e.to_string());
            }
        } else {
            errors.extend(self.unpublish_endpoint(&ep, &links));
        }
        t.mark("maps");
        if let (Some(ip), Some(dp)) = (ep.ip, self.dp.as_mut()) {
            if ep.net == NetMode::Bridge {
                if let Err(e) = dp.ct_flush_ip(ip) {
                    errors.push(format!("flushing connection tracking of {ip}: {e}"));
                }
            }
        }
        t.mark("ct_flush");
        // Persisting can fail too; that failure joins the others instead of hiding them.
        let touched: Vec<Touched<'_>> = std::iter::once(name)
            .chain(ep.p2p.iter().map(|(peer, _)| peer.as_str()))
            .map(Touched::Endpoint)
            .collect();
        if let Err(e) = self.persist(&touched) {
            errors.push(e.to_string());
        }
        t.mark("persist");
        self.refresh_linkers(name);
        t.mark("linkers");
        tracing::info!(container = %name, "detached");
        t.log("detach", name);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Internal(format!(
                "detached {name}, with errors: {}",
                errors.join("; ")
            )))
        }
    }

    /// What users see of a detached endpoint's veth goes at once, before its deletion (which
    /// waits for an RCU barrier, see [`crate::wiring::reaper`]): the host end leaves the
    /// bridge (and the bridge its forwarding entries), and the container end, in the
    /// container's namespace, goes down (its routes go), loses its addresses and takes a
    /// unique temporary name, so `ifname` and the address are free for the next attach and
    /// the namespace's routes are as they will be. Fails, touching nothing in the container,
    /// when the container end is not where the endpoint says (a namespace the daemon cannot
    /// open or that is gone, a hand-over interface Docker took back): the caller deletes the
    /// veth then.
    async fn retire_veth(
        &self,
        ep: &Endpoint,
        host_index: u32,
        t: &mut super::timing::Phases,
    ) -> Result<(), EngineError> {
        let host = self
            .nl
            .link_by_index(host_index)
            .await?
            .ok_or_else(|| EngineError::Internal(format!("veth #{host_index} is gone")))?;
        if ep.handed_over {
            // Docker's Leave moved the container end back here under its temporary name:
            // nothing of it is left in the sandbox.
            if let Some(p) = host.veth_peer {
                if let Some(l) = self.nl.link_by_index(p).await? {
                    if l.veth_peer == Some(host_index) && l.name == handover_peer_name(&host.name) {
                        self.nl.set_nomaster(host_index).await?;
                        t.mark("veth_nomaster");
                        return Ok(());
                    }
                }
            }
        }
        let ns = netns::open(&ep.netns)?;
        let c = netns::netlink_in(&ns)?;
        t.mark("open_netns");
        let peer = c
            .link_by_name(&ep.ifname)
            .await?
            .filter(|l| l.veth_peer == Some(host_index) && Some(l.index) == host.veth_peer)
            .ok_or_else(|| {
                EngineError::Internal(format!(
                    "{} in {} is not the peer of {}",
                    ep.ifname,
                    ep.netns.display(),
                    host.name
                ))
            })?;
        self.nl.set_nomaster(host_index).await?;
        t.mark("veth_nomaster");
        c.set_down(peer.index).await?;
        t.mark("peer_down");
        c.flush_addresses(peer.index).await?;
        t.mark("peer_addrs");
        // `ndel` + 7 hex digits: unique enough; a collision is retried once.
        let mut renamed = c
            .set_name(peer.index, &format!("ndel{}", random_hex7()))
            .await;
        if renamed.is_err() {
            renamed = c
                .set_name(peer.index, &format!("ndel{}", random_hex7()))
                .await;
        }
        renamed?;
        t.mark("peer_rename");
        Ok(())
    }

    /// Drops the counters of veths the reaper has deleted since the last call.
    pub(super) fn forget_deleted_veths(&mut self) {
        let done = self.reaper.take_done();
        if done.is_empty() {
            return;
        }
        if let Some(dp) = self.dp.as_mut() {
            if let Err(e) = dp.forget_counters(&done) {
                tracing::warn!("dropping the counters of deleted veths: {e}");
            }
        }
    }

    /// The seed's "Building a point-to-point connection", as an addition to both containers'
    /// normal networking: a veth pair straight between the two namespaces, each end holding its
    /// container's address as a /32 and a /32 route to the other.
    pub async fn p2p(&mut self, a: &str, b: &str) -> Result<(), EngineError> {
        if a == b {
            return Err(EngineError::Invalid(
                "p2p needs two different containers".into(),
            ));
        }
        let ea = self
            .state
            .endpoints
            .get(a)
            .cloned()
            .ok_or_else(|| not_found(a))?;
        let eb = self
            .state
            .endpoints
            .get(b)
            .cloned()
            .ok_or_else(|| not_found(b))?;
        let (ipa, ipb) = match (ea.ip, eb.ip) {
            (Some(x), Some(y)) if ea.net == NetMode::Bridge && eb.net == NetMode::Bridge => (x, y),
            _ => {
                return Err(EngineError::Invalid(format!(
                    "p2p needs two --net bridge containers with addresses; {a} is --net {}, {b} is --net {}",
                    ea.net, eb.net
                )));
            }
        };
        if ea.p2p.iter().any(|(p, _)| p == b) {
            return Err(EngineError::Conflict(format!(
                "{a} and {b} already have a point-to-point link"
            )));
        }
        let nsa = netns::open(&ea.netns).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let nsb = netns::open(&eb.netns).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let h = random_hex7();
        let (ta, tb) = (format!("p2pa{h}"), format!("p2pb{h}"));
        let ifa = free_p2p_name(&ea);
        let ifb = free_p2p_name(&eb);
        let (la, lb) = self.nl.create_veth(&ta, &tb).await?;
        let result = async {
            self.nl.move_to_netns(la.index, nsa.as_fd()).await?;
            self.nl.move_to_netns(lb.index, nsb.as_fd()).await?;
            for (ns, tmp, name, me, peer) in
                [(&nsa, &ta, &ifa, ipa, ipb), (&nsb, &tb, &ifb, ipb, ipa)]
            {
                let c = netns::netlink_in(ns)?;
                let l = c.require_link(tmp).await?;
                c.set_name(l.index, name).await?;
                c.set_up(l.index).await?;
                c.add_address(l.index, me, 32).await?;
                c.add_device_route(Ipv4Net::new(peer, 32).expect("/32"), l.index)
                    .await?;
            }
            Ok::<(), EngineError>(())
        }
        .await;
        if let Err(e) = result {
            // Deleting either end removes the pair, wherever it is now.
            for (ns, tmp, name) in [(&nsa, &ta, &ifa), (&nsb, &tb, &ifb)] {
                if let Ok(c) = netns::netlink_in(ns) {
                    for n in [tmp, name] {
                        if let Ok(Some(l)) = c.link_by_name(n).await {
                            let _ = c.delete_link(l.index).await;
                        }
                    }
                }
            }
            if let Ok(Some(l)) = self.nl.link_by_name(&ta).await {
                let _ = self.nl.delete_link(l.index).await;
            }
            return Err(e);
        }
        self.state
            .endpoints
            .get_mut(a)
            .expect("checked")
            .p2p
            .push((b.to_string(), ifa));
        self.state
            .endpoints
            .get_mut(b)
            .expect("checked")
            .p2p
            .push((a.to_string(), ifb));
        self.persist(&[Touched::Endpoint(a), Touched::Endpoint(b)])?;
        tracing::info!(a, b, "point-to-point link created");
        Ok(())
    }

    /// Removes the p2p link between `me` (being detached) and `peer`.
    async fn drop_p2p(&mut self, me: &str, peer: &str) -> Result<(), EngineError> {
        let Some(ep) = self.state.endpoints.get_mut(peer) else {
            return Ok(());
        };
        let Some(pos) = ep.p2p.iter().position(|(p, _)| p == me) else {
            return Ok(());
        };
        let (_, ifname) = ep.p2p.remove(pos);
        if let Ok(ns) = netns::open(&ep.netns.clone()) {
            let c = netns::netlink_in(&ns)?;
            if let Some(l) = c.link_by_name(&ifname).await? {
                c.delete_link(l.index).await?;
            }
        }
        Ok(())
    }
}

/// The lowest `p2pN` the endpoint does not use (names of detached peers' links are free again).
fn free_p2p_name(ep: &Endpoint) -> String {
    (0..)
        .map(|i| format!("p2p{i}"))
        .find(|n| !ep.p2p.iter().any(|(_, used)| used == n))
        .expect("an unused name")
}
