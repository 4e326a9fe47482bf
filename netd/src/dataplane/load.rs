//! The one way netd gets a program into the kernel, for the TC/XDP object (progs.rs) and the
//! socket-hook object (sock.rs) alike: each program is pinned at `<dir>/<program>@<hash>`
//! (`hash`: [`object_hash`] of its object and of the layout versions of the maps it uses), so
//! that a restart of the same netd opens the pin (microseconds) instead of loading it again
//! (the verifier: seconds for the TC programs). Every program the verifier accepts is logged
//! as `program=NAME verified_insns=N` (tests/tests/verifier_budget.rs parses that line).
//!
//! Pinned programs are reused only when they are there for this hash and each still uses the
//! maps pinned under `maps/` now: a pin directory whose maps were removed and created again
//! holds programs bound to the old maps.

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    maps::MapInfo,
    pin::PinError,
    programs::{CgroupSockAddr, ProgramError, ProgramInfo, SchedClassifier, Xdp},
};
use aya_obj::programs::{CgroupSockAddrAttachType, XdpAttachType};
use netd_common::{
    PROG_SOCK_BIND4, PROG_SOCK_BIND6, PROG_SOCK_CONNECT4, PROG_SOCK_CONNECT6,
    PROG_SOCK_GETPEERNAME4, PROG_SOCK_GETPEERNAME6, PROG_SOCK_RECVMSG4, PROG_SOCK_RECVMSG6,
    PROG_SOCK_SENDMSG4,
};

use super::{DataplaneError, pins::PinLayout};

/// FNV-1a (64 bit) over `object` and every map's name and layout version: a stable digest
/// (the same in every build of the same object), not a cryptographic one.
pub(super) fn object_hash(object: &[u8], maps: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(object);
    for &map in maps {
        let version = netd_common::map_layout(map).map_or(1, |l| l.version);
        feed(map.as_bytes());
        feed(&version.to_le_bytes());
    }
    format!("{h:016x}")
}

/// A program kind netd loads: found in a loaded object by name, verified, pinned, reopened.
pub(super) trait Loadable: Sized {
    /// Program `name` of the loaded (not yet verified) object.
    fn in_object<'a>(
        ebpf: &'a mut Ebpf,
        name: &'static str,
    ) -> Result<&'a mut Self, DataplaneError>;
    fn load(&mut self) -> Result<(), ProgramError>;
    fn pin(&mut self, path: &Path) -> Result<(), PinError>;
    fn info(&self) -> Result<ProgramInfo, ProgramError>;
    /// The program pinned at `path`, which is program `name`.
    fn from_pin(path: &Path, name: &str) -> Result<Self, ProgramError>;
}

macro_rules! loadable {
    ($ty:ty, |$path:ident, $name:ident| $from_pin:expr) => {
        impl Loadable for $ty {
            fn in_object<'a>(
                ebpf: &'a mut Ebpf,
                name: &'static str,
            ) -> Result<&'a mut Self, DataplaneError> {
                ebpf.program_mut(name)
                    .ok_or_else(|| DataplaneError::ProgramNotFound {
                        program: name.to_owned(),
                    })?
                    .try_into()
                    .map_err(|source| DataplaneError::LoadProgram {
                        program: name,
                        source,
                    })
            }
            fn load(&mut self) -> Result<(), ProgramError> {
                <$ty>::load(self)
            }
            fn pin(&mut self, path: &Path) -> Result<(), PinError> {
                <$ty>::pin(self, path)
            }
            fn info(&self) -> Result<ProgramInfo, ProgramError> {
                <$ty>::info(self)
            }
            fn from_pin($path: &Path, $name: &str) -> Result<Self, ProgramError> {
                $from_pin
            }
        }
    };
}

loadable!(SchedClassifier, |path, _name| SchedClassifier::from_pin(
    path
));
loadable!(Xdp, |path, _name| Xdp::from_pin(
    path,
    XdpAttachType::Interface
));
loadable!(CgroupSockAddr, |path, name| CgroupSockAddr::from_pin(
    path,
    sock_attach_type(name).ok_or_else(|| ProgramError::UnexpectedProgramType)?
));

/// The cgroup hook a socket-address program is for (the kernel does not keep it in a pin).
pub(super) fn sock_attach_type(program: &str) -> Option<CgroupSockAddrAttachType> {
    use CgroupSockAddrAttachType as T;
    Some(match program {
        PROG_SOCK_CONNECT4 => T::Connect4,
        PROG_SOCK_CONNECT6 => T::Connect6,
        PROG_SOCK_SENDMSG4 => T::UDPSendMsg4,
        PROG_SOCK_RECVMSG4 => T::UDPRecvMsg4,
        PROG_SOCK_RECVMSG6 => T::UDPRecvMsg6,
        PROG_SOCK_GETPEERNAME4 => T::GetPeerName4,
        PROG_SOCK_GETPEERNAME6 => T::GetPeerName6,
        PROG_SOCK_BIND4 => T::Bind4,
        PROG_SOCK_BIND6 => T::Bind6,
        _ => return None,
    })
}

