//! The one port pipeline of attach and `netd publish`: fill in the default host address,
//! refuse what the dataplane cannot program, allocate host ports against every binding held,
//! number the bindings and reserve their ports against host processes.
//!
//! Publishing on an attached container does not re-wire it: only the port table and the link
//! allowances (a linked container may reach the container side of a published port) change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::state::PortBinding;
use super::view::PortView;
use super::{Engine, EngineError, Touched, not_found, ports};
use crate::spec::{self, ExposeSpec, NetMode, PublishSpec};

impl Engine {
    /// Allocates the host ports of `publish` (and of `exposed` with `-P`) for container `name`,
    /// on `network`, whose global IPv6 address is `v6` (None: IPv4 only). Host addresses left
    /// out become the network's `host_binding_ipv4`, else the daemon's `--ip`, written into
    /// `publish`; without either they stay out, and the binding takes 0.0.0.0 and [::] too. For a container without IPv6 the IPv6 side (that `[::]`, or
    /// an IPv6 host address) is the NAT46 relay ([`super::relay46`]), at most
    /// [`super::relay46::PORTS_MAX`] ports: past them (or past
    /// [`super::relay46::DEFAULT_RANGE_MAX`] ports in one binding) a binding without a host
    /// address is published on 0.0.0.0 only, and one with an IPv6 host address is refused.
    pub(super) fn plan_ports(
        &self,
        name: &str,
        network: Option<&str>,
        publish: &mut [PublishSpec],
        publish_all: bool,
        exposed: &[ExposeSpec],
        v6: Option<Ipv6Addr>,
    ) -> Result<Vec<PortBinding>, EngineError> {
        let default_host = network
            .and_then(|n| self.state.networks.get(n))
            .and_then(|n| n.host_ip.map(IpAddr::V4))
            .or(self.cfg.ip);
        for p in publish.iter_mut() {
            if p.host_ip.is_none() {
                p.host_ip = default_host;
            }
        }
        let held: Vec<(&str, &PortBinding)> = self
            .state
            .endpoints
            .values()
            .flat_map(|e| e.ports.iter().map(move |b| (e.name.as_str(), b)))
            .collect();
        let ephemeral = spec::read_ephemeral_ports()?;
        let default_ip = default_host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let relayed: u32 = held
            .iter()
            .filter(|(_, b)| b.relay46)
            .map(|(_, b)| u32::from(b.count))
            .sum();
        let mut out = ports::allocate(
            name,
            publish,
            publish_all,
            exposed,
            default_ip,
            &held,
            &ephemeral,
        )
        .map_err(|e| EngineError::Conflict(e.to_string()))?;
        // The bindings of specs without a host address, and every -P one (after them).
        let no_addr =
            |i: usize| default_host.is_none() && publish.get(i).is_none_or(|p| p.host_ip.is_none());
        let mut budget = super::relay46::PORTS_MAX.saturating_sub(relayed);
        if v6.is_some() {
            for (i, b) in out.iter_mut().enumerate() {
                b.also_v6 = no_addr(i);
                // The IPv6 side is DNAT6 in eBPF. The relay's socket on it also serves the
                // host-local IPv6 the socket hooks cannot redirect (unconnected UDP `sendto`
                // to `[::1]`, the host's own IPv6 addresses): outside traffic is translated
                // before it could reach that socket. Past the relay's budget, only that
                // host-local part goes without.
                let count = u32::from(b.count);
                if (b.also_v6 || b.host_ip.is_ipv6())
                    && b.count <= super::relay46::DEFAULT_RANGE_MAX
                    && count <= budget
                {
                    b.relay46 = true;
                    budget -= count;
                }
            }
            return Ok(out);
        }
        for (i, b) in out.iter_mut().enumerate() {
            let count = u32::from(b.count);
            if b.host_ip.is_ipv6() {
                if count > budget {
                    return Err(relay_full(name, b, budget));
                }
                b.relay46 = true;
                budget -= count;
            } else if no_addr(i) && b.count <= super::relay46::DEFAULT_RANGE_MAX && count <= budget
            {
                b.also_v6 = true;
                b.relay46 = true;
                budget -= count;
            }
        }
        Ok(out)
    }

