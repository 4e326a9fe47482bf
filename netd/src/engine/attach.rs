//! Attach in phases: plan (validate, allocate the IP, MAC and host ports) → create the veth pair
//! (its programs attached before it comes up) → move the peer into the sandbox under the
//! requested interface name and configure it → write the /etc files → publish (the maps learn
//! the endpoint's ports and links). Any failure undoes every phase done so far.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;

use super::state::{Endpoint, PortBinding, Written};
use super::timing::Phases;
use super::view::EndpointView;
use super::{EndpointSpec, Engine, EngineError, Touched};
use crate::spec::{self, NetMode};
use crate::wiring::{Netlink, netns};

mod plan;

/// Undo steps for a half-applied change, run in reverse on failure.
#[derive(Default)]
pub(super) struct Undo {
    pub(super) ports: Vec<PortBinding>,
    host_links: Vec<String>,
    dataplane: Vec<String>,
    /// Endpoint entries written to the maps (NETD_ENDPOINTS, NETD_EP_BY_IP, and IPv6).
    endpoint_entries: Vec<netd_common::EndpointInfo>,
    etc_dir: Option<PathBuf>,
    /// An endpoint whose NDP proxy entries were added.
    ndp: Option<Endpoint>,
}

/// The host side of a new veth pair, and the temporary name of its peer.
struct Veth {
    host: String,
    host_index: u32,
    /// The container end's index here (0 when it was created in the container's namespace).
    peer_index: u32,
}

impl Engine {
    /// `netd attach`: validate everything, then wire, then persist.
    pub async fn attach(&mut self, req: EndpointSpec) -> Result<EndpointView, EngineError> {
        let mut t = Phases::new();
        self.forget_deleted_veths();
        let mut ep = self.plan(&req)?;
        let has_v6 = ep.ipv6.as_ref().is_some_and(|l| l.global.is_some());
        let next_id = self.take_ports(&mut ep.ports, ep.reserve_ports, ep.ip, has_v6)?;
        t.mark("plan");
        let mut undo = Undo {
            ports: ep.ports.clone(),
            ..Default::default()
        };
        let ns_path = req.netns_handle.as_ref().unwrap_or(&req.netns);
        match self
            .apply_attach(ep, ns_path, req.hand_over, &mut undo, &mut t)
            .await
        {
            Ok(ep) => {
                let name = ep.name.clone();
                self.add_endpoint(ep);
                // Publish: the endpoint's programs and map entries are already there (before
                // its veth came up); the maps now get its port bindings and links, and only
                // those (no diff of the other endpoints' entries).
                let committed = match self.publish_endpoint(&name) {
                    Ok(()) => {
                        t.mark("maps");
                        self.persist(&[Touched::Endpoint(&name)])
                    }
                    Err(e) => Err(e),
                };
                t.mark("persist");
                if let Err(e) = committed {
                    let links = self.endpoint_link_keys(&name);
                    let gone = self.take_endpoint(&name);
                    self.state.next_binding_id = next_id;
                    if let Some(ep) = gone {
                        for e2 in self.unpublish_endpoint(&ep, &links) {
                            tracing::warn!("rollback: restoring the dataplane: {e2}");
                        }
                    }
                    self.rollback(undo).await;
                    return Err(e);
                }
                self.refresh_linkers(&name);
                t.mark("linkers");
                tracing::info!(container = %name, "attached");
                let view = self.inspect(&name);
                t.log("attach", &name);
                view
            }
            Err(e) => {
                self.state.next_binding_id = next_id;
                self.rollback(undo).await;
                Err(e)
            }
        }
    }

