//! Docker's libnetwork plugin protocol (driver and IPAM name `netd`) on the daemon's own API
//! socket: `POST /Plugin.Activate`, `/NetworkDriver.*`, `/IpamDriver.*` (they do not clash
//! with `/v1`). Each call is parsed into the engine's typed requests; an engine error answers
//! `{"Err": ...}` (network driver) or `{"Error": ...}` (IPAM), as libnetwork reads them.
//!
//! Lifecycle (dockerd 20.10): RequestPool → RequestAddress (gateway) → CreateNetwork;
//! RequestAddress → CreateEndpoint → Join → ProgramExternalConnectivity; and back:
//! RevokeExternalConnectivity → Leave → DeleteEndpoint → ReleaseAddress. The engine holds an
//! address from RequestAddress on (so netd's and Docker's leases never collide) and creates the
//! netd endpoint at Join, leaving the container end of the veth pair in the daemon's
//! namespace for libnetwork to move into the sandbox.
pub mod convert;
mod ipam;
pub mod protocol;
pub mod state;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::engine::ipv6::{BRIDGE_LINK_LOCAL, Ipam6};
use crate::engine::{EndpointSpec, Engine, EngineError, handover_peer_name};
use crate::spec::LinkSpec;
use protocol as p;
use state::DockerState;

/// The plugin name dockerd looks up (`-d netd`, `--ipam-driver netd`).
pub const PLUGIN_NAME: &str = "netd";

/// The spec file dockerd reads to find the plugin: the API socket's URL.
pub fn spec_file_contents(socket_url: &str) -> String {
    format!("{socket_url}\n")
}

/// Writes `<dir>/netd.spec`.
pub fn install_spec(dir: &Path, socket_url: &str) -> Result<std::path::PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(format!("{PLUGIN_NAME}.spec"));
    crate::fsutil::write_atomic(&path, &spec_file_contents(socket_url))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// Is `segment` (a path's only segment) one of the plugin protocol's methods?
pub fn is_plugin_path(segment: &str) -> bool {
    ["Plugin.", "NetworkDriver.", "IpamDriver."]
        .iter()
        .any(|p| segment.starts_with(p))
}

/// Loaded on the first call; always locked after the engine, so calls are serialised.
static STATE: Mutex<Option<DockerState>> = Mutex::const_new(None);

