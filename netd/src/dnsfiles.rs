//! Each container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, as Docker 1.8 writes
//! them (spec: "Configuring DNS").
//!
//! The renderers are pure. The engine calls them with a container's settings and the text of the
//! host's resolv.conf, writes the result with [`write_atomic`], and keeps the exact string it
//! wrote so that [`still_ours`] can later tell whether the container has edited its copy (an
//! edited copy is never overwritten). [`HostFileWatcher`] tells the engine when the host's
//! resolv.conf changes.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
fn path_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
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

/// `/etc/hostname`: the name and a newline.
pub fn render_hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// One `--link=NAME:ALIAS` entry in the recipient's `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsLink {
    pub alias: String,
    /// The linked container's name; written after the alias when it differs from it.
    pub name: String,
    pub ip: Ipv4Addr,
}

/// Docker's fixed loopback and IPv6 entries, in Docker's order.
const HOSTS_DEFAULTS: &str = "127.0.0.1\tlocalhost\n\
                              ::1\tlocalhost ip6-localhost ip6-loopback\n\
                              fe00::0\tip6-localnet\n\
                              ff00::0\tip6-mcastprefix\n\
                              ff02::1\tip6-allnodes\n\
                              ff02::2\tip6-allrouters\n";

/// `/etc/hosts`: the default entries, the container's own address under its hostname (absent
/// when it has no address, as with `--net none`), then one line per link sorted by alias (then
/// name, then address) so the same links always give the same bytes.
pub fn render_hosts(hostname: &str, ip: Option<Ipv4Addr>, links: &[HostsLink]) -> String {
    let mut out = String::from(HOSTS_DEFAULTS);
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    let mut links: Vec<&HostsLink> = links.iter().collect();
    links.sort_by(|a, b| {
        (a.alias.as_str(), a.name.as_str(), a.ip).cmp(&(b.alias.as_str(), b.name.as_str(), b.ip))
    });
    for link in links {
        if link.name == link.alias {
            out.push_str(&format!("{}\t{}\n", link.ip, link.alias));
        } else {
            out.push_str(&format!("{}\t{} {}\n", link.ip, link.alias, link.name));
        }
    }
    out
}

/// What a resolver takes from a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// The words of one resolv.conf line, up to a `#` or `;` comment.
fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split_whitespace()
        .take_while(|w| !w.starts_with(['#', ';']))
}

/// Reads a resolv.conf the way glibc does: every `nameserver` line adds a server (lines whose
/// address does not parse, such as `fe80::1%eth0`, are skipped), the last `search` or `domain`
/// line sets the search list, and `options` lines accumulate. Comments, unknown keywords and junk
/// are ignored.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let mut words = words(line);
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                    conf.nameservers.push(ip);
                }
            }
            Some("search") => conf.search = words.map(String::from).collect(),
            Some("domain") => conf.search = words.next().map(String::from).into_iter().collect(),
            Some("options") => conf.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    conf
}

/// What a container gets when the host's resolv.conf leaves it no usable nameserver.
const GOOGLE_DNS: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

/// True for a `nameserver` line naming an address in 127.0.0.0/8 or `::1` (with or without a
/// `%zone`, and IPv4-mapped forms too): the host's loopback is not the container's.
fn is_loopback_nameserver(line: &str) -> bool {
    let mut words = words(line);
    if words.next() != Some("nameserver") {
        return false;
    }
    let Some(addr) = words.next() else {
        return false;
    };
    let addr = addr.split_once('%').map_or(addr, |(addr, _zone)| addr);
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Docker's filter for a container that sets neither `--dns` nor `--dns-search`: the host's
/// file with its loopback nameserver lines dropped and every other line kept byte for byte;
/// Google's public servers are appended when no nameserver is left.
pub fn filter_host_resolv(host: &str) -> String {
    let mut out: String = host
        .split_inclusive('\n')
        .filter(|line| !is_loopback_nameserver(line))
        .collect();
    if parse_resolv_conf(&out).nameservers.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(GOOGLE_DNS);
    }
    out
}

