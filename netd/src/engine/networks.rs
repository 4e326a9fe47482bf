//! Networks as values: the default network (`netd0`, described by the daemon's flags) and any
//! number made with `netd network create`, each with its own bridge, subnet, pool and options.
//!
//! Wiring keeps them apart without the eBPF programs: separate bridges (no shared L2),
//! policy-routing rules `from A to B prohibit` between every two subnets (the host does not
//! route between networks), bridge port isolation for `enable_icc=false`, and no default route
//! plus `iif UPLINK to N prohibit` for `--internal`. With the eBPF dataplane, each network also
//! has an id (NETD_NETWORKS: icc, masquerade, internal; NETD_NET_SUBNETS: subnet → id; every
//! endpoint carries its network's id): the programs drop what crosses networks, masquerade per
//! network, and deliver a published port's hairpin across networks themselves.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::ipam::Ipam;
use super::state::UserNetwork;
use super::view::NetworkView;
use super::{Engine, EngineError, NetworkSpec};
use crate::spec::NetMode;
use crate::wiring::rule::Prohibit;

/// The default network's name (`--network bridge` is the same network, as in Docker).
pub const DEFAULT_NETWORK: &str = "netd0";
/// Names that `--network` reads as something else.
const RESERVED: [&str; 3] = ["bridge", "host", "none"];
/// Priority of netd's isolation rules: before the main table's lookup (32766).
pub const ISOLATION_PRIORITY: u32 = 30000;

