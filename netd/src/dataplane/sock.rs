//! The socket hooks that replace docker-proxy: the `netd-sock` object's cgroup socket-address
//! programs, attached to a cgroup v2 directory with links pinned at
//! `<pin_dir>/cgroup/<program>`.
//!
//! The object shares NETD_CONFIG, NETD_PORTS and NETD_HOST_ADDRS with the TC object (same pin
//! paths, so loading it opens the maps [`Dataplane::open`] pinned) and owns the NETD_SOCK_*
//! maps. Like the TCX links, the cgroup links outlive the agent: a killed daemon leaves
//! host-local access working, and the next one adopts the links by swapping its freshly
//! loaded programs in (bpf_link_update), so the cgroup is never without its hooks and never
//! has two copies.
//!
//! The links live beside `links/`, not in it: everything under `links/` is an interface name
//! to [`Dataplane::prune`], which would detach a `links/cgroup/` it cannot resolve.
//!
//! The programs are pinned at `<pin_dir>/sock_progs/<program>@<hash>` (load.rs; `hash`: the
//! digest of this object and the layouts of the maps it uses), so that a restart of the same
//! netd verifies none of them (issue 13): it opens the pins, finds its own programs on the
//! pinned links and changes nothing. Another object's pins are not used: its programs are
//! loaded, swapped in on the links, and the old pins removed.

use std::{
    fs, io,
    os::{
        fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::Array,
    programs::{CgroupAttachMode, CgroupSockAddr, ProgramError, ProgramInfo, links::FdLink},
};
use aya_obj::generated::bpf_attach_type;
use netd_common::{
    ALL_SOCK_PROGRAMS, BIND_SOCK_PROGRAMS, MAP_SOCK_CONFIG, SOCK_MAPS, SOCK_SHARED_MAPS, SockConfig,
};
use serde::Serialize;

use super::{
    Dataplane, DataplaneConfig, DataplaneError, ProgramOrigin,
    load::{self, ProgramPins},
    pins::{self, PinLayout},
    sys,
};

/// The socket-hook object built by build.rs (netd-ebpf's `netd-sock` binary).
pub static SOCK_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd-sock"));

/// statfs magic of cgroup v2.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The kernel's `enum bpf_attach_type` of each program.
fn attach_type(program: &str) -> u32 {
    load::sock_attach_type(program).map_or(u32::MAX, |t| bpf_attach_type::from(t) as u32)
}

/// Every map the socket-hook object uses, pinned under `maps/`.
fn sock_maps() -> Vec<&'static str> {
    SOCK_SHARED_MAPS.iter().chain(SOCK_MAPS).copied().collect()
}

/// The digest of [`SOCK_OBJECT`] and its maps' layouts: its programs' pins are
/// `sock_progs/<program>@<hash>`.
pub fn sock_object_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| load::object_hash(SOCK_OBJECT, &sock_maps()))
        .clone()
}

/// Socket-hook programs opened from their pins, by name.
type Hooks = Vec<(&'static str, CgroupSockAddr)>;

fn open_hooks(set: &ProgramPins, programs: &[&'static str]) -> io::Result<Hooks> {
    programs.iter().map(|&p| Ok((p, set.open(p)?))).collect()
}

fn hook_infos(hooks: &Hooks) -> Vec<(&str, Result<ProgramInfo, ProgramError>)> {
    hooks.iter().map(|(name, p)| (*name, p.info())).collect()
}

/// A pinned socket-hook link and what it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SockHook {
    pub program: String,
    /// The cgroup's id (its inode number on cgroup2); 0 once the cgroup is gone.
    pub cgroup_id: u64,
    pub prog_id: u32,
    pub link_id: u32,
}

/// The network namespace cookie (SO_NETNS_COOKIE) of the calling thread's namespace: what the
/// socket hooks compare to act only on the daemon's own sockets.
pub fn netns_cookie() -> io::Result<u64> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most len bytes into cookie.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The cgroup v2 mount (the default `--cgroup`): the first `cgroup2` mount in
/// /proc/self/mountinfo (`/sys/fs/cgroup/unified` on hybrid hosts, `/sys/fs/cgroup` on unified
/// ones), else `/sys/fs/cgroup/unified`, which [`Dataplane::attach_sock_hooks`] then reports
/// as missing.
pub fn default_cgroup() -> PathBuf {
    fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                // "<id> <parent> <dev> <root> <mount point> <opts> [optional...] - <fstype> ..."
                let (left, right) = l.split_once(" - ")?;
                (right.split_whitespace().next()? == "cgroup2")
                    .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
            })
        })
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup/unified"))
}

/// The socket hooks of one pin directory, on their own: they need neither the TC object nor
/// its programs (the shared maps are created here when the TC object has not pinned them).
/// [`Dataplane`]'s `*_sock_hooks` methods are these on the dataplane's pin directory.
pub struct SockHooks {
    pins: PinLayout,
}

