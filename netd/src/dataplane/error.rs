//! Dataplane errors. Each variant names the interface, map, program or path that failed.

use std::{io, path::PathBuf};

/// An error from the eBPF dataplane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("cannot create pin directory {}", path.display())]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount bpffs at {}", path.display())]
    MountBpffs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot load the eBPF object (maps pinned under {})", maps_dir.display())]
    LoadObject {
        maps_dir: PathBuf,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("the eBPF object has no TC program {program}")]
    ProgramNotFound { program: String },
    #[error("cannot load eBPF program {program}")]
    LoadProgram {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("the eBPF object has no map {map}")]
    MapNotFound { map: &'static str },
    #[error("cannot access map {map}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "the map pinned at {} was left by an incompatible netd ({found}; this netd needs {want}): \
         stop its traffic and remove the pin directory, or use another --bpffs",
        path.display()
    )]
    IncompatiblePin {
        path: PathBuf,
        found: String,
        want: String,
    },
    #[error(
        "the map {map} pinned at {} has layout version {found}, newer than this netd's \
         version {ours}: it was left by a newer netd, and downgrading over its pins is not \
         supported (run the newer netd again, or stop its traffic and remove the pin directory)",
        path.display()
    )]
    Downgrade {
        map: &'static str,
        path: PathBuf,
        found: u32,
        ours: u32,
    },
    #[error(
        "the map {map} pinned at {} has layout version {from}, and this netd (version {to}) \
         cannot convert it: stop its traffic and remove the pin directory, or use another --bpffs",
        path.display()
    )]
    NoMigration {
        map: &'static str,
        path: PathBuf,
        from: u32,
        to: u32,
    },
    #[error("cannot migrate map {map} from layout version {from} to {to}")]
    Migrate {
        map: &'static str,
        from: u32,
        to: u32,
        #[source]
        source: io::Error,
    },
    #[error("map {map} is full ({max} entries)")]
    Full { map: &'static str, max: u32 },
    #[error("cannot read pinned map {}", path.display())]
    MapPin {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("interface {ifname} does not exist in this network namespace")]
    NoInterface {
        ifname: String,
        #[source]
        source: io::Error,
    },
    #[error("{ifname:?} is not a valid interface name")]
    BadInterfaceName { ifname: String },
    #[error("cannot attach {program} to {ifname}")]
    Attach {
        ifname: String,
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("the link of {program} on {ifname} is not a TCX link")]
    NotTcx {
        ifname: String,
        program: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("cannot adopt the pinned link {}", path.display())]
    Adopt {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot pin the link of {program} on {ifname} at {}", path.display())]
    PinLink {
        ifname: String,
        program: &'static str,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("cannot open the pinned link {}", path.display())]
    OpenLink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot detach the pinned link {}", path.display())]
    DetachLink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{reason}")]
    Kernel { reason: String },
    #[error("cannot {what} {ifname} over netlink")]
    Netlink {
        ifname: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "the tc filter at netd's priority {} and handle {:#x} on {ifname} ({hook:?}) belongs to another program ({owner}): delete it or free that slot",
        super::clsact::PRIORITY,
        super::clsact::HANDLE
    )]
    FilterTaken {
        ifname: String,
        hook: super::Direction,
        owner: String,
    },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("IPv6 address {addr} of the endpoint on ifindex {ifindex} {reason}")]
    BadIpv6 {
        ifindex: u32,
        addr: std::net::Ipv6Addr,
        reason: &'static str,
    },
    #[error(
        "IPv6 address {addr} of the endpoint on ifindex {ifindex} is already the address of the \
         endpoint on ifindex {owner}"
    )]
    Ipv6InUse {
        ifindex: u32,
        addr: std::net::Ipv6Addr,
        owner: u32,
    },
    #[error("{} errors, the first: {}", .0.len(), .0[0])]
    Many(Vec<DataplaneError>),
}

impl DataplaneError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Folds the errors of a keep-going loop: `Ok` when there were none.
    pub(crate) fn collect(mut errors: Vec<DataplaneError>) -> Result<(), Self> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Self::Many(errors)),
        }
    }
}
