//! The eBPF dataplane: loads the embedded object with its maps pinned, attaches the TC programs
//! through TCX with pinned links (netlink clsact filters on kernels without TCX, or when
//! asked: [`TcAttachMode`]), and reads counters and status back.
//!
//! Pin layout under [`DataplaneConfig::pin_dir`] (a bpffs, mounted here if it is not one):
//!
//! ```text
//! <pin_dir>/maps/<MAP_NAME>[@v<N>]    every map in netd_common::ALL_MAPS (@vN: layout
//!                                     version N >= 2; see migrate.rs for upgrades)
//! <pin_dir>/links/<ifname>/<program>  one TCX link per attached program (TCX mode)
//! <pin_dir>/progs/<program>@<hash>    every loaded program, for the next start of the same
//!                                     object (see progs.rs and load.rs)
//! <pin_dir>/sock_progs/<program>@<hash>  the same for the socket hooks (see sock.rs)
//! <pin_dir>/cgroup/<program>          the socket hooks' cgroup links
//! ```
//!
//! In netlink mode the filters themselves are the record: priority [`clsact::PRIORITY`],
//! handle [`clsact::HANDLE`], named after their program.
//!
//! Pins are the only state: a killed agent leaves its programs attached and its maps populated,
//! and the next [`Dataplane::open`] + `attach_*` adopts the links (replacing their program with
//! the freshly loaded one) instead of attaching a second copy. Every call works on interfaces of
//! the calling thread's network namespace.

mod attach;
pub mod clsact;
mod ct;
mod error;
mod ipv6;
pub mod kernel;
mod load;
mod mapsync;
mod migrate;
mod pins;
mod ports;
mod progs;
pub mod sock;
mod stats;
mod sys;
mod tail;
mod tcnl;
mod xdp;

use std::path::PathBuf;

use std::collections::HashMap;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData},
    programs::SchedClassifier,
};
use netd_common::{ALL_MAPS, MAP_CT};

pub use ct::{CtFlow, CtGc, CtQuery, CtSourceCount};
pub use error::DataplaneError;
pub use ipv6::EndpointIpv6;
pub use kernel::{TcAttach, TcAttachMode};
pub use mapsync::V4Prefix;
pub use ports::PortsChange;
pub use progs::{ProgramOrigin, object_hash};
pub use stats::{
    AttachedProgram, AttachedXdp, DataplaneStatus, Direction, InterfaceStats, MapUsage,
    ProgramAhead,
};

use pins::PinLayout;

/// The eBPF object built by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd-ebpf"));

/// Where the dataplane keeps its pins.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    /// A bpffs directory (mounted by [`Dataplane::open`] when it is not on one), e.g.
    /// `/sys/fs/bpf/netd`.
    pub pin_dir: PathBuf,
    /// Size of the connection-tracking table (`NETD_CT`, two entries per flow): a full table
    /// evicts unreplied flows, and refuses new flows only when every entry is replied. Applies
    /// when the map is created; a reused pin keeps its size.
    pub ct_max: u32,
}

/// Where the map `name` (a `netd_common::MAP_*`) is pinned under `pin_dir`: for readers that
/// open one map on their own (the monitor's ring buffer).
pub fn pinned_map(pin_dir: &std::path::Path, name: &str) -> PathBuf {
    PinLayout::new(pin_dir).map(name)
}

/// NETD_CT_RING's size for a table of `ct_max` entries.
pub fn ct_ring_slots(ct_max: u32) -> u32 {
    (ct_max / 2).max(1)
}

/// The eBPF object's maps and programs, and its pin directory.
pub struct Dataplane {
    /// Every map of [`ALL_MAPS`] by name, opened from its pin (or taken from the object when
    /// this start loaded it).
    maps: HashMap<&'static str, Map>,
    progs: progs::Programs,
    pins: PinLayout,
    tc_attach: TcAttach,
    /// What the port writer last put in NETD_PORTS (None: not yet known).
    ports: Option<ports::PortTable>,
    /// Maps copied from an older layout's pins, whose old pins go once the programs are
    /// swapped ([`Dataplane::finish_migration`]).
    migrations: Vec<migrate::Pending>,
    /// Whether the first attach refreshed the migrated maps' copies.
    migrations_refreshed: bool,
}

