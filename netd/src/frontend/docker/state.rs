//! What the Docker front end remembers across restarts (dockerd does not replay CreateNetwork):
//! pools, Docker network ids → netd networks, endpoint ids → netd endpoints.
//! Kept in `<state dir>/docker.json`, written atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pool {
    pub subnet: Ipv4Net,
    pub sub_pool: Option<Ipv4Net>,
    /// The gateway handed out for the pool (the network's bridge address).
    pub gateway: Option<Ipv4Addr>,
}

/// An IPv6 pool (`--ipv6 --subnet PREFIX`): its gateway is the bridge's `fe80::1`, so only
/// the addresses Docker was handed are kept (held until ReleaseAddress).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pool6 {
    pub subnet: Ipv6Net,
    #[serde(default)]
    pub held: BTreeSet<Ipv6Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    /// The netd network's name.
    pub name: String,
    pub pool_id: String,
    /// The IPv6 pool of a `--ipv6` network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool6_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    /// The netd endpoint's name.
    pub name: String,
    pub ip: Ipv4Addr,
    /// The IPv6 address Docker's IPAM request got (CreateEndpoint's AddressIPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    pub mac: [u8; 6],
    /// `driver-opt=netd.link=...`: the link allowances Join gives the netd endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<crate::spec::LinkSpec>,
    /// CreateEndpoint's exposed ports (Join adds its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<crate::spec::ExposeSpec>,
    /// Between Join and Leave: the netd endpoint exists.
    pub joined: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct DockerState {
    #[serde(default)]
    pub pools: BTreeMap<String, Pool>,
    #[serde(default)]
    pub pools6: BTreeMap<String, Pool6>,
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
    #[serde(skip)]
    pub path: PathBuf,
}

impl DockerState {
    pub fn load(state_dir: &Path) -> Result<Self, String> {
        let path = state_dir.join("docker.json");
        let mut st: DockerState = match std::fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s)
                .map_err(|e| format!("{}: invalid JSON: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerState::default(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        st.path = path;
        Ok(st)
    }

    pub fn save(&self) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("serialises");
        crate::fsutil::write_atomic(&self.path, &text)
            .map_err(|e| format!("writing {}: {e}", self.path.display()))
    }

    /// The netd network of a pool, once CreateNetwork made it.
    pub fn network_of_pool(&self, pool_id: &str) -> Option<&Network> {
        self.networks
            .values()
            .find(|n| n.pool_id == pool_id || n.pool6_id.as_deref() == Some(pool_id))
    }
}
