//! Request and response bodies of the API.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `POST /v1/endpoints`: what `netd attach` sends. Values are strings as the user typed them;
/// the engine validates them all before it changes anything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachRequest {
    pub name: String,
    pub netns: PathBuf,
    pub net: String,
    pub hostname: Option<String>,
    pub mac_address: Option<String>,
    pub ip: Option<String>,
    pub etc_dir: Option<PathBuf>,
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub expose: Vec<String>,
    pub link: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
}

/// `POST /v1/p2p`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct P2pRequest {
    pub name1: String,
    pub name2: String,
}

/// One published port as `netd inspect` and `netd port` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub container_port: u16,
    pub proto: String,
    pub host_ip: String,
    pub host_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposeView {
    pub port: String,
    pub proto: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    pub name: String,
    pub alias: String,
}

/// `netd inspect NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointView {
    pub name: String,
    pub netns: PathBuf,
    pub net: String,
    pub ip: Option<String>,
    pub prefix_len: Option<u8>,
    pub mac: Option<String>,
    pub gateway: Option<String>,
    pub hostname: String,
    pub host_ifname: Option<String>,
    pub etc_dir: PathBuf,
    pub ports: Vec<PortView>,
    pub exposed: Vec<ExposeView>,
    pub links: Vec<LinkView>,
    pub p2p: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BridgeView {
    pub name: String,
    pub subnet: String,
    pub ip: String,
    pub pool: String,
    pub mtu: u32,
    pub owned: bool,
}

/// `netd status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub bridge: BridgeView,
    pub uplinks: Vec<String>,
    pub dataplane: String,
    pub endpoints: usize,
    pub icc: bool,
    pub ip_masq: bool,
    pub ip_forward: bool,
    /// Attached programs, maps and counters (empty with `--dataplane none`).
    #[serde(flatten)]
    pub ebpf: serde_json::Value,
}

/// Error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

/// `POST /v1/filters`: `action` is allow, deny or rm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilterRequest {
    pub action: String,
    pub cidrs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DropCount {
    pub reason: String,
    pub code: u32,
    pub packets: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindingStats {
    pub container: String,
    pub proto: String,
    pub host_ip: String,
    pub host_port: String,
    pub container_port: String,
    pub packets: u64,
    pub bytes: u64,
}

/// `netd stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsView {
    pub drops: Vec<DropCount>,
    pub bindings: Vec<BindingStats>,
    pub interfaces: serde_json::Value,
}

/// `POST /v1/endpoints/NAME/ports`: publish more ports on an attached container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishRequest {
    pub publish: Vec<String>,
}