    async fn apply_attach(
        &mut self,
        mut ep: Endpoint,
        ns_path: &std::path::Path,
        hand_over: bool,
        undo: &mut Undo,
        t: &mut Phases,
    ) -> Result<Endpoint, EngineError> {
        match ep.net {
            NetMode::Bridge if hand_over => {
                // The container end stays here, down, with the endpoint's MAC; libnetwork moves
                // it into the sandbox, renames it and gives it the address and routes.
                let veth = self.create_veth(&ep, None, undo, t).await?;
                self.nl
                    .set_mac(veth.peer_index, ep.mac.expect("bridged endpoint has a MAC"))
                    .await?;
                self.nl
                    .set_mtu(veth.peer_index, self.segment(ep.network.as_deref()).mtu)
                    .await?;
                ep.host_ifname = Some(veth.host);
                ep.host_ifindex = Some(veth.host_index);
            }
            NetMode::Bridge => {
                let ns = open_ns(ns_path)?;
                let cnl = netns::netlink_in(&ns)?;
                t.mark("open_netns");
                if cnl.link_by_name(&ep.ifname).await?.is_some() {
                    return Err(EngineError::Conflict(format!(
                        "network namespace {} already has an {} (attached by someone else?)",
                        ep.netns.display(),
                        ep.ifname
                    )));
                }
                t.mark("check_ifname");
                let veth = self.create_veth(&ep, Some(&ns), undo, t).await?;
                self.configure_in_sandbox(&ep, &ns, &cnl).await?;
                t.mark("sandbox");
                ep.host_ifname = Some(veth.host);
                ep.host_ifindex = Some(veth.host_index);
            }
            NetMode::None => {
                let ns = open_ns(ns_path)?;
                let cnl = netns::netlink_in(&ns)?;
                bring_lo_up(&cnl).await?;
            }
            NetMode::Host | NetMode::Container(_) => {}
        }
        // Hand-over endpoints too (Docker's, from Join): the entries are the uplinks', not
        // the sandbox's.
        if ep.net == NetMode::Bridge {
            match self.add_ndp_proxy(&ep).await {
                Ok(on) => {
                    ep.ndp_proxy = on;
                    undo.ndp = Some(ep.clone());
                }
                Err(e) => {
                    let mut all = ep.clone();
                    all.ndp_proxy = self.uplinks.clone();
                    self.del_ndp_proxy(&all).await;
                    return Err(e);
                }
            }
        }
        undo.etc_dir = Some(ep.etc_dir.clone());
        self.write_files(&mut ep)?;
        t.mark("etc_files");
        Ok(ep)
    }

    /// The seed's "How Docker networks a container", steps 1-3: a veth pair, its host end on
    /// the bridge and up, with the endpoint's programs attached first. With `into`, the
    /// container end is created in that namespace, named and addressed already (step 4 without
    /// a move); without, it stays here under a temporary name (hand-over).
    async fn create_veth(
        &mut self,
        ep: &Endpoint,
        into: Option<&std::fs::File>,
        undo: &mut Undo,
        t: &mut Phases,
    ) -> Result<Veth, EngineError> {
        let (host, peer) = self.free_veth_names().await?;
        t.mark("veth_names");
        let seg_mtu = self.segment(ep.network.as_deref()).mtu;
        let (hl, peer_index) = match into {
            Some(ns) => {
                let mac = ep.mac.expect("bridged endpoint has a MAC");
                let hl = self
                    .nl
                    .create_veth_into(&host, &ep.ifname, ns.as_fd(), mac, seg_mtu)
                    .await;
                // The pair may exist even when the lookup after creating it failed.
                undo.host_links.push(host.clone());
                (hl?, None)
            }
            None => {
                let (hl, pl) = self.nl.create_veth(&host, &peer).await?;
                undo.host_links.push(host.clone());
                (hl, Some(pl.index))
            }
        };
        // Its host events (and its peer's while it is here) are netd's own.
        self.recent_links.mark(hl.index);
        if let Some(pi) = peer_index {
            self.recent_links.mark(pi);
        }
        t.mark("veth_create");
        // Policy before traffic: the maps learn the endpoint (address and MAC for
        // anti-spoofing) and its programs attach while the veth is still down and off the
        // bridge, so it is never up unpoliced. TCX attaches to a down interface.
        let net_id = self.network_id(ep.network.as_deref());
        if let Some(dp) = self.dp.as_mut() {
            let info = netd_common::EndpointInfo {
                ip: u32::from(ep.ip.expect("bridged endpoint has an IP")).to_be(),
                ifindex: hl.index,
                mac: ep.mac.expect("bridged endpoint has a MAC"),
                net_id,
            };
            // Undone even when only one of the maps took it.
            undo.endpoint_entries.push(info);
            undo.dataplane.push(host.clone());
            dp.upsert_endpoint(&info)?;
            if let Some(l) = ep.ipv6() {
                dp.set_endpoint_ipv6(hl.index, l.link_local, l.global)?;
            }
            dp.attach_container_veth(&host)?;
        }
        t.mark("programs");
        let seg = self.segment(ep.network.as_deref());
        let bridge = self.nl.require_link(&seg.bridge).await?;
        if let Some(pi) = peer_index {
            self.nl.set_mtu(hl.index, seg.mtu).await?;
            self.nl.set_mtu(pi, seg.mtu).await?;
        }
        self.nl.set_master(hl.index, bridge.index).await?;
        // enable_icc=false on a network without the eBPF dataplane: its containers' ports
        // cannot forward to each other. With it, from_container enforces icc (and lets the
        // `--link` allowances through) as on the default network.
        if ep.network.is_some() && !seg.icc && self.dp.is_none() {
            self.nl.set_port_isolated(hl.index, true).await?;
        }
        self.nl.set_up(hl.index).await?;
        t.mark("veth_config");
        Ok(Veth {
            host,
            host_index: hl.index,
            peer_index: peer_index.unwrap_or(0),
        })
    }

