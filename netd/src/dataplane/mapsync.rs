//! Programming the NAT/policy maps: the agent's desired state goes in here, whole or not at all
//! per call. Every setter is idempotent and takes the complete desired set, so a restarted
//! agent simply re-applies its state over whatever the pinned maps hold.

use std::collections::{HashMap, HashSet};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap};
use netd_common::{
    DpConfig, EndpointInfo, LinkKey, LinkPorts, MAP_CONFIG, MAP_DROPS, MAP_ENDPOINTS, MAP_EP_BY_IP,
    MAP_FILTER_ALLOW, MAP_FILTER_DENY, MAP_HOST_ADDRS, MAP_LINKS, MAP_NET_SUBNETS, MAP_NETWORKS,
    MAP_PORT_STATS, MAP_UPLINKS, NETWORKS_MAX, NetConfig, Traffic, UplinkInfo,
};

use super::{Dataplane, DataplaneError};

pub(super) fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

/// An IPv4 prefix as a filter rule: (network byte order address, prefix length).
pub type V4Prefix = (u32, u8);

impl Dataplane {
    pub(super) fn map_mut(
        &mut self,
        map: &'static str,
    ) -> Result<&mut aya::maps::Map, DataplaneError> {
        self.maps
            .get_mut(map)
            .ok_or(DataplaneError::MapNotFound { map })
    }

    pub(super) fn map_ref(&self, map: &'static str) -> Result<&aya::maps::Map, DataplaneError> {
        self.maps
            .get(map)
            .ok_or(DataplaneError::MapNotFound { map })
    }

    pub fn config(&self) -> Result<DpConfig, DataplaneError> {
        let a: Array<&MapData, DpConfig> =
            Array::try_from(self.map_ref(MAP_CONFIG)?).map_err(map_err(MAP_CONFIG))?;
        a.get(&0, 0).map_err(map_err(MAP_CONFIG))
    }

    /// Writes the configuration.
    pub fn set_config(&mut self, cfg: &DpConfig) -> Result<(), DataplaneError> {
        // The ring's real size (a reused pin keeps the size it was created with).
        let ring: Array<&MapData, netd_common::CtRingSlot> =
            Array::try_from(self.map_ref(netd_common::MAP_CT_RING)?)
                .map_err(map_err(netd_common::MAP_CT_RING))?;
        let new = DpConfig {
            ct_ring_slots: ring.len(),
            ..*cfg
        };
        let mut a: Array<&mut MapData, DpConfig> =
            Array::try_from(self.map_mut(MAP_CONFIG)?).map_err(map_err(MAP_CONFIG))?;
        a.set(0, new, 0).map_err(map_err(MAP_CONFIG))
    }

    /// Per-binding packet/byte counters, summed over CPUs.
    pub fn port_stats(&self) -> Result<HashMap<u32, Traffic>, DataplaneError> {
        let m: PerCpuHashMap<&MapData, u32, Traffic> =
            PerCpuHashMap::try_from(self.map_ref(MAP_PORT_STATS)?)
                .map_err(map_err(MAP_PORT_STATS))?;
        let mut out = HashMap::new();
        for item in m.iter() {
            let (k, per_cpu) = item.map_err(map_err(MAP_PORT_STATS))?;
            let mut t = Traffic::default();
            for v in per_cpu.iter() {
                t.accumulate(v);
            }
            out.insert(k, t);
        }
        Ok(out)
    }

