//! What the running kernel offers: the floor netd refuses to start below, and how TC programs
//! are attached (TCX links, or netlink clsact filters on kernels before 6.6).

use std::fmt;

use aya::programs::{SchedClassifier, TcAttachType};
use serde::Serialize;

use super::DataplaneError;

/// How the TC programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcAttach {
    /// bpf_links on the TCX hook (kernel >= 6.6, e420bed0), pinned so they outlive the agent
    /// and replaced with bpf_link_update.
    Tcx,
    /// cls_bpf filters on a clsact qdisc, at netd's own priority and handle
    /// ([`super::clsact::PRIORITY`], [`super::clsact::HANDLE`]): they outlive the agent by
    /// themselves, are found again by priority and handle, and are replaced in place.
    Netlink,
}

impl fmt::Display for TcAttach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcAttach::Tcx => "tcx",
            TcAttach::Netlink => "netlink",
        })
    }
}

/// `--tc-attach`: the attach mode asked for.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TcAttachMode {
    /// TCX when the kernel has it, else netlink.
    #[default]
    Auto,
    Tcx,
    Netlink,
}

impl std::str::FromStr for TcAttachMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "tcx" => Ok(Self::Tcx),
            "netlink" => Ok(Self::Netlink),
            _ => Err(format!("{s:?}: expected auto, tcx or netlink")),
        }
    }
}

/// A kernel version as `LINUX_VERSION_CODE` orders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u8, pub u8);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The kernel features netd cannot run without, with the release that brought each. The
/// newest of them sets the floor: 5.18. Debian 12 (6.1) is the target; Ubuntu 22.04's 5.15
/// lacks the XDP helpers.
pub const REQUIRED: &[(Version, &str)] = &[
    (
        Version(5, 8),
        "cgroup getpeername4/6 socket hooks (host-local access to published ports)",
    ),
    (
        Version(5, 10),
        "bpf_redirect_peer and bpf_redirect_neigh (the fast path)",
    ),
    (Version(5, 12), "bpf_check_mtu (the fast path)"),
    (
        Version(5, 18),
        "bpf_xdp_get_buff_len and bpf_xdp_load_bytes (the XDP source pre-filter)",
    ),
];

/// TCX, and with it bpf_link-based TC attachment.
pub const TCX: Version = Version(6, 6);

/// The features of [`REQUIRED`] that `v` lacks.
pub fn missing(v: Version) -> Vec<(Version, &'static str)> {
    REQUIRED
        .iter()
        .copied()
        .filter(|(need, _)| v < *need)
        .collect()
}

/// The running kernel's version (aya reads Debian's and Ubuntu's real one, not uname's ABI
/// string).
pub fn current() -> Result<Version, DataplaneError> {
    let v = aya::util::KernelVersion::current().map_err(|e| DataplaneError::Kernel {
        reason: format!("cannot read the kernel version: {e}"),
    })?;
    let code = v.code();
    Ok(Version((code >> 16) as u8, (code >> 8) as u8))
}

/// Refuses a kernel older than the floor, naming every missing feature.
pub fn check_floor(v: Version) -> Result<(), DataplaneError> {
    let missing = missing(v);
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing
        .iter()
        .map(|(need, what)| format!("{what} (Linux {need})"))
        .collect();
    let floor = REQUIRED.iter().map(|(v, _)| *v).max().expect("non-empty");
    Err(DataplaneError::Kernel {
        reason: format!(
            "Linux {v} is too old for netd: it lacks {}; netd needs Linux {floor} or later \
             (6.1, Debian 12, is the tested target)",
            list.join(", ")
        ),
    })
}

/// Whether the kernel has TCX: BPF_PROG_QUERY on the loopback's TCX ingress hook (read-only)
/// succeeds on kernels that have it and fails with EINVAL on older ones.
pub fn has_tcx() -> bool {
    match SchedClassifier::query_tcx("lo", TcAttachType::Ingress) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("no TCX: {e}");
            false
        }
    }
}

/// Resolves `--tc-attach` (or `NETD_TC_ATTACH`) against what the kernel offers.
pub fn resolve(mode: TcAttachMode, version: Version) -> Result<TcAttach, DataplaneError> {
    match mode {
        TcAttachMode::Netlink => Ok(TcAttach::Netlink),
        TcAttachMode::Tcx if has_tcx() => Ok(TcAttach::Tcx),
        TcAttachMode::Tcx => Err(DataplaneError::Kernel {
            reason: format!(
                "--tc-attach tcx: Linux {version} has no TCX (Linux {TCX}); use --tc-attach \
                 netlink or auto"
            ),
        }),
        TcAttachMode::Auto if has_tcx() => Ok(TcAttach::Tcx),
        TcAttachMode::Auto => {
            tracing::info!(
                "Linux {version} has no TCX (Linux {TCX}): attaching TC programs as netlink \
                 clsact filters"
            );
            Ok(TcAttach::Netlink)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_names_what_is_missing() {
        assert!(check_floor(Version(6, 1)).is_ok());
        assert!(check_floor(Version(5, 18)).is_ok());
        assert!(check_floor(Version(6, 18)).is_ok());
        let e = check_floor(Version(5, 15)).unwrap_err().to_string();
        assert!(e.contains("Linux 5.15 is too old"), "{e}");
        assert!(e.contains("bpf_xdp_load_bytes"), "{e}");
        assert!(!e.contains("bpf_check_mtu"), "5.15 has it: {e}");
        assert!(e.contains("needs Linux 5.18"), "{e}");
        let e = check_floor(Version(5, 4)).unwrap_err().to_string();
        for what in [
            "getpeername",
            "bpf_redirect_peer",
            "bpf_check_mtu",
            "bpf_xdp",
        ] {
            assert!(e.contains(what), "{what} missing from {e}");
        }
    }

    #[test]
    fn versions_order_by_minor_numerically() {
        assert!(Version(5, 9) < Version(5, 10));
        assert!(Version(5, 18) < Version(6, 1));
    }

    #[test]
    fn mode_parses() {
        assert_eq!("netlink".parse(), Ok(TcAttachMode::Netlink));
        assert_eq!(" tcx\n".parse(), Ok(TcAttachMode::Tcx));
        assert!("tc".parse::<TcAttachMode>().is_err());
    }
}