impl Dataplane {
    fn sock(&self) -> SockHooks {
        SockHooks {
            pins: self.pins.clone(),
        }
    }

    /// [`SockHooks::attach`] on this dataplane's pin directory.
    pub fn attach_sock_hooks(
        &mut self,
        cgroup: &Path,
        netns_cookie: u64,
    ) -> Result<(), DataplaneError> {
        self.sock().attach(cgroup, netns_cookie)
    }

    /// [`SockHooks::attach_with`] on this dataplane's pin directory: the daemon's entry point.
    pub fn attach_sock_hooks_with(
        &mut self,
        cgroup: &Path,
        netns_cookie: u64,
        bind: BindHooks,
    ) -> Result<bool, DataplaneError> {
        self.sock().attach_with(cgroup, netns_cookie, bind)
    }

    /// [`SockHooks::detach`] on this dataplane's pin directory.
    pub fn detach_sock_hooks(&mut self) -> Result<(), DataplaneError> {
        self.sock().detach()
    }

    /// [`SockHooks::list`] on this dataplane's pin directory.
    pub fn sock_hooks(&self) -> Result<Vec<SockHook>, DataplaneError> {
        self.sock().list()
    }
}

impl SockHooks {
    /// Prepares the pin directory as [`Dataplane::open`] does (mounting bpffs there if needed)
    /// without loading the TC object.
    pub fn open(cfg: &DataplaneConfig) -> Result<Self, DataplaneError> {
        let pins = PinLayout::new(&cfg.pin_dir);
        pins.prepare()?;
        Ok(Self { pins })
    }

    fn links_dir(&self) -> PathBuf {
        self.pins.root().join("cgroup")
    }

    /// Opens the socket-hook programs pinned for this object, or loads them (the object's maps
    /// pinned beside the TC object's, the shared ones reused, or created when the TC object
    /// has not pinned them), tells them the daemon's network namespace (`netns_cookie`, see
    /// [`netns_cookie`]), and attaches every program to the cgroup v2 directory `cgroup` with
    /// a link pinned at `<pin_dir>/cgroup/<program>`. Links a previous agent pinned for the
    /// same cgroup are adopted (their program swapped for this one, unless they run it
    /// already); links for another cgroup are replaced.
    ///
    /// The hooks run for every process in `cgroup` and its descendants, in every network
    /// namespace; they act only on sockets of `netns_cookie`'s namespace.
    pub fn attach(&self, cgroup: &Path, netns_cookie: u64) -> Result<(), DataplaneError> {
        self.attach_with(cgroup, netns_cookie, BindHooks::Off)
            .map(drop)
    }

    /// [`SockHooks::attach`], plus the bind hooks (`sock_bind4/6`) that refuse host sockets a
    /// published port (EADDRINUSE) when `bind` asks for them. Returns whether they are
    /// attached: with [`BindHooks::IfSupported`] a kernel whose verifier refuses them (no
    /// bpf_set_retval before 5.18) is not an error, the caller falls back to holding a socket
    /// per port. Bind hooks a previous agent left are removed when they are not wanted.
    pub fn attach_with(
        &self,
        cgroup: &Path,
        netns_cookie: u64,
        bind: BindHooks,
    ) -> Result<bool, DataplaneError> {
        let t = std::time::Instant::now();
        let cg = open_cgroup(cgroup)?;
        let cgroup_id = fs::metadata(cgroup)
            .map_err(|e| DataplaneError::io("stat", cgroup, e))?
            .ino();

        // The object is loaded only when a program has to be: reused programs need neither
        // it nor the verifier, their maps are pinned.
        let set = self.program_pins();
        let mut object = None;
        let mut hooks = self.hooks(&set, ALL_SOCK_PROGRAMS, &mut object)?;
        set_config(&self.pins, netns_cookie)?;

        let dir = self.links_dir();
        fs::create_dir_all(&dir).map_err(|e| DataplaneError::io("create", &dir, e))?;
        for (program, prog) in &mut hooks {
            attach_one(prog, program, &dir.join(*program), &cg, cgroup, cgroup_id)?;
        }
        let mut bound = false;
        if bind != BindHooks::Off {
            match self.hooks(&set, BIND_SOCK_PROGRAMS, &mut object) {
                Ok(mut hooks) => {
                    for (program, prog) in &mut hooks {
                        attach_one(prog, program, &dir.join(*program), &cg, cgroup, cgroup_id)?;
                    }
                    bound = true;
                }
                Err(e) if bind == BindHooks::IfSupported => {
                    tracing::warn!(error = %e, "the kernel refused the bind hooks (bpf_set_retval needs 5.18): published ports are reserved with one socket each");
                }
                Err(e) => return Err(e),
            }
        }
        if !bound {
            for &program in BIND_SOCK_PROGRAMS {
                destroy_link(&dir.join(program))?;
            }
        }
        set.remove_stale()?;
        // Programs and maps stay alive through their pins: the loaded object is not needed.
        let programs = match object {
            Some(_) => ProgramOrigin::Loaded,
            None => ProgramOrigin::Reused,
        };
        tracing::info!(
            cgroup = %cgroup.display(),
            netns_cookie,
            bind_hooks = bound,
            %programs,
            object = set.hash(),
            ms = t.elapsed().as_secs_f64() * 1e3,
            "attached the socket hooks"
        );
        Ok(bound)
    }

