//! Each container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, as Docker 1.8 writes
//! them (spec: "Configuring DNS").
//!
//! The renderers are pure. The engine calls them with a container's settings and the text of the
//! host's resolv.conf, writes the result with [`write_atomic`], and keeps the exact string it
//! wrote so that [`still_ours`] can later tell whether the container has edited its copy (an
//! edited copy is never overwritten). [`HostFileWatcher`] tells the engine when the host's
//! resolv.conf changes.
//!
//! [`render`] holds the pure renderers, [`watch`] the inotify watcher; the atomic write is
//! [`crate::fsutil::write_atomic`].

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::fsutil::path_error;

pub mod render;
pub mod watch;

pub use crate::fsutil::{PathError, write_atomic};
pub use render::*;
pub use watch::HostFileWatcher;

/// The directory holding one container's three files, bind-mounted over its `/etc` copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub dir: PathBuf,
}

impl EtcFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn hostname_path(&self) -> PathBuf {
        self.dir.join("hostname")
    }

    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    pub fn resolv_conf_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// Creates the directory (and its parents) if missing.
    pub fn create_dir(&self) -> io::Result<()> {
        fs::create_dir_all(&self.dir).map_err(path_error("create directory", &self.dir))
    }

    /// Removes the three files, then the directory if nothing else is left in it. Missing files
    /// are fine. Keeps going after a failure and returns the first one (later ones are logged).
    pub fn remove(&self) -> io::Result<()> {
        let mut errors = Vec::new();
        for path in [
            self.hostname_path(),
            self.hosts_path(),
            self.resolv_conf_path(),
        ] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    errors.push(path_error("remove", &path)(e));
                }
                _ => {}
            }
        }
        match fs::remove_dir(&self.dir) {
            Err(e)
                if !matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
                ) =>
            {
                errors.push(path_error("remove directory", &self.dir)(e));
            }
            _ => {}
        }
        let mut errors = errors.into_iter();
        let first = errors.next();
        for later in errors {
            tracing::warn!(error = %later, "container etc files not fully removed");
        }
        first.map_or(Ok(()), Err)
    }
}

/// Whether netd may overwrite a container file: only when it exists and still holds exactly what
/// netd last wrote there. A copy the container has edited (or removed) is left alone.
pub fn still_ours(on_disk: Option<&str>, last_written: &str) -> bool {
    on_disk == Some(last_written)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::fsutil::test_util::*;

    #[test]
    fn etc_files_paths_create_and_remove() {
        let root = TempDir::new("etc");
        let files = EtcFiles::new(root.0.join("c1"));
        assert_eq!(files.hostname_path(), root.0.join("c1/hostname"));
        assert_eq!(files.hosts_path(), root.0.join("c1/hosts"));
        assert_eq!(files.resolv_conf_path(), root.0.join("c1/resolv.conf"));

        files.create_dir().unwrap();
        write_atomic(&files.hostname_path(), &render_hostname("c1")).unwrap();
        write_atomic(&files.hosts_path(), &render_hosts("c1", None, None, &[])).unwrap();
        files.remove().unwrap();
        assert!(!files.dir.exists());
        // Already gone: still fine.
        files.remove().unwrap();
    }

    #[test]
    fn etc_files_remove_keeps_a_directory_with_other_files() {
        let root = TempDir::new("etc-keep");
        let files = EtcFiles::new(&root.0);
        write_atomic(&files.resolv_conf_path(), "nameserver 8.8.8.8\n").unwrap();
        fs::write(root.0.join("other"), "x").unwrap();
        files.remove().unwrap();
        assert_eq!(names_in(&root.0), ["other"]);
    }

    #[test]
    fn still_ours_only_for_an_unchanged_file() {
        let wrote = "nameserver 8.8.8.8\n";
        assert!(still_ours(Some(wrote), wrote));
        assert!(!still_ours(Some("nameserver 8.8.8.8\n# edited\n"), wrote));
        assert!(!still_ours(Some("nameserver 8.8.8.8"), wrote));
        assert!(!still_ours(None, wrote));
    }
}
