//! The loaded programs, pinned at `<pin_dir>/progs/<NAME>@<hash>` (`hash`: [`object_hash`] of
//! the embedded object and the maps' layout versions), so that a restart of the same netd
//! opens them instead of loading them again: the verifier takes seconds on the TC programs
//! (to_uplink alone is ~466k verified instructions), opening a pin takes microseconds.
//!
//! Pinned programs are reused only when every one of them is there for this hash and each
//! still uses the maps pinned under `maps/` now (a pin directory whose maps were removed and
//! created again holds programs bound to the old maps): otherwise everything is loaded as
//! before and pinned again, and the pins of other hashes (another netd's object) are removed.
//! The programs attached through links and filters stay attached either way; with reused
//! programs the adopt paths find their own program there and change nothing.

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    path::PathBuf,
};

use aya::{
    Ebpf,
    maps::{MapData, MapInfo},
    programs::{SchedClassifier, Xdp},
};
use aya_obj::programs::XdpAttachType;
use netd_common::{ALL_MAPS, ALL_TAIL_PROGRAMS, ALL_TC_PROGRAMS, PROG_XDP_PREFILTER};
use serde::Serialize;

use super::{DataplaneError, EBPF_OBJECT, log_verified, pins::PinLayout};

/// Where this start's programs came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgramOrigin {
    /// Loaded (verified) by this start.
    Loaded,
    /// Opened from the pins a netd with the same object left.
    Reused,
}

impl std::fmt::Display for ProgramOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Loaded => "loaded",
            Self::Reused => "reused",
        })
    }
}

/// The dataplane's programs (TC, tail-called and XDP), each opened from its pin.
pub(super) struct Programs {
    pub(super) tc: HashMap<&'static str, SchedClassifier>,
    pub(super) xdp: Xdp,
    pub(super) origin: ProgramOrigin,
    pub(super) hash: String,
}

/// Every TC program and tail-called program by name.
fn sched_names() -> impl Iterator<Item = &'static str> {
    ALL_TC_PROGRAMS
        .iter()
        .copied()
        .chain(ALL_TAIL_PROGRAMS.iter().map(|&(p, _)| p))
}

/// FNV-1a (64 bit) over the embedded object and every map's name and layout version: a
/// stable digest (the same in every build of the same object), not a cryptographic one.
pub fn object_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        feed(EBPF_OBJECT);
        for &map in ALL_MAPS {
            let version = netd_common::map_layout(map).map_or(1, |l| l.version);
            feed(map.as_bytes());
            feed(&version.to_le_bytes());
        }
        format!("{h:016x}")
    })
    .clone()
}

impl PinLayout {
    pub fn progs_dir(&self) -> PathBuf {
        self.root().join("progs")
    }

    /// `progs/<program>@<hash>`.
    pub fn program(&self, program: &str, hash: &str) -> PathBuf {
        self.progs_dir().join(format!("{program}@{hash}"))
    }
}

