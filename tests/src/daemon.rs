//! [`Daemon`]: the real `netd daemon` running in a World's host namespace, plus CLI helpers
//! that talk to it over its private Unix socket.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::Netns;
use crate::world::UPLINK;
use crate::{output_with_timeout, unique, workspace_root};

/// How long the daemon gets to answer `status` after starting: only a limit for a daemon that
/// hangs. Loading the programs alone (the verifier) takes 10-20 s on a busy 2-core machine,
/// and several daemons starting at once on a machine other runs share took over 30 s.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long any single CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the netd binary under test: `$NETD_BIN`, else `<workspace>/target/debug/netd`.
pub fn netd_bin() -> PathBuf {
    let bin = std::env::var_os("NETD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/netd"));
    assert!(
        bin.exists(),
        "build netd first: cargo build -p netd (looked for {})",
        bin.display()
    );
    bin
}

/// How a daemon that was expected to exit by itself ended.
#[derive(Debug)]
pub struct DaemonExit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A running `netd daemon` in a private host namespace, with its own temporary directory
/// (socket, state dir, bpffs mount point, logs) and cgroup directory. Dropping it kills the
/// process (by pid), unmounts its bpffs, and removes the directories.
pub struct Daemon {
    host_ns: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
    cgroup: Option<PathBuf>,
    args: Vec<String>,
    /// Extra environment for the daemon process (e.g. NOTIFY_SOCKET).
    env: Vec<(String, String)>,
    /// A mount namespace to run in (`/proc/PID/ns/mnt`), e.g. the one dockerd shares.
    mount_ns: Option<PathBuf>,
    child: Option<Child>,
    starts: u32,
    /// The next start's stderr instead of its log file (e.g. a pseudo-terminal).
    stderr_to: Option<fs::File>,
}

impl Daemon {
    /// Starts the daemon in `host` with `extra` arguments after the fixed ones and waits until
    /// `netd status` answers; panics (printing the daemon's logs) otherwise.
    pub fn start(host: &Netns, extra: &[&str]) -> Daemon {
        let mut d = Daemon::prepare(host, extra);
        d.spawn();
        d.wait_ready();
        d
    }

    /// Like [`Daemon::start`], in the mount namespace `mnt` (`/proc/PID/ns/mnt`) as well.
    pub fn start_in_mount_ns(host: &Netns, mnt: &Path, extra: &[&str]) -> Daemon {
        let mut d = Daemon::prepare(host, extra);
        d.mount_ns = Some(mnt.to_path_buf());
        d.spawn();
        d.wait_ready();
        d
    }

    /// [`Daemon::start`] with another netd binary than [`netd_bin`] (an older release, for an
    /// upgrade test).
    pub fn start_bin(host: &Netns, bin: &Path, extra: &[&str]) -> Daemon {
        let mut d = Daemon::prepare(host, extra);
        d.bin = bin.to_path_buf();
        d.spawn();
        d.wait_ready();
        d
    }

    /// Stops the daemon (SIGTERM) and starts `bin` on the same arguments and directories
    /// (an upgrade or a downgrade); waits until it answers.
    pub fn restart_bin(&mut self, bin: &Path) {
        self.bin = bin.to_path_buf();
        self.restart();
    }

    /// [`Daemon::restart_bin`] for a start that must fail: waits for `bin` to exit.
    pub fn restart_bin_to_exit(&mut self, bin: &Path) -> DaemonExit {
        self.bin = bin.to_path_buf();
        self.restart_to_exit()
    }

    /// Starts the daemon with `env` added to its environment and returns at once, without
    /// waiting for it to answer (a test that watches readiness itself).
    pub fn spawn_with_env(host: &Netns, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::prepare(host, extra);
        d.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.spawn();
        d
    }

    /// Waits until the daemon answers `netd status`; panics (with its logs) if it exits or
    /// takes longer than 10 s.
    pub fn wait_until_ready(&mut self) {
        self.wait_ready();
    }

