//! The endpoints' IPv6 addresses: NETD_EP6 (by host-side veth, what a container may send
//! from) and NETD_EP6_ADDRS (by address, whom a container sends to). An endpoint without an
//! entry has no IPv6 configured: it may send only neighbour discovery and MLD from its
//! MAC-derived link-local address (netd-ebpf `policy6`).
//!
//! Each call is whole or nothing: the by-address entries of new addresses go in before the
//! endpoint's entry names them, addresses the endpoint no longer holds go last, and a failure
//! undoes what the call wrote.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use aya::maps::{HashMap as BpfHashMap, MapData};
use ipnet::Ipv6Net;
use netd_common::{EP6_F_GLOBAL, Ep6Info, MAP_EP6, MAP_EP6_ADDRS, MAP_HOST_ADDRS6, in6_words};

use super::{
    Dataplane, DataplaneError,
    mapsync::{map_err, sync_hash},
};

/// One endpoint's IPv6 addresses, as [`Dataplane::set_endpoints_ipv6`] takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointIpv6 {
    /// The endpoint's host-side veth.
    pub ifindex: u32,
    /// Its link-local address (fe80::/10).
    pub link_local: Ipv6Addr,
    /// Its global address, if the network has IPv6.
    pub global: Option<Ipv6Addr>,
}

impl EndpointIpv6 {
    fn check(&self) -> Result<Ep6Info, DataplaneError> {
        let bad = |addr, reason| DataplaneError::BadIpv6 {
            ifindex: self.ifindex,
            addr,
            reason,
        };
        let ll = self.link_local;
        if ll.segments()[0] & 0xffc0 != 0xfe80 {
            return Err(bad(ll, "is not a link-local address (fe80::/10)"));
        }
        let mut info = Ep6Info {
            ll: in6_words(ll.octets()),
            ifindex: self.ifindex,
            ..Default::default()
        };
        if let Some(g) = self.global {
            if g.is_unspecified() || g.is_loopback() || g.is_multicast() {
                return Err(bad(g, "cannot be an endpoint's address"));
            }
            if g.segments()[0] & 0xffc0 == 0xfe80 {
                return Err(bad(g, "is link-local: give it as the link-local address"));
            }
            info.global = in6_words(g.octets());
            info.flags |= EP6_F_GLOBAL;
        }
        Ok(info)
    }

    fn addrs(&self) -> Vec<Ipv6Addr> {
        std::iter::once(self.link_local)
            .chain(self.global)
            .collect()
    }
}

impl Dataplane {
    /// Replaces the host's IPv6 addresses (ifindex, address) in NETD_HOST_ADDRS6: the
    /// addresses a `[::]` published port takes. Link-local and loopback ones are left out
    /// (a published port is not reached through them).
    pub fn set_host_addrs6(&mut self, addrs: &[(u32, Ipv6Net)]) -> Result<(), DataplaneError> {
        let m: HashMap<[u32; 4], u32> = addrs
            .iter()
            .map(|(i, n)| (n.addr(), *i))
            .filter(|(a, _)| !a.is_loopback() && a.segments()[0] & 0xffc0 != 0xfe80)
            .map(|(a, i)| (in6_words(a.octets()), i))
            .collect();
        sync_hash(self.map_mut(MAP_HOST_ADDRS6)?, MAP_HOST_ADDRS6, &m)
    }

    /// Gives the endpoint on `ifindex` its IPv6 addresses (replacing what it had): from then on
    /// it may send from `link_local` and `global`, and other containers reach it there under
    /// its network's icc and links. Refuses an address that another endpoint holds, leaving
    /// the maps as they were. Call after [`Dataplane::upsert_endpoint`] for the same veth.
    pub fn set_endpoint_ipv6(
        &mut self,
        ifindex: u32,
        link_local: Ipv6Addr,
        global: Option<Ipv6Addr>,
    ) -> Result<(), DataplaneError> {
        let ep = EndpointIpv6 {
            ifindex,
            link_local,
            global,
        };
        let info = ep.check()?;
        let have = self.ep6_addrs()?;
        for a in ep.addrs() {
            if let Some(&owner) = have.get(&in6_words(a.octets()))
                && owner != ifindex
            {
                return Err(DataplaneError::Ipv6InUse {
                    ifindex,
                    addr: a,
                    owner,
                });
            }
        }
        let new: Vec<[u32; 4]> = ep.addrs().iter().map(|a| in6_words(a.octets())).collect();
        let added: Vec<[u32; 4]> = new
            .iter()
            .filter(|a| !have.contains_key(*a))
            .copied()
            .collect();
        if let Err(e) = self.insert_addrs(&added, ifindex) {
            let _ = self.remove_addrs(&added);
            return Err(e);
        }
        if let Err(e) = self.ep6_map()?.insert(ifindex, info, 0) {
            let _ = self.remove_addrs(&added);
            return Err(map_err(MAP_EP6)(e));
        }
        let stale: Vec<[u32; 4]> = have
            .iter()
            .filter(|(a, o)| **o == ifindex && !new.contains(a))
            .map(|(a, _)| *a)
            .collect();
        self.remove_addrs(&stale)
    }

