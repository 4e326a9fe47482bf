//! Source filters (the seed's DOCKER-chain example: "only 8.8.8.8 may reach the containers"),
//! stats and connection-tracking views.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::state::Filters;
use super::{Engine, EngineError};
use crate::api::types::{BindingStats, DropCount, FilterRequest, StatsView};
use crate::dataplane::{CtFlow, CtQuery};
use crate::spec;

impl Engine {
    pub fn filters(&self) -> Filters {
        self.state.filters.clone()
    }

    /// `netd filter allow|deny|rm CIDR...`: all CIDRs are validated first; the lists change
    /// together with the maps, or not at all. netd never changes the lists by itself.
    pub async fn change_filters(&mut self, req: FilterRequest) -> Result<Filters, EngineError> {
        if req.cidrs.is_empty() {
            return Err(EngineError::Invalid(format!(
                "netd filter {}: give at least one CIDR",
                req.action
            )));
        }
        let nets: Vec<Ipv4Net> = req
            .cidrs
            .iter()
            .map(|c| {
                // A bare address means that one host.
                let c = if c.contains('/') {
                    c.clone()
                } else {
                    format!("{c}/32")
                };
                spec::parse_ipv4_net(&c).map(|n| n.trunc())
            })
            .collect::<Result<_, _>>()?;
        let old = self.state.filters.clone();
        let f = &mut self.state.filters;
        match req.action.as_str() {
            "allow" | "deny" => {
                let list = if req.action == "allow" {
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
            "rm" => {
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
            other => {
                return Err(EngineError::Invalid(format!(
                    "unknown filter action {other:?}: use allow, deny or rm"
                )));
            }
        }
        let r = match self.sync_dataplane().await {
            Ok(()) => self.persist(),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            self.state.filters = old;
            let _ = self.sync_dataplane().await;
            return Err(e);
        }
        tracing::info!(action = %req.action, cidrs = ?req.cidrs, "source filters changed");
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
        Ok(StatsView {
            drops,
            bindings,
            interfaces: serde_json::to_value(dp.interface_stats()?).unwrap_or_default(),
        })
    }

    /// `netd ct`: tracked flows, optionally filtered.
    pub fn ct(
        &self,
        ip: Option<&str>,
        proto: Option<&str>,
        port: Option<&str>,
    ) -> Result<Vec<CtFlow>, EngineError> {
        let Some(dp) = &self.dp else {
            return Ok(Vec::new());
        };
        let ip = ip
            .map(|s| {
                s.parse::<Ipv4Addr>()
                    .map_err(|_| EngineError::Invalid(format!("invalid ip filter {s:?}")))
            })
            .transpose()?;
        let proto = proto
            .map(|s| match s {
                "icmp" => Ok(1),
                s => s
                    .parse::<spec::Proto>()
                    .map(spec::Proto::number)
                    .map_err(EngineError::from),
            })
            .transpose()?;
        let port = port
            .map(|s| {
                s.parse::<u16>()
                    .map_err(|_| EngineError::Invalid(format!("invalid port filter {s:?}")))
            })
            .transpose()?;
        Ok(dp.ct_flows(&CtQuery { ip, proto, port })?)
    }
}
