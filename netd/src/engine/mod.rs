//! The engine: networks, endpoints, port bindings, links (and, with the dataplane, filters).
//!
//! Its API is typed: requests are [`request`] values already parsed by a front end, answers are
//! [`view`] values, failures an [`EngineError`] whose variant the front end maps to an HTTP
//! status or an exit code. It imports no front end.
//!
//! Every change is validated completely before anything is touched, then applied step by step
//! with an undo list, then persisted: a request either takes effect entirely or not at all.
mod attach;
pub mod config;
mod detach;
mod dpsync;
mod files;
mod filters;
mod handover;
pub mod host_events;
mod index;
pub mod ipam;
pub mod ipv6;
pub mod network;
pub mod networks;
pub mod ports;
mod publish;
mod reconcile;
mod relay46;
pub mod request;
mod reserve;
mod sockdiag;
pub mod state;
mod store;
mod timing;
mod uplinks;
pub mod view;

use std::net::Ipv4Addr;

use crate::dataplane::{Dataplane, DataplaneConfig, sock};
use crate::spec;
use crate::wiring::{Netlink, WiringError};

pub use attach::handover_peer_name;
pub use config::{Config, DataplaneMode};
pub use host_events::{HostChanges, HostEvents};
pub use networks::DEFAULT_NETWORK;
pub use request::{
    CtProto, CtQuery, DEFAULT_IFNAME, EndpointSpec, FilterAction, FilterChange, NetworkSpec,
};
use state::{Endpoint, NetworkState, State};
use store::{Store, Touched};
pub use uplinks::auto_uplinks;
use view::{BridgeView, EndpointView, PortView, Status};

/// What can go wrong: the variant says what kind of failure it is (a front end maps it to an
/// HTTP status or an exit code), the text is the user's message.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<WiringError> for EngineError {
    fn from(e: WiringError) -> Self {
        EngineError::Internal(error_chain(&e))
    }
}

impl From<state::StateError> for EngineError {
    fn from(e: state::StateError) -> Self {
        EngineError::Internal(error_chain(&e))
    }
}

impl From<crate::dataplane::DataplaneError> for EngineError {
    fn from(e: crate::dataplane::DataplaneError) -> Self {
        EngineError::Internal(format!("dataplane: {}", error_chain(&e)))
    }
}

/// An error and its causes, "outer: inner: os error", so the user sees why (an errno, the
/// verifier's complaint), not only what failed.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    // A verifier log can run to megabytes; the start of it names the problem.
    if out.len() > 4000 {
        let mut cut = 4000;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(" ...");
    }
    out
}

impl From<spec::SpecError> for EngineError {
    fn from(e: spec::SpecError) -> Self {
        EngineError::Invalid(e.to_string())
    }
}

/// `NETD_PORT_RESERVE`: how published host ports are kept from host processes. `auto` (the
/// default) uses the bind hooks where the kernel takes them (5.18) and one socket per port
/// elsewhere; `hook` requires the hooks; `socket` forces the socket per port.
fn reserve_mode_wanted() -> Result<sock::BindHooks, EngineError> {
    match std::env::var("NETD_PORT_RESERVE").as_deref() {
        Err(_) | Ok("auto") => Ok(sock::BindHooks::IfSupported),
        Ok("hook") => Ok(sock::BindHooks::Required),
        Ok("socket") => Ok(sock::BindHooks::Off),
        Ok(other) => Err(EngineError::Invalid(format!(
            "NETD_PORT_RESERVE={other}: expected auto, hook or socket"
        ))),
    }
}

