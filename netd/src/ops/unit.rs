//! The systemd unit (`netd install-unit`): `Type=notify` (the daemon sends READY=1 once the API
//! serves and the dataplane is reconciled), restart on failure, SIGHUP reload, and the mounts
//! it needs (bpffs at /sys/fs/bpf, the cgroup v2 hierarchy).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where `netd install-unit` writes by default.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
pub const UNIT_NAME: &str = "netd.service";

/// The unit's text for the netd binary at `bin`.
pub fn unit(bin: &Path) -> String {
    let bin = bin.display();
    format!(
        "\
# Installed by `netd install-unit`. Settings go in /etc/netd/daemon.json (keys: the long
# names of `netd daemon`'s flags); `systemctl reload netd` re-reads what can change live.
[Unit]
Description=netd: eBPF container networking
After=network-online.target
Wants=network-online.target
# The pinned maps and links live on bpffs; the socket hooks attach to the cgroup v2 tree.
RequiresMountsFor=/sys/fs/bpf /sys/fs/cgroup

[Service]
Type=notify
NotifyAccess=main
# systemd mounts bpffs at boot on most distributions; mount it where it did not.
ExecStartPre=/bin/sh -c 'mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf'
ExecStart={bin} daemon
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
TimeoutStartSec=90s
# Containers keep their networking while netd is down: only the daemon is stopped.
KillMode=process
LimitMEMLOCK=infinity
LimitNOFILE=1048576
RuntimeDirectory=netd
RuntimeDirectoryMode=0750
RuntimeDirectoryPreserve=restart
StateDirectory=netd
StateDirectoryMode=0700

[Install]
WantedBy=multi-user.target
"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0} exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `<dest>/netd.service` (0644) for `bin`; refuses to replace a unit unless `force`.
pub fn install(dest: &Path, bin: &Path, force: bool) -> Result<PathBuf, InstallError> {
    let path = dest.join(UNIT_NAME);
    let io = |source| InstallError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(io)?;
    if path.exists() && !force {
        return Err(InstallError::Exists(path));
    }
    let tmp = dest.join(format!(".{UNIT_NAME}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(unit(bin).as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}
