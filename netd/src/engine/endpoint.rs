//! Attach, detach and point-to-point links.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use super::state::{Endpoint, Written};
use super::{Engine, EngineError, not_found, ports};
use crate::api::types::AttachRequest;
use crate::spec::{self, ExposeSpec, LinkSpec, NetMode, PublishSpec};
use crate::wiring::{Netlink, netns};

/// Undo steps for a half-applied change, run in reverse on failure.
#[derive(Default)]
struct Undo {
    ports: Vec<super::state::PortBinding>,
    host_links: Vec<String>,
    dataplane: Vec<String>,
    etc_dir: Option<PathBuf>,
}

impl Engine {
    /// `netd attach`: validate everything, then wire, then persist.
    pub async fn attach(
        &mut self,
        req: AttachRequest,
    ) -> Result<crate::api::types::EndpointView, EngineError> {
        let mut ep = self.plan(&req)?;
        let next_id = self.state.next_binding_id;
        for b in &mut ep.ports {
            b.id = self.state.next_binding_id;
            self.state.next_binding_id += 1;
        }
        // Published ports are reserved against host processes (with the eBPF dataplane, which
        // is what makes them reachable).
        if self.dp.is_some() {
            if let Err(msg) = self.reserved.reserve_all(&ep.ports) {
                self.state.next_binding_id = next_id;
                return Err(EngineError::Conflict(msg));
            }
        }
        let mut undo = Undo {
            ports: ep.ports.clone(),
            ..Default::default()
        };
        match self.apply_attach(ep, &mut undo).await {
            Ok(ep) => {
                let name = ep.name.clone();
                self.state.endpoints.insert(name.clone(), ep);
                // The endpoint's programs are already attached (wire_veth, before its veth came
                // up); the maps now get the rest: its port bindings, links and the full sets.
                let committed = match self.sync_dataplane().await {
                    Ok(()) => self.persist(),
                    Err(e) => Err(e),
                };
                if let Err(e) = committed {
                    self.state.endpoints.remove(&name);
                    self.state.next_binding_id = next_id;
                    self.rollback(undo).await;
                    if let Err(e2) = self.sync_dataplane().await {
                        tracing::warn!("rollback: restoring the dataplane: {e2}");
                    }
                    return Err(e);
                }
                self.refresh_linkers(&name);
                tracing::info!(container = %name, "attached");
                self.inspect(&name)
            }
            Err(e) => {
                self.state.next_binding_id = next_id;
                self.rollback(undo).await;
                Err(e)
            }
        }
    }