pub struct Engine {
    cfg: Config,
    nl: Netlink,
    net: NetworkState,
    state: State,
    store: Store,
    dp: Option<Dataplane>,
    reserved: reserve::Reservations,
    /// The interfaces served as uplinks now (`--uplink`'s, else every eligible one).
    uplinks: Vec<String>,
    /// Deletes detached containers' veths in the background.
    reaper: crate::wiring::reaper::VethReaper,
    /// Veths netd created or retired lately: their host events are its own
    /// ([`Engine::host_changed`]).
    recent_links: host_events::RecentLinks,
    /// Between [`Engine::open`] and the end of [`Engine::reconcile_start`].
    reconciling: bool,
    /// Endpoints [`Engine::open`] changed (binding ids given to old state): recorded by
    /// [`Engine::reconcile_start`].
    unsaved: Vec<String>,
    /// Addresses, links and joiners of `state.endpoints`, kept by [`Engine::add_endpoint`]
    /// and [`Engine::take_endpoint`].
    index: index::EndpointIndex,
}

impl Engine {
    /// Starts the engine in the calling thread's network namespace: loads state, sets up the
    /// bridge, loads and attaches the dataplane, and reconciles endpoints whose namespaces
    /// vanished while the daemon was away ([`Engine::open`], then [`Engine::reconcile_start`]).
    pub async fn start(cfg: Config) -> Result<Self, EngineError> {
        let mut engine = Self::open(cfg).await?;
        engine.reconcile_start().await?;
        Ok(engine)
    }

