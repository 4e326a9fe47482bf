//! The XDP pre-filter on uplinks (source allow/deny lists), attached through a pinned bpf_link
//! like the TC programs, so it outlives the agent and is adopted on restart.

use aya::programs::Xdp;
use aya::programs::XdpMode;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use netd_common::PROG_XDP_PREFILTER;

use super::attach::{destroy_link, pinned_link_info};
use super::sys::BPF_LINK_TYPE_XDP;
use super::{Dataplane, DataplaneError};

impl Dataplane {
    fn xdp_mut(&mut self) -> Result<&mut Xdp, DataplaneError> {
        Ok(&mut self.progs.xdp)
    }

    /// Attaches (or adopts) the pre-filter on `ifname`, pinned at
    /// `<pin_dir>/links/<ifname>/xdp_prefilter`.
    pub(super) fn attach_xdp(&mut self, ifname: &str, ifindex: u32) -> Result<(), DataplaneError> {
        self.refresh_migrations()?;
        let path = self.pins.link(ifname, PROG_XDP_PREFILTER);
        let err = |source: Box<dyn std::error::Error + Send + Sync>| DataplaneError::Adopt {
            path: path.clone(),
            source,
        };
        match pinned_link_info(&path)? {
            Some(info) if info.link_type == BPF_LINK_TYPE_XDP && info.ifindex == ifindex => {
                let prog = self.xdp_mut()?;
                let prog_id = prog.info().map_err(|e| err(e.into()))?.id();
                if info.prog_id != prog_id {
                    let pinned = PinnedLink::from_pin(&path).map_err(|e| err(e.into()))?;
                    let link =
                        XdpLink::try_from(FdLink::from(pinned)).map_err(|e| err(e.into()))?;
                    let id = prog.attach_to_link(link).map_err(|e| err(e.into()))?;
                    let link = prog.take_link(id).map_err(|e| err(e.into()))?;
                    drop(FdLink::try_from(link));
                    tracing::info!(
                        ifname,
                        program = PROG_XDP_PREFILTER,
                        "adopted a pinned link"
                    );
                }
                return Ok(());
            }
            Some(_) => destroy_link(&path)?,
            None => {}
        }
        let attach_err = |source| DataplaneError::Attach {
            ifname: ifname.to_owned(),
            program: PROG_XDP_PREFILTER,
            source,
        };
        let prog = self.xdp_mut()?;
        let id = prog
            .attach(ifname, XdpMode::default())
            .map_err(attach_err)?;
        let link = prog.take_link(id).map_err(attach_err)?;
        let link = FdLink::try_from(link).map_err(|e| err(e.into()))?;
        link.pin(&path).map_err(|source| DataplaneError::PinLink {
            ifname: ifname.to_owned(),
            program: PROG_XDP_PREFILTER,
            path: path.clone(),
            source,
        })?;
        tracing::info!(ifname, program = PROG_XDP_PREFILTER, "attached");
        Ok(())
    }
}
