//! S0, the floor: no NAT and no filtering. The outside namespace routes the container subnet
//! via the host's uplink address and every path goes straight to the container (or outside)
//! address: the physical limit of the topology. On the dual-stack topology the outside also
//! routes the container IPv6 prefix via the host (the topology adds that route for every
//! system), and the IPv6 paths go straight to the container's global address.

use std::time::Duration;

use anyhow::Result;

use super::{Memory, Route, System};
use crate::paths::PathId;
use crate::topology::{SUBNET, TopoOpts, Topology, catch};

pub struct Floor;

impl System for Floor {
    fn id(&self) -> &'static str {
        "S0"
    }
    fn topo_opts(&self, icc: bool, ipv6: bool) -> TopoOpts {
        TopoOpts::v4("none", icc, false).with_ipv6(ipv6)
    }
    fn setup(&mut self, t: &Topology) -> Result<()> {
        catch("route", || t.world.route_outside_to(SUBNET))
    }
    fn route(&self, _path: PathId) -> Route {
        Route::Direct
    }
    fn nat_and_filters(&self) -> bool {
        false
    }
    fn pids(&self, _t: &Topology) -> Vec<u32> {
        vec![]
    }
    fn publish_fillers(&mut self, _t: &Topology) -> Result<Duration> {
        Ok(Duration::ZERO)
    }
    fn publish_one_more(&mut self, _t: &Topology) -> Result<Duration> {
        Ok(Duration::ZERO)
    }
    fn memory(&self, _t: &Topology) -> Option<Memory> {
        None
    }
}
