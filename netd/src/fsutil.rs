//! File-system helpers: crash-safe replacement of a file, and I/O errors that name their path.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An I/O failure on a file or directory this module manages. It travels inside an
/// [`io::Error`] of the same [`io::ErrorKind`], so callers can still match on the kind while
/// messages name the path; the OS error is the `source()`.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}", path.display())]
pub struct PathError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl PathError {
    /// The file or directory that failed.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Wraps an OS error so that it names `path`; `action` reads as "cannot {action} {path}".
pub(crate) fn path_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    move |source| {
        let kind = source.kind();
        io::Error::new(
            kind,
            PathError {
                action,
                path: path.to_path_buf(),
                source,
            },
        )
    }
}

/// Distinguishes temp files of concurrent writers within this process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `contents` so that a crash at any moment leaves either the old or the
/// new file: writes a uniquely named temp file in the same directory, fsyncs it, renames it over
/// `path` and fsyncs the directory. The file is mode 0644 whatever the umask, so that any user in
/// the container can read it.
///
/// A running container whose `/etc` file is bind-mounted from `path` keeps seeing the old inode;
/// the new content shows from its next start.
pub fn write_atomic(path: &Path, contents: &str) -> io::Result<()> {
    write_replace(path, contents, true)
}

/// [`write_atomic`] without the fsyncs: a reader still sees the old or the new content, never
/// a mix, but a power loss may lose the file. For files that do not outlive what they describe
/// (a container's /etc files: its network namespace does not survive a power loss either, and
/// a re-attach writes them again). Docker writes them the same way.
pub fn write_replace_volatile(path: &Path, contents: &str) -> io::Result<()> {
    write_replace(path, contents, false)
}

fn write_replace(path: &Path, contents: &str, durable: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(path_error("write", path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not name a file",
        )));
    };
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".netd-tmp.{}.{}",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);

    let written = write_new_file(&temp, contents, durable).and_then(|()| {
        fs::rename(&temp, path).map_err(path_error("rename a temporary file over", path))
    });
    if let Err(e) = written {
        // Best effort: the temp file is junk either way, and the first error is the one to report.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    if !durable {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(path_error("sync directory", dir))
}

/// Creates `path` (which must not exist), writes `contents` and (when `durable`) fsyncs it.
fn write_new_file(path: &Path, contents: &str, durable: bool) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(path_error("create", path))?;
    file.set_permissions(Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(contents.as_bytes()))
        .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
        .map_err(path_error("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::test_util::*;

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp_files() {
        let dir = TempDir::new("write");
        let path = dir.0.join("resolv.conf");
        write_atomic(&path, "nameserver 1.1.1.1\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "nameserver 1.1.1.1\n");
        write_atomic(&path, "nameserver 9.9.9.9\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "nameserver 9.9.9.9\n");
        assert_eq!(names_in(&dir.0), ["resolv.conf"]);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn write_atomic_failure_names_the_path_and_keeps_the_kind() {
        let dir = TempDir::new("write-fail");
        let path = dir.0.join("missing").join("hosts");
        let err = write_atomic(&path, "x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<PathError>());
        assert!(inner.is_some(), "{err:?}");
        assert!(err.to_string().contains(&*dir.0.to_string_lossy()), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(names_in(&dir.0), Vec::<String>::new());
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A unique directory under the system temp dir, removed when dropped (even on panic).
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "netd-dnsfiles-{tag}-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}