/// Answers one plugin call (always 200 but for an unknown method: libnetwork reads the error
/// from the body).
pub async fn handle(method: &str, body: &[u8], engine: &Mutex<Engine>) -> (u16, Vec<u8>) {
    let ipam = method.starts_with("IpamDriver.");
    let fail = |msg: String| -> (u16, Vec<u8>) {
        let b = if ipam {
            serde_json::to_vec(&p::IpamError { error: msg })
        } else {
            serde_json::to_vec(&p::DriverError { err: msg })
        };
        (200, b.expect("serialises"))
    };
    match method {
        "Plugin.Activate" => {
            return ok(&serde_json::json!({"Implements": ["NetworkDriver", "IpamDriver"]}));
        }
        "NetworkDriver.GetCapabilities" => {
            return ok(&serde_json::json!({"Scope": "local", "ConnectivityScope": "local"}));
        }
        "IpamDriver.GetCapabilities" => {
            return ok(
                &serde_json::json!({"RequiresMACAddress": false, "RequiresRequestReplay": false}),
            );
        }
        "IpamDriver.GetDefaultAddressSpaces" => {
            return ok(&serde_json::json!({
                "LocalDefaultAddressSpace": "netd-local",
                "GlobalDefaultAddressSpace": "netd-global"
            }));
        }
        "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => {
            return ok(&serde_json::json!({}));
        }
        _ => {}
    }
    let mut eng = engine.lock().await;
    let mut guard = STATE.lock().await;
    if guard.is_none() {
        match DockerState::load(&eng.config().state_dir) {
            Ok(s) => {
                adopt_held6(&mut eng, &s);
                *guard = Some(s);
            }
            Err(e) => return fail(e),
        }
    }
    let st = guard.as_mut().expect("loaded");
    let mut call = Call { eng: &mut eng, st };
    let r = match method {
        "IpamDriver.RequestPool" => match parse(body) {
            Ok(r) => call.request_pool(r).await.map(|v| to_json(&v)),
            Err(e) => Err(e),
        },
        "IpamDriver.ReleasePool" => parse(body).and_then(|r| call.release_pool(r)),
        "IpamDriver.RequestAddress" => parse(body).and_then(|r| call.request_address(r)),
        "IpamDriver.ReleaseAddress" => parse(body).and_then(|r| call.release_address(r)),
        "NetworkDriver.CreateNetwork" => match parse(body) {
            Ok(r) => call.create_network(r).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.DeleteNetwork" => match parse(body) {
            Ok(r) => call.delete_network(r).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.CreateEndpoint" => parse(body).and_then(|r| call.create_endpoint(r)),
        "NetworkDriver.DeleteEndpoint" => match parse(body) {
            Ok(r) => call.delete_endpoint(r).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.Join" => match parse(body) {
            Ok(r) => call.join(r).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.Leave" => match parse(body) {
            Ok(r) => call.leave(r).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.ProgramExternalConnectivity" => match parse(body) {
            Ok(r) => call.program(r).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.RevokeExternalConnectivity" => parse(body).and_then(|r| call.revoke(r)),
        "NetworkDriver.EndpointOperInfo" => parse(body).and_then(|r| call.oper_info(r)),
        _ => {
            let (_, b) = fail(format!("netd: plugin method {method} is not implemented"));
            return (404, b);
        }
    };
    match r {
        Ok(v) => (200, v),
        Err(e) => {
            tracing::info!(method, "docker plugin call refused: {e}");
            fail(e)
        }
    }
}

/// IPv6 addresses handed to Docker by a netd whose engine did not hold them yet (its
/// docker.json): the engine holds them now. One that is already an endpoint's lease (joined)
/// is refused as in use, and needs no hold.
fn adopt_held6(eng: &mut Engine, st: &DockerState) {
    for n in st.networks.values() {
        let Some(pool) = n.pool6_id.as_ref().and_then(|id| st.pools6.get(id)) else {
            continue;
        };
        let unheld: Vec<Ipv6Addr> = pool
            .held
            .iter()
            .copied()
            .filter(|ip| eng.holder_of6(*ip).is_none())
            .collect();
        for ip in &unheld {
            let holder = format!("docker endpoint on {}", n.name);
            if let Err(e) = eng.hold_address6(&n.name, *ip, &holder) {
                tracing::debug!(%ip, "IPv6 address of docker.json not held: {e}");
            }
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialises")
}

fn ok<T: Serialize>(v: &T) -> (u16, Vec<u8>) {
    (200, to_json(v))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))
}

fn empty() -> Vec<u8> {
    b"{}".to_vec()
}

fn engine_err(e: EngineError) -> String {
    e.to_string()
}

/// A short, stable netd name from a Docker id.
fn id_name(id: &str) -> String {
    format!("d-{}", &id[..id.len().min(12)])
}

fn pool_id(subnet: &Ipv4Net) -> String {
    format!("netd/{subnet}")
}

fn pool6_id(subnet: &Ipv6Net) -> String {
    format!("netd6/{subnet}")
}

/// The IPv6 gateway of every netd network as Docker's IPAM data (`ip/len`): the bridge's
/// link-local address, the containers' default route's next hop.
fn gateway6() -> String {
    format!("{BRIDGE_LINK_LOCAL}/64")
}

struct Call<'a> {
    eng: &'a mut Engine,
    st: &'a mut DockerState,
}