/// Logs how many instructions the kernel's verifier processed for a program it accepted
/// (`bpf_prog_info.verified_insns`, Linux 5.16): the budget is 1M, and older verifiers spend
/// more of it, so `cargo xtask vm-smoke` prints these for 6.1.
pub(super) fn log_verified(program: &str, info: Result<ProgramInfo, ProgramError>) {
    if let Some(n) = info.ok().and_then(|i| i.verified_instruction_count()) {
        tracing::info!(
            program,
            verified_insns = n,
            "the verifier accepted the program"
        );
    }
}

/// The pins of one object's programs: `<dir>/<program>@<hash>`.
pub(super) struct ProgramPins {
    dir: PathBuf,
    hash: String,
    /// The maps the object's programs use (pinned under `maps/`): a reused program must use
    /// the ones pinned now.
    maps: Vec<&'static str>,
}

/// A program's pin could not be opened: the io error of bpf_obj_get (NotFound: not pinned).
fn pin_error(e: ProgramError) -> io::Error {
    match e {
        ProgramError::SyscallError(s) => s.io_error,
        e => io::Error::other(e),
    }
}

impl ProgramPins {
    pub(super) fn new(dir: PathBuf, hash: String, maps: Vec<&'static str>) -> Self {
        Self { dir, hash, maps }
    }

    pub(super) fn hash(&self) -> &str {
        &self.hash
    }

    pub(super) fn path(&self, program: &str) -> PathBuf {
        self.dir.join(format!("{program}@{}", self.hash))
    }

    /// Opens program `program` pinned for this hash.
    pub(super) fn open<P: Loadable>(&self, program: &str) -> io::Result<P> {
        P::from_pin(&self.path(program), program).map_err(pin_error)
    }

    /// Loads (verifies) program `program` of `ebpf`, logs what the verifier spent and pins it
    /// for this hash, replacing a pin left there.
    pub(super) fn load<P: Loadable>(
        &self,
        ebpf: &mut Ebpf,
        program: &'static str,
    ) -> Result<(), DataplaneError> {
        fs::create_dir_all(&self.dir).map_err(|e| DataplaneError::io("create", &self.dir, e))?;
        let prog = P::in_object(ebpf, program)?;
        prog.load()
            .map_err(|source| DataplaneError::LoadProgram { program, source })?;
        log_verified(program, prog.info());
        let path = self.path(program);
        super::pins::remove_file(&path)?;
        prog.pin(&path)
            .map_err(|e| DataplaneError::io("pin the program at", &path, io::Error::other(e)))
    }

    /// Runs `open` (which opens a set of programs from their pins) and returns what it opened
    /// when every one of them uses the maps pinned now, or None with the reason logged.
    /// `what` names the set in the log.
    pub(super) fn reuse<T>(
        &self,
        pins: &PinLayout,
        what: &str,
        open: impl FnOnce(&Self) -> io::Result<T>,
        infos: impl FnOnce(&T) -> Vec<(&str, Result<ProgramInfo, ProgramError>)>,
    ) -> Option<T> {
        let hash = self.hash.as_str();
        match open(self) {
            Ok(p) => match self.check_maps(pins, infos(&p)) {
                Ok(()) => Some(p),
                Err(why) => {
                    tracing::info!(hash, "the pinned {what} are not reused: {why}");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!(hash, "no pinned {what} of this eBPF object: loading them");
                None
            }
            Err(e) => {
                tracing::warn!(hash, "the pinned {what} are not reused: {e}");
                None
            }
        }
    }

    /// Refuses programs that use a map of netd's name other than the one pinned now.
    fn check_maps(
        &self,
        pins: &PinLayout,
        infos: Vec<(&str, Result<ProgramInfo, ProgramError>)>,
    ) -> Result<(), String> {
        // Kernel map name (truncated to 15 bytes) -> ids of netd's pinned maps of that name.
        let mut ours: HashMap<String, HashSet<u32>> = HashMap::new();
        for &map in &self.maps {
            let path = pins.map(map);
            let info =
                MapInfo::from_pin(&path).map_err(|e| format!("map pin {}: {e}", path.display()))?;
            let name = info.name_as_str().unwrap_or_default().to_owned();
            ours.entry(name).or_default().insert(info.id());
        }
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

    /// Unpins the programs of every other hash (an older or newer netd's object). Programs
    /// still attached stay loaded through their links until those are swapped.
    pub(super) fn remove_stale(&self) -> Result<(), DataplaneError> {
        self.remove_where(|hash| hash != Some(self.hash.as_str()), true)
    }

    /// Unpins every program of the directory, of any hash, and the directory.
    pub(super) fn remove_all(&self) -> Result<(), DataplaneError> {
        self.remove_where(|_| true, false)?;
        super::pins::remove_dir(&self.dir)
    }

    /// Unpins the files of the directory whose hash (after the last `@`) `remove` accepts,
    /// logging each when they are `stale`.
    fn remove_where(
        &self,
        remove: impl Fn(Option<&str>) -> bool,
        stale: bool,
    ) -> Result<(), DataplaneError> {
        let dir = &self.dir;
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(DataplaneError::io("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| DataplaneError::io("list", dir, e))?;
            // Directories are not program pins.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if remove(name.rsplit_once('@').map(|(_, hash)| hash)) {
                super::pins::remove_file(&entry.path())?;
                if stale {
                    tracing::info!(pin = %entry.path().display(), "removed a stale program pin");
                }
            }
        }
        Ok(())
    }
}