impl Dataplane {
    /// Mounts bpffs at the pin directory if needed, loads [`EBPF_OBJECT`] with every map pinned
    /// at `<pin_dir>/maps/<MAP_NAME>` (existing pins are reused, so a restarted agent keeps its
    /// counters and state) and loads the programs into the kernel, or opens the ones pinned by
    /// a previous start of the same object ([`Dataplane::program_origin`]). Nothing is
    /// attached yet.
    /// The attach mode comes from `NETD_TC_ATTACH` (auto, tcx or netlink; default auto).
    pub fn open(cfg: &DataplaneConfig) -> Result<Self, DataplaneError> {
        let mode = match std::env::var("NETD_TC_ATTACH") {
            Ok(v) => v.parse().map_err(|e| DataplaneError::Kernel {
                reason: format!("invalid NETD_TC_ATTACH {e}"),
            })?,
            Err(_) => TcAttachMode::Auto,
        };
        Self::open_with(cfg, mode)
    }

    /// [`Dataplane::open`] with an explicit attach mode. Refuses kernels below the floor
    /// ([`kernel::REQUIRED`]) with an error that names what they lack.
    pub fn open_with(cfg: &DataplaneConfig, mode: TcAttachMode) -> Result<Self, DataplaneError> {
        let version = kernel::current()?;
        kernel::check_floor(version)?;
        let tc_attach = kernel::resolve(mode, version)?;
        let pins = PinLayout::new(&cfg.pin_dir);
        pins.prepare()?;

        let migrations = migrate::plan(&pins)?;
        let t = std::time::Instant::now();
        let hash = progs::object_hash();
        // A migration means another layout, so another object: never reused then. Reused
        // programs need neither the object (~100 ms to parse, relocate and open its maps) nor
        // the verifier: their maps are pinned, opened from the pins like the programs.
        let reused = if migrations.is_empty() {
            progs::Programs::open_pinned(&pins, &hash)
                .and_then(|progs| match open_maps(&pins) {
                    Ok(maps) => Some((maps, progs)),
                    Err(e) => {
                        tracing::warn!(error = %e, "the pinned maps cannot be opened: loading the eBPF object");
                        None
                    }
                })
        } else {
            None
        };
        let (mut maps, progs) = match reused {
            Some(r) => r,
            None => {
                let mut ebpf = load_object(cfg, &pins, &migrations)?;
                let progs = progs::Programs::load(&mut ebpf, &pins, &hash)?;
                // The programs live on through their pins, the maps through these handles.
                (take_maps(&mut ebpf)?, progs)
            }
        };
        progs.remove_stale(&pins)?;
        tracing::info!(
            programs = %progs.origin,
            object = hash,
            ms = t.elapsed().as_secs_f64() * 1e3,
            "the eBPF programs are ready"
        );
        // The old programs still run on the old maps: copy their entries now, and what
        // changes until the programs are swapped in finish_migration.
        for m in &migrations {
            let t = std::time::Instant::now();
            let n = m.copy()?;
            tracing::info!(
                map = m.layout.name,
                from = m.from,
                to = m.layout.version,
                copied = n.copied,
                ms = t.elapsed().as_secs_f64() * 1e3,
                "migrating a pinned map to a new layout"
            );
        }
        tail::install(&mut maps, &progs)?;
        let dp = Self {
            maps,
            progs,
            pins,
            tc_attach,
            ports: None,
            migrations,
            migrations_refreshed: false,
        };
        tracing::info!(pin_dir = %cfg.pin_dir.display(), %version, %tc_attach, "loaded the eBPF dataplane");
        Ok(dp)
    }

    /// Ends the migrations [`Dataplane::open`] started, once every interface runs this netd's
    /// programs (after the attach calls and [`Dataplane::prune`]): waits until no program
    /// uses an old map, copies the entries that changed since the first copy, and unpins the
    /// old map. An old map some program still uses (one netd did not swap) stays pinned, with
    /// a warning naming the program; the next start tries again.
    pub fn finish_migration(&mut self) -> Result<(), DataplaneError> {
        for m in std::mem::take(&mut self.migrations) {
            let users = m.wait_unused(std::time::Duration::from_secs(2));
            let delta = m.copy()?;
            if !users.is_empty() {
                tracing::warn!(
                    map = m.layout.name,
                    old_pin = %m.old_path.display(),
                    "the old map is still used by {}: kept pinned", users.join(", ")
                );
                self.migrations.push(m);
                continue;
            }
            m.retire()?;
            tracing::info!(
                map = m.layout.name,
                from = m.from,
                to = m.layout.version,
                delta = delta.copied,
                kept = delta.kept,
                "migrated a pinned map; the old pin is removed"
            );
        }
        Ok(())
    }