    /// Drops per reason, summed over CPUs (only reasons with a count).
    pub fn drops(&self) -> Result<Vec<(u32, u64)>, DataplaneError> {
        let m: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map_ref(MAP_DROPS)?).map_err(map_err(MAP_DROPS))?;
        let mut out = Vec::new();
        for i in 0..m.len() {
            let v = m.get(&i, 0).map_err(map_err(MAP_DROPS))?;
            let sum: u64 = v.iter().sum();
            if sum > 0 {
                out.push((i, sum));
            }
        }
        Ok(out)
    }

    /// Adds or updates one endpoint (before its veth is up; the full set follows with
    /// [`Dataplane::set_endpoints`]).
    pub fn upsert_endpoint(&mut self, ep: &EndpointInfo) -> Result<(), DataplaneError> {
        for (map, key) in [(MAP_ENDPOINTS, ep.ifindex), (MAP_EP_BY_IP, ep.ip)] {
            let mut m: BpfHashMap<&mut MapData, u32, EndpointInfo> =
                BpfHashMap::try_from(self.map_mut(map)?).map_err(map_err(map))?;
            m.insert(key, ep, 0).map_err(map_err(map))?;
        }
        Ok(())
    }

    /// Removes one endpoint (by ifindex, and by address while that entry is still its own):
    /// a detach's map change, O(1) whatever the number of endpoints. Absent entries are fine.
    pub fn remove_endpoint(&mut self, ep: &EndpointInfo) -> Result<(), DataplaneError> {
        for (map, key) in [(MAP_ENDPOINTS, ep.ifindex), (MAP_EP_BY_IP, ep.ip)] {
            let mut m: BpfHashMap<&mut MapData, u32, EndpointInfo> =
                BpfHashMap::try_from(self.map_mut(map)?).map_err(map_err(map))?;
            match m.get(&key, 0) {
                Ok(v) if v.ifindex == ep.ifindex => {
                    absent_ok(m.remove(&key)).map_err(map_err(map))?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Replaces the endpoints (by ifindex and by address).
    pub fn set_endpoints(&mut self, eps: &[EndpointInfo]) -> Result<(), DataplaneError> {
        let by_if: HashMap<u32, EndpointInfo> = eps.iter().map(|e| (e.ifindex, *e)).collect();
        let by_ip: HashMap<u32, EndpointInfo> = eps.iter().map(|e| (e.ip, *e)).collect();
        sync_hash(self.map_mut(MAP_ENDPOINTS)?, MAP_ENDPOINTS, &by_if)?;
        sync_hash(self.map_mut(MAP_EP_BY_IP)?, MAP_EP_BY_IP, &by_ip)
    }

    /// Replaces the set of host addresses (network byte order) -> ifindex.
    pub fn set_host_addrs(&mut self, addrs: &HashMap<u32, u32>) -> Result<(), DataplaneError> {
        sync_hash(self.map_mut(MAP_HOST_ADDRS)?, MAP_HOST_ADDRS, addrs)
    }

    /// Replaces the uplinks (ifindex -> masquerade address).
    pub fn set_uplinks(
        &mut self,
        uplinks: &HashMap<u32, UplinkInfo>,
    ) -> Result<(), DataplaneError> {
        sync_hash(self.map_mut(MAP_UPLINKS)?, MAP_UPLINKS, uplinks)
    }

    /// Replaces the link allowances.
    pub fn set_links(&mut self, links: &HashMap<LinkKey, LinkPorts>) -> Result<(), DataplaneError> {
        sync_hash(self.map_mut(MAP_LINKS)?, MAP_LINKS, links)
    }

    /// Removes the link allowances `remove` and writes `add`, touching no other entry (an
    /// attach's or detach's change: the links from and to one endpoint).
    pub fn update_links(
        &mut self,
        remove: &[LinkKey],
        add: &HashMap<LinkKey, LinkPorts>,
    ) -> Result<(), DataplaneError> {
        let mut m: BpfHashMap<&mut MapData, LinkKey, LinkPorts> =
            BpfHashMap::try_from(self.map_mut(MAP_LINKS)?).map_err(map_err(MAP_LINKS))?;
        for k in remove.iter().filter(|k| !add.contains_key(k)) {
            absent_ok(m.remove(k)).map_err(map_err(MAP_LINKS))?;
        }
        for (k, v) in add {
            m.insert(k, v, 0).map_err(map_err(MAP_LINKS))?;
        }
        Ok(())
    }

    /// Makes NETD_NETWORKS and NETD_NET_SUBNETS hold exactly `nets` (id → options). A slot
    /// is written before its subnet can lead a program to it, and cleared only after its
    /// subnet is gone.
    pub fn set_networks(&mut self, nets: &[(u16, NetConfig)]) -> Result<(), DataplaneError> {
        if nets.iter().any(|(id, _)| u32::from(*id) >= NETWORKS_MAX) {
            return Err(DataplaneError::Full {
                map: MAP_NETWORKS,
                max: NETWORKS_MAX,
            });
        }
        {
            let mut a: Array<&mut MapData, NetConfig> =
                Array::try_from(self.map_mut(MAP_NETWORKS)?).map_err(map_err(MAP_NETWORKS))?;
            for (id, n) in nets {
                a.set(u32::from(*id), *n, 0)
                    .map_err(map_err(MAP_NETWORKS))?;
            }
        }
        {
            let mut t: LpmTrie<&mut MapData, u32, u32> =
                LpmTrie::try_from(self.map_mut(MAP_NET_SUBNETS)?)
                    .map_err(map_err(MAP_NET_SUBNETS))?;
            let want: HashMap<(u32, u32), u32> = nets
                .iter()
                .map(|(id, n)| {
                    let plen = u32::from_be(n.subnet_mask).count_ones();
                    ((n.subnet, plen), u32::from(*id))
                })
                .collect();
            let have: Vec<Key<u32>> = t.keys().filter_map(Result::ok).collect();
            for k in have {
                if !want.contains_key(&(k.data(), k.prefix_len())) {
                    t.remove(&k).map_err(map_err(MAP_NET_SUBNETS))?;
                }
            }
            for ((addr, plen), id) in &want {
                t.insert(&Key::new(*plen, *addr), id, 0)
                    .map_err(map_err(MAP_NET_SUBNETS))?;
            }
        }
        let mut a: Array<&mut MapData, NetConfig> =
            Array::try_from(self.map_mut(MAP_NETWORKS)?).map_err(map_err(MAP_NETWORKS))?;
        for i in 0..NETWORKS_MAX {
            if nets.iter().any(|(id, _)| u32::from(*id) == i) {
                continue;
            }
            if a.get(&i, 0).map_err(map_err(MAP_NETWORKS))? != NetConfig::default() {
                a.set(i, NetConfig::default(), 0)
                    .map_err(map_err(MAP_NETWORKS))?;
            }
        }
        Ok(())
    }

    /// Adds the filter entries that are missing (first half of a filter change: the tries
    /// gain entries before NETD_CONFIG's list flags can make a program consult them).
    pub fn add_filters(
        &mut self,
        allow: &[V4Prefix],
        deny: &[V4Prefix],
    ) -> Result<(), DataplaneError> {
        for (map, list) in [(MAP_FILTER_ALLOW, allow), (MAP_FILTER_DENY, deny)] {
            let mut t: LpmTrie<&mut MapData, u32, u32> =
                LpmTrie::try_from(self.map_mut(map)?).map_err(map_err(map))?;
            for (a, p) in list {
                t.insert(&Key::new(u32::from(*p), *a), 1, 0)
                    .map_err(map_err(map))?;
            }
        }
        Ok(())
    }

    /// Removes entries not in the lists (second half: after NETD_CONFIG no longer points a
    /// program at a list that is about to empty).
    pub fn prune_filters(
        &mut self,
        allow: &[V4Prefix],
        deny: &[V4Prefix],
    ) -> Result<(), DataplaneError> {
        for (map, list) in [(MAP_FILTER_ALLOW, allow), (MAP_FILTER_DENY, deny)] {
            let mut t: LpmTrie<&mut MapData, u32, u32> =
                LpmTrie::try_from(self.map_mut(map)?).map_err(map_err(map))?;
            let want: HashSet<(u32, u32)> = list.iter().map(|(a, p)| (*a, u32::from(*p))).collect();
            let have: Vec<Key<u32>> = t.keys().filter_map(Result::ok).collect();
            for k in have {
                if !want.contains(&(k.data(), k.prefix_len())) {
                    t.remove(&k).map_err(map_err(map))?;
                }
            }
        }
        Ok(())
    }
}

/// A removal whose key was already gone is done.
fn absent_ok(r: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match r {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// Makes a hash map hold exactly `want`.
pub(super) fn sync_hash<K, V>(
    map: &mut aya::maps::Map,
    name: &'static str,
    want: &HashMap<K, V>,
) -> Result<(), DataplaneError>
where
    K: aya::Pod + Eq + std::hash::Hash,
    V: aya::Pod + PartialEq,
{
    let mut m: BpfHashMap<&mut MapData, K, V> = BpfHashMap::try_from(map).map_err(map_err(name))?;
    let have: Vec<(K, V)> = m.iter().filter_map(Result::ok).collect();
    for (k, _) in &have {
        if !want.contains_key(k) {
            m.remove(k).map_err(map_err(name))?;
        }
    }
    let have: HashMap<K, V> = have.into_iter().collect();
    for (k, v) in want {
        if have.get(k) != Some(v) {
            m.insert(k, v, 0).map_err(map_err(name))?;
        }
    }
    Ok(())
}