    /// Takes the endpoint on `ifindex` its IPv6 addresses (it may then send only neighbour
    /// discovery and MLD from its MAC-derived link-local address). Nothing to do is no error.
    pub fn clear_endpoint_ipv6(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        let mut m = self.ep6_map()?;
        if m.get(&ifindex, 0).is_ok() {
            m.remove(&ifindex).map_err(map_err(MAP_EP6))?;
        }
        let mine: Vec<[u32; 4]> = self
            .ep6_addrs()?
            .into_iter()
            .filter(|(_, o)| *o == ifindex)
            .map(|(a, _)| a)
            .collect();
        self.remove_addrs(&mine)
    }

    /// Makes the IPv6 maps hold exactly `eps` (the full set, as [`Dataplane::set_endpoints`]
    /// does for IPv4). Refuses an address given to two endpoints before changing anything.
    pub fn set_endpoints_ipv6(&mut self, eps: &[EndpointIpv6]) -> Result<(), DataplaneError> {
        let mut by_if = HashMap::new();
        let mut by_addr: HashMap<[u32; 4], u32> = HashMap::new();
        for ep in eps {
            by_if.insert(ep.ifindex, ep.check()?);
            for a in ep.addrs() {
                if let Some(owner) = by_addr.insert(in6_words(a.octets()), ep.ifindex)
                    && owner != ep.ifindex
                {
                    return Err(DataplaneError::Ipv6InUse {
                        ifindex: ep.ifindex,
                        addr: a,
                        owner,
                    });
                }
            }
        }
        // Addresses first (added and moved), then the endpoints, then what went away.
        let have = self.ep6_addrs()?;
        let changed: Vec<([u32; 4], u32)> = by_addr
            .iter()
            .filter(|(a, o)| have.get(*a) != Some(*o))
            .map(|(a, o)| (*a, *o))
            .collect();
        {
            let mut m = self.addrs_map()?;
            for (a, o) in &changed {
                m.insert(a, o, 0).map_err(map_err(MAP_EP6_ADDRS))?;
            }
        }
        sync_hash(self.map_mut(MAP_EP6)?, MAP_EP6, &by_if)?;
        sync_hash(self.map_mut(MAP_EP6_ADDRS)?, MAP_EP6_ADDRS, &by_addr)
    }

    /// The IPv6 addresses of the endpoint on `ifindex` (None: no IPv6 configured).
    pub fn endpoint_ipv6(&self, ifindex: u32) -> Result<Option<EndpointIpv6>, DataplaneError> {
        let m: BpfHashMap<&MapData, u32, Ep6Info> =
            BpfHashMap::try_from(self.map_ref(MAP_EP6)?).map_err(map_err(MAP_EP6))?;
        let Ok(e) = m.get(&ifindex, 0) else {
            return Ok(None);
        };
        let addr = |w: [u32; 4]| {
            let mut b = [0u8; 16];
            for (i, x) in w.iter().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&x.to_ne_bytes());
            }
            Ipv6Addr::from(b)
        };
        Ok(Some(EndpointIpv6 {
            ifindex,
            link_local: addr(e.ll),
            global: (e.flags & EP6_F_GLOBAL != 0).then(|| addr(e.global)),
        }))
    }

    fn ep6_map(&mut self) -> Result<BpfHashMap<&mut MapData, u32, Ep6Info>, DataplaneError> {
        BpfHashMap::try_from(self.map_mut(MAP_EP6)?).map_err(map_err(MAP_EP6))
    }

    fn addrs_map(&mut self) -> Result<BpfHashMap<&mut MapData, [u32; 4], u32>, DataplaneError> {
        BpfHashMap::try_from(self.map_mut(MAP_EP6_ADDRS)?).map_err(map_err(MAP_EP6_ADDRS))
    }

    fn ep6_addrs(&self) -> Result<HashMap<[u32; 4], u32>, DataplaneError> {
        let m: BpfHashMap<&MapData, [u32; 4], u32> =
            BpfHashMap::try_from(self.map_ref(MAP_EP6_ADDRS)?).map_err(map_err(MAP_EP6_ADDRS))?;
        m.iter()
            .map(|r| r.map_err(map_err(MAP_EP6_ADDRS)))
            .collect()
    }

    fn insert_addrs(&mut self, addrs: &[[u32; 4]], ifindex: u32) -> Result<(), DataplaneError> {
        let mut m = self.addrs_map()?;
        for a in addrs {
            m.insert(a, ifindex, 0).map_err(map_err(MAP_EP6_ADDRS))?;
        }
        Ok(())
    }

    fn remove_addrs(&mut self, addrs: &[[u32; 4]]) -> Result<(), DataplaneError> {
        let mut m = self.addrs_map()?;
        for a in addrs {
            if m.get(a, 0).is_ok() {
                m.remove(a).map_err(map_err(MAP_EP6_ADDRS))?;
            }
        }
        Ok(())
    }
}