    /// [`Daemon::start`] with `--cgroup cgroup` instead of a private cgroup of its own (e.g.
    /// one that several daemons share). The caller owns `cgroup`: it is not removed on drop.
    pub fn start_in_cgroup(host: &Netns, cgroup: &Path, extra: &[&str]) -> Daemon {
        let mut d = Daemon::prepare(host, extra);
        if let Some(own) = d.cgroup.take() {
            let _ = fs::remove_dir(&own);
            let at = d
                .args
                .iter()
                .position(|a| a == "--cgroup")
                .expect("--cgroup");
            d.args.drain(at..at + 2);
        }
        d.args.push("--cgroup".into());
        d.args.push(cgroup.display().to_string());
        d.spawn();
        d.wait_ready();
        d
    }

    /// [`Daemon::start`] without `--uplink`: the daemon serves every eligible interface.
    pub fn start_serving_all(host: &Netns, extra: &[&str]) -> Daemon {
        let mut d = Daemon::prepare(host, extra);
        let at = d
            .args
            .iter()
            .position(|a| a == "--uplink")
            .expect("--uplink");
        d.args.drain(at..at + 2);
        d.spawn();
        d.wait_ready();
        d
    }

    /// The daemon's `--cgroup` directory, if it has one (the socket hooks are attached there:
    /// a host-local client must run in it).
    pub fn cgroup(&self) -> Option<&Path> {
        let at = self.args.iter().position(|a| a == "--cgroup")?;
        self.args.get(at + 1).map(Path::new)
    }

    /// Starts the daemon expecting it to exit by itself within 10 s (e.g. on bad options).
    pub fn run_to_exit(host: &Netns, extra: &[&str]) -> DaemonExit {
        let mut d = Daemon::prepare(host, extra);
        d.spawn();
        d.wait_exit(extra)
    }

    /// Stops the daemon if it runs, starts it again on the same directories and waits for it
    /// to exit by itself (a start that must fail, e.g. on damaged state).
    pub fn restart_to_exit(&mut self) -> DaemonExit {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
        let args = self.args.clone();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.wait_exit(&args)
    }

