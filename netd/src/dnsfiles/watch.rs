//! Follows the host's resolv.conf with inotify.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::fsutil::path_error;

/// How the watcher turns a burst of changes into one report.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    /// Quiet time after the last change before the burst is reported.
    quiet: Duration,
    /// Longest a report waits in a burst that never goes quiet.
    max_delay: Duration,
}

const PACING: Pacing = Pacing {
    quiet: Duration::from_millis(100),
    max_delay: Duration::from_secs(1),
};

/// Watches the host's resolv.conf and sends `()` after it changes.
///
/// resolvconf, NetworkManager and editors replace the file by renaming a new one over it, which
/// a watch on the file itself would miss, so the watch is on the parent directory, filtered to
/// the file's name. When the path is a symlink (as `/etc/resolv.conf` often is, into `/run`), the
/// directory of its target at spawn time is watched as well. A burst of changes is reported once,
/// 100 ms after the last of them (or 1 s after the first if they never stop). If every watched
/// directory goes away the watcher sends a last message and closes the channel. Dropping the
/// watcher stops it.
#[derive(Debug)]
pub struct HostFileWatcher {
    path: PathBuf,
    task: JoinHandle<()>,
}

/// A watched directory and the file name in it that matters.
struct Target {
    wd: WatchDescriptor,
    name: OsString,
}

impl HostFileWatcher {
    /// Starts watching `path`. Must be called inside a tokio runtime.
    pub fn spawn(path: PathBuf) -> io::Result<(HostFileWatcher, mpsc::Receiver<()>)> {
        Self::spawn_paced(path, PACING)
    }

    fn spawn_paced(
        path: PathBuf,
        pacing: Pacing,
    ) -> io::Result<(HostFileWatcher, mpsc::Receiver<()>)> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            path_error("watch", &path)(io::Error::other(format!(
                "the watcher needs a tokio runtime: {e}"
            )))
        })?;
        let inotify = Inotify::init().map_err(path_error("watch", &path))?;
        let mut watches = inotify.watches();
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ONLYDIR;

        let mut places = vec![split_dir_name(&path)?];
        // The symlink's target, if any, resolved once now.
        if let Ok(target) = fs::canonicalize(&path) {
            let (dir, name) = split_dir_name(&target)?;
            let same_place = fs::canonicalize(&places[0].0)
                .is_ok_and(|link_dir| link_dir == dir && name == places[0].1);
            if !same_place {
                places.push((dir, name));
            }
        }
        let mut targets = Vec::new();
        for (dir, name) in places {
            let wd = watches
                .add(&dir, mask)
                .map_err(path_error("watch directory", &dir))?;
            targets.push(Target { wd, name });
        }

        let events = inotify
            .into_event_stream([0u8; 4096])
            .map_err(path_error("watch", &path))?;
        let (tx, rx) = mpsc::channel(1);
        let task = runtime.spawn(watch(path.clone(), events, targets, tx, pacing));
        Ok((HostFileWatcher { path, task }, rx))
    }

    /// The file being watched.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HostFileWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A path's directory (`.` for a bare name) and file name.
fn split_dir_name(path: &Path) -> io::Result<(PathBuf, OsString)> {
    let Some(name) = path.file_name() else {
        return Err(path_error("watch", path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not name a file",
        )));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_os_string()))
}

/// What the watcher learned from the inotify stream.
enum Seen {
    /// The file changed (or may have: the kernel's event queue overflowed).
    Change,
    /// Nothing more can arrive: every watch is gone or the stream failed.
    End,
}

