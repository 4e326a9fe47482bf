//! The pin directory: a bpffs holding `maps/<MAP_NAME>[@v<N>]`, `links/<ifname>/<program>`,
//! and the programs' pins (`progs/`, `sock_progs/`: see load.rs).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::maps::MapData;
use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

use super::DataplaneError;

/// Where distributions (and bpftool, Cilium, systemd) expect the bpffs.
pub const SYS_BPF: &str = "/sys/fs/bpf";

fn mount_bpffs(at: &Path) -> Result<(), DataplaneError> {
    mount(Some("bpf"), at, Some("bpf"), MsFlags::empty(), None::<&str>).map_err(|source| {
        DataplaneError::MountBpffs {
            path: at.to_owned(),
            source,
        }
    })
}

/// Paths under the pin directory.
#[derive(Clone, Debug)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// Makes the root a directory on a bpffs and creates `maps/` and `links/` in it.
    ///
    /// A root under [`SYS_BPF`] whose `/sys/fs/bpf` is not a bpffs (a minimal VM, a fresh
    /// machine: it is then a plain sysfs directory, where nothing can be created) gets a bpffs
    /// mounted at `/sys/fs/bpf` itself, as Cilium does, so that bpftool and other loaders find
    /// the pins where they expect them. Any other root that is not on a bpffs gets one mounted
    /// at the root.
    pub fn prepare(&self) -> Result<(), DataplaneError> {
        let pin_dir_err = |path: &Path| {
            let path = path.to_owned();
            move |source| DataplaneError::PinDir { path, source }
        };
        let sys_bpf = Path::new(SYS_BPF);
        if self.root.starts_with(sys_bpf)
            && sys_bpf.is_dir()
            && !is_bpffs(sys_bpf).map_err(pin_dir_err(sys_bpf))?
        {
            mount_bpffs(sys_bpf)?;
            tracing::info!("mounted a bpffs at {SYS_BPF}");
        }
        fs::create_dir_all(&self.root).map_err(pin_dir_err(&self.root))?;
        if !is_bpffs(&self.root).map_err(pin_dir_err(&self.root))? {
            mount_bpffs(&self.root)?;
            tracing::info!(pin_dir = %self.root.display(), "mounted a bpffs at the pin directory");
        }
        for dir in [self.maps_dir(), self.links_root()] {
            fs::create_dir_all(&dir).map_err(pin_dir_err(&dir))?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    /// Where map `name` is pinned at this netd's layout version of it.
    pub fn map(&self, name: &str) -> PathBuf {
        let version = netd_common::map_layout(name).map_or(1, |l| l.version);
        self.map_at(name, version)
    }

    /// `maps/<NAME>` for layout version 1 (every map before versioning), `maps/<NAME>@v<N>`
    /// (bpffs refuses names with a dot)
    /// for later ones: an upgrade's new map is created beside the old one.
    pub fn map_at(&self, name: &str, version: u32) -> PathBuf {
        match version {
            0 | 1 => self.maps_dir().join(name),
            v => self.maps_dir().join(format!("{name}@v{v}")),
        }
    }

    /// Opens map `name` pinned at this netd's layout version of it ([`PinLayout::map`]).
    pub fn open_map(&self, name: &str) -> Result<aya::maps::Map, DataplaneError> {
        let path = self.map(name);
        MapData::from_pin(&path)
            .and_then(aya::maps::Map::from_map_data)
            .map_err(|source| DataplaneError::MapPin { path, source })
    }

    /// The layout versions of `name` pinned under `maps/`, lowest first.
    pub fn pinned_versions(&self, name: &str) -> Result<Vec<u32>, DataplaneError> {
        let dir = self.maps_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(DataplaneError::io("list", dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| DataplaneError::io("list", dir.clone(), e))?;
            let Ok(file) = entry.file_name().into_string() else {
                continue;
            };
            if file == name {
                out.push(1);
            } else if let Some(v) = file
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix("@v"))
                .and_then(|v| v.parse::<u32>().ok())
            {
                out.push(v);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    pub fn links_root(&self) -> PathBuf {
        self.root.join("links")
    }

    /// `links/<ifname>` (escaped by [`pin_component`]); the name was checked by
    /// [`check_ifname`].
    pub fn links_dir(&self, ifname: &str) -> PathBuf {
        self.links_root().join(pin_component(ifname))
    }

    pub fn link(&self, ifname: &str, program: &str) -> PathBuf {
        self.links_dir(ifname).join(program)
    }

    /// Interface names that have a `links/<ifname>` directory.
    pub fn pinned_interfaces(&self) -> Result<Vec<String>, DataplaneError> {
        let root = self.links_root();
        let entries =
            fs::read_dir(&root).map_err(|e| DataplaneError::io("list", root.clone(), e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| DataplaneError::io("list", root.clone(), e))?;
            if let Some(name) = entry.file_name().to_str().and_then(ifname_of_component) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Program names pinned under `links/<ifname>`.
    pub fn pinned_programs(&self, ifname: &str) -> Result<Vec<String>, DataplaneError> {
        let dir = self.links_dir(ifname);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(DataplaneError::io("list", dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| DataplaneError::io("list", dir.clone(), e))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

fn is_bpffs(path: &Path) -> io::Result<bool> {
    let st = statfs(path).map_err(io::Error::from)?;
    Ok(st.filesystem_type() == BPF_FS_MAGIC)
}

/// Refuses names that are not a single path component (they become directory names) or that
/// the kernel would never accept (IFNAMSIZ is 16 with the NUL).
pub fn check_ifname(ifname: &str) -> Result<(), DataplaneError> {
    let ok = !ifname.is_empty()
        && ifname.len() < 16
        && ifname != "."
        && ifname != ".."
        && !ifname.contains(['/', '\0'])
        && !ifname.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(DataplaneError::BadInterfaceName {
            ifname: ifname.to_owned(),
        })
    }
}

/// An interface name as a bpffs directory name. The bpffs refuses any name with a '.'
/// (EPERM), and VLAN devices are named `eth0.100`: '.' is written `%2E` and '%' `%25`, so
/// every interface name has one component and every component one name.
pub fn pin_component(ifname: &str) -> String {
    let mut out = String::with_capacity(ifname.len());
    for c in ifname.chars() {
        match c {
            '.' => out.push_str("%2E"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// The interface name of a [`pin_component`]; None for a name no interface has.
pub fn ifname_of_component(component: &str) -> Option<String> {
    let mut out = String::with_capacity(component.len());
    let mut rest = component;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("%2E") => out.push('.'),
            Some("%25") => out.push('%'),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Removes a file, treating "already gone" as success.
pub fn remove_file(path: &Path) -> Result<(), DataplaneError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(DataplaneError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Removes an (empty) directory, treating "already gone" as success.
pub fn remove_dir(path: &Path) -> Result<(), DataplaneError> {
    match fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(DataplaneError::io("remove", path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_round_trip_through_pin_components_without_dots() {
        for name in ["eth0", "eth0.100", "a.b.c", "50%", "x%2Ey", "%", "."] {
            let c = pin_component(name);
            assert!(!c.contains('.'), "{name} -> {c}");
            assert_eq!(ifname_of_component(&c).as_deref(), Some(name), "{c}");
        }
        assert_eq!(pin_component("eth0.100"), "eth0%2E100");
        assert_ne!(pin_component("eth0.100"), pin_component("eth0%2E100"));
        // A component no interface name gives.
        assert_eq!(ifname_of_component("bad%41"), None);
        assert_eq!(ifname_of_component("tail%2"), None);
    }
}
