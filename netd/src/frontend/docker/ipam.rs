//! The plugin's IPAM calls (`/IpamDriver.*`): pools and addresses, IPv4 from the engine's
//! networks and IPv6 from netd's own pools ([`Ipam6`]).
use super::*;

impl Call<'_> {
    pub(super) async fn request_pool(
        &mut self,
        r: p::RequestPool,
    ) -> Result<p::RequestPoolReply, String> {
        if r.v6 {
            return self.request_pool6(r);
        }
        let taken: Vec<Ipv4Net> = self.st.pools.values().map(|p| p.subnet).collect();
        let subnet = if r.pool.is_empty() {
            self.eng.free_subnet(&taken).await.map_err(engine_err)?
        } else {
            let s: Ipv4Net = r
                .pool
                .parse()
                .map_err(|_| format!("--subnet {}: not an IPv4 subnet", r.pool))?;
            s.trunc()
        };
        if let Some(t) = taken
            .iter()
            .find(|t| t.contains(&subnet) || subnet.contains(*t))
        {
            return Err(format!(
                "--subnet {subnet} overlaps pool {t} of another netd network"
            ));
        }
        let sub_pool = match r.sub_pool.as_str() {
            "" => None,
            s => {
                let sp: Ipv4Net = s
                    .parse()
                    .map_err(|_| format!("--ip-range {s}: not an IPv4 subnet"))?;
                if !subnet.contains(&sp) {
                    return Err(format!("--ip-range {sp} is not inside --subnet {subnet}"));
                }
                Some(sp.trunc())
            }
        };
        let id = pool_id(&subnet);
        self.st.pools.insert(
            id.clone(),
            state::Pool {
                subnet,
                sub_pool,
                gateway: None,
            },
        );
        if let Err(e) = self.save() {
            self.st.pools.remove(&id);
            return Err(e);
        }
        Ok(p::RequestPoolReply {
            pool_id: id,
            pool: subnet.to_string(),
            data: BTreeMap::new(),
        })
    }

    /// An IPv6 pool: the prefix given with `--subnet` (netd picks none), its gateway the
    /// bridge's `fe80::1` (given in the reply's data, so libnetwork asks for no gateway address).
    pub(super) fn request_pool6(
        &mut self,
        r: p::RequestPool,
    ) -> Result<p::RequestPoolReply, String> {
        if r.pool.is_empty() {
            return Err(
                "--ipv6: netd's IPAM needs the IPv6 prefix: add --subnet PREFIX (such as 2001:db8:1::/64)"
                    .into(),
            );
        }
        let subnet: Ipv6Net = r
            .pool
            .parse()
            .map_err(|_| format!("--subnet {}: not an IPv6 prefix", r.pool))?;
        if subnet.trunc() != subnet {
            return Err(format!(
                "--subnet {subnet} is not a network address (use {})",
                subnet.trunc()
            ));
        }
        if !r.sub_pool.is_empty() {
            return Err(format!(
                "--ip-range {}: netd takes no IPv6 --ip-range (addresses come from the whole --subnet)",
                r.sub_pool
            ));
        }
        if let Some(t) = self
            .st
            .pools6
            .values()
            .map(|p| p.subnet)
            .find(|t| t.contains(&subnet) || subnet.contains(t))
        {
            return Err(format!(
                "--subnet {subnet} overlaps pool {t} of another netd network"
            ));
        }
        let id = pool6_id(&subnet);
        self.st.pools6.insert(
            id.clone(),
            state::Pool6 {
                subnet,
                held: Default::default(),
            },
        );
        if let Err(e) = self.save() {
            self.st.pools6.remove(&id);
            return Err(e);
        }
        Ok(p::RequestPoolReply {
            pool_id: id,
            pool: subnet.to_string(),
            data: BTreeMap::from([(convert::GATEWAY_REQUEST.to_string(), gateway6())]),
        })
    }

    pub(super) fn release_pool(&mut self, r: p::PoolRef) -> Result<Vec<u8>, String> {
        let v4 = self.st.pools.remove(&r.pool_id).is_some();
        let v6 = self.st.pools6.remove(&r.pool_id).is_some();
        if v4 || v6 {
            self.save()?;
        }
        Ok(empty())
    }

    /// An IPv6 address of a pool: `--ip6` when given, else the lowest free one. In use are the
    /// addresses handed to Docker and the global addresses of netd's endpoints. The engine
    /// holds it from here on (so a `netd attach` in between cannot take it) until
    /// ReleaseAddress; Join makes the hold the endpoint's lease.
    pub(super) fn request_address6(&mut self, r: p::RequestAddress) -> Result<Vec<u8>, String> {
        let pool = self.st.pools6[&r.pool_id].clone();
        let gateway_request = r
            .options
            .as_ref()
            .and_then(|o| o.get("RequestAddressType"))
            .is_some_and(|t| t == convert::GATEWAY_REQUEST);
        if gateway_request {
            return match r.address.as_str() {
                "" => Ok(to_json(&p::RequestAddressReply {
                    address: gateway6(),
                    data: BTreeMap::new(),
                })),
                g => Err(format!(
                    "IPv6 --gateway {g}: a netd network's IPv6 gateway is the bridge's {BRIDGE_LINK_LOCAL}; leave it out"
                )),
            };
        }
        let endpoints: Vec<Ipv6Addr> = self
            .eng
            .list()
            .iter()
            .filter_map(|v| v.global_ipv6.as_deref()?.parse().ok())
            .collect();
        let in_use = |ip: Ipv6Addr| {
            (pool.held.contains(&ip)
                || endpoints.contains(&ip)
                || self.eng.holder_of6(ip).is_some())
            .then(|| "another endpoint".to_string())
        };
        let ipam = Ipam6 {
            subnet: pool.subnet,
            gateway: BRIDGE_LINK_LOCAL,
        };
        let ip = match r.address.as_str() {
            "" => {
                let base = u128::from(pool.subnet.network());
                let last = u128::from(pool.subnet.broadcast());
                // Docker's own IPAM order: the subnet's addresses from ::1 up.
                (base + 1..=last)
                    .take(1 << 16)
                    .map(Ipv6Addr::from)
                    .find(|ip| in_use(*ip).is_none())
                    .ok_or_else(|| format!("no free IPv6 address left in {}", pool.subnet))?
            }
            a => {
                let ip = convert::parse_addr6(a)?;
                ipam.check(ip, &in_use).map_err(|e| e.to_string())?;
                ip
            }
        };
        let net = self
            .st
            .network_of_pool(&r.pool_id)
            .ok_or_else(|| format!("pool {} has no netd network yet", r.pool_id))?
            .name
            .clone();
        self.eng
            .hold_address6(&net, ip, &format!("docker endpoint on {net}"))
            .map_err(engine_err)?;
        self.st
            .pools6
            .get_mut(&r.pool_id)
            .expect("present")
            .held
            .insert(ip);
        if let Err(e) = self.save() {
            if let Some(p) = self.st.pools6.get_mut(&r.pool_id) {
                p.held.remove(&ip);
            }
            if let Err(e2) = self.eng.release_address6(ip) {
                tracing::warn!(%ip, "rollback: IPv6 hold not released: {e2}");
            }
            return Err(e);
        }
        Ok(to_json(&p::RequestAddressReply {
            address: format!("{ip}/{}", pool.subnet.prefix_len()),
            data: BTreeMap::new(),
        }))
    }

    pub(super) fn request_address(&mut self, r: p::RequestAddress) -> Result<Vec<u8>, String> {
        if self.st.pools6.contains_key(&r.pool_id) {
            return self.request_address6(r);
        }
        let pool = self
            .st
            .pools
            .get(&r.pool_id)
            .cloned()
            .ok_or_else(|| format!("no such netd pool: {}", r.pool_id))?;
        let requested = match r.address.as_str() {
            "" => None,
            a => Some(convert::parse_addr(a)?),
        };
        let gateway_request = r
            .options
            .as_ref()
            .and_then(|o| o.get("RequestAddressType"))
            .is_some_and(|t| t == convert::GATEWAY_REQUEST);
        let ip = if gateway_request {
            let gw =
                requested.unwrap_or_else(|| Ipv4Addr::from(u32::from(pool.subnet.network()) + 1));
            if !pool.subnet.contains(&gw)
                || gw == pool.subnet.network()
                || gw == pool.subnet.broadcast()
            {
                return Err(format!(
                    "--gateway {gw} is not a host address of --subnet {}",
                    pool.subnet
                ));
            }
            let p = self.st.pools.get_mut(&r.pool_id).expect("present");
            p.gateway = Some(gw);
            self.save()?;
            gw
        } else {
            let net = self
                .st
                .network_of_pool(&r.pool_id)
                .ok_or_else(|| format!("pool {} has no netd network yet", r.pool_id))?
                .name
                .clone();
            self.eng
                .hold_address(&net, requested, &format!("docker endpoint on {net}"))
                .map_err(engine_err)?
        };
        Ok(to_json(&p::RequestAddressReply {
            address: format!("{ip}/{}", pool.subnet.prefix_len()),
            data: BTreeMap::new(),
        }))
    }

    pub(super) fn release_address(&mut self, r: p::ReleaseAddress) -> Result<Vec<u8>, String> {
        if let Some(pool) = self.st.pools6.get_mut(&r.pool_id) {
            let ip = convert::parse_addr6(&r.address)?;
            if pool.held.remove(&ip) {
                self.save()?;
            }
            self.eng.release_address6(ip).map_err(engine_err)?;
            return Ok(empty());
        }
        let ip = convert::parse_addr(&r.address)?;
        if let Some(pool) = self.st.pools.get_mut(&r.pool_id) {
            if pool.gateway == Some(ip) {
                pool.gateway = None;
                self.save()?;
                return Ok(empty());
            }
        }
        self.eng.release_address(ip).map_err(engine_err)?;
        Ok(empty())
    }
}
