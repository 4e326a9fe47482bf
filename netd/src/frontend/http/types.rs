//! Request and response bodies of the API. Requests carry strings as the user typed them; the
//! HTTP front end parses them ([`super::convert`]) into the engine's typed requests. Answers are
//! the engine's own views.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::engine::view::*;

/// `POST /v1/endpoints`: what `netd attach` sends. Values are strings as the user typed them;
/// [`super::convert`] parses them all into an [`crate::engine::EndpointSpec`] before the engine
/// is called.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachRequest {
    pub name: String,
    pub netns: PathBuf,
    /// `/proc/<pid>/fd/<n>` of the caller, open on the namespace for the duration of the
    /// request; used instead of `netns` to reach it (see `EndpointSpec::netns_handle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_handle: Option<PathBuf>,
    pub net: String,
    /// The container-side interface name (default eth0).
    pub ifname: Option<String>,
    pub hostname: Option<String>,
    pub mac_address: Option<String>,
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    pub etc_dir: Option<PathBuf>,
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub expose: Vec<String>,
    pub link: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    /// false: the caller's runtime holds the published host ports (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserve_ports: Option<bool>,
}

/// `POST /v1/p2p`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct P2pRequest {
    pub name1: String,
    pub name2: String,
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

/// `POST /v1/endpoints/NAME/ports`: publish more ports on an attached container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishRequest {
    pub publish: Vec<String>,
}

/// `POST /v1/networks`: what `netd network create` sends (Docker's flag names).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkCreateRequest {
    pub name: String,
    /// Only "bridge" (the default).
    pub driver: Option<String>,
    pub subnet: Option<String>,
    /// The IPv6 subnet of a dual-stack network (needs `ipv6`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_v6: Option<String>,
    pub ipv6: bool,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    /// `-o KEY=VALUE` driver options.
    pub options: BTreeMap<String, String>,
    pub internal: bool,
}