    /// `sock_progs/<program>@<hash>` for this netd's socket-hook object.
    fn program_pins(&self) -> ProgramPins {
        ProgramPins::new(
            self.pins.root().join("sock_progs"),
            sock_object_hash(),
            sock_maps(),
        )
    }

    /// `programs` opened from their pins when they are there for this object and use the maps
    /// pinned now; else loaded (verified) from the object, loading it into `object` first,
    /// pinned and opened.
    fn hooks(
        &self,
        set: &ProgramPins,
        programs: &[&'static str],
        object: &mut Option<Ebpf>,
    ) -> Result<Hooks, DataplaneError> {
        if let Some(hooks) = set.reuse(
            &self.pins,
            "socket hooks",
            |set| open_hooks(set, programs),
            hook_infos,
        ) {
            return Ok(hooks);
        }
        if object.is_none() {
            *object = Some(self.load_object()?);
        }
        let Some(ebpf) = object.as_mut() else {
            unreachable!("the object was just loaded");
        };
        for &program in programs {
            set.load::<CgroupSockAddr>(ebpf, program)?;
        }
        open_hooks(set, programs)
            .map_err(|e| DataplaneError::io("open the pinned socket hooks in", self.pins.root(), e))
    }

    /// Loads the socket-hook object (not its programs): its maps pinned beside the TC
    /// object's, the shared ones reused, or created when the TC object has not pinned them.
    fn load_object(&self) -> Result<Ebpf, DataplaneError> {
        let mut loader = EbpfLoader::new();
        for map in sock_maps() {
            loader.map_pin_path(map, self.pins.map(map));
        }
        loader
            .load(SOCK_OBJECT)
            .map_err(|source| DataplaneError::LoadObject {
                maps_dir: self.pins.maps_dir(),
                source: Box::new(source),
            })
    }

    /// Detaches and unpins every socket-hook link and the socket hooks' own maps. Nothing
    /// attached is not an error; keeps going after an error and reports them all.
    pub fn detach(&self) -> Result<(), DataplaneError> {
        let dir = self.links_dir();
        let mut errors = Vec::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(entry) => {
                            if let Err(e) = destroy_link(&entry.path()) {
                                errors.push(e);
                            }
                        }
                        Err(e) => errors.push(DataplaneError::io("list", &dir, e)),
                    }
                }
                if let Err(e) = pins::remove_dir(&dir) {
                    errors.push(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(DataplaneError::io("list", &dir, e)),
        }
        // The programs use the maps removed below: a next attach loads them again.
        if let Err(e) = self.program_pins().remove_all() {
            errors.push(e);
        }
        for &map in SOCK_MAPS {
            if let Err(e) = pins::remove_file(&self.pins.map(map)) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            tracing::info!("detached the socket hooks");
        }
        DataplaneError::collect(errors)
    }

    /// The pinned socket-hook links, sorted by program name.
    pub fn list(&self) -> Result<Vec<SockHook>, DataplaneError> {
        let dir = self.links_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(DataplaneError::io("list", dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| DataplaneError::io("list", &dir, e))?;
            let Ok(program) = entry.file_name().into_string() else {
                continue;
            };
            if let Some(info) = cgroup_link_info(&entry.path())? {
                out.push(SockHook {
                    program,
                    cgroup_id: info.cgroup_id,
                    prog_id: info.prog_id,
                    link_id: info.id,
                });
            }
        }
        out.sort_by(|a, b| a.program.cmp(&b.program));
        Ok(out)
    }
}

/// Whether [`SockHooks::attach_with`] attaches the bind hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindHooks {
    Off,
    /// Attach them; a kernel that refuses them is not an error.
    IfSupported,
    /// Attach them or fail.
    Required,
}

/// Tells the socket hooks the daemon's network namespace.
fn set_config(pins: &PinLayout, netns_cookie: u64) -> Result<(), DataplaneError> {
    let map_err = |source| DataplaneError::Map {
        map: MAP_SOCK_CONFIG,
        source,
    };
    let mut config: Array<_, SockConfig> =
        Array::try_from(pins.open_map(MAP_SOCK_CONFIG)?).map_err(map_err)?;
    config
        .set(0, SockConfig { netns_cookie }, 0)
        .map_err(map_err)
}