impl Programs {
    /// Opens the programs pinned for `hash`, or None (with the reason logged) when they cannot
    /// be reused.
    pub(super) fn open_pinned(pins: &PinLayout, hash: &str) -> Option<Self> {
        match Self::try_open(pins, hash, ProgramOrigin::Reused) {
            Ok(p) => match p.check_maps(pins) {
                Ok(()) => Some(p),
                Err(why) => {
                    tracing::info!(hash, "the pinned programs are not reused: {why}");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!(hash, "no pinned programs of this eBPF object: loading them");
                None
            }
            Err(e) => {
                tracing::warn!(hash, "the pinned programs are not reused: {e}");
                None
            }
        }
    }

    fn try_open(pins: &PinLayout, hash: &str, origin: ProgramOrigin) -> io::Result<Self> {
        let os = |e: aya::programs::ProgramError| match e {
            aya::programs::ProgramError::SyscallError(s) => s.io_error,
            e => io::Error::other(e),
        };
        let mut tc = HashMap::new();
        for name in sched_names() {
            let p = SchedClassifier::from_pin(pins.program(name, hash)).map_err(os)?;
            tc.insert(name, p);
        }
        let xdp = Xdp::from_pin(
            pins.program(PROG_XDP_PREFILTER, hash),
            XdpAttachType::Interface,
        )
        .map_err(os)?;
        Ok(Self {
            tc,
            xdp,
            origin,
            hash: hash.to_owned(),
        })
    }

    /// Refuses programs that use a map of netd's name other than the one pinned now.
    fn check_maps(&self, pins: &PinLayout) -> Result<(), String> {
        // Kernel map name (truncated to 15 bytes) -> ids of netd's pinned maps of that name.
        let mut ours: HashMap<String, HashSet<u32>> = HashMap::new();
        for &map in ALL_MAPS {
            let path = pins.map(map);
            let info = MapData::from_pin(&path)
                .and_then(|m| m.info())
                .map_err(|e| format!("map pin {}: {e}", path.display()))?;
            let name = info.name_as_str().unwrap_or_default().to_owned();
            ours.entry(name).or_default().insert(info.id());
        }
        let mut infos = Vec::new();
        for (name, p) in &self.tc {
            infos.push((*name, p.info()));
        }
        infos.push((PROG_XDP_PREFILTER, self.xdp.info()));
        for (name, info) in infos {
            let ids = info
                .and_then(|i| i.map_ids())
                .map_err(|e| format!("{name}: {e}"))?
                .unwrap_or_default();
            for id in ids {
                let Ok(m) = MapInfo::from_id(id) else {
                    continue;
                };
                let mname = m.name_as_str().unwrap_or_default();
                if ours.get(mname).is_some_and(|set| !set.contains(&id)) {
                    return Err(format!(
                        "{name} uses map {mname} id {id}, not the one pinned under {}",
                        pins.maps_dir().display()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Loads (verifies) every program of `ebpf`, pins it for `hash` and opens the pins.
    pub(super) fn load(
        ebpf: &mut Ebpf,
        pins: &PinLayout,
        hash: &str,
    ) -> Result<Self, DataplaneError> {
        let dir = pins.progs_dir();
        fs::create_dir_all(&dir).map_err(|e| DataplaneError::io("create", &dir, e))?;
        for program in sched_names() {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(program)
                .ok_or(DataplaneError::ProgramNotFound {
                    program: program.to_owned(),
                })?
                .try_into()
                .map_err(|source| DataplaneError::LoadProgram { program, source })?;
            prog.load()
                .map_err(|source| DataplaneError::LoadProgram { program, source })?;
            log_verified(program, prog.info());
            let path = pins.program(program, hash);
            super::pins::remove_file(&path)?;
            prog.pin(&path).map_err(|e| {
                DataplaneError::io("pin the program at", &path, io::Error::other(e))
            })?;
        }
        let xdp: &mut Xdp = ebpf
            .program_mut(PROG_XDP_PREFILTER)
            .ok_or(DataplaneError::ProgramNotFound {
                program: PROG_XDP_PREFILTER.to_owned(),
            })?
            .try_into()
            .map_err(|source| DataplaneError::LoadProgram {
                program: PROG_XDP_PREFILTER,
                source,
            })?;
        xdp.load().map_err(|source| DataplaneError::LoadProgram {
            program: PROG_XDP_PREFILTER,
            source,
        })?;
        log_verified(PROG_XDP_PREFILTER, xdp.info());
        let path = pins.program(PROG_XDP_PREFILTER, hash);
        super::pins::remove_file(&path)?;
        xdp.pin(&path)
            .map_err(|e| DataplaneError::io("pin the program at", &path, io::Error::other(e)))?;
        Self::try_open(pins, hash, ProgramOrigin::Loaded)
            .map_err(|e| DataplaneError::io("open the pinned programs in", dir, e))
    }

    /// Unpins the programs of every other hash (an older or newer netd's object). Programs
    /// still attached stay loaded through their links until those are swapped.
    pub(super) fn remove_stale(&self, pins: &PinLayout) -> Result<(), DataplaneError> {
        let dir = pins.progs_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(DataplaneError::io("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| DataplaneError::io("list", &dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Directories hold other objects' pins (the socket hooks' `sock/`).
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if name
                .rsplit_once('@')
                .is_none_or(|(_, hash)| hash != self.hash)
            {
                super::pins::remove_file(&entry.path())?;
                tracing::info!(pin = %entry.path().display(), "removed a stale program pin");
            }
        }
        Ok(())
    }

    pub(super) fn sched(&self, name: &str) -> Option<&SchedClassifier> {
        self.tc.get(name)
    }

    pub(super) fn sched_mut(&mut self, name: &str) -> Option<&mut SchedClassifier> {
        self.tc.get_mut(name)
    }
}
