//! Publishing more ports on an attached container (`netd publish`), without re-wiring it: only
//! the port table changes, so one more port costs one table write.

use super::state::PortBinding;
use super::{Engine, EngineError, not_found, ports};
use crate::api::types::PortView;
use crate::spec::{self, NetMode, PublishSpec};

impl Engine {
    pub async fn publish(
        &mut self,
        name: &str,
        specs: &[String],
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
        let mut publish: Vec<PublishSpec> =
            specs.iter().map(|p| p.parse()).collect::<Result<_, _>>()?;
        for p in &mut publish {
            p.host_ip.get_or_insert(self.cfg.ip);
        }
        let held: Vec<(&str, &PortBinding)> = self
            .state
            .endpoints
            .values()
            .flat_map(|e| e.ports.iter().map(move |b| (e.name.as_str(), b)))
            .collect();
        let ephemeral = spec::read_ephemeral_ports()?;
        let mut new = ports::allocate(name, &publish, false, &[], self.cfg.ip, &held, &ephemeral)
            .map_err(|e| EngineError::Conflict(e.to_string()))?;
        let next_id = self.state.next_binding_id;
        for b in &mut new {
            b.id = self.state.next_binding_id;
            self.state.next_binding_id += 1;
        }
        if self.dp.is_some() {
            if let Err(msg) = self.reserved.reserve_all(&new) {
                self.state.next_binding_id = next_id;
                return Err(EngineError::Conflict(msg));
            }
        }
        let ep = self.state.endpoints.get_mut(name).expect("checked");
        let (old_ports, old_publish) = (ep.ports.len(), ep.publish.len());
        ep.ports.extend(new.iter().cloned());
        ep.publish.extend(publish);
        let result = self.sync_ports().and_then(|()| self.persist());
        if let Err(e) = result {
            let ep = self.state.endpoints.get_mut(name).expect("checked");
            ep.ports.truncate(old_ports);
            ep.publish.truncate(old_publish);
            self.state.next_binding_id = next_id;
            self.reserved.release(&new);
            if let Err(e2) = self.sync_ports() {
                tracing::warn!("rollback: restoring the port table: {e2}");
            }
            return Err(e);
        }
        tracing::info!(container = %name, ports = specs.len(), "published");
        Ok(super::port_views(&new))
    }
}
