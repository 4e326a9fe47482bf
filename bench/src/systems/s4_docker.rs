//! S4: Debian's dockerd 20.10 with netd as its network and IPAM driver (`docker network
//! create -d netd --ipam-driver netd`), srv started by `docker run --network benchnet -p ...`
//! with the host ports every system publishes (see [`crate::docker`]). netd is the default
//! daemon of S3 (`--dataplane ebpf`, fast path on); what differs is who made the container,
//! its veth and its publications: dockerd through netd's plugin API, not `netd attach -p`.
//!
//! Measured on P1, P2 and P6 only (the published paths a Docker user has); not in the sweep.
//! Without dockerd (`/usr/sbin/dockerd`, package docker.io) every run is "n/a".

use std::time::Duration;

use anyhow::{Result, bail};

use super::{Memory, Route, System};
use crate::paths::PathId;
use crate::topology::{TopoOpts, Topology};

/// The paths S4 is measured on.
pub const PATHS: &[PathId] = &[PathId::P1, PathId::P2, PathId::P6];

pub struct DockerNetd;

impl System for DockerNetd {
    fn id(&self) -> &'static str {
        "S4"
    }
    fn unavailable(&self) -> Option<String> {
        (!netd_tests::docker::dockerd_installed())
            .then(|| "S4 needs dockerd (/usr/sbin/dockerd): install docker.io".to_string())
    }
    fn topo_opts(&self, icc: bool, ipv6: bool) -> TopoOpts {
        TopoOpts {
            docker: true,
            ..TopoOpts::v4("ebpf", icc, false).with_ipv6(ipv6)
        }
    }
    /// Everything is in place once the topology is: dockerd published srv's ports.
    fn setup(&mut self, _t: &Topology) -> Result<()> {
        Ok(())
    }
    fn only_paths(&self) -> Option<&'static [PathId]> {
        Some(PATHS)
    }
    fn route(&self, path: PathId) -> Route {
        if PATHS.contains(&path) {
            Route::Published
        } else {
            Route::NotApplicable
        }
    }
    fn nat_and_filters(&self) -> bool {
        true
    }
    fn netd_dataplane(&self) -> bool {
        true
    }
    /// netd and dockerd.
    fn pids(&self, t: &Topology) -> Vec<u32> {
        t.daemon
            .pid()
            .into_iter()
            .chain(t.docker.as_ref().map(|d| d.pid()))
            .collect()
    }
    fn publish_fillers(&mut self, _t: &Topology) -> Result<Duration> {
        bail!("S4 is measured on P1, P2 and P6 only, not in the sweep")
    }
    fn publish_one_more(&mut self, _t: &Topology) -> Result<Duration> {
        bail!("S4 is measured on P1, P2 and P6 only, not in the sweep")
    }
    fn memory(&self, t: &Topology) -> Option<Memory> {
        super::s3_netd::netd_memory(t)
    }
}
