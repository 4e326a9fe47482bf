//! The real dockerd 20.10 (Debian's docker.io) in a test world: a private mount namespace
//! entered through the world's host netns (tmpfs over /run and /etc/docker, Docker's
//! hard-coded paths), dockerd with its own directories, and a busybox-static image; and
//! [`DockerWorld`], the steps every dockerd scenario starts with (netd, the plugin spec,
//! dockerd, the image). Used by tests/tests/docker/ and the demo.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::world::HOST_UPLINK_IP;
use crate::{Daemon, Netns, World};

/// A process holding a private mount namespace (entered through the world's host netns) with
/// tmpfs over /run and /etc/docker. Dropping it kills every process left in that namespace
/// (all of them started by this test: dockerd, containerd, shims, containers) by pid.
pub struct MountNs {
    holder: Child,
}

impl MountNs {
    pub fn new(host: &Netns) -> MountNs {
        let holder = Command::new("nsenter")
            .arg(format!("--net={}", host.path_str()))
            .args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /run && mkdir -p /run/docker/plugins /run/containerd && \
                 mount -t tmpfs tmpfs /etc/docker && mkdir /etc/docker/plugins && \
                 touch /run/.netdt-ready && exec sleep 100000",
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the mount namespace holder");
        let m = MountNs { holder };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !m.run(&["test", "-e", "/run/.netdt-ready"]).status.success() {
            assert!(Instant::now() < deadline, "mount namespace not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.holder.id()))
    }

    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount={}", self.path().display()))
            .args(argv);
        c
    }

    pub fn run(&self, argv: &[&str]) -> Output {
        self.command(argv).output().expect("nsenter")
    }

    /// Pids of the processes in this mount namespace (the holder included).
    pub fn pids(&self) -> Vec<i32> {
        let Ok(me) = fs::read_link(self.path()) else {
            return Vec::new();
        };
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok().as_ref() == Some(&me))
            .collect()
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// dockerd's networking flags when netd is its network driver: no `docker0`, no iptables
/// rule, no masquerade, no forwarding sysctl, no docker-proxy ([`Dockerd::start`]).
pub const NETD_NET_FLAGS: [&str; 5] = [
    "--bridge=none",
    "--iptables=false",
    "--ip-masq=false",
    "--ip-forward=false",
    "--userland-proxy=false",
];

/// dockerd's networking flags for Docker's own bridge driver as an oracle: its iptables
/// rules, masquerade, forwarding sysctl and docker-proxy, all inside the world's host netns
/// (no `docker0`: the tests create user-defined `-d bridge` networks).
pub const BRIDGE_DRIVER_NET_FLAGS: [&str; 6] = [
    "--bridge=none",
    "--iptables=true",
    "--ip-masq=true",
    "--ip-forward=true",
    "--userland-proxy=true",
    "--userland-proxy-path=/usr/sbin/docker-proxy",
];

/// dockerd in the mount namespace and the host netns, with its own directories under `dir`.
pub struct Dockerd {
    child: Child,
    pub dir: PathBuf,
    net_flags: Vec<String>,
}

impl Dockerd {
    /// dockerd with [`NETD_NET_FLAGS`].
    pub fn start(mnt: &MountNs, host: &Netns) -> Dockerd {
        Dockerd::start_with(mnt, host, &NETD_NET_FLAGS)
    }

    /// dockerd with `net_flags` as its networking flags (kept across restarts), e.g.
    /// [`BRIDGE_DRIVER_NET_FLAGS`].
    pub fn start_with(mnt: &MountNs, host: &Netns, net_flags: &[&str]) -> Dockerd {
        let dir = std::env::temp_dir().join(crate::unique("netdt-docker-"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("daemon.json"), "{}").unwrap();
        let net_flags: Vec<String> = net_flags.iter().map(|f| f.to_string()).collect();
        let child = Dockerd::spawn(mnt, host, &dir, &net_flags);
        let d = Dockerd {
            child,
            dir,
            net_flags,
        };
        d.wait_ready();
        d
    }

    /// SIGTERM (dockerd stops its containers), then the same dockerd again.
    pub fn restart(&mut self, mnt: &MountNs, host: &Netns) {
        self.stop();
        self.child = Dockerd::spawn(mnt, host, &self.dir, &self.net_flags);
        self.wait_ready();
    }

    /// SIGKILL: dockerd dies without stopping anything; its containerd, shims and containers
    /// keep running.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // dockerd starts its containerd with a parent-death signal (SIGKILL): it dies too, and
        // its orphan is left to this machine's pid 1, which may never reap it. A zombie still
        // passes dockerd's "containerd is still running" check on the pid file, so remove the
        // pid file once containerd is dead: dockerd starts a new one, as after a real crash.
        let pidfile = self.dir.join("exec/containerd/containerd.pid");
        let Ok(pid) = fs::read_to_string(&pidfile) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stat = fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
            // The state follows the command name in parentheses.
            let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
            if stat.is_empty() || state == Some(Some('Z')) {
                let _ = fs::remove_file(&pidfile);
                return;
            }
            if Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts dockerd again after [`Dockerd::kill9`].
    pub fn start_again(&mut self, mnt: &MountNs, host: &Netns) {
        self.child = Dockerd::spawn(mnt, host, &self.dir, &self.net_flags);
        self.wait_ready();
    }

    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(mnt: &MountNs, host: &Netns, dir: &Path, net_flags: &[String]) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dockerd.log"))
            .unwrap();
        let p = |s: &str| dir.join(s).display().to_string();
        // One nsenter for both: the netns file under /run is hidden inside the namespace.
        mnt.command(&[
            &format!("--net={}", host.path_str()),
            "dockerd",
            "--data-root",
            &p("data"),
            "--exec-root",
            &p("exec"),
            "-H",
            &format!("unix://{}", p("docker.sock")),
            "--pidfile",
            &p("docker.pid"),
            "--config-file",
            &p("daemon.json"),
            "--storage-driver",
            "vfs",
        ])
        .args(net_flags)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn dockerd")
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// dockerd's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_with("docker", args)
    }

    /// `cli` is "docker" (this machine's 28.x client) or docker.io's own 20.10 client
    /// (/usr/bin/docker), which sends `--mac-address` the way API 1.41 takes it.
    pub fn docker_with(&self, cli: &str, args: &[&str]) -> Output {
        Command::new(cli)
            .arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the docker client")
    }

    pub fn docker_ok(&self, args: &[&str]) -> String {
        self.docker_ok_with("docker", args)
    }

    pub fn docker_ok_with(&self, cli: &str, args: &[&str]) -> String {
        let out = self.docker_with(cli, args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}\n--- dockerd log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker import` of [`image_tar`] as [`IMAGE`].
    pub fn import_image(&self) -> Result<(), String> {
        let tar = image_tar(&self.dir);
        let import = self.docker(&["import", tar.to_str().unwrap_or_default(), IMAGE]);
        if !import.status.success() {
            return Err(format!(
                "docker import: {}",
                String::from_utf8_lossy(&import.stderr)
            ));
        }
        Ok(())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- dockerd log ---\n{}", self.log());
        }
        // SIGTERM: dockerd stops its containers and its containerd; what is left is killed by
        // the mount namespace's guard.
        self.stop();
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("warning: remove {}: {e}", self.dir.display());
        }
    }
}

/// A busybox-static rootfs with an httpd CGI that answers the client's address.
pub fn image_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("www/cgi-bin")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    // For the host's dynamically linked tools (socat) in a container run with `-v /usr:/usr:ro`.
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", root.join("lib64")).unwrap();
    let cgi = root.join("www/cgi-bin/ip");
    fs::write(
        &cgi,
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&cgi, fs::Permissions::from_mode(0o755)).unwrap();
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    tar
}

/// What the outside namespace gets from `url` (curl), retried for up to 10 s.
pub fn http_get_until(ns: &Netns, url: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns.run(&["curl", "-s", "--max-time", "2", url]);
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        if Instant::now() >= deadline {
            return Err(format!("curl {url}: {}", out.status));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A test world with netd and dockerd sharing its host netns and a private mount namespace,
/// the plugin spec installed and the busybox image imported. Fields drop in order: dockerd,
/// netd, the mount namespace (kills what is left in it), the world.
pub struct DockerWorld {
    pub docker: Dockerd,
    pub d: Daemon,
    pub mnt: MountNs,
    pub w: World,
}

/// Is Debian's docker.io (dockerd 20.10) installed?
pub fn dockerd_installed() -> bool {
    Path::new(DOCKERD).exists()
}

const DOCKERD: &str = "/usr/sbin/dockerd";

/// The image every Docker step runs: busybox-static with the client-address CGI.
pub const IMAGE: &str = "netdt-bb:1";

/// [`IMAGE`]'s web server: port 80, the CGI at /cgi-bin/ip answering the client's address.
pub const HTTPD: [&str; 7] = ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"];

/// [`IMAGE`]'s idle command, for a client container.
pub const SLEEPER: [&str; 3] = ["/bin/busybox", "sleep", "1000"];

/// `network create -d netd --ipam-driver netd OPTS NAME`: docker's arguments.
pub fn network_args<'a>(name: &'a str, opts: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["network", "create", "-d", "netd", "--ipam-driver", "netd"];
    args.extend_from_slice(opts);
    args.push(name);
    args
}

/// `run -d --name NAME OPTS IMAGE CMD...`: docker's arguments.
pub fn run_args<'a>(name: &'a str, opts: &[&'a str], cmd: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(opts);
    args.push(IMAGE);
    args.extend_from_slice(cmd);
    args
}

impl DockerWorld {
    /// The world, netd (`--bip` [`crate::BIP`]), the plugin spec, dockerd and [`IMAGE`];
    /// panics saying what failed.
    #[expect(
        clippy::new_without_default,
        reason = "new() starts netd and dockerd: not a default value"
    )]
    pub fn new() -> DockerWorld {
        assert!(
            dockerd_installed(),
            "dockerd is missing: `cargo xtask setup` installs docker.io"
        );
        DockerWorld::start(crate::BIP).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`DockerWorld::new`] for the demo: `netd docker-plugin install` or the image import
    /// failing is an error (dockerd not answering still panics, with its log).
    pub fn start(bip: &str) -> Result<DockerWorld, String> {
        let w = World::new();
        let (docker, d, mnt) = DockerWorld::start_in(&w, &["--bip", bip])?;
        Ok(DockerWorld { docker, d, mnt, w })
    }

    /// The steps of [`DockerWorld::start`] in the world `w`, with `netd daemon` arguments
    /// `args`: dockerd, netd and the mount namespace, to be dropped in that order.
    pub fn start_in(w: &World, args: &[&str]) -> Result<(Dockerd, Daemon, MountNs), String> {
        let mnt = MountNs::new(&w.host);
        let d = Daemon::start_in_mount_ns(&w.host, &mnt.path(), args);
        let spec = mnt.run(&[
            crate::daemon::netd_bin().to_str().unwrap_or("netd"),
            "-H",
            &d.host_arg(),
            "docker-plugin",
            "install",
            "--dest",
            "/etc/docker/plugins",
        ]);
        if !spec.status.success() {
            return Err(format!(
                "netd docker-plugin install: {}",
                String::from_utf8_lossy(&spec.stderr)
            ));
        }
        let docker = Dockerd::start(&mnt, &w.host);
        docker.import_image()?;
        Ok((docker, d, mnt))
    }

    /// `docker network create -d netd --ipam-driver netd --subnet SUBNET -o netd.name=NAME NAME`.
    pub fn network(&self, name: &str, subnet: &str, extra: &[&str]) {
        let mut opts = vec!["--subnet", subnet];
        opts.extend_from_slice(extra);
        self.network_create(name, &opts);
    }

    /// `docker network create -d netd --ipam-driver netd -o netd.name=NAME OPTS NAME`.
    pub fn network_create(&self, name: &str, opts: &[&str]) {
        let opt = format!("netd.name={name}");
        let mut all = vec!["-o", &opt];
        all.extend_from_slice(opts);
        self.docker.docker_ok(&network_args(name, &all));
    }

    /// `docker run -d --name NAME <opts> netdt-bb:1 httpd` (port 80, the CGI answering the
    /// client's address).
    pub fn run_httpd(&self, name: &str, opts: &[&str]) {
        self.docker.docker_ok(&run_args(name, opts, &HTTPD));
    }

    /// `docker run -d --name NAME <opts> netdt-bb:1 sleep 1000` (a client).
    pub fn run_sleeper(&self, name: &str, opts: &[&str]) {
        self.docker.docker_ok(&run_args(name, opts, &SLEEPER));
    }

    /// In CONTAINER (busybox nc), GET /cgi-bin/ip from HOST:PORT: what came back (headers
    /// and body; "" if nothing did), whatever nc's exit status.
    pub fn exec_get(&self, container: &str, host: &str, port: u16) -> String {
        let get = format!(
            "printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 3 {host} {port}"
        );
        let out = self
            .docker
            .docker(&["exec", container, "/bin/busybox", "sh", "-c", &get]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// [`DockerWorld::exec_get`]'s body: the peer address the server at HOST:PORT saw.
    pub fn exec_peer(&self, container: &str, host: &str, port: u16) -> String {
        unmap(
            self.exec_get(container, host, port)
                .lines()
                .last()
                .unwrap_or_default(),
        )
    }

    /// The container's address as Docker reports it.
    pub fn docker_ip(&self, name: &str) -> String {
        self.docker.docker_ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ])
    }

    /// netd's endpoints as `netd ls --json` lists them.
    pub fn netd_ls(&self) -> Vec<serde_json::Value> {
        let out = self.d.netd_ok(&["ls", "--json"]);
        match serde_json::from_str(&out) {
            Ok(serde_json::Value::Array(v)) => v,
            _ => panic!("netd ls --json is no JSON array: {out}"),
        }
    }

    /// netd's endpoints as (name, ip), sorted.
    pub fn netd_endpoints(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .netd_ls()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_string(),
                    e["ip"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Whether `docker inspect` says NAME runs.
    pub fn running(&self, name: &str) -> bool {
        self.docker
            .docker(&["inspect", "-f", "{{.State.Running}}", name])
            .stdout
            == b"true\n"
    }

    /// Waits until `docker inspect` says NAME runs.
    pub fn wait_running(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.running(name) {
            assert!(
                Instant::now() < deadline,
                "{name} is not running after 60 s:\n{}",
                self.docker.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// GET /cgi-bin/ip on HOST_UPLINK_IP:PORT from the outside; the peer address the
    /// container's server saw.
    pub fn outside_peer(&self, port: u16) -> Result<String, String> {
        http_get_until(
            &self.w.outside,
            &format!("http://{HOST_UPLINK_IP}:{port}/cgi-bin/ip"),
        )
        .map(|got| unmap(&got))
    }
}

/// busybox httpd listens on [::] and writes IPv4 peers v4-mapped: `[::ffff:a.b.c.d]` → a.b.c.d.
pub fn unmap(got: &str) -> String {
    got.trim()
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']')
        .to_string()
}
