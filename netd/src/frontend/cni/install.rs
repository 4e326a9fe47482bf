//! `netd cni install`: copies the `netd-cni` plugin into a CNI plugin directory and writes a
//! conflist that puts a netd network behind it.

use std::path::{Path, PathBuf};

use serde_json::json;

/// The plugin binary's name (and the conflist's plugin `type`).
pub const PLUGIN: &str = "netd-cni";

#[derive(Debug, Clone)]
pub struct InstallSpec {
    /// CNI plugin directory (podman's `cni_plugin_dirs`).
    pub dir: PathBuf,
    /// CNI config directory (podman's `network_config_dir`).
    pub conf_dir: PathBuf,
    /// The netd network.
    pub network: String,
    /// The CNI network name (default: the netd network's).
    pub name: Option<String>,
    /// `unix:///PATH` of the daemon.
    pub socket: String,
    /// The plugin binary to install (default: `netd-cni` next to the running netd).
    pub plugin: Option<PathBuf>,
    pub force: bool,
    /// The runtime holds published host ports itself (podman's default
    /// `enable_port_reservation = true`): the conflist says `"reservePorts": false`.
    pub runtime_reserves_ports: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "cannot find the netd-cni binary: {0} (build it with cargo build -p netd, or pass --plugin PATH)"
    )]
    NoPlugin(String),
    #[error("{0} already exists (pass --force to replace it)")]
    Exists(PathBuf),
    #[error("invalid CNI network name {0:?}: use letters, digits, '.', '_' and '-'")]
    Name(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The conflist for `network` (as the issue specifies it; podman generates 0.4.0 configs too).
pub fn conflist(
    name: &str,
    network: &str,
    socket: &str,
    runtime_reserves_ports: bool,
) -> serde_json::Value {
    let mut c = json!({
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": [{
            "type": PLUGIN,
            "network": network,
            "socket": socket,
            "capabilities": {"portMappings": true, "ips": true, "mac": true}
        }]
    });
    if runtime_reserves_ports {
        c["plugins"][0]["reservePorts"] = json!(false);
    }
    c
}

/// Installs the plugin and the conflist; returns the paths written. Nothing is replaced
/// without `force`, and a refused install writes nothing.
pub fn install(s: &InstallSpec) -> Result<Vec<PathBuf>, InstallError> {
    let name = s.name.clone().unwrap_or_else(|| s.network.clone());
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !name_ok {
        return Err(InstallError::Name(name));
    }
    let plugin = match &s.plugin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| InstallError::NoPlugin(e.to_string()))?
            .with_file_name(PLUGIN),
    };
    if !plugin.is_file() {
        return Err(InstallError::NoPlugin(format!(
            "{} does not exist",
            plugin.display()
        )));
    }
    let bin_dest = s.dir.join(PLUGIN);
    let conf_dest = s.conf_dir.join(format!("{name}.conflist"));
    if conf_dest.exists() && !s.force {
        return Err(InstallError::Exists(conf_dest));
    }
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Io { op, path, source }
    };
    for d in [&s.dir, &s.conf_dir] {
        std::fs::create_dir_all(d).map_err(io("creating", d))?;
    }
    // Copy under a temporary name and rename, so a runtime never runs a half-written plugin
    // (and a running one is replaced, not overwritten).
    let tmp = s.dir.join(format!(".{PLUGIN}.{}", std::process::id()));
    std::fs::copy(&plugin, &tmp).map_err(io("copying the plugin to", &tmp))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod", &tmp))?;
    }
    std::fs::rename(&tmp, &bin_dest).map_err(io("installing", &bin_dest))?;
    let text = serde_json::to_string_pretty(&conflist(
        &name,
        &s.network,
        &s.socket,
        s.runtime_reserves_ports,
    ))
    .expect("serialises");
    crate::fsutil::write_atomic(&conf_dest, &(text + "\n")).map_err(io("writing", &conf_dest))?;
    Ok(vec![bin_dest, conf_dest])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_has_the_capabilities() {
        let c = conflist("blue", "blue", "unix:///run/netd/netd.sock", false);
        assert!(c["plugins"][0].get("reservePorts").is_none());
        let r = conflist("blue", "blue", "unix:///run/netd/netd.sock", true);
        assert_eq!(r["plugins"][0]["reservePorts"], false);
        assert_eq!(c["cniVersion"], "0.4.0");
        assert_eq!(c["plugins"][0]["type"], "netd-cni");
        assert_eq!(c["plugins"][0]["capabilities"]["portMappings"], true);
        assert_eq!(c["plugins"][0]["capabilities"]["mac"], true);
    }
}
