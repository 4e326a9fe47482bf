//! The plan phase of an attach: the whole request checked and the endpoint it would create
//! (address, MAC, IPv6 lease, host ports) decided, before anything is made.
use super::*;

impl Engine {
    /// Validates a request completely and returns the endpoint it would create (files and
    /// interfaces not yet made).
    pub(super) fn plan(&self, req: &EndpointSpec) -> Result<Endpoint, EngineError> {
        spec::validate_container_name(&req.name)?;
        if self.state.endpoints.contains_key(&req.name) {
            return Err(EngineError::Conflict(format!(
                "container name \"{}\" is already attached",
                req.name
            )));
        }
        let net = req.net.clone();
        if req.netns.as_os_str().is_empty() {
            return Err(EngineError::Invalid("--netns is required".into()));
        }
        // A hand-over sandbox may not exist yet: Docker creates it after Join.
        if !req.hand_over {
            netns::open(req.netns_handle.as_ref().unwrap_or(&req.netns))
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        spec::validate_ifname(&req.ifname)?;
        for d in &req.dns_search {
            spec::validate_dns_search(d)?;
        }
        if let Some(h) = &req.hostname {
            spec::validate_hostname(h)?;
        }
        let bridged = matches!(net, NetMode::Bridge);
        if !bridged {
            let what = [
                (req.ip.is_some(), "--ip"),
                (req.ip6.is_some(), "--ip6"),
                (req.mac.is_some(), "--mac-address"),
                (!req.publish.is_empty() || req.publish_all, "-p/-P"),
            ];
            if let Some((_, flag)) = what.iter().find(|(set, _)| *set) {
                return Err(EngineError::Invalid(format!(
                    "{flag} needs --net bridge, not --net {net}"
                )));
            }
        }
        if matches!(net, NetMode::Host) && !req.links.is_empty() {
            return Err(EngineError::Invalid(
                "--link cannot be used with --net host: links need the container's own network"
                    .into(),
            ));
        }
        for l in &req.links {
            if !self.state.endpoints.contains_key(&l.name) {
                return Err(EngineError::Invalid(format!(
                    "--link {}: no such container: {}",
                    l.name, l.name
                )));
            }
        }
        let mut network = if bridged {
            self.resolve_network(req.network.as_deref())?
        } else if let Some(n) = &req.network {
            return Err(EngineError::Invalid(format!(
                "--network {n} needs --net bridge, not --net {net}"
            )));
        } else {
            None
        };
        let seg = self.segment(network.as_deref());
        if let Some(n) = &network {
            if !req.links.is_empty() && !seg.icc && self.dp.is_none() {
                return Err(EngineError::Invalid(format!(
                    "--link on network {n}: without the eBPF dataplane its enable_icc=false \
                     isolates the bridge ports, so no link can pass"
                )));
            }
            if seg.internal && (!req.publish.is_empty() || req.publish_all) {
                return Err(EngineError::Invalid(format!(
                    "-p/-P: network {n} is --internal: nothing is reachable from outside it"
                )));
            }
        }
        // A link grants access inside one network (its allowance is checked where that
        // network's icc is): the linked container must be on the container's network.
        for l in &req.links {
            if let Some(t) = self.state.endpoints.get(&l.name) {
                if t.network != network {
                    let name = |n: &Option<String>| {
                        n.clone()
                            .unwrap_or_else(|| crate::engine::networks::DEFAULT_NETWORK.to_string())
                    };
                    return Err(EngineError::Invalid(format!(
                        "--link {}: {} is on network {}, not on network {}: links work within one network",
                        l.name,
                        l.name,
                        name(&t.network),
                        name(&network)
                    )));
                }
            }
        }
        let mut hostname = req.hostname.clone().unwrap_or_else(|| req.name.clone());
        let mut ipv6 = None;
        let mut mac = None;
        let (ip, gateway) = match &net {
            NetMode::Bridge => {
                // An index lookup per address tried, not a scan of the endpoints (an
                // allocation on a network of 1,000 containers tries up to 1,000 addresses).
                let owner = |i: Ipv4Addr| self.owner_of_ip(i);
                let ipam = self.ipam_for(network.as_deref());
                let ip = match req.ip {
                    Some(i) => {
                        ipam.check(i, &owner).map_err(|e| match e {
                            crate::engine::ipam::IpamError::InUse { .. } => {
                                EngineError::Conflict(e.to_string())
                            }
                            e => EngineError::Invalid(e.to_string()),
                        })?;
                        i
                    }
                    None => ipam
                        .allocate(&owner)
                        .map_err(|e| EngineError::Conflict(e.to_string()))?,
                };
                let gw = match &network {
                    None => Some(
                        self.cfg
                            .default_gateway
                            .unwrap_or(self.net.bridge_addr.addr()),
                    ),
                    // An internal network's containers get no way out.
                    Some(_) if seg.internal => None,
                    Some(_) => Some(seg.bridge_addr.addr()),
                };
                let m = req
                    .mac
                    .unwrap_or_else(|| crate::engine::ipam::mac_from_ipv4(ip));
                // A hand-over endpoint is addressed by Docker's libnetwork from what the
                // plugin answered: an IPv6 lease only for the address Docker will set (`ip6`).
                if !req.hand_over || req.ip6.is_some() {
                    ipv6 = self.plan_ipv6(network.as_deref(), m, req.ip6)?;
                }
                mac = Some(m);
                (Some(ip), gw)
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
                // A joiner shares its target's interface, so its network too.
                network = t.network.clone();
                ipv6 = t.ipv6.clone();
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
        let mut publish = req.publish.clone();
        let port_bindings = self.plan_ports(
            &req.name,
            network.as_deref(),
            &mut publish,
            req.publish_all,
            &req.expose,
            ipv6.as_ref()
                .and_then(|l: &crate::engine::state::Ipv6Lease| l.global),
        )?;
        let etc_dir = req
            .etc_dir
            .clone()
            .unwrap_or_else(|| self.cfg.state_dir.join("containers").join(&req.name));
        if let Some(other) = self.index.etc_dir_user(&etc_dir) {
            return Err(EngineError::Conflict(format!(
                "--etc-dir {} is already used by \"{other}\"",
                etc_dir.display(),
            )));
        }
        Ok(Endpoint {
            name: req.name.clone(),
            netns: req.netns.clone(),
            mac,
            net,
            network,
            ifname: req.ifname.clone(),
            hostname,
            ip,
            gateway,
            host_ifname: None,
            host_ifindex: None,
            etc_dir,
            publish,
            publish_all: req.publish_all,
            ports: port_bindings,
            exposed: req.expose.clone(),
            links: req.links.clone(),
            dns: req.dns.clone(),
            dns_search: req.dns_search.clone(),
            p2p: Vec::new(),
            written: Written::default(),
            reserve_ports: req.reserve_ports,
            handed_over: req.hand_over && bridged,
            ipv6,
            ndp_proxy: Vec::new(),
        })
    }
}
