//! Rootful podman 4.3 with its CNI backend in a test world (../shared/docs/engines.md): the
//! [`Podman`] guard, the netd CNI plugin and conflists installed for netd networks
//! ([`CniDirs`]), a busybox image whose `/srv/reply` answers with the connection it saw
//! ([`SERVE`]), and the client side of that exchange. Used by tests/tests/cni/ and the demo.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Daemon, TempDir, World, cmd_ok};

const T: Duration = Duration::from_secs(5);

/// What a served container runs: answers each TCP connection on port 80 with "got LINE" and
/// its `netstat` line (local and peer address).
pub const SERVE: &str = "nc -ll -p 80 -e /srv/reply";

/// Is podman installed?
pub fn podman_installed() -> bool {
    Command::new("podman").arg("--version").output().is_ok()
}

/// A plugin directory and a conflist directory with `netd cni install` run into them.
pub struct CniDirs {
    _dir: TempDir,
    pub bin: PathBuf,
    pub conf: PathBuf,
}

impl CniDirs {
    pub fn new() -> CniDirs {
        let dir = TempDir::new();
        let (bin, conf) = (dir.path().join("bin"), dir.path().join("net.d"));
        CniDirs {
            _dir: dir,
            bin,
            conf,
        }
    }

    /// `netd cni install --network NET <extra>` into these directories, for each network.
    pub fn install(&self, d: &Daemon, networks: &[&str], extra: &[&str]) -> &CniDirs {
        for net in networks {
            let mut args = vec![
                "cni",
                "install",
                "--dir",
                self.bin.to_str().unwrap(),
                "--conf-dir",
                self.conf.to_str().unwrap(),
                "--network",
                net,
            ];
            args.extend_from_slice(extra);
            d.netd_ok(&args);
        }
        self
    }
}

impl Default for CniDirs {
    fn default() -> Self {
        Self::new()
    }
}

/// Rootful podman 4.3 with its CNI backend, in the world's host namespace and a private mount
/// namespace of its own (tmpfs over /var/lib/cni and /run/netns), with a private
/// CONTAINERS_CONF, vfs storage under a temporary directory, runc and cgroupfs. A holder
/// process keeps the mount namespace alive between podman commands; dropping the guard
/// removes every container, kills the holder (by pid) and removes the directory.
pub struct Podman {
    /// One podman world at a time: the mount points below are shared directories.
    _serial: std::sync::MutexGuard<'static, ()>,
    /// Mount points this guard had to create on the machine (removed on drop).
    made: Vec<PathBuf>,
    dir: TempDir,
    holder: std::process::Child,
    /// `--cgroup-parent` of every container (cgroupfs puts conmon under it too), removed
    /// from every hierarchy on drop.
    pub cgroup_parent: String,
    /// conmon's own cgroup parent (`libpod_parent`, whatever `--cgroup-parent` says) did not
    /// exist before: remove it too.
    remove_libpod_parent: bool,
}

