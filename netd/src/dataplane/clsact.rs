//! The netlink fallback for kernels without TCX (before 6.6, e420bed0): each TC program is a
//! cls_bpf filter (direct action) on the interface's clsact qdisc, at netd's own priority and
//! handle. Filters are not tied to any file descriptor, so they outlive the agent like pinned
//! TCX links; the next agent finds them by priority and handle and replaces each in place (a
//! change of an existing filter swaps its program under RCU: the hook is never empty and never
//! runs two netd programs). The kernel removes them with the interface.

use aya::programs::{
    TcAttachType,
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
};
use netd_common::ALL_TC_PROGRAMS;

use super::{Dataplane, DataplaneError, attach::destroy_link, tcnl};

/// netd's filter priority: 1, the first to run (lower numbers run first).
pub const PRIORITY: u16 = 1;
/// netd's filter handle, `0x4e44` ("ND"), so `tc filter show` tells its filters apart.
pub const HANDLE: u32 = 0x4e44;

pub(super) const HOOKS: [TcAttachType; 2] = [TcAttachType::Ingress, TcAttachType::Egress];

/// Whether `f` is one of netd's filters.
pub(crate) fn is_netd(f: &tcnl::Filter) -> bool {
    f.priority == PRIORITY
        && f.handle == HANDLE
        && f.kind == "bpf"
        && f.name
            .as_deref()
            .is_some_and(|n| ALL_TC_PROGRAMS.contains(&n))
}

fn nl_err(ifname: &str, what: &'static str) -> impl Fn(std::io::Error) -> DataplaneError {
    let ifname = ifname.to_owned();
    move |source| DataplaneError::Netlink {
        ifname: ifname.clone(),
        what,
        source,
    }
}

impl Dataplane {
    /// Attaches `program` on `ifname`'s clsact hook, or replaces the program of the filter a
    /// previous agent left there. Also removes a TCX link a TCX-mode agent pinned for it.
    pub(super) fn attach_netlink(
        &mut self,
        ifname: &str,
        ifindex: u32,
        program: &'static str,
        attach_type: TcAttachType,
    ) -> Result<(), DataplaneError> {
        let attach_err = |source| DataplaneError::Attach {
            ifname: ifname.to_owned(),
            program,
            source,
        };
        if let Err(e) = tc::qdisc_add_clsact(ifname) {
            let exists = matches!(&e, tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST));
            if !exists {
                return Err(attach_err(e.into()));
            }
        }
        let existing = tcnl::filters(ifindex, attach_type)
            .map_err(nl_err(ifname, "list the tc filters of"))?
            .into_iter()
            .find(|f| f.priority == PRIORITY && f.handle == HANDLE);
        let prog = self.program_mut(program)?;
        let prog_id = prog
            .info()
            .map_err(|e| DataplaneError::Adopt {
                path: format!("tc filter {ifname}").into(),
                source: e.into(),
            })?
            .id();
        let id = match existing {
            Some(f) if !is_netd(&f) => {
                return Err(DataplaneError::FilterTaken {
                    ifname: ifname.to_owned(),
                    hook: super::stats::direction(attach_type),
                    owner: format!("{} {}", f.kind, f.name.unwrap_or_default()),
                });
            }
            Some(f) if f.prog_id == Some(prog_id) => None,
            Some(f) => {
                let link = SchedClassifierLink::attached(
                    ifname,
                    attach_type,
                    PRIORITY,
                    TcHandle::from(HANDLE),
                    None,
                )
                .map_err(|e| attach_err(tc::TcError::IoError(e).into()))?;
                let id = prog.attach_to_link(link).map_err(attach_err)?;
                tracing::info!(
                    ifname,
                    program,
                    old_prog_id = f.prog_id,
                    prog_id,
                    "replaced the program of netd's tc filter"
                );
                Some(id)
            }
            None => {
                let id = prog
                    .attach_with_options(
                        ifname,
                        attach_type,
                        TcAttachOptions::Netlink(NlOptions {
                            priority: PRIORITY,
                            handle: TcHandle::from(HANDLE),
                            classid: None,
                        }),
                    )
                    .map_err(attach_err)?;
                tracing::info!(ifname, program, "attached (netlink clsact filter)");
                Some(id)
            }
        };
        if let Some(id) = id {
            let link = prog.take_link(id).map_err(attach_err)?;
            // The filter must outlive this agent: dropping the link would delete it.
            std::mem::forget(link);
        }
        // A TCX link for the same program (left by a netd that ran in TCX mode) now doubles it.
        destroy_link(&self.pins.link(ifname, program))
    }

    /// Deletes netd's filters on `ifindex` (both hooks), except `keep` (program names).
    pub(super) fn remove_netlink_filters(
        &self,
        ifname: &str,
        ifindex: u32,
        keep: &[&str],
    ) -> Result<(), DataplaneError> {
        for hook in HOOKS {
            let filters =
                tcnl::filters(ifindex, hook).map_err(nl_err(ifname, "list the tc filters of"))?;
            for f in filters.iter().filter(|f| is_netd(f)) {
                if keep.contains(&f.name.as_deref().unwrap_or_default()) {
                    continue;
                }
                tcnl::delete(ifindex, hook, f.priority, f.handle)
                    .map_err(nl_err(ifname, "delete a tc filter of"))?;
                tracing::info!(ifname, program = f.name, "removed netd's tc filter");
            }
        }
        Ok(())
    }
}

/// Every interface of this network namespace, (ifindex, name).
pub(crate) fn interfaces() -> Vec<(u32, String)> {
    match nix::net::if_::if_nameindex() {
        Ok(list) => list
            .iter()
            .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list interfaces: {e}");
            Vec::new()
        }
    }
}
