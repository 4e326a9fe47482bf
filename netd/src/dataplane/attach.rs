//! Attaching programs through TCX with pinned links (or, without TCX, as netlink clsact
//! filters: see [`super::clsact`]), adopting what a previous agent left, and detaching and
//! pruning them.

use std::{
    collections::{HashMap, HashSet},
    os::fd::AsFd as _,
    path::Path,
};

use aya::{
    maps::PerCpuHashMap,
    programs::{
        LinkOrder, TcAttachType,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
    },
};
use netd_common::{
    IfStats, MAP_IF_STATS, PROG_FROM_CONTAINER, PROG_FROM_UPLINK, PROG_TO_CONTAINER,
    PROG_TO_UPLINK, PROG_XDP_PREFILTER,
};

use super::{
    Dataplane, DataplaneError, TcAttach, clsact,
    pins::{self, check_ifname},
    sys::{self, BPF_LINK_TYPE_TCX, BPF_LINK_TYPE_XDP, BPF_TCX_EGRESS, BPF_TCX_INGRESS, LinkInfo},
};

/// The programs of one kind of interface, by direction.
type Hooks = [(&'static str, TcAttachType); 2];

const UPLINK: Hooks = [
    (PROG_FROM_UPLINK, TcAttachType::Ingress),
    (PROG_TO_UPLINK, TcAttachType::Egress),
];
const ENDPOINT: Hooks = [
    (PROG_FROM_CONTAINER, TcAttachType::Ingress),
    (PROG_TO_CONTAINER, TcAttachType::Egress),
];

impl Dataplane {
    /// Attaches `from_uplink` (ingress) and `to_uplink` (egress) to `ifname` through TCX and pins
    /// the links at `<pin_dir>/links/<ifname>/<program>`. Valid pinned links for this interface
    /// (same ifindex and direction) are adopted rather than attached twice.
    /// An XDP pre-filter link the uplink already has is kept; [`Dataplane::set_prefilter`]
    /// decides whether it should be there.
    pub fn attach_uplink(&mut self, ifname: &str) -> Result<(), DataplaneError> {
        self.attach_hooks(ifname, &UPLINK, &[PROG_XDP_PREFILTER], self.tc_attach)
    }

    /// Attaches (or adopts) the XDP pre-filter on `uplinks` when `on`, removes it otherwise.
    /// It is only needed while a source filter list is non-empty, and XDP has a cost even when
    /// it passes everything: on a veth it turns off the peer's segmentation offload.
    pub fn set_prefilter(&mut self, uplinks: &[String], on: bool) -> Result<(), DataplaneError> {
        for u in uplinks {
            if on {
                let ifindex = ifindex(u)?;
                self.attach_xdp(u, ifindex)?;
            } else {
                destroy_link(&self.pins.link(u, PROG_XDP_PREFILTER))?;
            }
        }
        Ok(())
    }

    /// Same as [`Dataplane::attach_uplink`] for a container's host-side veth: `from_container`
    /// (ingress) and `to_container` (egress).
    ///
    /// `NETD_ENDPOINT_TC_ATTACH=netlink` attaches them as clsact filters even on a TCX kernel:
    /// each TCX attach waits for an RCU grace period under the RTNL lock (tcx_entry_sync), and
    /// unregistering a veth with TCX links waits for more, which together cost ~26 ms per attach
    /// and ~30 ms per detach on the test machine; a cls_bpf filter on a down veth waits for
    /// none. The guarantees are the netlink fallback's (see the README).
    pub fn attach_endpoint(&mut self, ifname: &str) -> Result<(), DataplaneError> {
        let mode = endpoint_attach(self.tc_attach).unwrap_or(self.tc_attach);
        self.attach_hooks(ifname, &ENDPOINT, &[], mode)
    }

    /// [`Dataplane::attach_endpoint`] as the daemon does it: container veths get netlink
    /// clsact filters unless `NETD_ENDPOINT_TC_ATTACH=tcx` asks for TCX (and the kernel has
    /// it). A TCX attach and a TCX-linked veth's unregistering each wait for RCU grace periods
    /// under the RTNL lock (~26 ms per attach, ~30 ms more per detach here); a cls_bpf filter
    /// on a down veth waits for none, and the filters go with the veth. Uplinks keep TCX,
    /// where its atomic `bpf_link_update` and link ordering matter and attaches are rare.
    pub fn attach_container_veth(&mut self, ifname: &str) -> Result<TcAttach, DataplaneError> {
        let mode = self.container_veth_attach();
        self.attach_hooks(ifname, &ENDPOINT, &[], mode)?;
        Ok(mode)
    }

    /// How [`Dataplane::attach_container_veth`] attaches.
    pub fn container_veth_attach(&self) -> TcAttach {
        endpoint_attach(self.tc_attach).unwrap_or(TcAttach::Netlink)
    }

    /// [`Dataplane::attach_container_veth`] over the container veths of a restart (`veths`:
    /// ifindex and name, from one listing of the interfaces). A veth whose two netd filters are
    /// in place and run this agent's programs already (the programs were reused) costs one
    /// filter dump per hook, on one netlink socket; only the others take the full attach (a
    /// missing filter added, the loaded programs swapped in, a TCX-mode agent's links
    /// replaced). Returns the names of the veths that took it.
    pub fn adopt_container_veths<'a>(
        &mut self,
        veths: &[(u32, &'a str)],
    ) -> Result<Vec<&'a str>, DataplaneError> {
        let mode = self.container_veth_attach();
        let redo: Vec<&str> = match mode {
            TcAttach::Tcx => veths.iter().map(|&(_, n)| n).collect(),
            TcAttach::Netlink => {
                let mut want = [0u32; 2];
                for (w, &(program, _)) in want.iter_mut().zip(&ENDPOINT) {
                    *w = self
                        .program(program)?
                        .info()
                        .map_err(|e| DataplaneError::Adopt {
                            path: format!("program {program}").into(),
                            source: e.into(),
                        })?
                        .id();
                }
                let pinned: HashSet<String> = self.pins.pinned_interfaces()?.into_iter().collect();
                // No socket: every veth takes the full attach, which names the error.
                let sock = super::tcnl::socket().ok();
                let mut redo = Vec::new();
                for &(ifindex, ifname) in veths {
                    let in_place = sock.as_ref().is_some_and(|sock| {
                        ENDPOINT.iter().zip(want).all(|(&(program, hook), id)| {
                            super::tcnl::filters_on(sock, ifindex, hook)
                                .is_ok_and(|fs| only_netd_filter(&fs, program, id))
                        })
                    });
                    // Links a TCX-mode agent pinned for it double the filters.
                    let tcx_pins =
                        pinned.contains(ifname) && !self.pins.pinned_programs(ifname)?.is_empty();
                    if !in_place || tcx_pins {
                        redo.push(ifname);
                    }
                }
                redo
            }
        };
        for ifname in &redo {
            self.attach_hooks(ifname, &ENDPOINT, &[], mode)?;
        }
        Ok(redo)
    }

    /// Detaches and unpins everything netd attached to `ifname` and drops its counters. Nothing
    /// pinned, or an interface that is already gone, is not an error.
    pub fn detach(&mut self, ifname: &str) -> Result<(), DataplaneError> {
        check_ifname(ifname)?;
        let mut errors = Vec::new();
        for program in self.pins.pinned_programs(ifname)? {
            if let Err(e) = destroy_link(&self.pins.link(ifname, &program)) {
                errors.push(e);
            }
        }
        if let Err(e) = pins::remove_dir(&self.pins.links_dir(ifname)) {
            errors.push(e);
        }
        if let Ok(ifindex) = ifindex(ifname) {
            if let Err(e) = self.remove_netlink_filters(ifname, ifindex, &[]) {
                errors.push(e);
            }
            if let Err(e) = self.remove_counters(|k| k == ifindex) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            tracing::info!(ifname, "detached the dataplane");
        }
        DataplaneError::collect(errors)
    }

    /// A container veth's detach when the veth itself is being deleted (its netlink filters
    /// go with it, and removing them first would leave it up without its programs for a
    /// moment): only its pins (none in netlink mode) are removed here. Its counters go with
    /// [`Dataplane::forget_counters`] once the veth is gone (its programs count until then).
    pub fn forget_interface(&mut self, ifname: &str) -> Result<(), DataplaneError> {
        check_ifname(ifname)?;
        let mut errors = Vec::new();
        for program in self.pins.pinned_programs(ifname)? {
            if let Err(e) = destroy_link(&self.pins.link(ifname, &program)) {
                errors.push(e);
            }
        }
        if let Err(e) = pins::remove_dir(&self.pins.links_dir(ifname)) {
            errors.push(e);
        }
        DataplaneError::collect(errors)
    }

    /// Drops the counters of the interfaces `ifindexes` (gone ones): one lookup each, not a
    /// walk of every interface's counters.
    pub fn forget_counters(&mut self, ifindexes: &[u32]) -> Result<(), DataplaneError> {
        let map_err = |source| DataplaneError::Map {
            map: MAP_IF_STATS,
            source,
        };
        let map = self
            .maps
            .get_mut(MAP_IF_STATS)
            .ok_or(DataplaneError::MapNotFound { map: MAP_IF_STATS })?;
        let mut stats: PerCpuHashMap<_, u32, IfStats> =
            PerCpuHashMap::try_from(map).map_err(map_err)?;
        for key in ifindexes {
            match stats.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(source) => return Err(map_err(source)),
            }
        }
        Ok(())
    }

    /// Interfaces not in `keep` that carry netd's `from_container` filter: container veths
    /// whose endpoint is gone (a daemon killed while their deletion was queued). Only netd puts
    /// that program on an interface, so they are netd's to delete.
    /// `interfaces` lists the namespace's interfaces (ifindex, name).
    pub fn orphaned_container_veths(
        &self,
        keep: &HashSet<&str>,
        interfaces: &[(u32, String)],
    ) -> Vec<(u32, String)> {
        interfaces
            .iter()
            .filter(|(_, name)| !keep.contains(name.as_str()))
            .filter(|&&(ifindex, _)| {
                super::tcnl::filters(ifindex, TcAttachType::Ingress).is_ok_and(|fs| {
                    fs.iter().any(|f| {
                        clsact::is_netd(f) && f.name.as_deref() == Some(PROG_FROM_CONTAINER)
                    })
                })
            })
            .cloned()
            .collect()
    }

    /// Reconciles after a restart: detaches interfaces that have pinned links but are not in
    /// `keep` or no longer exist, unpins defunct links of kept interfaces, and drops the
    /// counters of every interface not in `keep`. `keep` must list every interface the agent
    /// still wants (uplinks and endpoints). Keeps going after an error and reports them all.
    pub fn prune(&mut self, keep: &[String]) -> Result<(), DataplaneError> {
        let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
        self.prune_among(&keep, &clsact::interfaces())
    }

    /// [`Dataplane::prune`] from a listing of the interfaces (ifindex, name) the caller already
    /// made (a restart's reconcile lists them once for all its steps).
    pub fn prune_among(
        &mut self,
        keep: &HashSet<&str>,
        interfaces: &[(u32, String)],
    ) -> Result<(), DataplaneError> {
        let mut errors = Vec::new();
        let by_name: HashMap<&str, u32> =
            interfaces.iter().map(|(i, n)| (n.as_str(), *i)).collect();
        let kept: HashSet<u32> = keep
            .iter()
            .filter_map(|n| by_name.get(n).copied())
            .collect();
        for ifname in self.pins.pinned_interfaces()? {
            let current = by_name.get(ifname.as_str()).copied();
            let result = match current {
                Some(ifindex) if keep.contains(ifname.as_str()) => {
                    self.prune_defunct(&ifname, ifindex)
                }
                _ => self.detach(&ifname),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        // Netlink filters have no pins: the kernel's list is the record.
        for (ifindex, ifname) in interfaces {
            let (ifindex, ifname) = (*ifindex, ifname.as_str());
            if kept.contains(&ifindex) {
                continue;
            }
            if let Err(e) = self.remove_netlink_filters(ifname, ifindex, &[]) {
                errors.push(e);
            }
        }
        if let Err(e) = self.remove_counters(|k| !kept.contains(&k)) {
            errors.push(e);
        }
        DataplaneError::collect(errors)
    }

    fn attach_hooks(
        &mut self,
        ifname: &str,
        hooks: &Hooks,
        also_keep: &[&str],
        mode: TcAttach,
    ) -> Result<(), DataplaneError> {
        check_ifname(ifname)?;
        let ifindex = ifindex(ifname)?;
        self.refresh_migrations()?;
        let dir = self.pins.links_dir(ifname);
        std::fs::create_dir_all(&dir).map_err(|e| DataplaneError::io("create", dir, e))?;
        for &(program, attach_type) in hooks {
            match mode {
                TcAttach::Tcx => self.attach_one(ifname, ifindex, program, attach_type)?,
                TcAttach::Netlink => self.attach_netlink(ifname, ifindex, program, attach_type)?,
            }
        }
        // Filters of a netlink-mode agent, now doubled by TCX links (or of the other kind).
        let keep: Vec<&str> = match mode {
            TcAttach::Tcx => Vec::new(),
            TcAttach::Netlink => hooks.iter().map(|&(p, _)| p).collect(),
        };
        self.remove_netlink_filters(ifname, ifindex, &keep)?;
        // An interface re-attached as the other kind keeps only the programs of this kind.
        for program in self.pins.pinned_programs(ifname)? {
            if !hooks.iter().any(|&(p, _)| p == program) && !also_keep.contains(&program.as_str()) {
                destroy_link(&self.pins.link(ifname, &program))?;
            }
        }
        Ok(())
    }

    fn attach_one(
        &mut self,
        ifname: &str,
        ifindex: u32,
        program: &'static str,
        attach_type: TcAttachType,
    ) -> Result<(), DataplaneError> {
        let path = self.pins.link(ifname, program);
        match pinned_link_info(&path)? {
            Some(info) if is_link_for(&info, ifindex, attach_type) => {
                return self.adopt(ifname, program, &path, &info);
            }
            // Left for an interface that is gone or was renamed, or the wrong direction.
            Some(_) => destroy_link(&path)?,
            None => {}
        }
        let attach_err = |source| DataplaneError::Attach {
            ifname: ifname.to_owned(),
            program,
            source,
        };
        let prog = self.program_mut(program)?;
        // TCX (kernel >= 6.6, e420bed0) where it exists: bpf_links can be pinned, outlive the
        // agent and be swapped atomically. First in the chain, so netd sees traffic before other
        // programs do; what netd does not own goes on to them (TC_ACT_UNSPEC, "next"), and
        // `netd status` lists any program attached ahead of netd's later.
        let id = prog
            .attach_with_options(
                ifname,
                attach_type,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
            .map_err(attach_err)?;
        let link = prog.take_link(id).map_err(attach_err)?;
        let link = FdLink::try_from(link).map_err(|source| DataplaneError::NotTcx {
            ifname: ifname.to_owned(),
            program,
            source,
        })?;
        // On failure the link is dropped, which detaches it: nothing is left half-done.
        link.pin(&path).map_err(|source| DataplaneError::PinLink {
            ifname: ifname.to_owned(),
            program,
            path: path.clone(),
            source,
        })?;
        tracing::info!(ifname, program, "attached");
        Ok(())
    }

    /// Takes over a pinned link: atomically swaps in this agent's program (bpf_link_update), so
    /// the interface is never without one and never has two.
    fn adopt(
        &mut self,
        ifname: &str,
        program: &'static str,
        path: &Path,
        info: &LinkInfo,
    ) -> Result<(), DataplaneError> {
        let adopt_err = |source: Box<dyn std::error::Error + Send + Sync>| DataplaneError::Adopt {
            path: path.to_owned(),
            source,
        };
        let prog = self.program_mut(program)?;
        let prog_id = prog.info().map_err(|e| adopt_err(e.into()))?.id();
        if info.prog_id == prog_id {
            return Ok(());
        }
        let pinned = PinnedLink::from_pin(path).map_err(|e| adopt_err(e.into()))?;
        let link =
            SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|e| adopt_err(e.into()))?;
        let id = prog.attach_to_link(link).map_err(|e| adopt_err(e.into()))?;
        // Our copy of the link's fd; the pin keeps the link attached after it closes.
        let link = prog.take_link(id).map_err(|e| adopt_err(e.into()))?;
        drop(FdLink::try_from(link));
        tracing::info!(
            ifname,
            program,
            old_prog_id = info.prog_id,
            prog_id,
            "adopted a pinned link"
        );
        Ok(())
    }

    /// Unpins the links of a kept interface that no longer point at it (it was recreated).
    fn prune_defunct(&mut self, ifname: &str, ifindex: u32) -> Result<(), DataplaneError> {
        for program in self.pins.pinned_programs(ifname)? {
            let path = self.pins.link(ifname, &program);
            if let Some(info) = pinned_link_info(&path)? {
                let kind_ok = if program == PROG_XDP_PREFILTER {
                    info.link_type == BPF_LINK_TYPE_XDP
                } else {
                    info.link_type == BPF_LINK_TYPE_TCX
                };
                if !kind_ok || info.ifindex != ifindex {
                    destroy_link(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Removes the counters of every ifindex `drop_if` selects.
    fn remove_counters(&mut self, drop_if: impl Fn(u32) -> bool) -> Result<(), DataplaneError> {
        let map_err = |source| DataplaneError::Map {
            map: MAP_IF_STATS,
            source,
        };
        let map = self
            .maps
            .get_mut(MAP_IF_STATS)
            .ok_or(DataplaneError::MapNotFound { map: MAP_IF_STATS })?;
        let mut stats: PerCpuHashMap<_, u32, IfStats> =
            PerCpuHashMap::try_from(map).map_err(map_err)?;
        let doomed: Vec<u32> = stats
            .keys()
            .filter_map(Result::ok)
            .filter(|&k| drop_if(k))
            .collect();
        for key in doomed {
            match stats.remove(&key) {
                Err(aya::maps::MapError::KeyNotFound) | Ok(()) => {}
                Err(source) => return Err(map_err(source)),
            }
        }
        Ok(())
    }
}

/// Whether `filters` (one hook's) hold exactly one netd filter, `program`'s, running `prog_id`.
fn only_netd_filter(filters: &[super::tcnl::Filter], program: &str, prog_id: u32) -> bool {
    let mut netd = filters.iter().filter(|f| clsact::is_netd(f));
    matches!(
        (netd.next(), netd.next()),
        (Some(f), None) if f.name.as_deref() == Some(program) && f.prog_id == Some(prog_id)
    )
}

/// How container veths get their programs when `NETD_ENDPOINT_TC_ATTACH` says (`netlink`,
/// or `tcx` where the kernel has it); None when it does not (unset or `auto`).
fn endpoint_attach(default: TcAttach) -> Option<TcAttach> {
    static MODE: std::sync::OnceLock<Option<TcAttach>> = std::sync::OnceLock::new();
    let chosen = *MODE.get_or_init(|| {
        match std::env::var("NETD_ENDPOINT_TC_ATTACH")
            .as_deref()
            .map(str::trim)
        {
            Ok("netlink") => Some(TcAttach::Netlink),
            Ok("tcx") => Some(TcAttach::Tcx),
            Ok("" | "auto") | Err(_) => None,
            Ok(other) => {
                tracing::warn!(
                    "NETD_ENDPOINT_TC_ATTACH={other}: not tcx, netlink or auto; ignored"
                );
                None
            }
        }
    });
    match chosen {
        // TCX needs 6.6 (e420bed0): a netlink-mode daemon has no TCX to use.
        Some(TcAttach::Tcx) if default == TcAttach::Netlink => Some(default),
        m => m,
    }
}

fn ifindex(ifname: &str) -> Result<u32, DataplaneError> {
    nix::net::if_::if_nametoindex(ifname).map_err(|e| DataplaneError::NoInterface {
        ifname: ifname.to_owned(),
        source: e.into(),
    })
}

fn is_link_for(info: &LinkInfo, ifindex: u32, attach_type: TcAttachType) -> bool {
    let want = match attach_type {
        TcAttachType::Ingress => BPF_TCX_INGRESS,
        TcAttachType::Egress => BPF_TCX_EGRESS,
        TcAttachType::Custom(_) => return false,
    };
    info.link_type == BPF_LINK_TYPE_TCX && info.ifindex == ifindex && info.attach_type == want
}

/// The kernel's view of a pinned link, or `None` when nothing is pinned at `path`.
pub(super) fn pinned_link_info(path: &Path) -> Result<Option<LinkInfo>, DataplaneError> {
    let open_err = |source| DataplaneError::OpenLink {
        path: path.to_owned(),
        source,
    };
    let fd = match sys::obj_get(path) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_err(e)),
    };
    sys::link_info(fd.as_fd()).map(Some).map_err(open_err)
}

/// Detaches the link pinned at `path` now (even if another process still holds it) and unpins
/// it. Nothing pinned there is fine.
pub(super) fn destroy_link(path: &Path) -> Result<(), DataplaneError> {
    match sys::obj_get(path) {
        Ok(fd) => sys::link_detach(fd.as_fd()).map_err(|source| DataplaneError::DetachLink {
            path: path.to_owned(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        // Not a link we can open (e.g. a stray file): unpinning it is all we can do.
        Err(_) => {}
    }
    pins::remove_file(path)
}
