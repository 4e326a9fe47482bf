//! Reading the dataplane back: per-interface counters and what is attached and pinned.

use std::path::PathBuf;

use std::collections::HashMap;

use aya::maps::{MapInfo, MapType, PerCpuHashMap};
use aya::programs::{SchedClassifier, TcAttachType};
use netd_common::{ALL_MAPS, IfStats, MAP_IF_STATS};
use serde::Serialize;

use super::{
    Dataplane, DataplaneError, TcAttach,
    attach::pinned_link_info,
    clsact,
    sys::{self, BPF_LINK_TYPE_TCX, BPF_LINK_TYPE_XDP, BPF_TCX_INGRESS},
    tcnl,
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

pub(super) fn direction(t: TcAttachType) -> Direction {
    match t {
        TcAttachType::Egress => Direction::Egress,
        _ => Direction::Ingress,
    }
}

/// A TC program of netd's: a pinned TCX link, or a netlink clsact filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachedProgram {
    pub ifname: String,
    /// 0 when the interface is gone and the link is defunct (`prune` removes it).
    pub ifindex: u32,
    pub direction: Direction,
    pub program: String,
    pub prog_id: u32,
    /// The TCX link's id (0 for a netlink filter, which is no link).
    pub link_id: u32,
    pub attach: TcAttach,
    /// Netlink filters: their priority and handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u32>,
}