    /// Validates a request completely and returns the endpoint it would create (files and
    /// interfaces not yet made).
    fn plan(&self, req: &AttachRequest) -> Result<Endpoint, EngineError> {
        spec::validate_container_name(&req.name)?;
        if self.state.endpoints.contains_key(&req.name) {
            return Err(EngineError::Conflict(format!(
                "container name \"{}\" is already attached",
                req.name
            )));
        }
        let net: NetMode = if req.net.is_empty() {
            NetMode::Bridge
        } else {
            req.net.parse()?
        };
        if req.netns.as_os_str().is_empty() {
            return Err(EngineError::Invalid("--netns is required".into()));
        }
        netns::open(&req.netns).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let mut publish: Vec<PublishSpec> = req
            .publish
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?;
        let exposed: Vec<ExposeSpec> = req
            .expose
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?;
        let links: Vec<LinkSpec> = req
            .link
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?;
        let dns = super::config::parse_dns(&req.dns)?;
        for d in &req.dns_search {
            spec::validate_dns_search(d)?;
        }
        if let Some(h) = &req.hostname {
            spec::validate_hostname(h)?;
        }
        let mac = req
            .mac_address
            .as_deref()
            .map(spec::parse_mac)
            .transpose()?;
        let ip = req.ip.as_deref().map(spec::parse_ipv4).transpose()?;
        let bridged = matches!(net, NetMode::Bridge);
        if !bridged {
            let what = [
                (ip.is_some(), "--ip"),
                (mac.is_some(), "--mac-address"),
                (!publish.is_empty() || req.publish_all, "-p/-P"),
            ];
            if let Some((_, flag)) = what.iter().find(|(set, _)| *set) {
                return Err(EngineError::Invalid(format!(
                    "{flag} needs --net bridge, not --net {net}"
                )));
            }
        }
        if matches!(net, NetMode::Host) && !links.is_empty() {
            return Err(EngineError::Invalid(
                "--link cannot be used with --net host: links need the container's own network"
                    .into(),
            ));
        }
        for l in &links {
            if !self.state.endpoints.contains_key(&l.name) {
                return Err(EngineError::Invalid(format!(
                    "--link {}: no such container: {}",
                    l.name, l.name
                )));
            }
        }
        let mut hostname = req.hostname.clone().unwrap_or_else(|| req.name.clone());
        let (ip, gateway) = match &net {
            NetMode::Bridge => {
                let owner = |i: Ipv4Addr| self.owner_of_ip(i);
                let ip = match ip {
                    Some(i) => {
                        self.ipam.check(i, &owner).map_err(|e| match e {
                            super::ipam::IpamError::InUse { .. } => {
                                EngineError::Conflict(e.to_string())
                            }
                            e => EngineError::Invalid(e.to_string()),
                        })?;
                        i
                    }
                    None => self
                        .ipam
                        .allocate(&owner)
                        .map_err(|e| EngineError::Conflict(e.to_string()))?,
                };
                let gw = self
                    .cfg
                    .default_gateway
                    .unwrap_or(self.net.bridge_addr.addr());
                (Some(ip), Some(gw))
            }
            NetMode::Container(target) => {
                let t = self.state.endpoints.get(target).ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "--net container:{target}: no such container: {target}"
                    ))
                })?;
                if let NetMode::Container(_) = t.net {
                    return Err(EngineError::Invalid(format!(
                        "--net container:{target}: {target} itself joins another container; join that one"
                    )));
                }
                if netns::identity(&t.netns) != netns::identity(&req.netns) {
                    return Err(EngineError::Invalid(format!(
                        "--net container:{target}: --netns {} is not {target}'s namespace {}",
                        req.netns.display(),
                        t.netns.display()
                    )));
                }
                if req.hostname.is_none() {
                    hostname = t.hostname.clone();
                }
                (t.ip, t.gateway)
            }
            NetMode::Host => {
                if req.hostname.is_none() {
                    hostname = nix::unistd::gethostname()
                        .ok()
                        .and_then(|h| h.into_string().ok())
                        .unwrap_or_else(|| req.name.clone());
                }
                (None, None)
            }
            NetMode::None => (None, None),
        };
        // Published ports default to --ip; the daemon's -P semantics need the exposed list.
        for p in &mut publish {
            if p.host_ip.is_none() {
                p.host_ip = Some(self.cfg.ip);
            }
        }
        let held: Vec<(&str, &super::state::PortBinding)> = self
            .state
            .endpoints
            .values()
            .flat_map(|e| e.ports.iter().map(move |b| (e.name.as_str(), b)))
            .collect();
        let ephemeral = spec::read_ephemeral_ports()?;
        let port_bindings = ports::allocate(
            &req.name,
            &publish,
            req.publish_all,
            &exposed,
            self.cfg.ip,
            &held,
            &ephemeral,
        )
        .map_err(|e| EngineError::Conflict(e.to_string()))?;
        let etc_dir = req
            .etc_dir
            .clone()
            .unwrap_or_else(|| self.cfg.state_dir.join("containers").join(&req.name));
        if let Some(other) = self.state.endpoints.values().find(|e| e.etc_dir == etc_dir) {
            return Err(EngineError::Conflict(format!(
                "--etc-dir {} is already used by \"{}\"",
                etc_dir.display(),
                other.name
            )));
        }
        Ok(Endpoint {
            name: req.name.clone(),
            netns: req.netns.clone(),
            mac: if bridged {
                Some(
                    mac.unwrap_or_else(|| {
                        super::ipam::mac_from_ipv4(ip.expect("bridged has an ip"))
                    }),
                )
            } else {
                None
            },
            net,
            hostname,
            ip,
            gateway,
            host_ifname: None,
            host_ifindex: None,
            etc_dir,
            publish,
            publish_all: req.publish_all,
            ports: port_bindings,
            exposed,
            links,
            dns,
            dns_search: req.dns_search.clone(),
            p2p: Vec::new(),
            written: Written::default(),
        })
    }

    async fn apply_attach(
        &mut self,
        mut ep: Endpoint,
        undo: &mut Undo,
    ) -> Result<Endpoint, EngineError> {
        let ns = netns::open(&ep.netns).map_err(|e| EngineError::Invalid(e.to_string()))?;
        match ep.net {
            NetMode::Bridge => {
                let cnl = netns::netlink_in(&ns)?;
                if cnl.link_by_name("eth0").await?.is_some() {
                    return Err(EngineError::Conflict(format!(
                        "network namespace {} already has an eth0 (attached by someone else?)",
                        ep.netns.display()
                    )));
                }
                let (host_ifname, host_ifindex) = self.wire_veth(&ep, &ns, &cnl, undo).await?;
                ep.host_ifname = Some(host_ifname);
                ep.host_ifindex = Some(host_ifindex);
            }
            NetMode::None => {
                let cnl = netns::netlink_in(&ns)?;
                bring_lo_up(&cnl).await?;
            }
            NetMode::Host | NetMode::Container(_) => {}
        }
        undo.etc_dir = Some(ep.etc_dir.clone());
        self.write_files(&mut ep)?;
        Ok(ep)
    }

    /// The seed's "How Docker networks a container", steps 1-5.
    async fn wire_veth(
        &mut self,
        ep: &Endpoint,
        ns: &std::fs::File,
        cnl: &Netlink,
        undo: &mut Undo,
    ) -> Result<(String, u32), EngineError> {
        let (host, peer) = self.free_veth_names().await?;
        let (hl, pl) = self.nl.create_veth(&host, &peer).await?;
        undo.host_links.push(host.clone());
        // Policy before traffic: the maps learn the endpoint (address and MAC for
        // anti-spoofing) and its programs attach while the veth is still down and off the
        // bridge, so it is never up unpoliced. TCX attaches to a down interface.
        if let Some(dp) = self.dp.as_mut() {
            let info = netd_common::EndpointInfo {
                ip: u32::from(ep.ip.expect("bridged endpoint has an IP")).to_be(),
                ifindex: hl.index,
                mac: ep.mac.expect("bridged endpoint has a MAC"),
                _pad: 0,
            };
            dp.upsert_endpoint(&info)?;
            undo.dataplane.push(host.clone());
            dp.attach_endpoint(&host)?;
        }
        let bridge = self.nl.require_link(&self.net.bridge).await?;
        self.nl.set_mtu(hl.index, self.net.mtu).await?;
        self.nl.set_mtu(pl.index, self.net.mtu).await?;
        self.nl.set_master(hl.index, bridge.index).await?;
        self.nl.set_up(hl.index).await?;
        self.nl.move_to_netns(pl.index, ns.as_fd()).await?;
        let c = cnl.require_link(&peer).await?;
        cnl.set_name(c.index, "eth0").await?;
        cnl.set_mac(c.index, ep.mac.expect("bridged endpoint has a MAC"))
            .await?;
        cnl.set_up(c.index).await?;
        bring_lo_up(cnl).await?;
        let ip = ep.ip.expect("bridged endpoint has an IP");
        cnl.add_address(c.index, ip, self.net.bridge_addr.prefix_len())
            .await?;
        if let Some(gw) = ep.gateway {
            cnl.add_default_route(gw).await?;
        }
        Ok((host, hl.index))
    }

    async fn free_veth_names(&self) -> Result<(String, String), EngineError> {
        for _ in 0..16 {
            let h = random_hex7();
            let host = format!("veth{h}");
            let peer = format!("vtmp{h}");
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
        if let Some(d) = undo.etc_dir {
            let _ = crate::dnsfiles::EtcFiles::new(d).remove();
        }
    }

    /// `netd detach`: removes the veth (its peer goes with it), the lease, the files, the
    /// port bindings and the dataplane attachment; a vanished namespace is fine.
    pub async fn detach(&mut self, name: &str) -> Result<(), EngineError> {
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
        if let Some(h) = &ep.host_ifname {
            // The veth goes first (its peer in the container with it), then the programs: the
            // interface is never up without them.
            match self.nl.link_by_name(h).await {
                Ok(Some(l)) => {
                    if let Err(e) = self.nl.delete_link(l.index).await {
                        errors.push(e.to_string());
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
            if let Some(dp) = self.dp.as_mut() {
                if let Err(e) = dp.detach(h) {
                    errors.push(format!("dataplane: {e}"));
                }
            }
        }
        for (peer, _) in &ep.p2p {
            if let Err(e) = self.drop_p2p(name, peer).await {
                errors.push(e.to_string());
            }
        }
        if let Err(e) = crate::dnsfiles::EtcFiles::new(ep.etc_dir.clone()).remove() {
            errors.push(format!("removing {}: {e}", ep.etc_dir.display()));
        }
        self.state.endpoints.remove(name);
        self.reserved.release(&ep.ports);
        if let Err(e) = self.sync_dataplane().await {
            errors.push(e.to_string());
        }
        if let (Some(ip), Some(dp)) = (ep.ip, self.dp.as_mut()) {
            if ep.net == NetMode::Bridge {
                if let Err(e) = dp.ct_flush_ip(ip) {
                    errors.push(format!("flushing connection tracking of {ip}: {e}"));
                }
            }
        }
        self.persist()?;
        self.refresh_linkers(name);
        tracing::info!(container = %name, "detached");
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Internal(format!(
                "detached {name}, with errors: {}",
                errors.join("; ")
            )))
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
        self.persist()?;
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

async fn bring_lo_up(nl: &Netlink) -> Result<(), EngineError> {
    let lo = nl.require_link("lo").await?;
    nl.set_up(lo.index).await?;
    Ok(())
}

fn random_hex7() -> String {
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