impl Podman {
    /// `port_reservation`: containers.conf's `enable_port_reservation`.
    pub fn new(w: &World, cni_bin: &Path, cni_conf: &Path, port_reservation: bool) -> Podman {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // tmpfs goes over these in the private mount namespace (libcni's cache, the netns
        // bind mounts, podman's blob-info cache); they must exist to be mounted on.
        let mut made = Vec::new();
        for m in ["/var/lib/cni", "/var/lib/containers", "/run/netns"] {
            if !Path::new(m).exists() {
                std::fs::create_dir_all(m).unwrap();
                made.push(PathBuf::from(m));
            }
        }
        let dir = TempDir::new();
        let d = dir.path();
        for sub in ["root", "runroot", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1024:1024"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin}", "/usr/lib/cni"]
network_config_dir = "{conf}"
default_network = "blue"

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
tmp_dir = "{tmp}"
events_logger = "file"
events_logfile_path = "{tmp}/events.log"
# true: rootful podman binds every published host port itself (conmon holds the sockets),
# which clashes with the daemon's reservation unless the conflist says reservePorts=false.
enable_port_reservation = {port_reservation}
"#,
            bin = cni_bin.display(),
            conf = cni_conf.display(),
            tmp = d.join("tmp").display()
        );
        std::fs::write(d.join("containers.conf"), conf).unwrap();
        let ready = d.join("ready");
        let script = format!(
            "mount -t tmpfs tmpfs /var/lib/cni && mount -t tmpfs tmpfs /var/lib/containers && \
             mount -t tmpfs tmpfs /run/netns && touch {} && exec sleep 100000",
            ready.display()
        );
        let holder = Command::new("nsenter")
            .arg(format!("--net={}", w.host.path_str()))
            .args([
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the mount-namespace holder");
        let t = Instant::now();
        while !ready.exists() {
            assert!(
                t.elapsed() < T,
                "the mount-namespace holder did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Podman {
            _serial: serial,
            made,
            remove_libpod_parent: !Path::new("/sys/fs/cgroup/memory/libpod_parent").exists()
                && !Path::new("/sys/fs/cgroup/unified/libpod_parent").exists(),
            dir,
            holder,
            cgroup_parent: format!("/{}", crate::unique("netdt-podman-")),
        }
    }

    /// `--cgroup-parent=...` for every `podman run`.
    pub fn parent_arg(&self) -> String {
        format!("--cgroup-parent={}", self.cgroup_parent)
    }

    /// `podman run -d --name NAME <opts> IMAGE sh -c SERVE`.
    pub fn serve(&self, image: &str, name: &str, opts: &[&str]) -> String {
        let parent = self.parent_arg();
        let mut args = vec!["run", "-d", &parent, "--name", name];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[image, "sh", "-c", SERVE]);
        self.ok(&args)
    }

    /// The netd endpoints of a container on several networks (the first attachment is named
    /// after the container, the next ones `NAME-IFNAME`; which comes first varies), sorted by
    /// interface.
    pub fn endpoints_of(d: &Daemon, name: &str) -> Vec<serde_json::Value> {
        let mut found: Vec<serde_json::Value> = [
            name.to_string(),
            format!("{name}-eth0"),
            format!("{name}-eth1"),
        ]
        .iter()
        .filter(|n| d.netd(&["inspect", n]).status.success())
        .map(|n| d.inspect(n))
        .collect();
        found.sort_by_key(|m| m["ifname"].as_str().unwrap_or_default().to_string());
        found
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let d = self.dir.path();
        let pid = self.holder.id();
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg("podman")
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--runtime", "runc", "--network-backend", "cni"])
            .args(args);
        crate::output_with_timeout(c, Duration::from_secs(120))
    }

    /// The results libcni cached for `network` (`/var/lib/cni/results/NETWORK-*`, in podman's
    /// private tmpfs), as JSON, one per attachment.
    pub fn cached_results(&self, network: &str) -> Vec<serde_json::Value> {
        let pid = self.holder.id();
        let script = format!("cat /var/lib/cni/results/{network}-* 2>/dev/null; echo");
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .args(["sh", "-c", &script]);
        let o = crate::output_with_timeout(c, T);
        serde_json::Deserializer::from_slice(&o.stdout)
            .into_iter::<serde_json::Value>()
            .map(|v| v.expect("a libcni cache file is JSON"))
            .collect()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A busybox image with an echo server script that reports the peer it sees.
    pub fn import_busybox(&self) -> &'static str {
        let root = self.dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("srv")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for applet in ["sh", "nc", "netstat", "cat", "sleep", "grep", "echo", "ip"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let reply = root.join("srv/reply");
        std::fs::write(
            &reply,
            "#!/bin/sh\nread line\necho \"got $line\"\nnetstat -tn | grep ESTABLISHED\n",
        )
        .unwrap();
        cmd_ok(&["chmod", "755", reply.to_str().unwrap()]);
        for d in ["proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let tar = self.dir.path().join("rootfs.tar");
        cmd_ok(&[
            "tar",
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ]);
        let image = "localhost/netdt-busybox:latest";
        self.ok(&["import", tar.to_str().unwrap(), image]);
        image
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-f", "-a", "-t", "0"]);
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        for m in self.made.iter().rev() {
            let _ = std::fs::remove_dir(m);
        }
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let mut tops = vec![self.cgroup_parent.trim_start_matches('/').to_string()];
        if self.remove_libpod_parent {
            tops.push("libpod_parent".into());
        }
        for (h, name) in hierarchies
            .flatten()
            .flat_map(|h| tops.iter().map(move |t| (h.path(), t.clone())))
        {
            let top = h.join(name);
            if top.is_dir() {
                // Only directories: cgroupfs refuses to remove a cgroup that still has tasks.
                let _ = Command::new("find")
                    .arg(&top)
                    .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                    .status();
            }
        }
    }
}

/// Connects from `ns` to `addr`, sends one line and returns everything the server wrote.
pub fn tcp_exchange(ns: &crate::Netns, addr: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let addr: std::net::SocketAddr = addr.parse()?;
    crate::in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"hello\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        anyhow::ensure!(!out.is_empty(), "{addr} closed without a reply");
        Ok(out)
    })
}

/// The peer address of the connection to `ip`:80 in /srv/reply's netstat lines.
pub fn peer_of(reply: &str, ip: &str) -> Option<String> {
    let local = format!("{ip}:80");
    reply.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // nc listens on [::]: IPv4 ends are written v4-mapped.
        let unmap = |a: &str| a.trim_start_matches("::ffff:").to_string();
        (f.len() >= 5 && unmap(f[3]) == local).then(|| unmap(f[4].rsplit_once(':').unwrap().0))
    })
}
