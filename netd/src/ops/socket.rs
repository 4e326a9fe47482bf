//! Who may use the API: the socket is root's, its group is `-G/--group` (default `netd` when
//! that group exists, else root, as docker.sock), mode 0660, never world-writable. The state
//! dir and the bpffs pin dir are root's only (0700).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The group that owns the API socket when `-G` is not given and it exists.
pub const DEFAULT_GROUP: &str = "netd";

/// The socket's group: (gid, name).
pub fn resolve_group(flag: Option<&str>) -> Result<(u32, String), String> {
    let lookup = |n: &str| {
        nix::unistd::Group::from_name(n).map_err(|e| format!("cannot look up group {n:?}: {e}"))
    };
    match flag {
        Some(n) => {
            if let Ok(gid) = n.parse::<u32>() {
                return Ok((gid, n.to_string()));
            }
            let g = lookup(n)?.ok_or_else(|| {
                format!("group {n:?} (-G/--group) does not exist; create it or name another")
            })?;
            Ok((g.gid.as_raw(), g.name))
        }
        None => match lookup(DEFAULT_GROUP)? {
            Some(g) => Ok((g.gid.as_raw(), g.name)),
            None => Ok((0, "root".into())),
        },
    }
}

/// Sets the creation mask so that a socket bound meanwhile is never group-executable or
/// reachable by others (0660 at most); the old mask is put back on drop.
pub struct Umask(libc::mode_t);

impl Umask {
    pub fn private() -> Self {
        // SAFETY: umask only swaps the process's creation mask.
        Umask(unsafe { libc::umask(0o117) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::umask(self.0) };
    }
}

/// Gives the bound socket to root:`gid` with mode 0660.
pub fn secure_socket(path: &Path, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(0), Some(gid))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
}

/// Makes `dir` root's only (0700).
pub fn root_only(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
