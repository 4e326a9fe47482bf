//! The systems under test, behind one trait. Each is installed on a freshly wired
//! [`Topology`](crate::topology::Topology) (netd wires bridge, veths and addresses; for S0–S2
//! with `--dataplane none`), measured, and torn down with the topology.
//!
//! - [`s0_floor`]: no NAT and no filtering; the outside routes to the container subnet.
//! - [`s1_iptables`]: the iptables ruleset Docker 20.10 writes (userland-proxy=false), with
//!   iptables-legacy or iptables-nft, inside the host namespace.
//! - [`s2_proxy`]: one real `docker-proxy` per published port in the host namespace.
//! - [`s3_netd`]: netd with `--dataplane ebpf`.

pub mod s0_floor;
pub mod s1_iptables;
pub mod s2_proxy;
pub mod s3_netd;

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::paths::PathId;
use crate::topology::{TopoOpts, Topology};

/// How a path reaches the server under a system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Straight to the container's (or outside's) address and port.
    Direct,
    /// Through the published host port (host IP or 127.0.0.1).
    Published,
    /// The system does not handle this path (e.g. docker-proxy and container egress).
    NotApplicable,
}

/// Memory a system uses for what it publishes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Processes that implement the publications (netd: 1; docker-proxy: one per port).
    pub processes: u32,
    /// Summed VmRSS of those processes.
    pub rss_bytes: u64,
    /// BPF map memory (memlock of the maps the daemon holds).
    pub bpf_map_bytes: u64,
}

pub trait System {
    /// Short id used in results: S0, S1-legacy, S1-nft, S2, S3.
    fn id(&self) -> &'static str;
    /// How the topology must be wired for this system.
    fn topo_opts(&self, icc: bool) -> TopoOpts;
    /// Installs the system on a wired topology (routes, rules, proxies).
    fn setup(&mut self, t: &Topology) -> Result<()>;
    /// Removes what `setup` installed that the topology's drop would not.
    fn teardown(&mut self, _t: &Topology) {}
    /// How `path` is reached under this system.
    fn route(&self, path: PathId) -> Route;
    /// Whether the system claims NAT and filtering (masquerade, client IP kept on DNAT,
    /// icc=false isolation); S0 (the floor) and S2 do not.
    fn nat_and_filters(&self) -> bool;
    /// Long-lived processes of the system (CPU and memory accounting).
    fn pids(&self, t: &Topology) -> Vec<u32>;
    /// Publishes the topology's filler ports (already attached); returns the time taken.
    fn publish_fillers(&mut self, t: &Topology, attach_took: Duration) -> Result<Duration>;
    /// Publishes one more port to the last attached filler ("onemore"); returns the time taken.
    fn publish_one_more(&mut self, t: &Topology, attach_took: Duration) -> Result<Duration>;
    /// Memory used for the publications now in place.
    fn memory(&self, t: &Topology) -> Option<Memory>;
}

/// All systems in their canonical order.
pub fn all() -> Vec<Box<dyn System>> {
    vec![
        Box::new(s0_floor::Floor),
        Box::new(s1_iptables::DockerRules::new(s1_iptables::Backend::Legacy)),
        Box::new(s1_iptables::DockerRules::new(s1_iptables::Backend::Nft)),
        Box::new(s2_proxy::DockerProxy::default()),
        Box::new(s3_netd::Netd),
    ]
}

/// `items` rotated left by `k` (the order systems run in on repetition `k`).
pub fn rotated<T>(mut items: Vec<T>, k: usize) -> Vec<T> {
    if !items.is_empty() {
        let n = k % items.len();
        items.rotate_left(n);
    }
    items
}

#[cfg(test)]
mod tests {
    #[test]
    fn rotation_changes_who_goes_first() {
        assert_eq!(super::rotated(vec![0, 1, 2], 0), [0, 1, 2]);
        assert_eq!(super::rotated(vec![0, 1, 2], 1), [1, 2, 0]);
        assert_eq!(super::rotated(vec![0, 1, 2], 5), [2, 0, 1]);
    }
}