impl Call<'_> {
    fn save(&self) -> Result<(), String> {
        self.st.save()
    }

    async fn create_network(&mut self, r: p::CreateNetwork) -> Result<Vec<u8>, String> {
        if self.st.networks.contains_key(&r.network_id) {
            return Ok(empty());
        }
        let pool6 = match r.ipv6_data.as_deref().and_then(|d| d.first()) {
            None => None,
            Some(d) => {
                let id = d
                    .pool
                    .parse::<Ipv6Net>()
                    .ok()
                    .map(|s| pool6_id(&s.trunc()))
                    .filter(|id| self.st.pools6.contains_key(id))
                    .ok_or_else(|| {
                        format!(
                            "IPv6 pool {} is not netd's: add --ipam-driver netd to `docker network create`",
                            d.pool
                        )
                    })?;
                Some((id.clone(), self.st.pools6[&id].subnet))
            }
        };
        let data = r.ipv4_data.unwrap_or_default();
        let pool_id = data.first().and_then(|d| {
            let subnet: Ipv4Net = d.pool.parse().ok()?;
            let id = pool_id(&subnet.trunc());
            self.st.pools.contains_key(&id).then_some(id)
        });
        let Some(pool_id) = pool_id else {
            return Err(
                "a netd network needs netd's IPAM: add --ipam-driver netd to `docker network create` \
                 (Docker's own IPAM would hand out addresses netd cannot see)"
                    .into(),
            );
        };
        let pool = self.st.pools[&pool_id].clone();
        let gateway = match data[0].gateway.as_str() {
            "" => pool.gateway,
            g => Some(convert::parse_addr(g)?),
        };
        let opts = r.options.as_ref();
        let name = convert::string_options(opts)
            .remove(convert::NETD_NAME)
            .unwrap_or_else(|| id_name(&r.network_id));
        let spec = convert::network_spec(
            name.clone(),
            opts,
            pool.subnet,
            gateway,
            pool.sub_pool,
            pool6.as_ref().map(|(_, s)| *s),
        )?;
        self.eng.create_network(spec).await.map_err(engine_err)?;
        self.st.networks.insert(
            r.network_id.clone(),
            state::Network {
                name: name.clone(),
                pool_id,
                pool6_id: pool6.map(|(id, _)| id),
            },
        );
        if let Err(e) = self.save() {
            self.st.networks.remove(&r.network_id);
            let _ = self.eng.remove_network(&name).await;
            return Err(e);
        }
        Ok(empty())
    }

    async fn delete_network(&mut self, r: p::NetworkRef) -> Result<Vec<u8>, String> {
        let Some(n) = self.st.networks.get(&r.network_id).cloned() else {
            return Ok(empty());
        };
        match self.eng.remove_network(&n.name).await {
            Ok(()) | Err(EngineError::NotFound(_)) => {}
            Err(e) => return Err(engine_err(e)),
        }
        self.st.networks.remove(&r.network_id);
        self.save()?;
        Ok(empty())
    }

    fn create_endpoint(&mut self, r: p::CreateEndpoint) -> Result<Vec<u8>, String> {
        if self.st.endpoints.contains_key(&r.endpoint_id) {
            return Err(format!("endpoint {} already exists", r.endpoint_id));
        }
        let Some(network) = self.st.networks.get(&r.network_id).cloned() else {
            return Err(format!("no such netd network: {}", r.network_id));
        };
        let iface = r.interface.unwrap_or_default();
        let ip6 = match iface.address_ipv6.as_str() {
            "" => None,
            a => {
                let ip6 = convert::parse_addr6(a)?;
                let held = network
                    .pool6_id
                    .as_ref()
                    .and_then(|id| self.st.pools6.get(id))
                    .is_some_and(|p| p.held.contains(&ip6));
                if !held {
                    return Err(format!(
                        "IPv6 address {ip6} was not handed out by netd's IPAM for this network: create the network with --ipam-driver netd"
                    ));
                }
                Some(ip6)
            }
        };
        if iface.address.is_empty() {
            return Err(
                "the endpoint has no address: create the network with --ipam-driver netd".into(),
            );
        }
        let ip = convert::parse_addr(&iface.address)?;
        if self.eng.holder_of(ip).is_none() {
            return Err(format!(
                "address {ip} was not handed out by netd's IPAM: create the network with --ipam-driver netd"
            ));
        }
        let name = convert::string_options(r.options.as_ref())
            .remove(convert::NETD_NAME)
            .unwrap_or_else(|| id_name(&r.endpoint_id));
        crate::spec::validate_container_name(&name)
            .map_err(|e| format!("driver-opt netd.name: {e}"))?;
        if self.eng.inspect(&name).is_ok() || self.st.endpoints.values().any(|e| e.name == name) {
            return Err(format!(
                "container name \"{name}\" is already attached to netd"
            ));
        }
        let links = convert::link_specs(r.options.as_ref())?;
        self.check_link_targets(&links, &network.name)?;
        let expose = convert::expose_specs(r.options.as_ref())?;
        let (mac, reply_mac) = match iface.mac_address.as_str() {
            "" => (crate::engine::ipam::mac_from_ipv4(ip), true),
            m => (
                crate::spec::parse_mac(m).map_err(|e| format!("--mac-address: {e}"))?,
                false,
            ),
        };
        self.st.endpoints.insert(
            r.endpoint_id.clone(),
            state::Endpoint {
                network_id: r.network_id,
                name,
                ip,
                ip6,
                mac,
                links,
                expose,
                joined: false,
            },
        );
        if let Err(e) = self.save() {
            self.st.endpoints.remove(&r.endpoint_id);
            return Err(e);
        }
        Ok(to_json(&p::CreateEndpointReply {
            interface: reply_mac.then(|| p::EndpointInterface {
                mac_address: crate::spec::format_mac(&mac),
                ..Default::default()
            }),
        }))
    }

    /// As `netd attach --link` requires: each target is a netd endpoint already (a container
    /// started before this one, named by its `netd.name`), on the same network.
    fn check_link_targets(&self, links: &[LinkSpec], network: &str) -> Result<(), String> {
        for l in links {
            let opt = format!("driver-opt {}={l}", convert::NETD_LINK);
            let t = self.eng.inspect(&l.name).map_err(|_| {
                format!(
                    "{opt}: no container named {} is attached to netd (start it first, with \
                     driver-opt={}={})",
                    l.name,
                    convert::NETD_NAME,
                    l.name
                )
            })?;
            if t.network.as_deref() != Some(network) {
                return Err(format!(
                    "{opt}: {} is on network {}, not on network {network}: links work within one network",
                    l.name,
                    t.network.as_deref().unwrap_or(t.net.as_str())
                ));
            }
        }
        Ok(())
    }

    fn endpoint(&self, id: &str) -> Result<state::Endpoint, String> {
        self.st
            .endpoints
            .get(id)
            .cloned()
            .ok_or_else(|| format!("no such netd endpoint: {id}"))
    }

    async fn join(&mut self, r: p::Join) -> Result<Vec<u8>, String> {
        let ep = self.endpoint(&r.endpoint_id)?;
        let net = self
            .st
            .networks
            .get(&ep.network_id)
            .ok_or_else(|| format!("no such netd network: {}", ep.network_id))?
            .name
            .clone();
        let mut spec = EndpointSpec::new(ep.name.clone(), r.sandbox_key);
        spec.network = Some(net.clone());
        spec.ip = Some(ep.ip);
        spec.ip6 = ep.ip6;
        spec.mac = Some(ep.mac);
        spec.hand_over = true;
        // The target may have gone since CreateEndpoint: the engine checks again.
        self.check_link_targets(&ep.links, &net)?;
        spec.links = ep.links.clone();
        spec.expose = ep.expose.clone();
        for e in convert::expose_specs(r.options.as_ref())? {
            if !spec.expose.contains(&e) {
                spec.expose.push(e);
            }
        }
        // The held address becomes the endpoint's (under the engine's lock: nobody else can
        // take it in between).
        let holder = self.eng.holder_of(ep.ip).map(str::to_string);
        let holder6 = ep
            .ip6
            .and_then(|ip6| Some((ip6, self.eng.holder_of6(ip6)?.to_string())));
        self.eng.release_address(ep.ip).map_err(engine_err)?;
        if let Some((ip6, _)) = &holder6 {
            if let Err(e) = self.eng.release_address6(*ip6) {
                if let Some(h) = &holder {
                    let _ = self.eng.hold_address(&net, Some(ep.ip), h);
                }
                return Err(engine_err(e));
            }
        }
        let view = match self.eng.attach(spec).await {
            Ok(v) => v,
            Err(e) => {
                if let Some(h) = holder {
                    let _ = self.eng.hold_address(&net, Some(ep.ip), &h);
                }
                if let Some((ip6, h)) = holder6 {
                    let _ = self.eng.hold_address6(&net, ip6, &h);
                }
                return Err(engine_err(e));
            }
        };
        self.st
            .endpoints
            .get_mut(&r.endpoint_id)
            .expect("present")
            .joined = true;
        self.save()?;
        let host = view.host_ifname.unwrap_or_default();
        Ok(to_json(&p::JoinReply {
            interface_name: p::InterfaceName {
                src_name: handover_peer_name(&host),
                dst_prefix: "eth".into(),
            },
            gateway: view.gateway.unwrap_or_default(),
            // The lease's next hop (fe80::1 on the bridge) for the IPv6 default route.
            gateway_ipv6: match view.global_ipv6 {
                Some(_) => view.ipv6_gateway.unwrap_or_default(),
                None => String::new(),
            },
            disable_gateway_service: false,
        }))
    }

    /// Removes the netd endpoint of a joined Docker endpoint; its address stays held for
    /// Docker until ReleaseAddress.
    async fn unjoin(&mut self, id: &str) -> Result<(), String> {
        let ep = self.endpoint(id)?;
        if !ep.joined {
            return Ok(());
        }
        match self.eng.detach(&ep.name).await {
            Ok(()) | Err(EngineError::NotFound(_)) => {}
            Err(e) => return Err(engine_err(e)),
        }
        if let Some(n) = self.st.networks.get(&ep.network_id) {
            let net = n.name.clone();
            if let Err(e) =
                self.eng
                    .hold_address(&net, Some(ep.ip), &format!("docker endpoint on {net}"))
            {
                tracing::warn!(ip = %ep.ip, "address not held again after leave: {e}");
            }
            if let Some(ip6) = ep.ip6 {
                if let Err(e) =
                    self.eng
                        .hold_address6(&net, ip6, &format!("docker endpoint on {net}"))
                {
                    tracing::warn!(%ip6, "IPv6 address not held again after leave: {e}");
                }
            }
        }
        self.st.endpoints.get_mut(id).expect("present").joined = false;
        self.save()
    }

    async fn leave(&mut self, r: p::EndpointRef) -> Result<Vec<u8>, String> {
        self.unjoin(&r.endpoint_id).await?;
        Ok(empty())
    }

    async fn delete_endpoint(&mut self, r: p::EndpointRef) -> Result<Vec<u8>, String> {
        if !self.st.endpoints.contains_key(&r.endpoint_id) {
            return Ok(empty());
        }
        self.unjoin(&r.endpoint_id).await?;
        self.st.endpoints.remove(&r.endpoint_id);
        self.save()?;
        Ok(empty())
    }

    async fn program(&mut self, r: p::ProgramExternalConnectivity) -> Result<Vec<u8>, String> {
        let ep = self.endpoint(&r.endpoint_id)?;
        let specs = convert::publish_specs(r.options.as_ref())?;
        // Idempotent: a repeated call replaces what the previous one published.
        self.eng.unpublish_all(&ep.name).map_err(engine_err)?;
        if !specs.is_empty() {
            self.eng
                .publish(&ep.name, &specs)
                .await
                .map_err(engine_err)?;
        }
        Ok(empty())
    }

    fn revoke(&mut self, r: p::EndpointRef) -> Result<Vec<u8>, String> {
        let ep = self.endpoint(&r.endpoint_id)?;
        if ep.joined {
            match self.eng.unpublish_all(&ep.name) {
                Ok(()) | Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(engine_err(e)),
            }
        }
        Ok(empty())
    }

    fn oper_info(&mut self, r: p::EndpointRef) -> Result<Vec<u8>, String> {
        let ep = self.endpoint(&r.endpoint_id)?;
        let mut value = serde_json::json!({"netd.name": ep.name, "ip": ep.ip.to_string()});
        if let Some(ip6) = ep.ip6 {
            value["ip6"] = serde_json::json!(ip6.to_string());
        }
        if let Ok(v) = self.eng.inspect(&ep.name) {
            value["ports"] = serde_json::to_value(&v.ports).unwrap_or_default();
            value["host_ifname"] = serde_json::to_value(&v.host_ifname).unwrap_or_default();
        }
        Ok(to_json(&serde_json::json!({ "Value": value })))
    }
}
