//! [`Netns`]: a named network namespace (`ip netns add`) deleted on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::traffic::enter_netns;
use crate::{cmd, cmd_ok, try_poll_until, unique};

/// Serialises `ip netns add/delete`: concurrent first use can stack mounts on /var/run/netns.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// A network namespace with a unique name, deleted (after killing processes spawned in it)
/// when dropped.
pub struct Netns {
    /// The namespace's name (`ip netns` lists it); also [`Netns::name`].
    pub name: String,
    path: PathBuf,
    children: Mutex<Vec<Child>>,
    deleted: Mutex<bool>,
}

impl Netns {
    /// Creates `<prefix><pid>x<n>`; `lo` stays down.
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        {
            let _g = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            cmd_ok(&["ip", "netns", "add", &name]);
        }
        let path = PathBuf::from(format!("/var/run/netns/{name}"));
        Netns {
            name,
            path,
            children: Mutex::new(Vec::new()),
            deleted: Mutex::new(false),
        }
    }

    /// Names the network namespace of process `pid` `<prefix><pid>x<n>` (`ip netns attach`:
    /// a bind mount of /proc/PID/ns/net under /var/run/netns), e.g. a namespace a container
    /// engine made. Drop removes the name and kills what was spawned through it; the
    /// namespace itself lives on while its owner does.
    pub fn attach(prefix: &str, pid: u32) -> Result<Netns, String> {
        let name = unique(prefix);
        let out = {
            let _g = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            cmd(&["ip", "netns", "attach", &name, &pid.to_string()])
        };
        if !out.status.success() {
            return Err(format!(
                "ip netns attach {name} {pid}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Netns {
            path: PathBuf::from(format!("/var/run/netns/{name}")),
            name,
            children: Mutex::new(Vec::new()),
            deleted: Mutex::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/var/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("netns path is UTF-8")
    }

    /// `nsenter --net=<path> argv...`, prepared but not run.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path_str())).args(argv);
        c
    }

    /// Runs `argv` inside the namespace and returns its output.
    pub fn run(&self, argv: &[&str]) -> Output {
        self.command(argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {}: {e}", self.name))
    }

    /// Runs `argv` inside the namespace, panics unless it succeeds, returns stdout.
    pub fn run_ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(
            out.status.success(),
            "{argv:?} in netns {} failed ({}): {}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `argv` inside the namespace in the background; it is killed when the guard drops.
    /// Returns its pid.
    pub fn spawn(&self, argv: &[&str]) -> u32 {
        let child = self
            .command(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {argv:?} in {}: {e}", self.name));
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        pid
    }

    /// [`Netns::run_ok`] under the name the datapath tests use.
    pub fn exec(&self, argv: &[&str]) -> String {
        self.run_ok(argv)
    }

    /// Runs `f` on a thread that entered this namespace and returns its result (setns(2):
    /// mounts stay shared, so bpffs pins made here are visible outside); a panic in `f`
    /// goes on in the caller.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_netns(&self.path).unwrap_or_else(|e| panic!("{e:#}"));
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// `ip -n <name> args...`; panics on failure, returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        cmd_ok(&argv)
    }

    /// `ip -j -n <name> args...` parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut argv = vec!["ip", "-j", "-n", &self.name];
        argv.extend_from_slice(args);
        let out = cmd_ok(&argv);
        if out.trim().is_empty() {
            return serde_json::Value::Array(vec![]);
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip {args:?}: bad JSON {e}: {out}"))
    }

    /// Names of all interfaces in the namespace.
    pub fn links(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    /// The interface's JSON (`ip -j link show dev`), or None if it does not exist.
    pub fn link(&self, ifname: &str) -> Option<serde_json::Value> {
        let out = cmd(&["ip", "-j", "-n", &self.name, "link", "show", "dev", ifname]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?.first().cloned()
    }

    /// The interface's MTU; panics if it does not exist.
    pub fn mtu(&self, ifname: &str) -> u64 {
        self.require_link(ifname)["mtu"].as_u64().unwrap()
    }

    /// The interface's MAC address as bytes; panics if it does not exist.
    pub fn mac_bytes(&self, ifname: &str) -> [u8; 6] {
        let text = self.mac(ifname);
        let mut m = [0u8; 6];
        let mut parts = text.split(':');
        for b in &mut m {
            let part = parts
                .next()
                .unwrap_or_else(|| panic!("MAC {text} of {ifname}"));
            *b = u8::from_str_radix(part, 16).unwrap_or_else(|e| panic!("MAC {text}: {e}"));
        }
        m
    }

    /// The interface's MAC address (lowercase); panics if it does not exist.
    pub fn mac(&self, ifname: &str) -> String {
        self.require_link(ifname)["address"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The bridge the interface is enslaved to, if any; panics if it does not exist.
    pub fn master(&self, ifname: &str) -> Option<String> {
        self.require_link(ifname)["master"]
            .as_str()
            .map(str::to_string)
    }

    /// True if the interface exists and has the UP flag.
    pub fn is_up(&self, ifname: &str) -> bool {
        self.link(ifname).is_some_and(|l| {
            l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"))
        })
    }

    fn require_link(&self, ifname: &str) -> serde_json::Value {
        self.link(ifname).unwrap_or_else(|| {
            panic!(
                "no interface {ifname} in netns {}; have {:?}",
                self.name,
                self.links()
            )
        })
    }

    /// Names of interfaces whose name starts with `prefix` (e.g. "veth").
    pub fn links_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .links()
            .into_iter()
            .filter(|l| l.starts_with(prefix))
            .collect();
        v.sort();
        v
    }

    /// Reads a file as seen from inside the namespace (e.g. /proc/sys/net/ipv4/ip_forward).
    pub fn read(&self, path: &str) -> String {
        self.run_ok(&["cat", path])
    }

    /// IPv4 addresses on `ifname` as "a.b.c.d/len" (empty if the interface does not exist).
    pub fn addrs4(&self, ifname: &str) -> Vec<String> {
        let out = cmd(&[
            "ip", "-j", "-4", "-n", &self.name, "addr", "show", "dev", ifname,
        ]);
        if !out.status.success() {
            return vec![];
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut res = vec![];
        for link in v.as_array().into_iter().flatten() {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                res.push(format!(
                    "{}/{}",
                    a["local"].as_str().unwrap_or_default(),
                    a["prefixlen"]
                ));
            }
        }
        res
    }

    /// IPv4 routes (`ip -4 route show` lines, trimmed).
    pub fn routes4(&self) -> Vec<String> {
        self.ip(&["-4", "route", "show"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Waits until a TCP socket listens on `port` here (a server started with
    /// [`Netns::spawn`] takes its time on a loaded machine; a client before it is refused).
    pub fn wait_tcp_listening(&self, port: u16) {
        crate::poll_until(
            &format!("a TCP listener on port {port} in {}", self.name),
            Duration::from_secs(10),
            || {
                let out = self.run(&["ss", "-Hltn", &format!("sport = :{port}")]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if text.contains(&format!(":{port}")) {
                    Ok(())
                } else {
                    Err(text)
                }
            },
        );
    }

    /// One ping with a 1 s deadline.
    pub fn ping_once(&self, addr: &str) -> bool {
        self.run(&["ping", "-c1", "-W1", "-n", "-q", addr])
            .status
            .success()
    }

    /// Pings until one answer arrives (up to `timeout`).
    pub fn ping(&self, addr: &str, timeout: Duration) -> bool {
        try_poll_until(timeout, || {
            if self.ping_once(addr) {
                Ok(())
            } else {
                Err(())
            }
        })
        .is_ok()
    }

    /// Deletes the namespace now (e.g. behind netd's back); drop then does nothing more.
    pub fn delete(&self) {
        let mut deleted = self.deleted.lock().unwrap();
        if *deleted {
            return;
        }
        self.kill_children();
        let _g = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let out = cmd(&["ip", "netns", "delete", &self.name]);
        if !out.status.success() {
            eprintln!(
                "warning: ip netns delete {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        *deleted = true;
    }

    fn kill_children(&self) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for mut c in children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// True if `ip netns list` shows `name`.
pub fn netns_listed(name: &str) -> bool {
    let out = cmd(&["ip", "netns", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}