/// A program of someone else's that runs before netd's on the same hook: it sees (and may
/// drop or rewrite) the traffic first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramAhead {
    pub ifname: String,
    pub direction: Direction,
    /// tcx: a TCX program ordered before netd's (or, in netlink mode, any TCX program, since
    /// TCX runs before clsact); netlink: a tc filter with a lower priority.
    pub attach: TcAttach,
    pub prog_id: Option<u32>,
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
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
    /// How TC programs are attached on this kernel (or as asked with --tc-attach).
    pub tc_attach: TcAttach,
    /// Whether this start loaded (verified) the programs or reused the ones pinned for the
    /// same object (`object`) under `<pin_dir>/progs/`.
    pub program_origin: super::ProgramOrigin,
    /// The digest of the eBPF object (and map layouts) the programs come from.
    pub object: String,
    /// TC programs (TCX links and netlink filters).
    pub programs: Vec<AttachedProgram>,
    /// Other programs that run before netd's on its hooks.
    pub ahead: Vec<ProgramAhead>,
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
        self.interface_stats_of(&clsact::interfaces())
    }

    /// [`Dataplane::interface_stats`] with the names from `interfaces` (one listing of the
    /// namespace's interfaces, (ifindex, name), shared with [`Dataplane::status_of`]).
    pub fn interface_stats_of(
        &self,
        interfaces: &[(u32, String)],
    ) -> Result<Vec<InterfaceStats>, DataplaneError> {
        let map_err = |source| DataplaneError::Map {
            map: MAP_IF_STATS,
            source,
        };
        let map = self
            .maps
            .get(MAP_IF_STATS)
            .ok_or(DataplaneError::MapNotFound { map: MAP_IF_STATS })?;
        let stats: PerCpuHashMap<_, u32, IfStats> =
            PerCpuHashMap::try_from(map).map_err(map_err)?;
        // The names from one listing of the namespace's interfaces, not one lookup per entry.
        let names: HashMap<u32, &String> = interfaces.iter().map(|(i, n)| (*i, n)).collect();
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
                ifname: names.get(&ifindex).map(|n| (*n).clone()),
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
        self.status_of(&clsact::interfaces())
    }

    /// [`Dataplane::status`] over `interfaces`, a listing of the namespace's interfaces
    /// (ifindex, name): with thousands of veths one listing is a dump of every link, so
    /// `netd status` makes one for this and [`Dataplane::interface_stats_of`].
    pub fn status_of(
        &self,
        interfaces: &[(u32, String)],
    ) -> Result<DataplaneStatus, DataplaneError> {
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
                    attach: TcAttach::Tcx,
                    priority: None,
                    handle: None,
                });
            }
        }
        let mut ahead = Vec::new();
        // TCX: programs ordered before netd's link on the same hook.
        for p in programs.iter().filter(|p| p.ifindex != 0) {
            for (prog_id, name) in tcx_chain(p.ifindex, &p.ifname, p.direction) {
                if prog_id == p.prog_id {
                    break;
                }
                ahead.push(ProgramAhead {
                    ifname: p.ifname.clone(),
                    direction: p.direction,
                    attach: TcAttach::Tcx,
                    prog_id: Some(prog_id),
                    name,
                    priority: None,
                });
            }
        }
        // Netlink filters (no pins: the kernel's list), and what runs before them: two dumps
        // per interface (the kernel dumps the filters of one hook of one device at a time), on
        // one socket; the TCX hooks asked for their program count only (the names of the
        // programs, when there are some).
        let sock = tcnl::socket().map_err(|source| DataplaneError::Netlink {
            ifname: "this namespace's interfaces".into(),
            what: "open a netlink socket to list the tc filters of",
            source,
        })?;
        for (ifindex, ifname) in interfaces {
            let (ifindex, ifname) = (*ifindex, ifname.clone());
            for hook in clsact::HOOKS {
                let filters = tcnl::filters_on(&sock, ifindex, hook).map_err(|source| {
                    DataplaneError::Netlink {
                        ifname: ifname.clone(),
                        what: "list the tc filters of",
                        source,
                    }
                })?;
                let Some(at) = filters.iter().position(clsact::is_netd) else {
                    continue;
                };
                let f = &filters[at];
                let dir = direction(hook);
                programs.push(AttachedProgram {
                    ifname: ifname.clone(),
                    ifindex,
                    direction: dir,
                    program: f.name.clone().unwrap_or_default(),
                    prog_id: f.prog_id.unwrap_or(0),
                    link_id: 0,
                    attach: TcAttach::Netlink,
                    priority: Some(f.priority),
                    handle: Some(f.handle),
                });
                for (prog_id, name) in tcx_chain(ifindex, &ifname, dir) {
                    ahead.push(ProgramAhead {
                        ifname: ifname.clone(),
                        direction: dir,
                        attach: TcAttach::Tcx,
                        prog_id: Some(prog_id),
                        name,
                        priority: None,
                    });
                }
                for o in &filters[..at] {
                    ahead.push(ProgramAhead {
                        ifname: ifname.clone(),
                        direction: dir,
                        attach: TcAttach::Netlink,
                        prog_id: o.prog_id,
                        name: o.name.clone().or_else(|| Some(o.kind.clone())),
                        priority: Some(o.priority),
                    });
                }
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
            let entries = if matches!(map_type, MapType::Array | MapType::PerCpuArray) {
                // Every index of an array exists: walking its keys (NETD_CT_RING's 256k
                // slots, one bpf(2) call each) would count max_entries, slowly.
                info.max_entries()
            } else {
                let fd = info.fd().map_err(map_err)?;
                sys::map_count_entries(&fd, info.key_size(), info.max_entries())
                    .map_err(|e| DataplaneError::io("count the entries of", pin_path.clone(), e))?
            };
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
            tc_attach: self.tc_attach,
            program_origin: self.progs.origin,
            object: self.progs.hash.clone(),
            programs,
            ahead,
            xdp,
            maps,
        })
    }
}

/// The TCX programs of a hook in run order, (id, name); empty without TCX. One BPF_PROG_QUERY
/// by index tells an empty hook (every container veth's, in netlink mode); only a hook with
/// programs is listed with their names.
fn tcx_chain(ifindex: u32, ifname: &str, dir: Direction) -> Vec<(u32, Option<String>)> {
    let (t, tcx) = match dir {
        Direction::Ingress => (TcAttachType::Ingress, sys::BPF_TCX_INGRESS),
        Direction::Egress => (TcAttachType::Egress, sys::BPF_TCX_EGRESS),
    };
    if ifindex != 0 && matches!(sys::tcx_prog_count(ifindex, tcx), Ok(0) | Err(_)) {
        return Vec::new();
    }
    match SchedClassifier::query_tcx(ifname, t) {
        Ok((_, progs)) => progs
            .iter()
            .map(|p| (p.id(), p.name_as_str().map(str::to_owned)))
            .collect(),
        Err(_) => Vec::new(),
    }
}
