//! The published-port writer: NETD_PORTS is a hash of single ports (ranges expanded), so a
//! change writes the ports it adds or retargets and deletes the ports it removes, in one
//! BPF_MAP_UPDATE_BATCH and one BPF_MAP_DELETE_BATCH, whatever the number of ports already
//! published. Programs see each port switch atomically (one element update); a range being
//! added appears port by port within the batch.
//!
//! The writer keeps what it last wrote (ranges, and how many reserving bindings hold each
//! (proto, port): the bind hook's [`PortKey::any`] markers) so the diff costs nothing in the
//! kernel. The first call after loading (a restart over pinned maps) walks the map once and
//! removes whatever the desired set does not hold.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd as _;
use std::path::PathBuf;

use aya::maps::{MapData, PerCpuHashMap};
use netd_common::{MAP_PORT_STATS, MAP_PORTS, PORTS_MAX, PortEntry, PortKey, PortTarget, Traffic};

use super::{Dataplane, DataplaneError, sys};

/// A range's identity: (proto, family, host address, first port).
type RangeId = (u8, bool, [u32; 4], u16);

fn id(e: &PortEntry) -> RangeId {
    (
        e.proto,
        e.family == netd_common::AF_INET6,
        e.host_addr(),
        e.host_port_start,
    )
}

/// What the writer last put in NETD_PORTS.
#[derive(Default)]
pub(super) struct PortTable {
    ranges: HashMap<RangeId, PortEntry>,
    /// Reserving bindings per (proto, port), on any address.
    holders: HashMap<(u8, u16), u32>,
    /// Ports the ranges hold (the map holds these plus one marker per `holders` entry).
    ports: usize,
    /// Left by a previous agent (adopted pins), with their values: deleted by the first
    /// change unless it writes them again, and not written again where they hold the value
    /// already (a restart rewrites nothing that is right).
    stale: HashMap<PortKey, PortTarget>,
    stale_stats: Vec<u32>,
}

fn size(e: &PortEntry) -> usize {
    usize::from(e.host_port_end.saturating_sub(e.host_port_start)) + 1
}

/// What one change did, for logs and the bench.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortsChange {
    pub written: usize,
    pub deleted: usize,
}

impl Dataplane {
    /// Makes NETD_PORTS hold exactly `entries` (the complete desired set of bindings), writing
    /// only what differs from the last call. Refuses a set that does not fit before writing
    /// anything.
    pub fn set_ports(&mut self, entries: Vec<PortEntry>) -> Result<PortsChange, DataplaneError> {
        let mut table = match self.ports.take() {
            Some(t) => t,
            None => self.adopt_ports()?,
        };
        let r = self.apply_ports(&mut table, entries);
        // A failed write leaves the map unknown: the next call walks it again.
        if r.is_ok() {
            self.ports = Some(table);
        }
        r
    }

    /// Removes the bindings `remove` and adds `add`, touching nothing else: O(changed ports)
    /// in user space too (what `netd publish` takes). Returns None, writing nothing, while the
    /// writer does not know the map yet (before the first [`Dataplane::set_ports`]).
    pub fn update_ports(
        &mut self,
        remove: &[PortEntry],
        add: &[PortEntry],
    ) -> Result<Option<PortsChange>, DataplaneError> {
        let Some(mut table) = self.ports.take() else {
            return Ok(None);
        };
        if !table.stale.is_empty() {
            self.ports = Some(table);
            return Ok(None);
        }
        let removed: Vec<PortEntry> = remove
            .iter()
            .filter(|e| table.ranges.get(&id(e)) == Some(e))
            .copied()
            .collect();
        let added: Vec<PortEntry> = add
            .iter()
            .filter(|e| table.ranges.get(&id(e)) != Some(e))
            .copied()
            .collect();
        let r = self.apply_change(&mut table, &removed, &added);
        if r.is_ok() {
            for e in &removed {
                table.ranges.remove(&id(e));
            }
            for e in &added {
                table.ranges.insert(id(e), *e);
            }
            self.ports = Some(table);
        }
        r.map(Some)
    }

    fn apply_ports(
        &mut self,
        table: &mut PortTable,
        entries: Vec<PortEntry>,
    ) -> Result<PortsChange, DataplaneError> {
        let new: HashMap<RangeId, PortEntry> = entries.into_iter().map(|e| (id(&e), e)).collect();
        let removed: Vec<PortEntry> = table
            .ranges
            .iter()
            .filter(|(k, e)| new.get(k) != Some(e))
            .map(|(_, e)| *e)
            .collect();
        let added: Vec<PortEntry> = new
            .iter()
            .filter(|(k, e)| table.ranges.get(k) != Some(e))
            .map(|(_, e)| *e)
            .collect();
        let c = self.apply_change(table, &removed, &added)?;
        table.ranges = new;
        Ok(c)
    }