    /// Step 5: in the container's namespace the new interface (created there, named and with
    /// its MAC) gets IPv6 switched on when the endpoint has a lease, comes up with its
    /// addresses, `lo` comes up, and the default routes go through the gateways.
    async fn configure_in_sandbox(
        &self,
        ep: &Endpoint,
        ns: &std::fs::File,
        cnl: &Netlink,
    ) -> Result<(), EngineError> {
        let c = cnl.require_link(&ep.ifname).await?;
        if let Some(v6) = ep.ipv6() {
            // IPv6 on, no duplicate address detection (the addresses are netd's to give, and
            // a tentative address would hold traffic back), before the interface comes up.
            for (key, value) in [("disable_ipv6", "0"), ("accept_dad", "0")] {
                let path = format!("/proc/sys/net/ipv6/conf/{}/{key}", ep.ifname);
                netns::write_sysctl_in(ns, &path, value)?;
            }
            cnl.add_address6(c.index, v6.link_local, 64).await?;
            if let (Some(g), Some(len)) = (v6.global, v6.prefix_len) {
                cnl.add_address6(c.index, g, len).await?;
            }
        }
        cnl.set_up(c.index).await?;
        bring_lo_up(cnl).await?;
        let ip = ep.ip.expect("bridged endpoint has an IP");
        let prefix = self.segment(ep.network.as_deref()).bridge_addr.prefix_len();
        cnl.add_address(c.index, ip, prefix).await?;
        if let Some(gw) = ep.gateway {
            // A second interface (a container on two networks) leaves the first one's default
            // route in place: one default gateway per container, as Docker gives it.
            let has_default = cnl
                .routes_v4()
                .await?
                .iter()
                .any(|r| r.dest.prefix_len() == 0);
            if !has_default {
                cnl.add_default_route(gw).await?;
            }
        }
        if let Some(v6) = ep.ipv6() {
            cnl.add_default_route6(v6.gateway, c.index).await?;
        }
        Ok(())
    }

    async fn free_veth_names(&self) -> Result<(String, String), EngineError> {
        for _ in 0..16 {
            let h = random_hex7();
            let host = format!("veth{h}");
            let peer = handover_peer_name(&host);
            if self.nl.link_by_name(&host).await?.is_none()
                && self.nl.link_by_name(&peer).await?.is_none()
            {
                return Ok((host, peer));
            }
        }
        Err(EngineError::Internal("cannot find a free veth name".into()))
    }

    async fn rollback(&mut self, undo: Undo) {
        self.reserved.release(&undo.ports);
        if let Some(ep) = &undo.ndp {
            for e in self.del_ndp_proxy(ep).await {
                tracing::warn!(container = %ep.name, "rollback: {e}");
            }
        }
        for h in undo.dataplane.iter().rev() {
            if let Some(dp) = self.dp.as_mut() {
                if let Err(e) = dp.detach(h) {
                    tracing::warn!(ifname = %h, "rollback: {e}");
                }
            }
        }
        for h in undo.host_links.iter().rev() {
            if let Ok(Some(l)) = self.nl.link_by_name(h).await {
                if let Err(e) = self.nl.delete_link(l.index).await {
                    tracing::warn!(ifname = %h, "rollback: {e}");
                }
            }
        }
        for info in undo.endpoint_entries.iter().rev() {
            if let Some(dp) = self.dp.as_mut() {
                if let Err(e) = dp.clear_endpoint_ipv6(info.ifindex) {
                    tracing::warn!(ifindex = info.ifindex, "rollback: {e}");
                }
                if let Err(e) = dp.remove_endpoint(info) {
                    tracing::warn!(ifindex = info.ifindex, "rollback: {e}");
                }
            }
        }
        if let Some(d) = undo.etc_dir {
            let _ = crate::dnsfiles::EtcFiles::new(d).remove();
        }
    }
}

fn open_ns(path: &std::path::Path) -> Result<std::fs::File, EngineError> {
    netns::open(path).map_err(|e| EngineError::Invalid(e.to_string()))
}

/// The temporary name of the container end of the veth pair whose host end is `host`
/// (`vethXXXXXXX` → `vtmpXXXXXXX`): what a hand-over attach leaves in the daemon's namespace.
pub fn handover_peer_name(host: &str) -> String {
    format!("vtmp{}", host.strip_prefix("veth").unwrap_or(host))
}

pub(super) async fn bring_lo_up(nl: &Netlink) -> Result<(), EngineError> {
    let lo = nl.require_link("lo").await?;
    nl.set_up(lo.index).await?;
    Ok(())
}

pub(super) fn random_hex7() -> String {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
            ^ std::process::id();
        b = t.to_le_bytes();
    }
    format!("{:07x}", u32::from_le_bytes(b) & 0x0fff_ffff)
}
