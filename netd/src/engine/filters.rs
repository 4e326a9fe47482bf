//! Source filters (the seed's DOCKER-chain example: "only 8.8.8.8 may reach the containers"),
//! stats and connection-tracking views.

use ipnet::Ipv4Net;

use super::state::Filters;
use super::view::{BindingStats, CtSourceView, DropCount, StatsView};
use super::{CtProto, CtQuery, Engine, EngineError, FilterAction, FilterChange};
use crate::dataplane::CtFlow;

/// Sources `netd stats` lists under their `--ct-per-source-max` budget.
const CT_SOURCES_SHOWN: usize = 20;

impl Engine {
    pub fn filters(&self) -> Filters {
        self.state.filters.clone()
    }

    /// `netd filter allow|deny|rm CIDR...`: the lists change together with the maps, or not at
    /// all. netd never changes the lists by itself.
    pub async fn change_filters(&mut self, req: FilterChange) -> Result<Filters, EngineError> {
        if req.cidrs.is_empty() {
            return Err(EngineError::Invalid(format!(
                "netd filter {}: give at least one CIDR",
                req.action.as_str()
            )));
        }
        let nets: Vec<Ipv4Net> = req.cidrs.iter().map(Ipv4Net::trunc).collect();
        let old = self.state.filters.clone();
        let f = &mut self.state.filters;
        match req.action {
            FilterAction::Allow | FilterAction::Deny => {
                let list = if req.action == FilterAction::Allow {
                    &mut f.allow
                } else {
                    &mut f.deny
                };
                for n in nets {
                    if !list.contains(&n) {
                        list.push(n);
                    }
                }
            }
            FilterAction::Rm => {
                for n in &nets {
                    if !f.allow.contains(n) && !f.deny.contains(n) {
                        self.state.filters = old;
                        return Err(EngineError::NotFound(format!(
                            "{n} is in neither the allow nor the deny list"
                        )));
                    }
                }
                f.allow.retain(|n| !nets.contains(n));
                f.deny.retain(|n| !nets.contains(n));
            }
        }
        let r = match self.sync_dataplane().await {
            Ok(()) => self.persist(&[]),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            self.state.filters = old;
            let _ = self.sync_dataplane().await;
            return Err(e);
        }
        tracing::info!(action = req.action.as_str(), cidrs = ?req.cidrs, "source filters changed");
        Ok(self.state.filters.clone())
    }

    /// `netd stats`: drops per reason and per-binding traffic.
    pub fn stats(&self) -> Result<StatsView, EngineError> {
        let Some(dp) = &self.dp else {
            return Ok(StatsView::default());
        };
        let drops = dp
            .drops()?
            .into_iter()
            .map(|(r, n)| DropCount {
                reason: netd_common::drop_reason_name(r).to_string(),
                code: r,
                packets: n,
            })
            .collect();
        let per = dp.port_stats()?;
        let mut bindings = Vec::new();
        for e in self.state.endpoints.values() {
            for b in &e.ports {
                let t = per.get(&b.id).copied().unwrap_or_default();
                let range = |p: u16| {
                    if b.count == 1 {
                        p.to_string()
                    } else {
                        format!("{}-{}", p, p + (b.count - 1))
                    }
                };
                bindings.push(BindingStats {
                    container: e.name.clone(),
                    proto: b.proto.to_string(),
                    host_ip: b.host_ip.to_string(),
                    host_port: range(b.host_port),
                    container_port: range(b.container_port),
                    packets: t.packets,
                    bytes: t.bytes,
                });
            }
        }
        let ct_sources = dp
            .ct_sources(CT_SOURCES_SHOWN)?
            .into_iter()
            .map(|c| CtSourceView {
                addr: c.addr.to_string(),
                flows: c.flows,
            })
            .collect();
        Ok(StatsView {
            drops,
            ct_per_source_max: self.cfg.ct_per_source_max,
            ct_sources,
            bindings,
            interfaces: serde_json::to_value(dp.interface_stats()?).unwrap_or_default(),
            relay46: self.reserved.relay_stats(),
        })
    }

    /// `netd ct`: tracked flows, optionally filtered.
    pub fn ct(&self, q: &CtQuery) -> Result<Vec<CtFlow>, EngineError> {
        let Some(dp) = &self.dp else {
            return Ok(Vec::new());
        };
        Ok(dp.ct_flows(&crate::dataplane::CtQuery {
            ip: q.ip,
            proto: q.proto.map(CtProto::number),
            port: q.port,
        })?)
    }
}
