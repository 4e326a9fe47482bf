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
//! programs the adopt paths find their own program there and change nothing. Loading, pinning
//! and reopening are load.rs's, shared with the socket hooks (sock.rs).

use std::{collections::HashMap, path::PathBuf};

use aya::{
    Ebpf,
    programs::{SchedClassifier, Xdp},
};
use netd_common::{ALL_MAPS, ALL_TAIL_PROGRAMS, ALL_TC_PROGRAMS, PROG_XDP_PREFILTER};
use serde::Serialize;

use super::{DataplaneError, EBPF_OBJECT, load::ProgramPins, pins::PinLayout};

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

/// The digest of the embedded object and every map's name and layout version
/// ([`super::load::object_hash`]): the programs' pins are `progs/<program>@<hash>`.
pub fn object_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| super::load::object_hash(EBPF_OBJECT, ALL_MAPS))
        .clone()
}

impl PinLayout {
    pub fn progs_dir(&self) -> PathBuf {
        self.root().join("progs")
    }
}

/// `progs/<program>@<hash>`, for programs that use the maps of [`ALL_MAPS`].
fn program_pins(pins: &PinLayout, hash: &str) -> ProgramPins {
    ProgramPins::new(pins.progs_dir(), hash.to_owned(), ALL_MAPS.to_vec())
}

impl Programs {
    /// Opens the programs pinned for `hash`, or None (with the reason logged) when they cannot
    /// be reused.
    pub(super) fn open_pinned(pins: &PinLayout, hash: &str) -> Option<Self> {
        program_pins(pins, hash).reuse(
            pins,
            "programs",
            |set| Self::open(set, ProgramOrigin::Reused),
            |p| {
                let mut infos: Vec<_> = p.tc.iter().map(|(name, p)| (*name, p.info())).collect();
                infos.push((PROG_XDP_PREFILTER, p.xdp.info()));
                infos
            },
        )
    }

    fn open(set: &ProgramPins, origin: ProgramOrigin) -> std::io::Result<Self> {
        let mut tc = HashMap::new();
        for name in sched_names() {
            tc.insert(name, set.open(name)?);
        }
        Ok(Self {
            tc,
            xdp: set.open(PROG_XDP_PREFILTER)?,
            origin,
            hash: set.hash().to_owned(),
        })
    }

    /// Loads (verifies) every program of `ebpf`, pins it for `hash` and opens the pins.
    pub(super) fn load(
        ebpf: &mut Ebpf,
        pins: &PinLayout,
        hash: &str,
    ) -> Result<Self, DataplaneError> {
        let set = program_pins(pins, hash);
        for program in sched_names() {
            set.load::<SchedClassifier>(ebpf, program)?;
        }
        set.load::<Xdp>(ebpf, PROG_XDP_PREFILTER)?;
        Self::open(&set, ProgramOrigin::Loaded)
            .map_err(|e| DataplaneError::io("open the pinned programs in", pins.progs_dir(), e))
    }

    /// Unpins the programs of every other hash (an older or newer netd's object). Programs
    /// still attached stay loaded through their links until those are swapped.
    pub(super) fn remove_stale(&self, pins: &PinLayout) -> Result<(), DataplaneError> {
        program_pins(pins, &self.hash).remove_stale()
    }

    pub(super) fn sched(&self, name: &str) -> Option<&SchedClassifier> {
        self.tc.get(name)
    }

    pub(super) fn sched_mut(&mut self, name: &str) -> Option<&mut SchedClassifier> {
        self.tc.get_mut(name)
    }
}