    /// Writes `added` and deletes what `removed` leaves behind (and the stale entries of an
    /// adopted map); updates `table` but its ranges.
    fn apply_change(
        &mut self,
        table: &mut PortTable,
        removed: &[PortEntry],
        added: &[PortEntry],
    ) -> Result<PortsChange, DataplaneError> {
        if removed.is_empty() && added.is_empty() && table.stale.is_empty() {
            return Ok(PortsChange::default());
        }

        // Port entries: what the added ranges write, then what the removed ones leave behind.
        let mut writes: HashMap<PortKey, PortTarget> =
            added.iter().flat_map(|e| e.expand()).collect();
        let mut deletes: HashSet<PortKey> = removed
            .iter()
            .flat_map(|e| e.expand().map(|(k, _)| k))
            .chain(table.stale.keys().copied())
            .collect();
        // Markers: count holders per (proto, port) after the change; an added range's entry is
        // what a new marker holds (the bind hook reads only its flags).
        let mut delta: HashMap<(u8, u16), (i64, Option<PortTarget>)> = HashMap::new();
        for (e, d) in removed
            .iter()
            .map(|e| (e, -1))
            .chain(added.iter().map(|e| (e, 1)))
        {
            if e.reserves() {
                for p in e.host_port_start..=e.host_port_end {
                    let slot = delta.entry((e.proto, p)).or_default();
                    slot.0 += d;
                    if d > 0 {
                        slot.1 = Some(e.entry(p).1);
                    }
                }
            }
        }
        let mut holders_after = Vec::with_capacity(delta.len());
        let mut markers = table.holders.len();
        for (&(proto, port), &(d, holder)) in &delta {
            let before = i64::from(table.holders.get(&(proto, port)).copied().unwrap_or(0));
            let after = before + d;
            holders_after.push(((proto, port), after as u32));
            let k = PortKey::any(proto, port);
            if before == 0 && after > 0 {
                writes.insert(k, holder.unwrap_or_default());
                markers += 1;
            } else if before > 0 && after == 0 {
                deletes.insert(k);
                markers -= 1;
            }
        }
        let ports = table.ports + added.iter().map(size).sum::<usize>()
            - removed.iter().map(size).sum::<usize>();
        if ports + markers > PORTS_MAX as usize {
            return Err(DataplaneError::Full {
                map: MAP_PORTS,
                max: PORTS_MAX,
            });
        }

        // Nothing written is deleted (a stale marker written again, too), and what an adopted
        // map holds already is not written again.
        deletes.retain(|k| !writes.contains_key(k));
        writes.retain(|k, v| table.stale.get(k) != Some(v));
        let (keys, values): (Vec<PortKey>, Vec<PortTarget>) = writes.into_iter().unzip();
        let deletes: Vec<PortKey> = deletes.into_iter().collect();
        {
            let aya::maps::Map::HashMap(data) = self.map_ref(MAP_PORTS)? else {
                return Err(DataplaneError::MapNotFound { map: MAP_PORTS });
            };
            let fd = data.fd().as_fd();
            // Deletes first: a full map still takes the change.
            sys::map_delete_batch(fd, &deletes).map_err(|e| {
                DataplaneError::io("delete ports from", PathBuf::from(MAP_PORTS), e)
            })?;
            sys::map_update_batch(fd, &keys, &values)
                .map_err(|e| DataplaneError::io("write ports into", PathBuf::from(MAP_PORTS), e))?;
        }

        // Counters of bindings that are gone (a binding id belongs to one range).
        let live: HashSet<u32> = added.iter().map(|e| e.binding_id).collect();
        let gone: HashSet<u32> = removed
            .iter()
            .map(|e| e.binding_id)
            .chain(table.stale_stats.drain(..))
            .filter(|b| !live.contains(b))
            .collect();
        if !gone.is_empty() {
            let mut stats: PerCpuHashMap<&mut MapData, u32, Traffic> =
                PerCpuHashMap::try_from(self.map_mut(MAP_PORT_STATS)?)
                    .map_err(super::mapsync::map_err(MAP_PORT_STATS))?;
            for b in gone {
                // Absent when the binding never saw a packet.
                let _ = stats.remove(&b);
            }
        }

        for (k, n) in holders_after {
            if n == 0 {
                table.holders.remove(&k);
            } else {
                table.holders.insert(k, n);
            }
        }
        table.ports = ports;
        table.stale.clear();
        Ok(PortsChange {
            written: keys.len(),
            deleted: deletes.len(),
        })
    }

    /// The writer's view of maps it did not write (pins a previous agent left): their entries
    /// stay live until the first change rewrites or deletes them, so a restart does not
    /// interrupt published ports.
    fn adopt_ports(&mut self) -> Result<PortTable, DataplaneError> {
        let aya::maps::Map::HashMap(data) = self.map_ref(MAP_PORTS)? else {
            return Err(DataplaneError::MapNotFound { map: MAP_PORTS });
        };
        let stale = sys::map_entries::<PortKey, PortTarget>(data.fd().as_fd())
            .map_err(|e| DataplaneError::io("list", PathBuf::from(MAP_PORTS), e))?
            .into_iter()
            .collect();
        let stats: PerCpuHashMap<&MapData, u32, Traffic> =
            PerCpuHashMap::try_from(self.map_ref(MAP_PORT_STATS)?)
                .map_err(super::mapsync::map_err(MAP_PORT_STATS))?;
        let stale_stats = stats.keys().filter_map(Result::ok).collect();
        Ok(PortTable {
            stale,
            stale_stats,
            ..Default::default()
        })
    }
}