    /// The first half of [`Engine::start`], the part read requests need: loads state, sets up
    /// the bridges and the uplinks, loads (or reuses) the dataplane's programs. The endpoints
    /// are not reconciled yet ([`Engine::reconciling`]): until [`Engine::reconcile_start`] has
    /// run, the engine may only be read.
    pub async fn open(cfg: Config) -> Result<Self, EngineError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| {
            EngineError::Internal(format!(
                "cannot create state dir {}: {e}",
                cfg.state_dir.display()
            ))
        })?;
        let mut t = timing::Phases::new();
        let (store, mut st) = Store::open(&cfg.state_dir)?;
        t.mark("state");
        let nl = Netlink::current()?;
        for u in &cfg.uplinks {
            nl.link_by_name(u)
                .await?
                .ok_or_else(|| EngineError::Invalid(format!("uplink {u} does not exist")))?;
        }
        let net = network::setup(&nl, &cfg).await?;
        if let Some(old) = &st.network {
            if old.bridge_addr != net.bridge_addr && !st.endpoints.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "the bridge address changed from {} to {} but {} containers are attached with the old one; \
                     detach them or start with --bip {}",
                    old.bridge_addr,
                    net.bridge_addr,
                    st.endpoints.len(),
                    old.bridge_addr
                )));
            }
        }
        if cfg.ip_forward {
            network::enable_ip_forward()?;
        }
        if cfg.dataplane == DataplaneMode::Ebpf {
            network::reserve_masq_ports(cfg.masq_ports)?;
        }
        st.network = Some(net.clone());
        t.mark("bridge");
        let dp = match cfg.dataplane {
            DataplaneMode::None => None,
            DataplaneMode::Ebpf => {
                let mut dp = Dataplane::open_with(
                    &DataplaneConfig {
                        pin_dir: cfg.bpffs.clone(),
                        ct_max: cfg.ct_max,
                    },
                    cfg.tc_attach,
                )?;
                // Host-local access to published ports (the docker-proxy replacement).
                let cgroup = cfg.cgroup.clone().unwrap_or_else(sock::default_cgroup);
                let cookie = sock::netns_cookie().map_err(|e| {
                    EngineError::Internal(format!("cannot read the network namespace cookie: {e}"))
                })?;
                let bind = reserve_mode_wanted()?;
                let hooked = dp.attach_sock_hooks_with(&cgroup, cookie, bind)?;
                Some((dp, hooked))
            }
        };
        let (dp, hooked) = match dp {
            Some((dp, hooked)) => (Some(dp), hooked),
            None => (None, false),
        };
        let index = index::EndpointIndex::build(&st.endpoints);
        let mut engine = Self {
            cfg,
            nl,
            net,
            state: st,
            store,
            dp,
            reserved: reserve::Reservations::default(),
            uplinks: Vec::new(),
            reaper: crate::wiring::reaper::VethReaper::new(),
            recent_links: Default::default(),
            reconciling: true,
            unsaved: Vec::new(),
            index,
        };
        if hooked {
            let published: Vec<_> = engine
                .state
                .endpoints
                .values()
                .filter(|e| e.reserve_ports)
                .flat_map(|e| e.ports.iter().cloned())
                .collect();
            engine.reserved = reserve::Reservations::hooked(&published);
        }
        t.mark("dataplane_load");
        let want = engine.wanted_uplinks().await?;
        engine.apply_uplinks(want)?;
        t.mark("uplinks");
        // State from before binding ids: give every binding its own id (reservations and
        // per-binding counters are keyed by it).
        for ep in engine.state.endpoints.values_mut() {
            for b in ep.ports.iter_mut().filter(|b| b.id == 0) {
                b.id = engine.state.next_binding_id;
                engine.state.next_binding_id += 1;
                if engine.unsaved.last() != Some(&ep.name) {
                    engine.unsaved.push(ep.name.clone());
                }
            }
        }
        if engine.dp.is_some() && engine.reserved.mode() == reserve::Mode::Sockets {
            reserve::raise_nofile_limit();
            for ep in engine.state.endpoints.values().filter(|e| e.reserve_ports) {
                if let Err(e) = engine.reserved.reserve_all(&ep.ports) {
                    tracing::warn!(container = %ep.name, "published port not reserved: {e}");
                }
            }
        }
        if engine.dp.is_some() {
            // The IPv6 side of the bindings of containers without IPv6 (NAT46 relays).
            for ep in engine.state.endpoints.values().filter(|e| e.reserve_ports) {
                let Some(ip) = ep.ip else { continue };
                if let Err(e) = engine.reserved.start_relays(&ep.ports, ip) {
                    tracing::warn!(container = %ep.name, "published port not relayed to IPv4: {e}");
                }
            }
        }
        engine.setup_networks().await?;
        engine.setup_ipv6().await?;
        t.mark("networks");
        t.log(
            "open",
            &format!("{} endpoints", engine.state.endpoints.len()),
        );
        Ok(engine)
    }

    /// Whether [`Engine::reconcile_start`] is still to run (or running).
    pub fn reconciling(&self) -> bool {
        self.reconciling
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Records a change: the daemon-wide settings when they changed, and the endpoints
    /// `touched` names (every endpoint the change added, altered or removed).
    fn persist(&mut self, touched: &[Touched<'_>]) -> Result<(), EngineError> {
        self.store
            .commit(&mut self.state, touched)
            .map_err(Into::into)
    }

    /// Syncs the state journal to disk now (the daemon calls it before it exits).
    /// Detached containers' veths still being deleted are waited for (a few seconds at most):
    /// a daemon that exits leaves none behind; then the deleting threads stop.
    pub fn flush_state(&self) -> Result<(), EngineError> {
        if !self.reaper.shutdown(std::time::Duration::from_secs(5)) {
            tracing::warn!(
                left = self.reaper.pending(),
                "detached containers' veths still being deleted at exit"
            );
        }
        self.store.flush().map_err(Into::into)
    }

    /// Who has `ip`: an endpoint (not a joiner, which shares its target's), or a hold
    /// ([`Engine::hold_address`]). O(1): the allocator asks it for each address it tries.
    fn owner_of_ip(&self, ip: Ipv4Addr) -> Option<String> {
        self.index
            .owner4(ip)
            .map(str::to_owned)
            .or_else(|| self.state.held.get(&ip).cloned())
    }

    /// Puts `ep` into the state (and its addresses and links into the index).
    fn add_endpoint(&mut self, ep: Endpoint) {
        if let Some(old) = self.state.endpoints.remove(&ep.name) {
            self.index.remove(&old);
        }
        self.index.insert(&ep);
        self.state.endpoints.insert(ep.name.clone(), ep);
    }

    /// Takes endpoint `name` out of the state (and out of the index).
    fn take_endpoint(&mut self, name: &str) -> Option<Endpoint> {
        let ep = self.state.endpoints.remove(name)?;
        self.index.remove(&ep);
        Some(ep)
    }

    pub fn list(&self) -> Vec<EndpointView> {
        self.state
            .endpoints
            .values()
            .map(|e| self.view(e))
            .collect()
    }

    pub fn inspect(&self, name: &str) -> Result<EndpointView, EngineError> {
        self.state
            .endpoints
            .get(name)
            .map(|e| self.view(e))
            .ok_or_else(|| not_found(name))
    }

    fn view(&self, e: &Endpoint) -> EndpointView {
        view::endpoint_view(
            e,
            self.segment(e.network.as_deref()).bridge_addr.prefix_len(),
        )
    }

    pub fn status(&self) -> Result<Status, EngineError> {
        let ebpf = match &self.dp {
            Some(dp) => {
                // One listing of the interfaces (a dump of every link) for both.
                let interfaces = crate::dataplane::clsact::interfaces();
                let mut v = serde_json::to_value(dp.status_of(&interfaces)?)
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                let stats = dp.interface_stats_of(&interfaces)?;
                let hooks = dp.sock_hooks()?;
                let conv = |e: serde_json::Error| EngineError::Internal(e.to_string());
                if let serde_json::Value::Object(m) = &mut v {
                    m.insert(
                        "interfaces".into(),
                        serde_json::to_value(stats).map_err(conv)?,
                    );
                    m.insert(
                        "socket_hooks".into(),
                        serde_json::to_value(hooks).map_err(conv)?,
                    );
                }
                v
            }
            None => serde_json::json!({
                "programs": [], "ahead": [], "xdp": [], "maps": [], "interfaces": [], "socket_hooks": []
            }),
        };
        Ok(self.status_with(ebpf))
    }

    /// [`Engine::status`] without the dataplane's lists (attached programs, maps, counters:
    /// with thousands of veths, tens of thousands of netlink and bpf calls), for the answer
    /// of a daemon that is still reconciling: where the pins are, how programs attach, and
    /// whether they were loaded or reused.
    pub fn brief_status(&self) -> Status {
        let ebpf = match &self.dp {
            Some(dp) => serde_json::json!({
                "pin_dir": self.cfg.bpffs,
                "tc_attach": dp.tc_attach(),
                "program_origin": dp.program_origin(),
                "object": crate::dataplane::object_hash(),
            }),
            None => serde_json::json!({}),
        };
        self.status_with(ebpf)
    }

    fn status_with(&self, ebpf: serde_json::Value) -> Status {
        Status {
            state: if self.reconciling {
                "reconciling".into()
            } else {
                "ready".into()
            },
            bridge: BridgeView {
                name: self.net.bridge.clone(),
                subnet: self.net.bridge_addr.trunc().to_string(),
                ip: self.net.bridge_addr.addr().to_string(),
                pool: self.net.pool.to_string(),
                mtu: self.net.mtu,
                owned: self.net.owned,
            },
            uplinks: self.uplinks.clone(),
            dataplane: match self.cfg.dataplane {
                DataplaneMode::Ebpf => "ebpf".into(),
                DataplaneMode::None => "none".into(),
            },
            endpoints: self.state.endpoints.len(),
            icc: self.cfg.icc,
            ip_masq: self.cfg.ip_masq,
            ip_forward: self.cfg.ip_forward,
            ebpf,
        }
    }
}

/// One row per published port (a range binding expands to its ports); a binding on 0.0.0.0
/// and `[::]` ([`state::PortBinding::also_v6`]) says so in `host_ip6`.
pub(crate) fn port_views(bindings: &[state::PortBinding]) -> Vec<PortView> {
    bindings
        .iter()
        .flat_map(|b| {
            (0..b.count).map(move |i| PortView {
                container_port: b.container_port + i,
                proto: b.proto.to_string(),
                host_ip: b.host_ip.to_string(),
                host_port: b.host_port + i,
                host_ip6: b
                    .also_v6
                    .then(|| std::net::Ipv6Addr::UNSPECIFIED.to_string()),
            })
        })
        .collect()
}

fn not_found(name: &str) -> EngineError {
    EngineError::NotFound(format!("no such container: {name}"))
}