/// What wiring an endpoint needs from its network.
pub(super) struct Segment {
    pub(super) bridge: String,
    pub(super) bridge_addr: Ipv4Net,
    pub(super) pool: Ipv4Net,
    pub(super) mtu: u32,
    pub(super) icc: bool,
    pub(super) internal: bool,
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Engine {
    /// `--network NAME` → the network's key (`None` for the default network).
    pub(super) fn resolve_network(
        &self,
        name: Option<&str>,
    ) -> Result<Option<String>, EngineError> {
        match name {
            None | Some("bridge") | Some(DEFAULT_NETWORK) => Ok(None),
            Some(n) if self.state.networks.contains_key(n) => Ok(Some(n.to_string())),
            Some(n) => Err(EngineError::NotFound(format!(
                "--network {n}: no such network: {n} (see `netd network ls`)"
            ))),
        }
    }

    pub(super) fn segment(&self, network: Option<&str>) -> Segment {
        match network.and_then(|n| self.state.networks.get(n)) {
            Some(n) => Segment {
                bridge: n.bridge.clone(),
                bridge_addr: n.bridge_addr,
                pool: n.pool,
                mtu: n.mtu,
                icc: n.icc,
                internal: n.internal,
            },
            None => Segment {
                bridge: self.net.bridge.clone(),
                bridge_addr: self.net.bridge_addr,
                pool: self.net.pool,
                mtu: self.net.mtu,
                icc: self.cfg.icc,
                internal: false,
            },
        }
    }

    /// Address allocation for a network (the default network's has the daemon's
    /// `--default-gateway` reserved too).
    pub(super) fn ipam_for(&self, network: Option<&str>) -> Ipam {
        match network {
            None => Ipam::new(
                self.net.bridge_addr,
                self.net.pool,
                self.cfg.default_gateway,
            ),
            Some(_) => {
                let s = self.segment(network);
                Ipam::new(s.bridge_addr, s.pool, None)
            }
        }
    }

    /// `netd network create`.
    pub async fn create_network(&mut self, spec: NetworkSpec) -> Result<NetworkView, EngineError> {
        crate::spec::validate_container_name(&spec.name).map_err(|e| {
            EngineError::Invalid(e.to_string().replace("container name", "network name"))
        })?;
        if RESERVED.contains(&spec.name.as_str()) || spec.name == DEFAULT_NETWORK {
            return Err(EngineError::Invalid(format!(
                "network name {:?} is reserved (bridge, host, none and {DEFAULT_NETWORK} are netd's own)",
                spec.name
            )));
        }
        if self.state.networks.contains_key(&spec.name) {
            return Err(EngineError::Conflict(format!(
                "network {} already exists",
                spec.name
            )));
        }
        let addrs = self.nl.addresses_v4(None).await?;
        let routes = self.nl.routes_v4().await?;
        let subnet = match spec.subnet {
            Some(s) => s.trunc(),
            None => super::network::choose_subnet(&addrs, &routes).ok_or_else(|| {
                EngineError::Conflict("no free private subnet left: pass --subnet".into())
            })?,
        };
        if subnet.prefix_len() > 30 {
            return Err(EngineError::Invalid(format!(
                "--subnet {subnet}: a network needs a /30 or larger"
            )));
        }
        for n in self.state.networks.values() {
            if overlaps(&n.bridge_addr.trunc(), &subnet) {
                return Err(EngineError::Conflict(format!(
                    "--subnet {subnet} overlaps network {} ({})",
                    n.name,
                    n.bridge_addr.trunc()
                )));
            }
        }
        if overlaps(&self.net.bridge_addr.trunc(), &subnet) {
            return Err(EngineError::Conflict(format!(
                "--subnet {subnet} overlaps the default network {DEFAULT_NETWORK} ({})",
                self.net.bridge_addr.trunc()
            )));
        }
        let used = addrs
            .iter()
            .map(|(_, n)| n.trunc())
            .chain(routes.iter().map(|r| r.dest).filter(|d| d.prefix_len() > 0));
        for u in used {
            if overlaps(&u, &subnet) {
                return Err(EngineError::Conflict(format!(
                    "--subnet {subnet} overlaps {u}, an address or route of the host"
                )));
            }
        }
        let gateway = spec
            .gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(subnet.network()) + 1));
        if !subnet.contains(&gateway)
            || gateway == subnet.network()
            || gateway == subnet.broadcast()
        {
            return Err(EngineError::Invalid(format!(
                "--gateway {gateway} is not a host address of --subnet {subnet}"
            )));
        }
        let pool = match spec.ip_range {
            Some(r) if !subnet.contains(&r) => {
                return Err(EngineError::Invalid(format!(
                    "--ip-range {r} is not inside --subnet {subnet}"
                )));
            }
            Some(r) => r.trunc(),
            None => subnet,
        };
        let subnet_v6 = self.check_subnet_v6(&spec)?;
        let bridge = match &spec.bridge {
            Some(b) => {
                crate::spec::validate_ifname(b).map_err(|e| {
                    EngineError::Invalid(format!("-o com.docker.network.bridge.name: {e}"))
                })?;
                b.clone()
            }
            None => format!("br-{}", super::attach::random_hex7()),
        };
        if self.nl.link_by_name(&bridge).await?.is_some() {
            return Err(EngineError::Conflict(format!(
                "interface {bridge} already exists: choose another -o com.docker.network.bridge.name"
            )));
        }
        let net = UserNetwork {
            name: spec.name.clone(),
            bridge,
            bridge_addr: Ipv4Net::new(gateway, subnet.prefix_len()).expect("prefix checked"),
            pool,
            mtu: spec.mtu.unwrap_or(self.net.mtu),
            icc: spec.icc,
            ip_masq: spec.ip_masq,
            internal: spec.internal,
            id: self.free_network_id()?,
            ipv6: spec.ipv6,
            subnet_v6,
            // 0.0.0.0 is Docker's "not set".
            host_ip: spec.host_ip.filter(|ip| !ip.is_unspecified()),
        };
        let made = match self.make_bridge(&net).await {
            Ok(()) if net.ipv6 => self.make_bridge6(&net).await,
            r => r,
        };
        let committed = match made {
            Ok(()) => {
                self.state.networks.insert(net.name.clone(), net.clone());
                match self.sync_isolation().await {
                    Ok(()) => match self.sync_dataplane().await {
                        Ok(()) => self.persist(&[]),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            self.state.networks.remove(&net.name);
            if let Err(e2) = self.sync_isolation().await {
                tracing::warn!("rollback: routing rules: {e2}");
            }
            if let Err(e2) = self.sync_dataplane().await {
                tracing::warn!("rollback: dataplane maps: {e2}");
            }
            if let Ok(Some(l)) = self.nl.link_by_name(&net.bridge).await {
                let _ = self.nl.delete_link(l.index).await;
            }
            return Err(e);
        }
        tracing::info!(network = %net.name, bridge = %net.bridge, subnet = %subnet, "network created");
        self.network(&net.name)
    }

    async fn make_bridge(&self, net: &UserNetwork) -> Result<(), EngineError> {
        let link = match self.nl.link_by_name(&net.bridge).await? {
            Some(l) => l,
            None => self.nl.create_bridge(&net.bridge).await?,
        };
        let have = self.nl.addresses_v4(Some(link.index)).await?;
        if !have.iter().any(|(_, a)| *a == net.bridge_addr) {
            self.nl
                .add_address(
                    link.index,
                    net.bridge_addr.addr(),
                    net.bridge_addr.prefix_len(),
                )
                .await?;
        }
        if link.mtu != net.mtu {
            self.nl.set_mtu(link.index, net.mtu).await?;
        }
        self.nl.set_up(link.index).await?;
        Ok(())
    }

    /// The IPv6 `--subnet` of a new network: needs `--ipv6`, a network address of /126 or
    /// shorter, and no overlap with another network's IPv6 subnet.
    fn check_subnet_v6(&self, spec: &NetworkSpec) -> Result<Option<ipnet::Ipv6Net>, EngineError> {
        let Some(s) = spec.subnet_v6 else {
            return Ok(None);
        };
        if !spec.ipv6 {
            return Err(EngineError::Invalid(format!(
                "--subnet {s} is an IPv6 subnet: create the network with --ipv6"
            )));
        }
        if s.prefix_len() > 126 {
            return Err(EngineError::Invalid(format!(
                "--subnet {s}: an IPv6 network needs a /126 or larger"
            )));
        }
        if s.addr() != s.network() {
            return Err(EngineError::Invalid(format!(
                "--subnet {s} is not a network address (host bits are set): use {}",
                s.trunc()
            )));
        }
        let v6_overlap = |a: &ipnet::Ipv6Net| a.contains(&s.network()) || s.contains(&a.network());
        if let Some(d) = self.cfg.fixed_cidr_v6.filter(|d| v6_overlap(d)) {
            return Err(EngineError::Conflict(format!(
                "--subnet {s} overlaps the default network's --fixed-cidr-v6 {d}"
            )));
        }
        for n in self.state.networks.values() {
            if let Some(o) = n.subnet_v6.filter(|o| v6_overlap(o)) {
                return Err(EngineError::Conflict(format!(
                    "--subnet {s} overlaps network {} ({o})",
                    n.name
                )));
            }
        }
        Ok(Some(s))
    }

    async fn make_bridge6(&self, net: &UserNetwork) -> Result<(), EngineError> {
        super::ipv6::setup_bridge(&self.nl, &net.bridge, net.subnet_v6).await?;
        if net.subnet_v6.is_some() && self.cfg.ip_forward {
            super::ipv6::enable_forwarding(&self.uplinks)?;
        }
        Ok(())
    }

    /// At start: every persisted network's bridge is there (recreated if it vanished), and the
    /// isolation rules match the networks.
    pub(super) async fn setup_networks(&mut self) -> Result<(), EngineError> {
        let default = self.net.bridge_addr.trunc();
        if let Some(n) = self
            .state
            .networks
            .values()
            .find(|n| overlaps(&n.bridge_addr.trunc(), &default))
        {
            return Err(EngineError::Invalid(format!(
                "the default network's subnet {default} overlaps network {} ({}); \
                 start with another --bip or remove that network first",
                n.name,
                n.bridge_addr.trunc()
            )));
        }
        for n in self.state.networks.values() {
            self.make_bridge(n).await?;
        }
        // (IPv6 bridges are set up by `setup_ipv6`, after the uplinks are known.)
        // Networks persisted before they had dataplane ids get one now (saved with the next
        // change; the same one is given again until then: the order is the names').
        let unnumbered: Vec<String> = self
            .state
            .networks
            .values()
            .filter(|n| n.id == 0)
            .map(|n| n.name.clone())
            .collect();
        for name in unnumbered {
            let id = self.free_network_id()?;
            if let Some(n) = self.state.networks.get_mut(&name) {
                n.id = id;
            }
        }
        self.sync_isolation().await
    }

    /// The lowest dataplane network id no network holds.
    fn free_network_id(&self) -> Result<u16, EngineError> {
        (1..netd_common::NETWORKS_MAX as u16)
            .find(|i| !self.state.networks.values().any(|n| n.id == *i))
            .ok_or_else(|| {
                EngineError::Conflict(format!(
                    "no network id left: the dataplane holds {} networks",
                    netd_common::NETWORKS_MAX - 1
                ))
            })
    }

    /// The dataplane id of an endpoint's network (`None`: the default network, 0).
    pub(super) fn network_id(&self, network: Option<&str>) -> u16 {
        network
            .and_then(|n| self.state.networks.get(n))
            .map_or(0, |n| n.id)
    }

    /// The rules: no routing between two networks' subnets, none from an uplink into an
    /// internal network.
    pub(super) async fn sync_isolation(&self) -> Result<(), EngineError> {
        let mut subnets = vec![self.net.bridge_addr.trunc()];
        subnets.extend(self.state.networks.values().map(|n| n.bridge_addr.trunc()));
        let mut want = Vec::new();
        for a in &subnets {
            for b in &subnets {
                if a != b {
                    want.push(Prohibit {
                        from: *a,
                        to: *b,
                        iif: None,
                    });
                }
            }
        }
        for n in self.state.networks.values().filter(|n| n.internal) {
            for u in &self.cfg.uplinks {
                want.push(Prohibit {
                    from: Ipv4Net::default(),
                    to: n.bridge_addr.trunc(),
                    iif: Some(u.clone()),
                });
            }
        }
        // Only the default network: nothing to keep apart, and no rules to leave behind.
        self.nl
            .sync_prohibit_rules(ISOLATION_PRIORITY, &want)
            .await
            .map_err(Into::into)
    }

    /// `netd network rm`: refused for the default network and while containers are attached.
    pub async fn remove_network(&mut self, name: &str) -> Result<(), EngineError> {
        if RESERVED.contains(&name) || name == DEFAULT_NETWORK {
            return Err(EngineError::Conflict(format!(
                "{name} is the default network: it cannot be removed"
            )));
        }
        let Some(net) = self.state.networks.get(name).cloned() else {
            return Err(EngineError::NotFound(format!("no such network: {name}")));
        };
        let users = self.endpoints_on(Some(name));
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "network {name} has attached containers: {}; detach them first",
                users.join(", ")
            )));
        }
        self.state.networks.remove(name);
        let mut errors = Vec::new();
        if let Err(e) = self.sync_isolation().await {
            errors.push(e.to_string());
        }
        if let Err(e) = self.sync_dataplane().await {
            errors.push(e.to_string());
        }
        match self.nl.link_by_name(&net.bridge).await {
            Ok(Some(l)) => {
                if let Err(e) = self.nl.delete_link(l.index).await {
                    errors.push(e.to_string());
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(e.to_string()),
        }
        if let Err(e) = self.persist(&[]) {
            errors.push(e.to_string());
        }
        tracing::info!(network = %name, "network removed");
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Internal(format!(
                "removed network {name}, with errors: {}",
                errors.join("; ")
            )))
        }
    }

    fn endpoints_on(&self, network: Option<&str>) -> Vec<String> {
        self.state
            .endpoints
            .values()
            .filter(|e| e.net == NetMode::Bridge && e.network.as_deref() == network)
            .map(|e| e.name.clone())
            .collect()
    }

    /// `netd network ls`: the default network first.
    pub fn networks(&self) -> Vec<NetworkView> {
        let mut out = vec![self.default_network_view()];
        out.extend(
            self.state
                .networks
                .keys()
                .filter_map(|n| self.network(n).ok()),
        );
        out
    }

    /// `netd network inspect NAME`.
    pub fn network(&self, name: &str) -> Result<NetworkView, EngineError> {
        if RESERVED.contains(&name) || name == DEFAULT_NETWORK {
            return Ok(self.default_network_view());
        }
        let n = self
            .state
            .networks
            .get(name)
            .ok_or_else(|| EngineError::NotFound(format!("no such network: {name}")))?;
        Ok(NetworkView {
            name: n.name.clone(),
            bridge: n.bridge.clone(),
            subnet: n.bridge_addr.trunc().to_string(),
            gateway: n.bridge_addr.addr().to_string(),
            ip_range: n.pool.to_string(),
            subnet_v6: n.subnet_v6.map(|s| s.to_string()),
            ipv6: n.ipv6,
            mtu: n.mtu,
            icc: n.icc,
            ip_masq: n.ip_masq,
            internal: n.internal,
            host_binding_ipv4: n.host_ip.map(|ip| ip.to_string()),
            default: false,
            endpoints: self.endpoints_on(Some(name)),
        })
    }

    fn default_network_view(&self) -> NetworkView {
        NetworkView {
            name: DEFAULT_NETWORK.to_string(),
            bridge: self.net.bridge.clone(),
            subnet: self.net.bridge_addr.trunc().to_string(),
            gateway: self.net.bridge_addr.addr().to_string(),
            ip_range: self.net.pool.to_string(),
            subnet_v6: self.cfg.fixed_cidr_v6.map(|s| s.to_string()),
            ipv6: self.cfg.ipv6,
            mtu: self.net.mtu,
            icc: self.cfg.icc,
            ip_masq: self.cfg.ip_masq,
            internal: false,
            host_binding_ipv4: None,
            default: true,
            endpoints: self.endpoints_on(None),
        }
    }
}
