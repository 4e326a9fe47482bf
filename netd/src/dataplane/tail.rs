//! Tail-called programs: loaded (or reused, see progs.rs) with the TC programs, never attached, their file descriptors
//! put into NETD_TAIL6 (pinned with the maps, so a killed agent leaves them in place and a
//! restarted one overwrites each slot with its freshly loaded program, atomically per slot).
//! `to_uplink` tail-calls `to_uplink6` for IPv6 so that its own verifier budget, close to the
//! 1M limit, does not pay for IPv6; an empty slot makes IPv6 "not netd's" (TC_ACT_UNSPEC).

use std::collections::HashMap;

use aya::maps::{Map, ProgramArray};
use netd_common::{ALL_TAIL_PROGRAMS, MAP_TAIL6};

use super::{DataplaneError, mapsync::map_err, progs::Programs};

/// Installs every tail-called program (loaded or reused by [`Programs`]) in its NETD_TAIL6
/// slot. With reused programs the slot already holds the same program: the write is a no-op.
pub(super) fn install(
    maps: &mut HashMap<&'static str, Map>,
    progs: &Programs,
) -> Result<(), DataplaneError> {
    for &(program, slot) in ALL_TAIL_PROGRAMS {
        let prog = progs
            .sched(program)
            .ok_or(DataplaneError::ProgramNotFound {
                program: program.to_owned(),
            })?;
        let fd = prog
            .fd()
            .map_err(|source| DataplaneError::LoadProgram { program, source })?
            .try_clone()
            .map_err(|source| DataplaneError::LoadProgram {
                program,
                source: source.into(),
            })?;
        let map = maps
            .get_mut(MAP_TAIL6)
            .ok_or(DataplaneError::MapNotFound { map: MAP_TAIL6 })?;
        let mut tail: ProgramArray<&mut aya::maps::MapData> =
            ProgramArray::try_from(map).map_err(map_err(MAP_TAIL6))?;
        tail.set(slot, &fd, 0).map_err(map_err(MAP_TAIL6))?;
    }
    Ok(())
}