/// Opens a cgroup v2 directory, refusing anything else (a cgroup v1 hierarchy, a plain
/// directory) with an error that says so.
fn open_cgroup(cgroup: &Path) -> Result<fs::File, DataplaneError> {
    let cg = fs::File::open(cgroup).map_err(|e| DataplaneError::io("open cgroup", cgroup, e))?;
    let st = nix::sys::statfs::fstatfs(&cg)
        .map_err(|e| DataplaneError::io("statfs", cgroup, e.into()))?;
    if st.filesystem_type().0 as i64 != CGROUP2_SUPER_MAGIC {
        return Err(DataplaneError::io(
            "attach socket hooks to",
            cgroup,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a cgroup v2 directory (hybrid hosts mount it at /sys/fs/cgroup/unified)",
            ),
        ));
    }
    Ok(cg)
}

/// Attaches `prog` to the cgroup through a pinned link at `path`, or adopts the link pinned
/// there if it is for this cgroup and hook.
fn attach_one(
    prog: &mut CgroupSockAddr,
    program: &'static str,
    path: &Path,
    cg: &fs::File,
    cgroup: &Path,
    cgroup_id: u64,
) -> Result<(), DataplaneError> {
    match cgroup_link_info(path)? {
        Some(info)
            if info.link_type == sys::BPF_LINK_TYPE_CGROUP
                && info.cgroup_id == cgroup_id
                && info.attach_type == attach_type(program) =>
        {
            let adopt_err = |source: io::Error| DataplaneError::Adopt {
                path: path.to_owned(),
                source: source.into(),
            };
            let prog_id = prog
                .info()
                .map_err(|source| DataplaneError::LoadProgram { program, source })?
                .id();
            if info.prog_id == prog_id {
                // A reused program: the link already runs it.
                tracing::debug!(program, prog_id, "the pinned cgroup link runs this program");
                return Ok(());
            }
            let link = sys::obj_get(path).map_err(adopt_err)?;
            let prog_fd = prog
                .fd()
                .map_err(|e| DataplaneError::LoadProgram { program, source: e })?;
            sys::link_update(link.as_fd(), prog_fd.as_fd()).map_err(adopt_err)?;
            tracing::info!(
                program,
                old_prog_id = info.prog_id,
                "adopted a pinned cgroup link"
            );
            return Ok(());
        }
        // For another cgroup (--cgroup changed), or one that is gone.
        Some(_) => destroy_link(path)?,
        None => {}
    }
    let attach_err = |source| DataplaneError::Attach {
        ifname: format!("cgroup {}", cgroup.display()),
        program,
        source,
    };
    // A bpf_link (kernel >= 5.7): only links can be pinned and so outlive the agent. cgroup
    // links always stack (BPF_F_ALLOW_MULTI), so two daemons may share a cgroup; each acts only
    // on its own namespace's sockets.
    let id = prog
        .attach(cg, CgroupAttachMode::Single)
        .map_err(attach_err)?;
    let link = prog.take_link(id).map_err(attach_err)?;
    // Always an fd link on kernels with bpf_link (>= 5.7), which pinning needs.
    let link = FdLink::try_from(link)
        .map_err(|e| DataplaneError::io("pin the cgroup link at", path, io::Error::other(e)))?;
    // On failure the link is dropped, which detaches it: nothing is left half-done.
    link.pin(path).map_err(|source| DataplaneError::PinLink {
        ifname: format!("cgroup {}", cgroup.display()),
        program,
        path: path.to_owned(),
        source,
    })?;
    tracing::debug!(program, cgroup = %cgroup.display(), "attached");
    Ok(())
}

/// The kernel's view of the link pinned at `path`, or `None` when nothing is pinned there.
fn cgroup_link_info(path: &Path) -> Result<Option<sys::CgroupLinkInfo>, DataplaneError> {
    let open_err = |source| DataplaneError::OpenLink {
        path: path.to_owned(),
        source,
    };
    let fd = match sys::obj_get(path) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_err(e)),
    };
    sys::cgroup_link_info(fd.as_fd())
        .map(Some)
        .map_err(open_err)
}

/// Detaches the link pinned at `path` now and unpins it; nothing pinned there is fine.
fn destroy_link(path: &Path) -> Result<(), DataplaneError> {
    match sys::obj_get(path) {
        Ok(fd) => sys::link_detach(fd.as_fd()).map_err(|source| DataplaneError::DetachLink {
            path: path.to_owned(),
            source,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Not a link we can open (e.g. a stray file): unpinning it is all we can do.
        Err(_) => {}
    }
    pins::remove_file(path)
}