/// Waits for the next event that concerns the watched file.
async fn next_change<S>(events: &mut S, targets: &mut Vec<Target>, path: &Path) -> Seen
where
    S: futures::Stream<Item = io::Result<inotify::EventOwned>> + Unpin,
{
    loop {
        let event = match events.next().await {
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "stopped watching the host file");
                return Seen::End;
            }
            None => return Seen::End,
        };
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            return Seen::Change;
        }
        if event.mask.contains(EventMask::IGNORED) {
            // The directory was deleted or unmounted; its watch is gone.
            targets.retain(|t| t.wd != event.wd);
            if targets.is_empty() {
                tracing::warn!(path = %path.display(), "the host file's directory went away");
                return Seen::End;
            }
            continue;
        }
        let ours = targets
            .iter()
            .any(|t| t.wd == event.wd && event.name.as_deref() == Some(t.name.as_os_str()));
        if ours {
            return Seen::Change;
        }
    }
}

/// The watcher task: reports each burst of changes once, until the receiver or the watches go.
async fn watch<S>(
    path: PathBuf,
    mut events: S,
    mut targets: Vec<Target>,
    tx: mpsc::Sender<()>,
    pacing: Pacing,
) where
    S: futures::Stream<Item = io::Result<inotify::EventOwned>> + Unpin,
{
    loop {
        let mut seen = tokio::select! {
            seen = next_change(&mut events, &mut targets, &path) => seen,
            () = tx.closed() => return,
        };
        // Debounce: wait until the file has been quiet for a while, but not forever.
        let give_up = Instant::now() + pacing.max_delay;
        while let Seen::Change = seen {
            let quiet = (Instant::now() + pacing.quiet).min(give_up);
            match tokio::time::timeout_at(quiet, next_change(&mut events, &mut targets, &path))
                .await
            {
                Ok(next) => seen = next,
                Err(_quiet) => break,
            }
            if Instant::now() >= give_up {
                break;
            }
        }
        // On End the file may have changed unseen: report once more, then close the channel.
        match tx.try_send(()) {
            // Full: an earlier report is still unread, and it covers this change too.
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => return,
        }
        if let Seen::End = seen {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use std::fs::OpenOptions;
    use std::io::Write as _;

    use tokio::time::timeout;

    use crate::fsutil::write_atomic;

    use super::*;
    use crate::fsutil::test_util::*;

    /// Long enough for a debounced report to have arrived if one were coming.
    const SILENCE: Duration = Duration::from_millis(500);

    async fn expect_report(rx: &mut mpsc::Receiver<()>, what: &str) {
        match timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => panic!("watcher closed its channel instead of reporting {what}"),
            Err(_) => panic!("no report within 5 s after {what}"),
        }
    }

    async fn expect_silence(rx: &mut mpsc::Receiver<()>, after: &str) {
        if let Ok(got) = timeout(SILENCE, rx.recv()).await {
            panic!("unexpected {got:?} from the watcher after {after}");
        }
    }

    async fn expect_closed(rx: &mut mpsc::Receiver<()>, after: &str) {
        match timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(None) => {}
            Ok(Some(())) => panic!("unexpected report after {after}"),
            Err(_) => panic!("channel still open 5 s after {after}"),
        }
    }

    fn write_in_place(path: &Path, contents: &str) {
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.write_all(contents.as_bytes()).unwrap();
    }

    #[tokio::test]
    async fn watcher_reports_renames_and_writes_but_not_other_files() {
        let dir = TempDir::new("watch");
        let path = dir.0.join("resolv.conf");
        fs::write(&path, "nameserver 10.0.0.1\n").unwrap();
        let (watcher, mut rx) = HostFileWatcher::spawn(path.clone()).unwrap();
        assert_eq!(watcher.path(), path);

        fs::write(dir.0.join("resolv.conf.other"), "nameserver 10.0.0.9\n").unwrap();
        fs::write(dir.0.join("hosts"), "x\n").unwrap();
        expect_silence(&mut rx, "writes to other files").await;

        let new = dir.0.join(".resolv.conf.new");
        fs::write(&new, "nameserver 10.0.0.2\n").unwrap();
        fs::rename(&new, &path).unwrap();
        expect_report(&mut rx, "a rename over the file").await;
        expect_silence(&mut rx, "one rename").await;

        write_in_place(&path, "nameserver 10.0.0.3\n");
        expect_report(&mut rx, "an in-place write").await;

        drop(watcher);
        expect_closed(&mut rx, "the watcher was dropped").await;
    }

    /// Writes the file every `gap` for `total`, from another task, while the test listens.
    fn keep_writing(path: PathBuf, gap: Duration, total: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let end = Instant::now() + total;
            let mut n = 0u32;
            while Instant::now() < end {
                write_in_place(&path, &format!("nameserver 10.0.1.{}\n", n % 250));
                n += 1;
                tokio::time::sleep(gap).await;
            }
        })
    }

    #[tokio::test]
    async fn watcher_reports_a_burst_once() {
        let dir = TempDir::new("watch-burst");
        let path = dir.0.join("resolv.conf");
        fs::write(&path, "nameserver 10.0.0.1\n").unwrap();
        let pacing = Pacing {
            quiet: Duration::from_millis(300),
            max_delay: Duration::from_secs(30),
        };
        let (_watcher, mut rx) = HostFileWatcher::spawn_paced(path.clone(), pacing).unwrap();

        // Gaps far below the quiet time: one burst.
        let writer = keep_writing(path, Duration::from_millis(10), Duration::from_millis(200));
        expect_report(&mut rx, "a burst of writes").await;
        assert!(writer.is_finished(), "reported before the burst ended");
        expect_silence(&mut rx, "the burst was reported").await;
    }

    #[tokio::test]
    async fn watcher_reports_a_burst_that_never_ends() {
        let dir = TempDir::new("watch-endless");
        let path = dir.0.join("resolv.conf");
        fs::write(&path, "nameserver 10.0.0.1\n").unwrap();
        let pacing = Pacing {
            quiet: Duration::from_secs(30),
            max_delay: Duration::from_millis(200),
        };
        let (_watcher, mut rx) = HostFileWatcher::spawn_paced(path.clone(), pacing).unwrap();

        let writer = keep_writing(path, Duration::from_millis(10), Duration::from_secs(3));
        expect_report(&mut rx, "writes that never stop").await;
        assert!(!writer.is_finished(), "no report until the writes stopped");
        writer.abort();
    }

    #[tokio::test]
    async fn watcher_follows_a_symlink_to_its_target_directory() {
        let dir = TempDir::new("watch-link");
        let etc = dir.0.join("etc");
        let run = dir.0.join("run");
        fs::create_dir_all(&etc).unwrap();
        fs::create_dir_all(&run).unwrap();
        let target = run.join("resolv.conf");
        fs::write(&target, "nameserver 10.0.0.1\n").unwrap();
        let link = etc.join("resolv.conf");
        std::os::unix::fs::symlink("../run/resolv.conf", &link).unwrap();
        let (_watcher, mut rx) = HostFileWatcher::spawn(link.clone()).unwrap();

        fs::write(run.join("other"), "x\n").unwrap();
        expect_silence(&mut rx, "a write next to the target").await;

        write_atomic(&target, "nameserver 10.0.0.2\n").unwrap();
        expect_report(&mut rx, "the target was replaced").await;

        fs::remove_file(&link).unwrap();
        expect_report(&mut rx, "the link was removed").await;
    }

    #[tokio::test]
    async fn watcher_reports_and_closes_when_the_directory_goes() {
        let dir = TempDir::new("watch-gone");
        let sub = dir.0.join("etc");
        fs::create_dir_all(&sub).unwrap();
        let path = sub.join("resolv.conf");
        fs::write(&path, "nameserver 10.0.0.1\n").unwrap();
        let (_watcher, mut rx) = HostFileWatcher::spawn(path).unwrap();

        fs::remove_dir_all(&sub).unwrap();
        expect_report(&mut rx, "the directory was removed").await;
        expect_closed(&mut rx, "the directory was removed").await;
    }

    #[test]
    fn watcher_outside_a_runtime_is_an_error() {
        let err = HostFileWatcher::spawn(PathBuf::from("/etc/resolv.conf")).unwrap_err();
        assert!(err.to_string().contains("/etc/resolv.conf"), "{err}");
    }
}
