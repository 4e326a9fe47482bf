//! S3: netd with `--dataplane ebpf`; srv's ports are published with `netd attach -p`, the
//! sweep's with `netd publish` (one call per filler container, one spec per port).
//!
//! Variants measured on P1, P6, P1v6 and P6v6 only compare a daemon setting (the redirect fast path, when
//! the netd under test has `--fast-path`) against the default daemon (S3). The variant
//! `S3-nat46`, on P1v6 and P6v6 only, runs the daemon without `--ipv6`: srv is IPv4 only, so
//! its `[::]` publications go through netd's NAT46 relay (user space, as docker-proxy; the
//! server sees the bridge gateway, not the client, so the check is the echo only).

use std::time::Duration;

use anyhow::Result;

use super::{Memory, Route, System};
use crate::memory::{bpf_held, rss_bytes};
use crate::paths::PathId;
use crate::topology::{ONE_MORE_API_PORT, ONE_MORE_PORT, TopoOpts, Topology, port_specs};

pub struct Netd {
    id: &'static str,
    daemon_extra: &'static [&'static str],
    only_paths: Option<&'static [PathId]>,
    /// Containers get IPv6 addresses on the dual-stack topology (false: the NAT46 relay).
    ipv6_containers: bool,
}

impl Default for Netd {
    /// The default daemon: the system S3.
    fn default() -> Netd {
        Netd {
            id: "S3",
            daemon_extra: &[],
            only_paths: None,
            ipv6_containers: true,
        }
    }
}

/// The paths daemon variants are compared on.
pub const VARIANT_PATHS: &[PathId] = &[PathId::P1, PathId::P6, PathId::P1v6, PathId::P6v6];
/// The paths of the NAT46 variant.
pub const NAT46_PATHS: &[PathId] = &[PathId::P1v6, PathId::P6v6];

impl Netd {
    /// A variant of S3 with more daemon arguments, measured on [`VARIANT_PATHS`] only.
    pub fn variant(id: &'static str, daemon_extra: &'static [&'static str]) -> Netd {
        Netd {
            id,
            daemon_extra,
            only_paths: Some(VARIANT_PATHS),
            ipv6_containers: true,
        }
    }

    /// `S3-nat46`: IPv4-only containers published on `[::]` through the relay, on
    /// [`NAT46_PATHS`].
    pub fn nat46() -> Netd {
        Netd {
            id: "S3-nat46",
            daemon_extra: &[],
            only_paths: Some(NAT46_PATHS),
            ipv6_containers: false,
        }
    }
}

impl System for Netd {
    fn id(&self) -> &'static str {
        self.id
    }
    fn topo_opts(&self, icc: bool, ipv6: bool) -> TopoOpts {
        TopoOpts {
            daemon_extra: self.daemon_extra,
            ipv6_containers: ipv6 && self.ipv6_containers,
            ..TopoOpts::v4("ebpf", icc, true).with_ipv6(ipv6)
        }
    }
    fn setup(&mut self, _t: &Topology) -> Result<()> {
        Ok(())
    }
    fn only_paths(&self) -> Option<&'static [PathId]> {
        self.only_paths
    }
    fn route(&self, path: PathId) -> Route {
        match path {
            PathId::P4 | PathId::P4Link | PathId::P5 | PathId::P5v6 => Route::Direct,
            _ => Route::Published,
        }
    }
    /// The relay (S3-nat46) shows the container the gateway's address, as docker-proxy does.
    fn nat_and_filters(&self) -> bool {
        self.ipv6_containers
    }
    fn netd_dataplane(&self) -> bool {
        true
    }
    fn pids(&self, t: &Topology) -> Vec<u32> {
        t.daemon.pid().into_iter().collect()
    }
    /// One `netd publish fillK P:P/tcp ...` per filler container (up to 1000 specs each), like
    /// one `docker run -p` per container; the summed wall time of the calls.
    fn publish_fillers(&mut self, t: &Topology) -> Result<Duration> {
        let mut total = Duration::ZERO;
        for f in &t.fillers {
            total += t.netd_publish(&f.ep.c.name, &port_specs(&f.ports))?;
        }
        Ok(total)
    }
    /// `netd publish onemore 40000:80/tcp`: the CLI's wall time, process start included.
    fn publish_one_more(&mut self, t: &Topology) -> Result<Duration> {
        t.netd_publish("onemore", &[format!("{ONE_MORE_PORT}:80/tcp")])
    }
    /// `POST /v1/endpoints/onemore/ports` for 40001:80/tcp on the daemon's socket.
    fn publish_one_more_api(&mut self, t: &Topology) -> Result<Option<Duration>> {
        t.api_publish("onemore", &[format!("{ONE_MORE_API_PORT}:80/tcp")])
            .map(Some)
    }
    fn memory(&self, t: &Topology) -> Option<Memory> {
        netd_memory(t)
    }
}

/// The netd daemon's memory: its RSS and the BPF maps it holds (S3 and S4 alike).
pub fn netd_memory(t: &Topology) -> Option<Memory> {
    let pid = t.daemon.pid()?;
    Some(Memory {
        processes: 1,
        rss_bytes: rss_bytes(pid)?,
        bpf_map_bytes: bpf_held(pid).map_bytes(),
    })
}
