//! What the kernel itself says is attached: BPF_PROG_QUERY on each interface's TCX hooks,
//! asked from inside the namespace (ifindexes are per namespace). This is independent of
//! netd's own `status`, and of bpftool 7.1, whose `net show` does not list TCX links.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use crate::netns::Netns;
use crate::traffic::in_netns;

const BPF_PROG_QUERY: libc::c_long = 16;
/// `enum bpf_attach_type` values (kernel >= 6.6; newer than Debian 12's headers).
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

/// The `query` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}
const _: () = assert!(size_of::<QueryAttr>() == 64);

fn query(ifindex: u32, attach_type: u32) -> Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_ifindex: ifindex,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: attr is a valid, initialised bpf_attr prefix of the size passed; prog_ids points
    // to a buffer of prog_cnt u32s that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut attr as *mut QueryAttr,
            size_of::<QueryAttr>(),
        )
    };
    if rc < 0 {
        bail!(
            "BPF_PROG_QUERY ifindex {ifindex} type {attach_type}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(ids[..attr.prog_cnt as usize].to_vec())
}

/// For every interface in `ns`: (ifname, "ingress"|"egress") -> TCX program ids, for hooks
/// that have at least one program.
pub fn tcx_programs(ns: &Netns) -> BTreeMap<(String, String), Vec<u32>> {
    let links = ns.links();
    in_netns(ns, move || {
        let mut m = BTreeMap::new();
        for ifname in links {
            let c = std::ffi::CString::new(ifname.clone())?;
            // SAFETY: c is a valid NUL-terminated string.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
            if ifindex == 0 {
                continue; // vanished meanwhile
            }
            for (dir, t) in [("ingress", BPF_TCX_INGRESS), ("egress", BPF_TCX_EGRESS)] {
                let ids = query(ifindex, t)?;
                if !ids.is_empty() {
                    m.insert((ifname.clone(), dir.to_string()), ids);
                }
            }
        }
        Ok(m)
    })
    .expect("query TCX programs")
}
