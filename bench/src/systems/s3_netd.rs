//! S3: netd with `--dataplane ebpf`; srv's ports are published with `netd attach -p`.

use std::time::Duration;

use anyhow::Result;

use super::{Memory, Route, System};
use crate::memory::{bpf_held, rss_bytes};
use crate::paths::PathId;
use crate::topology::{TopoOpts, Topology};

pub struct Netd;

impl System for Netd {
    fn id(&self) -> &'static str {
        "S3"
    }
    fn topo_opts(&self, icc: bool) -> TopoOpts {
        TopoOpts {
            dataplane: "ebpf",
            icc,
            publish_in_netd: true,
        }
    }
    fn setup(&mut self, _t: &Topology) -> Result<()> {
        Ok(())
    }
    fn route(&self, path: PathId) -> Route {
        match path {
            PathId::P4 | PathId::P4Link | PathId::P5 => Route::Direct,
            _ => Route::Published,
        }
    }
    fn nat_and_filters(&self) -> bool {
        true
    }
    fn pids(&self, t: &Topology) -> Vec<u32> {
        t.daemon.pid().into_iter().collect()
    }
    /// The fillers were published by the attach calls themselves: their time is the cost.
    fn publish_fillers(&mut self, _t: &Topology, attach_took: Duration) -> Result<Duration> {
        Ok(attach_took)
    }
    /// Publishing one more port is the attach call itself.
    fn publish_one_more(&mut self, _t: &Topology, attach_took: Duration) -> Result<Duration> {
        Ok(attach_took)
    }
    fn memory(&self, t: &Topology) -> Option<Memory> {
        let pid = t.daemon.pid()?;
        Some(Memory {
            processes: 1,
            rss_bytes: rss_bytes(pid)?,
            bpf_map_bytes: bpf_held(pid).map_bytes(),
        })
    }
}
