//! Network namespaces: opening them by path and running netlink inside them.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

use super::{Netlink, WiringError};

/// Opens a network namespace file (`/var/run/netns/NAME`, `/proc/PID/ns/net`), checking that it
/// really is one.
pub fn open(path: &Path) -> Result<File, WiringError> {
    let f = File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => WiringError::Io {
            op: format!("network namespace {}", path.display()),
            source: std::io::Error::new(source.kind(), "no such file (does the namespace exist?)"),
        },
        _ => WiringError::Io {
            op: format!("opening network namespace {}", path.display()),
            source,
        },
    })?;
    // NS_GET_NSTYPE = _IO(0xb7, 0x3): answers CLONE_NEWNET for a network namespace.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: ioctl on a valid fd with no argument pointer.
    let t = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), NS_GET_NSTYPE as _) };
    if t != libc::CLONE_NEWNET {
        return Err(WiringError::Io {
            op: format!("using {} as a network namespace", path.display()),
            source: std::io::Error::other("not a network namespace file"),
        });
    }
    Ok(f)
}

/// Identity of a namespace (device, inode), to tell whether two paths name the same one.
pub fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Runs `f` with the calling thread inside the namespace `ns`, then returns the thread to the
/// daemon's own namespace (no await in between: the thread is not handed to another task
/// while it is elsewhere). A thread that cannot return aborts the daemon.
pub fn with_netns<T>(ns: &File, f: impl FnOnce() -> T) -> Result<T, WiringError> {
    let own = File::open("/proc/thread-self/ns/net").map_err(|source| WiringError::Io {
        op: "opening the daemon's own network namespace".into(),
        source,
    })?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| WiringError::Io {
        op: "entering the container's network namespace".into(),
        source: e.into(),
    })?;
    let out = f();
    if let Err(e) = setns(own.as_fd(), CloneFlags::CLONE_NEWNET) {
        // A worker thread stuck in a container's namespace would misdirect every later
        // request; there is no safe way on.
        eprintln!("netd: fatal: cannot return to the daemon's network namespace: {e}");
        std::process::abort();
    }
    Ok(out)
}

/// A netlink handle whose socket lives in the namespace `ns`. The calling thread enters `ns`
/// only while the socket is created and returns at once.
pub fn netlink_in(ns: &File) -> Result<Netlink, WiringError> {
    with_netns(ns, Netlink::current)?
}

/// Writes a sysctl under /proc/sys/net as the namespace `ns` sees it (net sysctls belong to
/// the namespace of whoever opens the file): the calling thread enters `ns` only for the
/// open and write, then returns.
pub fn write_sysctl_in(ns: &File, path: &str, value: &str) -> Result<(), WiringError> {
    with_netns(ns, || std::fs::write(path, value))?.map_err(|source| WiringError::Io {
        op: format!("writing {value} to {path} in the container's namespace"),
        source,
    })
}