/// `/etc/resolv.conf` for a container. Without `--dns` and `--dns-search` it is
/// [`filter_host_resolv`] of the host's file. Otherwise it is built: the `--dns` servers, or the
/// filtered host's servers; the `--dns-search` domains, or the host's search list (`.` entries
/// are dropped, so `--dns-search=.` writes no search line and does not fall back to the host's);
/// and the host's options.
pub fn render_resolv_conf(dns: &[IpAddr], dns_search: &[String], host: &str) -> String {
    if dns.is_empty() && dns_search.is_empty() {
        return filter_host_resolv(host);
    }
    let host_conf = parse_resolv_conf(host);
    let nameservers = if dns.is_empty() {
        parse_resolv_conf(&filter_host_resolv(host)).nameservers
    } else {
        dns.to_vec()
    };
    let search: Vec<&str> = if dns_search.is_empty() {
        host_conf.search.iter().map(String::as_str).collect()
    } else {
        dns_search
            .iter()
            .map(String::as_str)
            .filter(|d| *d != ".")
            .collect()
    };

    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in &nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !host_conf.options.is_empty() {
        out.push_str(&format!("options {}\n", host_conf.options.join(" ")));
    }
    out
}

/// Whether netd may overwrite a container file: only when it exists and still holds exactly what
/// netd last wrote there. A copy the container has edited (or removed) is left alone.
pub fn still_ours(on_disk: Option<&str>, last_written: &str) -> bool {
    on_disk == Some(last_written)
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

    let written = write_new_file(&temp, contents).and_then(|()| {
        fs::rename(&temp, path).map_err(path_error("rename a temporary file over", path))
    });
    if let Err(e) = written {
        // Best effort: the temp file is junk either way, and the first error is the one to report.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(path_error("sync directory", dir))
}

/// Creates `path` (which must not exist), writes `contents` and fsyncs it.
fn write_new_file(path: &Path, contents: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(path_error("create", path))?;
    file.set_permissions(Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(contents.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(path_error("write", path))
}

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
    use std::net::Ipv6Addr;

    use tokio::time::timeout;

    use super::*;

    /// A unique directory under the system temp dir, removed when dropped (even on panic).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
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

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn link(alias: &str, name: &str, ip: [u8; 4]) -> HostsLink {
        HostsLink {
            alias: alias.into(),
            name: name.into(),
            ip: Ipv4Addr::from(ip),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn hostname_is_the_name_and_a_newline() {
        assert_eq!(render_hostname("web"), "web\n");
    }

    #[test]
    fn hosts_with_address_and_sorted_links() {
        let links = [
            link("db", "db", [172, 17, 0, 3]),
            link("cache", "redis1", [172, 17, 0, 4]),
        ];
        assert_eq!(
            render_hosts("a1b2c3", Some(Ipv4Addr::new(172, 17, 0, 2)), &links),
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\n\
             ff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n\
             172.17.0.2\ta1b2c3\n\
             172.17.0.4\tcache redis1\n\
             172.17.0.3\tdb\n"
        );
    }

    #[test]
    fn hosts_without_address_has_only_the_defaults() {
        assert_eq!(render_hosts("box", None, &[]), HOSTS_DEFAULTS);
        assert!(!HOSTS_DEFAULTS.contains("box"));
    }

    #[test]
    fn hosts_do_not_depend_on_link_order() {
        let a = link("a", "x", [10, 0, 0, 1]);
        let b = link("b", "b", [10, 0, 0, 2]);
        let ab = render_hosts("h", None, &[a.clone(), b.clone()]);
        let ba = render_hosts("h", None, &[b, a]);
        assert_eq!(ab, ba);
        assert!(ab.ends_with("10.0.0.1\ta x\n10.0.0.2\tb\n"), "{ab}");
    }

    #[test]
    fn parse_reads_servers_search_and_options_and_skips_junk() {
        let conf = parse_resolv_conf(
            "# generated\n\
             ; also a comment\n\
             nameserver 10.0.0.2 # office\n\
             nameserver 2001:db8::53\n\
             nameserver fe80::1%eth0\n\
             nameserver not-an-address\n\
             nameserver\n\
             domain corp.example\n\
             search a.example b.example ; trailing\n\
             options ndots:2\n\
             options timeout:1 rotate\n\
             sortlist 10.0.0.0/255.0.0.0\n\
             \tgarbage line \x07\n",
        );
        assert_eq!(
            conf,
            ResolvConf {
                nameservers: vec![ip("10.0.0.2"), ip("2001:db8::53")],
                search: strings(&["a.example", "b.example"]),
                options: strings(&["ndots:2", "timeout:1", "rotate"]),
            }
        );
    }

    #[test]
    fn parse_takes_the_last_of_search_and_domain() {
        let conf = parse_resolv_conf("search a.example b.example\ndomain corp.example\n");
        assert_eq!(conf.search, strings(&["corp.example"]));
    }

    #[test]
    fn filter_replaces_a_localhost_only_host_with_google() {
        assert_eq!(
            filter_host_resolv("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"),
            "options edns0 trust-ad\nsearch lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(filter_host_resolv(""), GOOGLE_DNS);
        assert_eq!(
            filter_host_resolv("nameserver 127.0.1.1"),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            filter_host_resolv("search lan"),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn filter_drops_v4_and_v6_loopback_and_keeps_everything_else() {
        let host = "# managed by hand\n\
                    nameserver 127.0.0.1\n\
                    nameserver ::1\n\
                    nameserver 10.0.0.2\n\
                    \n\
                    nameserver   127.255.0.9   # dnsmasq\n\
                    nameserver 2001:4860:4860::8888\n\
                    nameserver ::ffff:127.0.0.1\n\
                    nameserver 128.0.0.1\n\
                    search example.com\n\
                    options ndots:3";
        assert_eq!(
            filter_host_resolv(host),
            "# managed by hand\n\
             nameserver 10.0.0.2\n\
             \n\
             nameserver 2001:4860:4860::8888\n\
             nameserver 128.0.0.1\n\
             search example.com\n\
             options ndots:3"
        );
    }

    #[test]
    fn filter_falls_back_when_only_unusable_servers_remain() {
        assert_eq!(
            filter_host_resolv("nameserver ::1\nnameserver fe80::1%eth0\n"),
            "nameserver fe80::1%eth0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    const HOST: &str = "nameserver 127.0.0.53\n\
                        nameserver 192.168.1.1\n\
                        search home.example\n\
                        options ndots:2 edns0\n";

    #[test]
    fn resolv_without_flags_is_the_filtered_host_file() {
        assert_eq!(render_resolv_conf(&[], &[], HOST), filter_host_resolv(HOST));
        assert_eq!(
            render_resolv_conf(&[], &[], HOST),
            "nameserver 192.168.1.1\nsearch home.example\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn resolv_with_dns_only_keeps_host_search_and_options() {
        assert_eq!(
            render_resolv_conf(&[ip("1.1.1.1"), ip("2606:4700:4700::1111")], &[], HOST),
            "search home.example\n\
             nameserver 1.1.1.1\n\
             nameserver 2606:4700:4700::1111\n\
             options ndots:2 edns0\n"
        );
    }

    #[test]
    fn resolv_with_dns_search_only_uses_filtered_host_servers() {
        assert_eq!(
            render_resolv_conf(&[], &strings(&["a.example", "b.example"]), HOST),
            "search a.example b.example\nnameserver 192.168.1.1\noptions ndots:2 edns0\n"
        );
        assert_eq!(
            render_resolv_conf(&[], &strings(&["a.example"]), "nameserver 127.0.0.1\n"),
            "search a.example\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn resolv_with_dns_search_dot_has_no_search_line() {
        assert_eq!(
            render_resolv_conf(&[], &strings(&["."]), HOST),
            "nameserver 192.168.1.1\noptions ndots:2 edns0\n"
        );
        assert_eq!(
            render_resolv_conf(&[ip("9.9.9.9")], &strings(&["."]), HOST),
            "nameserver 9.9.9.9\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn resolv_with_both_flags_and_no_host_options() {
        assert_eq!(
            render_resolv_conf(
                &[IpAddr::V6(Ipv6Addr::LOCALHOST)],
                &strings(&["x.example"]),
                "nameserver 10.0.0.1\nsearch ignored.example\n"
            ),
            "search x.example\nnameserver ::1\n"
        );
    }

    #[test]
    fn still_ours_only_for_an_unchanged_file() {
        let wrote = "nameserver 8.8.8.8\n";
        assert!(still_ours(Some(wrote), wrote));
        assert!(!still_ours(Some("nameserver 8.8.8.8\n# edited\n"), wrote));
        assert!(!still_ours(Some("nameserver 8.8.8.8"), wrote));
        assert!(!still_ours(None, wrote));
    }

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

    #[test]
    fn etc_files_paths_create_and_remove() {
        let root = TempDir::new("etc");
        let files = EtcFiles::new(root.0.join("c1"));
        assert_eq!(files.hostname_path(), root.0.join("c1/hostname"));
        assert_eq!(files.hosts_path(), root.0.join("c1/hosts"));
        assert_eq!(files.resolv_conf_path(), root.0.join("c1/resolv.conf"));

        files.create_dir().unwrap();
        write_atomic(&files.hostname_path(), &render_hostname("c1")).unwrap();
        write_atomic(&files.hosts_path(), &render_hosts("c1", None, &[])).unwrap();
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
