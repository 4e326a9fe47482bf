//! What an engine front end like Docker's libnetwork needs beyond `netd attach`: addresses held
//! before the endpoint exists (IPAM first, endpoint later), a free subnet for a pool, and
//! withdrawing an endpoint's published ports without detaching it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{Engine, EngineError, Touched, not_found};

impl Engine {
    /// Holds an address of network `network` for `holder`: `ip` when given (refused when it is
    /// outside the network's range, reserved or in use), else the lowest free one.
    pub fn hold_address(
        &mut self,
        network: &str,
        ip: Option<Ipv4Addr>,
        holder: &str,
    ) -> Result<Ipv4Addr, EngineError> {
        let key = self.resolve_network(Some(network))?;
        let ipam = self.ipam_for(key.as_deref());
        let owner = |i: Ipv4Addr| self.owner_of_ip(i);
        let ip = match ip {
            Some(i) => {
                ipam.check(i, &owner).map_err(|e| match e {
                    super::ipam::IpamError::InUse { .. } => EngineError::Conflict(e.to_string()),
                    e => EngineError::Invalid(e.to_string()),
                })?;
                i
            }
            None => ipam
                .allocate(&owner)
                .map_err(|e| EngineError::Conflict(e.to_string()))?,
        };
        self.state.held.insert(ip, holder.to_string());
        if let Err(e) = self.persist(&[]) {
            self.state.held.remove(&ip);
            return Err(e);
        }
        Ok(ip)
    }

    /// Releases a held address; true when it was held.
    pub fn release_address(&mut self, ip: Ipv4Addr) -> Result<bool, EngineError> {
        let Some(holder) = self.state.held.remove(&ip) else {
            return Ok(false);
        };
        if let Err(e) = self.persist(&[]) {
            self.state.held.insert(ip, holder);
            return Err(e);
        }
        Ok(true)
    }

    /// Who holds `ip` (see [`Engine::hold_address`]).
    pub fn holder_of(&self, ip: Ipv4Addr) -> Option<&str> {
        self.state.held.get(&ip).map(String::as_str)
    }

    /// A private subnet that no host address, route or network uses, none of `avoid` either.
    pub async fn free_subnet(&self, avoid: &[Ipv4Net]) -> Result<Ipv4Net, EngineError> {
        let mut addrs = self.nl.addresses_v4(None).await?;
        let routes = self.nl.routes_v4().await?;
        addrs.extend(avoid.iter().map(|n| (0, *n)));
        super::network::choose_subnet(&addrs, &routes).ok_or_else(|| {
            EngineError::Conflict("no free private subnet left: pass --subnet".into())
        })
    }

    /// Withdraws every published port of `name` (Docker's RevokeExternalConnectivity).
    pub fn unpublish_all(&mut self, name: &str) -> Result<(), EngineError> {
        let ep = self
            .state
            .endpoints
            .get_mut(name)
            .ok_or_else(|| not_found(name))?;
        if ep.ports.is_empty() && ep.publish.is_empty() {
            return Ok(());
        }
        let ports = std::mem::take(&mut ep.ports);
        let publish = std::mem::take(&mut ep.publish);
        let publish_all = std::mem::replace(&mut ep.publish_all, false);
        let result = self
            .sync_published(name)
            .and_then(|()| self.persist(&[Touched::Endpoint(name)]));
        if let Err(e) = result {
            let ep = self.state.endpoints.get_mut(name).expect("present");
            ep.ports = ports;
            ep.publish = publish;
            ep.publish_all = publish_all;
            if let Err(e2) = self.sync_published(name) {
                tracing::warn!("rollback: {e2}");
            }
            return Err(e);
        }
        self.reserved.release(&ports);
        tracing::info!(container = %name, "unpublished");
        Ok(())
    }
}