    fn wait_exit(&mut self, extra: &[&str]) -> DaemonExit {
        let d = self;
        let deadline = Instant::now() + READY_TIMEOUT;
        let status = loop {
            if let Some(st) = d.child.as_mut().unwrap().try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() >= deadline {
                d.print_logs();
                panic!(
                    "netd daemon {extra:?} was expected to exit but is still running after {READY_TIMEOUT:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        d.child = None;
        DaemonExit {
            status,
            stdout: d.log(d.starts, "out"),
            stderr: d.log(d.starts, "err"),
        }
    }

    fn prepare(host: &Netns, extra: &[&str]) -> Daemon {
        let bin = netd_bin();
        let dir = std::env::temp_dir().join(unique("netd-test-"));
        fs::create_dir_all(&dir).expect("create daemon tmpdir");
        // A private cgroup so that any cgroup-attached program never sees the machine's
        // processes (the root cgroup is never used).
        let cgroup_root = Path::new("/sys/fs/cgroup/unified");
        let cgroup = if cgroup_root.join("cgroup.procs").exists() {
            let c = cgroup_root.join(unique("netd-test-"));
            // Never fall back to no --cgroup: the daemon would attach its socket hooks to its
            // default, the cgroup v2 root.
            fs::create_dir(&c).unwrap_or_else(|e| panic!("create cgroup {}: {e}", c.display()));
            Some(c)
        } else {
            None
        };
        let mut args: Vec<String> = vec![
            "daemon".into(),
            "--uplink".into(),
            UPLINK.into(),
            "-H".into(),
            format!("unix://{}", dir.join("netd.sock").display()),
            "--state-dir".into(),
            dir.join("state").display().to_string(),
            "--bpffs".into(),
            dir.join("bpf").display().to_string(),
        ];
        if let Some(c) = &cgroup {
            args.push("--cgroup".into());
            args.push(c.display().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon {
            host_ns: host.path().to_path_buf(),
            bin,
            dir,
            cgroup,
            args,
            env: Vec::new(),
            mount_ns: None,
            child: None,
            starts: 0,
            stderr_to: None,
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        self.starts += 1;
        let out = fs::File::create(self.log_path(self.starts, "out")).unwrap();
        let err = match self.stderr_to.take() {
            Some(f) => f,
            None => fs::File::create(self.log_path(self.starts, "err")).unwrap(),
        };
        // nsenter only enters the network namespace and execs netd (no fork), so the child's
        // pid is netd's; the mount namespace stays the real one so bpffs pins are visible.
        let mut c = std::process::Command::new("nsenter");
        if let Some(m) = &self.mount_ns {
            c.arg(format!("--mount={}", m.display()));
        }
        let child = c
            .arg(format!("--net={}", self.host_ns.display()))
            .arg(&self.bin)
            .args(&self.args)
            .env("RUST_BACKTRACE", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn nsenter netd daemon");
        self.child = Some(child);
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                self.print_logs();
                panic!(
                    "netd daemon exited during startup ({st}); args {:?}",
                    self.args
                );
            }
            // A restarted daemon answers reads while it reconciles ("state": "reconciling"):
            // ready means reconciled.
            if self.sock().exists() {
                // The socket can be there well before the daemon answers (seen: over 30 s with
                // six daemons starting at once): this call may wait up to what is left.
                let mut c = std::process::Command::new(&self.bin);
                c.arg("-H").arg(self.host_arg()).arg("status");
                let left = deadline.saturating_duration_since(Instant::now());
                let out = output_with_timeout(c, left.max(CLI_TIMEOUT));
                if out.status.success()
                    && !String::from_utf8_lossy(&out.stdout).contains("\"reconciling\"")
                {
                    return;
                }
            }
            if Instant::now() >= deadline {
                self.print_logs();
                panic!("netd daemon did not answer `status` within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's pid, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The temporary directory holding the socket, state dir, bpffs dir and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("netd.sock")
    }

    /// `unix://<sock>`, the value for `-H`.
    pub fn host_arg(&self) -> String {
        format!("unix://{}", self.sock().display())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn bpffs(&self) -> PathBuf {
        self.dir.join("bpf")
    }

    /// How many file descriptors the running daemon holds (`/proc/PID/fd`).
    pub fn fd_count(&self) -> usize {
        let pid = self.pid().expect("the daemon runs");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the daemon's /proc/PID/fd")
            .count()
    }

    /// Where the daemon pins map `name` (`<bpffs>/maps/<name>`).
    pub fn map_pin(&self, name: &str) -> PathBuf {
        self.bpffs().join("maps").join(name)
    }

    /// The names under the daemon's pin directory `dir` (`progs`, `sock_progs`), sorted.
    pub fn pins_in(&self, dir: &str) -> Vec<String> {
        let dir = self.bpffs().join(dir);
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Default etc dir of a container: `<state-dir>/containers/<name>`.
    pub fn etc_dir(&self, name: &str) -> PathBuf {
        self.state_dir().join("containers").join(name)
    }

    /// Reads `<etc dir of name>/<file>` (hostname, hosts, resolv.conf).
    pub fn etc_file(&self, name: &str, file: &str) -> String {
        let p = self.etc_dir(name).join(file);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to 10 s (then SIGKILL); returns how it exited.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = c.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                eprintln!("netd daemon ignored SIGTERM for 10 s; killing it");
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon if running (SIGTERM) and starts it again with the same arguments,
    /// state dir and bpffs dir; waits until it answers.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
        self.wait_ready();
    }

    /// [`Daemon::restart`] with the new process's stderr on `stderr` (its log is then not
    /// kept).
    pub fn restart_with_stderr(&mut self, stderr: fs::File) {
        self.stderr_to = Some(stderr);
        self.restart();
    }

    /// Runs `netd -H unix://<sock> args...` (30 s limit).
    pub fn netd(&self, args: &[&str]) -> Output {
        let mut c = std::process::Command::new(&self.bin);
        c.arg("-H").arg(self.host_arg()).args(args);
        output_with_timeout(c, CLI_TIMEOUT)
    }

    /// One HTTP/1.1 request on the daemon's API socket, no CLI process in between: the status
    /// and the body. `headers` are extra `Name: value` lines; the body is sent as JSON.
    pub fn http(&self, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let mut s =
            std::os::unix::net::UnixStream::connect(self.sock()).expect("connect to the API");
        s.set_read_timeout(Some(CLI_TIMEOUT)).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: netd\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        s.write_all(req.as_bytes()).expect("send the request");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read the answer");
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: no status in {resp:?}"));
        let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_string())
    }

    /// Runs the CLI, panics (with the daemon's logs) unless it succeeds; returns stdout.
    pub fn netd_ok(&self, args: &[&str]) -> String {
        let out = self.netd(args);
        if !out.status.success() {
            self.print_logs();
            panic!(
                "netd {args:?} failed ({}):\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI, panics if it succeeds; returns stderr.
    pub fn netd_err(&self, args: &[&str]) -> String {
        let out = self.netd(args);
        assert!(
            !out.status.success(),
            "netd {args:?} was expected to fail but succeeded:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `netd inspect NAME` parsed.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.netd_ok(&["inspect", name]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect {name}: bad JSON {e}: {out}"))
    }

    /// `netd status` parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.netd_ok(&["status"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status: bad JSON {e}: {out}"))
    }

    /// `netd ls` output.
    pub fn ls(&self) -> String {
        self.netd_ok(&["ls"])
    }

    /// True if some `netd ls` line has `name` as a whitespace-separated word.
    pub fn ls_has(&self, name: &str) -> bool {
        self.ls()
            .lines()
            .any(|l| l.split_whitespace().any(|w| w == name))
    }

    /// `netd attach NAME --netns PATH extra...`; returns the inspect JSON.
    pub fn attach(&self, name: &str, netns: &Netns, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["attach", name, "--netns", netns.path_str()];
        args.extend_from_slice(extra);
        self.netd_ok(&args);
        self.inspect(name)
    }

    /// [`Daemon::attach`], returning the container's IPv4 address.
    pub fn attach_ip(&self, name: &str, netns: &Netns, extra: &[&str]) -> String {
        let v = self.attach(name, netns, extra);
        v["ip"]
            .as_str()
            .unwrap_or_else(|| panic!("attach {name}: no ip in {v}"))
            .to_string()
    }

    /// A logged file from the n-th start: "out" or "err".
    pub fn log(&self, start: u32, which: &str) -> String {
        fs::read_to_string(self.log_path(start, which)).unwrap_or_default()
    }

    /// Everything the daemon wrote, all starts, for assertion messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in 1..=self.starts {
            for which in ["out", "err"] {
                let text = self.log(n, which);
                if !text.is_empty() {
                    s.push_str(&format!(
                        "--- netd daemon start #{n} std{which} ---\n{text}\n"
                    ));
                }
            }
        }
        s
    }

    /// Prints the daemon's logs to stderr (shown by the test runner on failure).
    pub fn print_logs(&self) {
        eprintln!("netd daemon args: {:?}\n{}", self.args, self.logs());
    }

    fn log_path(&self, start: u32, which: &str) -> PathBuf {
        self.dir.join(format!("daemon-{start}.{which}"))
    }
}

/// True if `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.display().to_string();
    info.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(want.as_str()))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        self.kill9();
        let bpffs = self.bpffs();
        for _ in 0..10 {
            if !is_mounted(&bpffs) {
                break;
            }
            if let Err(e) = nix::mount::umount2(&bpffs, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("warning: umount {}: {e}", bpffs.display());
                break;
            }
        }
        if let Some(c) = &self.cgroup {
            if let Err(e) = fs::remove_dir(c) {
                eprintln!("warning: rmdir {}: {e}", c.display());
            }
        }
        if is_mounted(&bpffs) {
            eprintln!(
                "warning: {} still mounted; leaving {}",
                bpffs.display(),
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("warning: remove {}: {e}", self.dir.display());
        }
    }
}