    /// Numbers new bindings and reserves their host ports (with the eBPF dataplane, which is
    /// what makes them reachable), starting the NAT46 relays of the relayed ones to the
    /// container's IPv4 address `target`. Returns the binding id to go back to if the change
    /// is undone ([`Engine::release_ports`]); on failure nothing stays taken.
    pub(super) fn take_ports(
        &mut self,
        bindings: &mut [PortBinding],
        reserve: bool,
        target: Option<Ipv4Addr>,
        has_v6: bool,
    ) -> Result<u32, EngineError> {
        let next_id = self.state.next_binding_id;
        for b in bindings.iter_mut() {
            b.id = self.state.next_binding_id;
            self.state.next_binding_id += 1;
        }
        if !(self.dp.is_some() && reserve && target.is_some()) {
            // No relay (no eBPF dataplane, or the runtime holds the ports itself): a default
            // binding of a container without IPv6 is 0.0.0.0 only, as before NAT46; one with
            // IPv6 keeps its DNAT6 side.
            for b in bindings.iter_mut().filter(|b| b.relay46) {
                b.relay46 = false;
                if !has_v6 && b.host_ip.is_ipv4() {
                    b.also_v6 = false;
                }
            }
        }
        if self.dp.is_some() && reserve {
            let taken = self
                .reserved
                .reserve_all(bindings)
                .and_then(|()| match target {
                    Some(ip) => self.reserved.start_relays(bindings, ip).inspect_err(|_| {
                        self.reserved.release(bindings);
                    }),
                    None => Ok(()),
                });
            if let Err(msg) = taken {
                self.state.next_binding_id = next_id;
                return Err(EngineError::Conflict(msg));
            }
        }
        Ok(next_id)
    }

    /// Undoes [`Engine::take_ports`].
    fn release_ports(&mut self, bindings: &[PortBinding], next_id: u32) {
        self.state.next_binding_id = next_id;
        self.reserved.release(bindings);
    }

    /// `netd publish NAME SPEC...`.
    pub async fn publish(
        &mut self,
        name: &str,
        specs: &[PublishSpec],
    ) -> Result<Vec<PortView>, EngineError> {
        if specs.is_empty() {
            return Err(EngineError::Invalid(
                "netd publish: give at least one port spec".into(),
            ));
        }
        let ep = self
            .state
            .endpoints
            .get(name)
            .ok_or_else(|| not_found(name))?;
        if ep.net != NetMode::Bridge || ep.ip.is_none() {
            return Err(EngineError::Invalid(format!(
                "{name} is --net {}: only --net bridge containers can publish ports",
                ep.net
            )));
        }
        let mut publish = specs.to_vec();
        let v6 = ep.ipv6.as_ref().and_then(|l| l.global);
        let network = ep.network.clone();
        let mut new = self.plan_ports(name, network.as_deref(), &mut publish, false, &[], v6)?;
        // `netd publish` on a terminal shows "k of N ports" (GET /v1/progress): each port
        // counts once its host port is reserved, all of them once the table is written.
        let steps = &crate::ops::progress::STEPS;
        let total: u64 = new.iter().map(|b| u64::from(b.count)).sum();
        steps.begin_for(&format!("publish {name}"), total, "ports");
        let next_id = self.take_ports(&mut new, ep.reserve_ports, ep.ip, v6.is_some())?;
        let ep = self.state.endpoints.get_mut(name).expect("checked");
        let (old_ports, old_publish) = (ep.ports.len(), ep.publish.len());
        let added = Touched::PortsAdded {
            endpoint: name,
            ports: new.len(),
            publish: publish.len(),
        };
        ep.ports.extend(new.iter().cloned());
        ep.publish.extend(publish);
        let result = self
            .sync_added_ports(name, &new)
            .and_then(|()| self.sync_links_of(name))
            .and_then(|()| self.persist(&[added]));
        if let Err(e) = result {
            let ep = self.state.endpoints.get_mut(name).expect("checked");
            ep.ports.truncate(old_ports);
            ep.publish.truncate(old_publish);
            self.release_ports(&new, next_id);
            if let Err(e2) = self.sync_published(name) {
                tracing::warn!("rollback: restoring the port table: {e2}");
            }
            return Err(e);
        }
        steps.finish();
        steps.end();
        tracing::info!(container = %name, ports = specs.len(), "published");
        Ok(super::port_views(&new))
    }

    /// After `name`'s bindings changed: the port table, and the link allowances of the
    /// containers linked to it when there are any.
    pub(super) fn sync_published(&mut self, name: &str) -> Result<(), EngineError> {
        self.sync_ports()?;
        self.sync_links_of(name)
    }

    /// The link allowances of the containers linked to `name`, if there are any.
    fn sync_links_of(&mut self, name: &str) -> Result<(), EngineError> {
        let linked = self
            .state
            .endpoints
            .values()
            .any(|e| e.links.iter().any(|l| l.name == name));
        if linked {
            self.sync_links()?;
        }
        Ok(())
    }
}

fn relay_full(name: &str, b: &PortBinding, left: u32) -> EngineError {
    EngineError::Invalid(format!(
        "[{}]:{}/{}: \"{name}\" has no IPv6 address, so its IPv6 side is relayed to IPv4 by the daemon (NAT46), which serves at most {} ports; {left} are left and this binding needs {}",
        b.host_ip,
        b.host_port,
        b.proto,
        super::relay46::PORTS_MAX,
        b.count
    ))
}
