//! Reading the dataplane back: per-interface counters and what is attached and pinned.

use std::path::PathBuf;

use aya::maps::{MapInfo, PerCpuHashMap};
use netd_common::{ALL_MAPS, IfStats, MAP_IF_STATS};
use serde::Serialize;

use super::{
    Dataplane, DataplaneError,
    attach::pinned_link_info,
    sys::{self, BPF_LINK_TYPE_TCX, BPF_LINK_TYPE_XDP, BPF_TCX_INGRESS},
};

/// One interface's counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceStats {
    pub ifindex: u32,
    /// `None` when the interface no longer exists (or is in another network namespace).
    pub ifname: Option<String>,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// TC hook direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

/// A pinned TCX link and the program it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachedProgram {
    pub ifname: String,
    /// 0 when the interface is gone and the link is defunct (`prune` removes it).
    pub ifindex: u32,
    pub direction: Direction,
    pub program: String,
    pub prog_id: u32,
    pub link_id: u32,
}

/// A pinned map and how full it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapUsage {
    pub name: String,
    /// aya's name for the kernel map type, e.g. `PerCpuHash`.
    pub map_type: String,
    pub max_entries: u32,
    pub entries: u32,
    pub pin_path: PathBuf,
}

/// Everything the dataplane has attached and pinned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataplaneStatus {
    pub pin_dir: PathBuf,
    /// TC programs (TCX links).
    pub programs: Vec<AttachedProgram>,
    /// XDP programs (the uplinks' pre-filter).
    pub xdp: Vec<AttachedXdp>,
    pub maps: Vec<MapUsage>,
}

/// A pinned XDP link and the program it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachedXdp {
    pub ifname: String,
    pub ifindex: u32,
    pub program: String,
    pub prog_id: u32,
    pub link_id: u32,
}

impl Dataplane {
    /// Per-interface counters summed over CPUs, sorted by ifindex, with the interface name
    /// resolved where it still exists.
    pub fn interface_stats(&self) -> Result<Vec<InterfaceStats>, DataplaneError> {
        let map_err = |source| DataplaneError::Map {
            map: MAP_IF_STATS,
            source,
        };
        let map = self
            .ebpf
            .map(MAP_IF_STATS)
            .ok_or(DataplaneError::MapNotFound { map: MAP_IF_STATS })?;
        let stats: PerCpuHashMap<_, u32, IfStats> =
            PerCpuHashMap::try_from(map).map_err(map_err)?;
        let mut out = Vec::new();
        for entry in stats.iter() {
            let (ifindex, per_cpu) = match entry {
                Ok(entry) => entry,
                // Removed between listing and lookup.
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(map_err(e)),
            };
            let mut sum = IfStats::default();
            for cpu in per_cpu.iter() {
                sum.accumulate(cpu);
            }
            out.push(InterfaceStats {
                ifindex,
                ifname: nix::net::if_::if_indextoname(ifindex)
                    .ok()
                    .and_then(|n| n.into_string().ok()),
                rx_packets: sum.rx_packets,
                rx_bytes: sum.rx_bytes,
                tx_packets: sum.tx_packets,
                tx_bytes: sum.tx_bytes,
            });
        }
        out.sort_by_key(|s| s.ifindex);
        Ok(out)
    }

    /// The pinned links (one per attached program) and the pinned maps with their fill level.
    /// Read from the pins, so it also shows what a previous agent left.
    pub fn status(&self) -> Result<DataplaneStatus, DataplaneError> {
        let mut programs = Vec::new();
        let mut xdp = Vec::new();
        for ifname in self.pins.pinned_interfaces()? {
            for program in self.pins.pinned_programs(&ifname)? {
                let path = self.pins.link(&ifname, &program);
                let Some(info) = pinned_link_info(&path)? else {
                    continue;
                };
                if info.link_type == BPF_LINK_TYPE_XDP {
                    xdp.push(AttachedXdp {
                        ifname: ifname.clone(),
                        ifindex: info.ifindex,
                        program,
                        prog_id: info.prog_id,
                        link_id: info.id,
                    });
                    continue;
                }
                if info.link_type != BPF_LINK_TYPE_TCX {
                    continue;
                }
                programs.push(AttachedProgram {
                    ifname: ifname.clone(),
                    ifindex: info.ifindex,
                    direction: if info.attach_type == BPF_TCX_INGRESS {
                        Direction::Ingress
                    } else {
                        Direction::Egress
                    },
                    program,
                    prog_id: info.prog_id,
                    link_id: info.id,
                });
            }
        }

        let mut maps = Vec::new();
        for &name in ALL_MAPS {
            let pin_path = self.pins.map(name);
            let map_err = |source| DataplaneError::MapPin {
                path: pin_path.clone(),
                source,
            };
            let info = MapInfo::from_pin(&pin_path).map_err(map_err)?;
            let map_type = info.map_type().map_err(map_err)?;
            let fd = info.fd().map_err(map_err)?;
            let entries = sys::map_count_entries(&fd, info.key_size(), info.max_entries())
                .map_err(|e| DataplaneError::io("count the entries of", pin_path.clone(), e))?;
            maps.push(MapUsage {
                name: name.to_owned(),
                map_type: format!("{map_type:?}"),
                max_entries: info.max_entries(),
                entries,
                pin_path: pin_path.clone(),
            });
        }

        Ok(DataplaneStatus {
            pin_dir: self.pins.root().to_owned(),
            programs,
            xdp,
            maps,
        })
    }
}