    /// Right before the first program swap: copies again what the old programs changed since
    /// [`Dataplane::open`] (loading takes seconds), so the new programs start from fresh
    /// entries rather than the first copy's.
    pub(super) fn refresh_migrations(&mut self) -> Result<(), DataplaneError> {
        if self.migrations_refreshed {
            return Ok(());
        }
        self.migrations_refreshed = true;
        for m in &self.migrations {
            let n = m.copy()?;
            tracing::info!(
                map = m.layout.name,
                refreshed = n.copied,
                "refreshed a migrated map before the program swap"
            );
        }
        Ok(())
    }

    /// Maps still being migrated: (name, old layout version).
    pub fn migrating(&self) -> Vec<(&'static str, u32)> {
        self.migrations
            .iter()
            .map(|m| (m.layout.name, m.from))
            .collect()
    }

    /// Whether this start loaded its programs or reused the pinned ones.
    pub fn program_origin(&self) -> ProgramOrigin {
        self.progs.origin
    }

    /// How this dataplane attaches its TC programs.
    pub fn tc_attach(&self) -> TcAttach {
        self.tc_attach
    }

    /// A loaded TC program by name (a `netd_common::PROG_*` constant), e.g. for
    /// BPF_PROG_TEST_RUN.
    pub fn program(&self, name: &str) -> Result<&SchedClassifier, DataplaneError> {
        let not_found = || DataplaneError::ProgramNotFound {
            program: name.to_owned(),
        };
        self.progs.sched(name).ok_or_else(not_found)
    }

    fn program_mut(&mut self, name: &'static str) -> Result<&mut SchedClassifier, DataplaneError> {
        self.progs
            .sched_mut(name)
            .ok_or(DataplaneError::ProgramNotFound {
                program: name.to_owned(),
            })
    }
}

/// Loads [`EBPF_OBJECT`] (not its programs) with every map pinned at `<pin_dir>/maps/`:
/// existing pins are reused, missing ones created (at the size `cfg` asks for; a migrated map
/// keeps the old one's size).
fn load_object(
    cfg: &DataplaneConfig,
    pins: &PinLayout,
    migrations: &[migrate::Pending],
) -> Result<Ebpf, DataplaneError> {
    let mut loader = EbpfLoader::new();
    // The verifier's error and its statistics, without the instruction trace: before
    // Linux 6.4 the log does not rotate, so a trace fills aya's buffer and the error at its
    // end (the reason a program is refused) is lost.
    loader.verifier_log_level(aya::VerifierLogLevel::STATS);
    for &map in ALL_MAPS {
        loader.map_pin_path(map, pins.map(map));
    }
    loader.map_max_entries(MAP_CT, cfg.ct_max);
    // A ring slot per flow the table can hold (a flow takes two entries).
    loader.map_max_entries(netd_common::MAP_CT_RING, ct_ring_slots(cfg.ct_max));
    for m in migrations {
        loader.map_max_entries(m.layout.name, m.max_entries);
    }
    loader
        .load(EBPF_OBJECT)
        .map_err(|source| DataplaneError::LoadObject {
            maps_dir: pins.maps_dir(),
            source: Box::new(source),
        })
}

/// Every map of [`ALL_MAPS`] out of the loaded object.
fn take_maps(ebpf: &mut Ebpf) -> Result<HashMap<&'static str, Map>, DataplaneError> {
    ALL_MAPS
        .iter()
        .map(|&map| {
            ebpf.take_map(map)
                .map(|m| (map, m))
                .ok_or(DataplaneError::MapNotFound { map })
        })
        .collect()
}

/// Every map of [`ALL_MAPS`] opened from its pin (what a start whose programs are all reused
/// uses: those programs run on exactly these maps, [`progs::Programs::open_pinned`] checked).
fn open_maps(pins: &PinLayout) -> Result<HashMap<&'static str, Map>, DataplaneError> {
    ALL_MAPS
        .iter()
        .map(|&map| {
            let path = pins.map(map);
            let data = MapData::from_pin(&path).map_err(|source| DataplaneError::MapPin {
                path: path.clone(),
                source,
            })?;
            let m = Map::from_map_data(data)
                .map_err(|source| DataplaneError::MapPin { path, source })?;
            Ok((map, m))
        })
        .collect()
}
