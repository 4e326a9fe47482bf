//! Host-local access to published ports with no proxy process (the docker-proxy replacement):
//! the daemon's cgroup socket hooks send a host process's connections and datagrams for
//! `127.0.0.1:PORT`, `localhost:PORT`, the host's own addresses and `[::1]:PORT` straight to the
//! container, and make the replies read as coming from the published address.
//!
//! The host-local client is `netd-sock-client`, which joins the daemon's `--cgroup` (a private
//! directory the harness makes per daemon) and the World's host namespace before it opens a
//! socket. Nothing runs in the root network namespace.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netd_tests::world::HOST_UPLINK_IP;
use netd_tests::{
    BIP, BRIDGE_IP, Daemon, Netns, ServerHandle, World, poll_until, tcp_server, udp_server, unique,
};

const T: Duration = Duration::from_secs(5);

/// Runs the client in `cgroup` and `host`; returns op -> result (see netd-sock-client).
fn client(host: &Netns, cgroup: &Path, ops: &[&str]) -> HashMap<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_netd-sock-client"))
        .arg("--netns")
        .arg(host.path())
        .arg("--cgroup")
        .arg(cgroup)
        .args(ops)
        .output()
        .expect("run netd-sock-client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "netd-sock-client failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: HashMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| l.split_once(" => "))
        .map(|(op, r)| (op.to_owned(), r.to_owned()))
        .collect();
    assert_eq!(results.len(), ops.len(), "{stdout}");
    results
}

/// Asserts `op` succeeded with the echoed "ping" and every `want` fragment in its result.
fn assert_ok(r: &HashMap<String, String>, op: &str, want: &[&str]) {
    let got = &r[op];
    assert!(got.starts_with("ok reply=ping"), "{op}: {got}");
    for w in want {
        assert!(got.contains(w), "{op}: want {w:?} in {got:?}");
    }
}

fn assert_err(r: &HashMap<String, String>, op: &str, errno: i32) {
    assert_eq!(r[op], format!("err {errno}"), "{op}");
}

/// The daemon's cgroup (the harness gives every daemon a private one on this machine).
fn cgroup(d: &Daemon) -> &Path {
    d.cgroup()
        .expect("the harness gives each daemon a --cgroup directory")
}

/// A World, a daemon and a container "web" publishing `ports`, with TCP and UDP echo servers
/// on port 80 inside it. Waits until host-local TCP to the first published port answers.
struct Site {
    w: World,
    d: Daemon,
    _web: netd_tests::Container,
    tcp: ServerHandle,
    udp: ServerHandle,
}

impl Site {
    fn new(ports: &[&str]) -> Site {
        let w = World::new();
        let d = {
            // These checks are of the socket reservation, which keeps every process of the
            // namespace off a published port; the bind hooks act on the daemon's cgroup only
            // (the cgroup v2 root in production), and this process is outside the test's.
            w.daemon_with_env(&["--bip", BIP], &[("NETD_PORT_RESERVE", "socket")])
        };
        Site::with(w, d, ports)
    }

    fn with(w: World, d: Daemon, ports: &[&str]) -> Site {
        Site::with_args(w, d, ports, &[])
    }

    /// [`Site::with`], "web" attached with `extra` arguments too (e.g. `--network NAME`).
    fn with_args(w: World, d: Daemon, ports: &[&str], extra: &[&str]) -> Site {
        let web = w.container("web");
        let mut args = extra.to_vec();
        for p in ports {
            args.extend(["-p", p]);
        }
        d.attach("web", &web, &args);
        let tcp = tcp_server(&web, 80);
        let udp = udp_server(&web, 80);
        Site {
            w,
            d,
            _web: web,
            tcp,
            udp,
        }
    }

    fn client(&self, ops: &[&str]) -> HashMap<String, String> {
        client(&self.w.host, cgroup(&self.d), ops)
    }

    /// Polls `tcp addr` until it answers (maps are programmed right after attach).
    fn wait_tcp(&self, addr: &str) {
        let op = format!("tcp {addr}");
        poll_until(&format!("host-local {op}"), T, || {
            let r = self.client(&[&op]);
            if r[&op].starts_with("ok") {
                Ok(())
            } else {
                Err(r[&op].clone())
            }
        });
    }
}

#[test]
fn host_reaches_published_ports_on_every_local_address() {
    let site = Site::new(&["8080:80", "8080:80/udp"]);
    site.wait_tcp("127.0.0.1:8080");
    let bridge = format!("{BRIDGE_IP}:8080");
    let uplink = format!("{HOST_UPLINK_IP}:8080");
    let mut ops = Vec::new();
    for addr in ["127.0.0.1:8080", "localhost:8080", &uplink, &bridge] {
        for kind in ["tcp", "udp", "udpc"] {
            ops.push(format!("{kind} {addr}"));
        }
    }
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let r = site.client(&ops);
    for addr in ["127.0.0.1:8080", "localhost:8080", &uplink, &bridge] {
        // What the client dialled, as getpeername and recvfrom report it.
        let shown = if addr.starts_with("localhost") {
            "127.0.0.1:8080"
        } else {
            addr
        };
        assert_ok(&r, &format!("tcp {addr}"), &[&format!("peer={shown}")]);
        // UDP replies come from the published address, never the container's.
        assert_ok(&r, &format!("udp {addr}"), &[&format!("from={shown}")]);
        assert_ok(
            &r,
            &format!("udpc {addr}"),
            &[&format!("from={shown}"), &format!("peer={shown}")],
        );
    }
    // They all reached the container, from the host (its bridge address).
    assert!(site.tcp.peers().len() >= 4, "{:?}", site.tcp.peers());
    assert!(site.udp.peers().len() >= 8, "{:?}", site.udp.peers());
    assert!(
        site.tcp
            .peer_ips()
            .iter()
            .chain(&site.udp.peer_ips())
            .all(|ip| ip.to_string() == BRIDGE_IP),
        "tcp {:?} udp {:?}",
        site.tcp.peers(),
        site.udp.peers()
    );
}

#[test]
fn ipv6_client_reaches_an_ipv4_container() {
    let site = Site::new(&["8080:80", "8080:80/udp"]);
    site.wait_tcp("127.0.0.1:8080");
    let before = site.tcp.peers().len();
    let r = site.client(&[
        "tcp [::1]:8080",
        "udpc [::1]:8080",
        "tcp [::ffff:127.0.0.1]:8080",
        "udp [::ffff:127.0.0.1]:8080",
    ]);
    assert_ok(&r, "tcp [::1]:8080", &["peer=[::1]:8080"]);
    assert_ok(
        &r,
        "udpc [::1]:8080",
        &["from=[::1]:8080", "peer=[::1]:8080"],
    );
    assert_ok(
        &r,
        "tcp [::ffff:127.0.0.1]:8080",
        &["peer=[::ffff:127.0.0.1]:8080"],
    );
    assert_ok(
        &r,
        "udp [::ffff:127.0.0.1]:8080",
        &["from=[::ffff:127.0.0.1]:8080"],
    );
    // Both TCP connections reached the container.
    assert_eq!(site.tcp.peers().len(), before + 2, "{:?}", site.tcp.peers());
}

/// Issue 12: unconnected UDP `sendto` to `[::1]:PORT` reaches an IPv4-only container: the
/// daemon's NAT46 relay on `[::]:PORT` takes it (the sendmsg6 hook cannot redirect it: the
/// kernel refuses a v4-mapped destination written there), and the reply comes from
/// `[::1]:PORT`. TCP and connected UDP to `[::1]` still go through the socket hooks. Both
/// reservation modes.
#[test]
fn ipv6_loopback_udp_sendto_reaches_an_ipv4_container() {
    for mode in ["socket", "hook"] {
        let w = World::new();
        let d = w.daemon_with_env(&["--bip", BIP], &[("NETD_PORT_RESERVE", mode)]);
        let site = Site::with(w, d, &["8080:80", "8080:80/udp"]);
        site.wait_tcp("127.0.0.1:8080");
        let (tcp_before, udp_before) = (site.tcp.peers().len(), site.udp.peers().len());
        let ops = ["udp [::1]:8080", "tcp [::1]:8080", "udpc [::1]:8080"];
        let r = site.client(&ops);
        assert_ok(&r, "udp [::1]:8080", &["from=[::1]:8080"]);
        assert_ok(&r, "tcp [::1]:8080", &["peer=[::1]:8080"]);
        assert_ok(
            &r,
            "udpc [::1]:8080",
            &["from=[::1]:8080", "peer=[::1]:8080"],
        );
        assert_eq!(site.tcp.peers().len(), tcp_before + 1, "{mode}");
        assert!(
            site.udp.peers().len() >= udp_before + 2,
            "{mode}: {:?}",
            site.udp.peers()
        );
        // From the host, on the bridge: the relay's upstream as the hooks' redirection.
        assert!(
            site.udp
                .peer_ips()
                .iter()
                .all(|ip| ip.to_string() == BRIDGE_IP),
            "{mode}: {:?}",
            site.udp.peers()
        );
    }
}

/// Issue 12, dual stack: a container with its own IPv6 address is reached from the host over
/// IPv6 too, where the socket hooks cannot redirect: unconnected UDP `sendto([::1]:PORT)` and
/// the host's own global IPv6 address (TCP and UDP) reach the relay's socket on `[::]:PORT`
/// (outside IPv6 traffic is DNAT6'd before it, to the container's own address), and the
/// replies come from the address dialled. Before, these got no answer.
#[test]
fn host_local_ipv6_reaches_a_dual_stack_container() {
    let w = World::new();
    netd_tests::ipv6::v6_uplink(&w);
    let d = w.daemon(&["--bip", BIP, "--ipv6", "--fixed-cidr-v6", "2001:db8:1::/64"]);
    let site = Site::with(w, d, &["8080:80", "8080:80/udp"]);
    assert!(
        site.d.inspect("web")["global_ipv6"]
            .as_str()
            .is_some_and(|a| a.starts_with("2001:db8:1:")),
        "{}",
        site.d.inspect("web")
    );
    site.wait_tcp("127.0.0.1:8080");
    let host6 = netd_tests::ipv6::HOST6;
    let (udp6, tcp6, udp1) = (
        format!("udp [{host6}]:8080"),
        format!("tcp [{host6}]:8080"),
        "udp [::1]:8080".to_string(),
    );
    let r = poll_until("host-local IPv6 to a dual-stack container", T, || {
        let r = site.client(&[&udp1, &tcp6, &udp6, "tcp [::1]:8080"]);
        if r.values().all(|v| v.starts_with("ok reply=ping")) {
            Ok(r)
        } else {
            Err(r)
        }
    });
    assert_ok(&r, &udp1, &["from=[::1]:8080"]);
    assert_ok(&r, &tcp6, &[&format!("peer=[{host6}]:8080")]);
    assert_ok(&r, &udp6, &[&format!("from=[{host6}]:8080")]);
    assert_ok(&r, "tcp [::1]:8080", &["peer=[::1]:8080"]);
}

/// The bind6 hook refuses `[::]:PORT` for a published IPv4 port (a dual-stack socket would
/// take it), but lets the NAT46 relay's IPV6_V6ONLY socket bind while it carries the
/// relay's SO_PRIORITY marker (what a restarted daemon needs: its ports are in the pinned
/// table before it binds its relays). A process in the daemon's cgroup tries both.
#[test]
fn bind_hook_lets_only_the_relay_marker_take_ipv6_any_of_a_published_ipv4_port() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    // An explicit IPv4 host address: in the port table, no relay on [::]:8090.
    let site = Site::with(w, d, &["0.0.0.0:8090:80"]);
    site.wait_tcp("127.0.0.1:8090");
    let bind = |priority: u32| {
        let py = format!(
            "import socket\ns = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n\
             s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, {priority})\n\
             try:\n    s.bind(('::', 8090)); print('ok')\n\
             except OSError as e:\n    print('err', e.errno)\n"
        );
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec nsenter --net={} /usr/bin/python3 -c \"$0\"",
            cgroup(&site.d).display(),
            site.w.host.path_str()
        );
        let out = Command::new("sh")
            .args(["-c", &script, &py])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(bind(0), "err 98", "[::]:8090 is refused (EADDRINUSE)");
    // netd_common::RELAY_SOCK_PRIORITY.
    assert_eq!(bind(0x6e64_3436), "ok", "the relay's marker binds");
}

/// A container on a network made with `netd network create`: host-local access reaches it
/// the same way (from the host's address on that network's bridge).
#[test]
fn host_reaches_published_ports_of_a_created_network() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    d.netd_ok(&["network", "create", "green", "--subnet", "10.81.0.0/24"]);
    let site = Site::with_args(w, d, &["8083:80", "8083:80/udp"], &["--network", "green"]);
    site.wait_tcp("127.0.0.1:8083");
    let uplink = format!("{HOST_UPLINK_IP}:8083");
    let ops = [
        "tcp 127.0.0.1:8083".to_string(),
        "udp 127.0.0.1:8083".to_string(),
        format!("tcp {uplink}"),
        format!("udpc {uplink}"),
    ];
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let r = site.client(&ops);
    assert_ok(&r, "tcp 127.0.0.1:8083", &["peer=127.0.0.1:8083"]);
    assert_ok(&r, "udp 127.0.0.1:8083", &["from=127.0.0.1:8083"]);
    assert_ok(&r, &format!("tcp {uplink}"), &[&format!("peer={uplink}")]);
    assert_ok(&r, &format!("udpc {uplink}"), &[&format!("from={uplink}")]);
    let peers: Vec<String> = site
        .tcp
        .peer_ips()
        .iter()
        .chain(&site.udp.peer_ips())
        .map(ToString::to_string)
        .collect();
    assert!(
        !peers.is_empty() && peers.iter().all(|p| p == "10.81.0.1"),
        "{peers:?}"
    );
}

#[test]
fn loopback_only_binding_is_reachable_from_the_host_only() {
    let site = Site::new(&["127.0.0.1:9000:80", "127.0.0.1:9000:80/udp"]);
    site.wait_tcp("127.0.0.1:9000");
    let uplink = format!("{HOST_UPLINK_IP}:9000");
    let r = site.client(&[
        "tcp 127.0.0.1:9000",
        "udp 127.0.0.1:9000",
        &format!("tcp {uplink}"),
    ]);
    assert_ok(&r, "tcp 127.0.0.1:9000", &["peer=127.0.0.1:9000"]);
    assert_ok(&r, "udp 127.0.0.1:9000", &["from=127.0.0.1:9000"]);
    // Bound to 127.0.0.1 only: the host's other addresses do not take it.
    assert_err(&r, &format!("tcp {uplink}"), libc::ECONNREFUSED);
    // Nor does the outside world.
    let peers = site.tcp.peers().len();
    assert!(
        netd_tests::tcp_request(&site.w.outside, &uplink).is_err(),
        "a 127.0.0.1 binding answered from outside"
    );
    assert_eq!(site.tcp.peers().len(), peers);
}

#[test]
fn binding_a_published_port_on_the_host_fails_with_eaddrinuse() {
    let site = Site::new(&["8080:80", "8080:80/udp", "127.0.0.1:9000:80"]);
    site.wait_tcp("127.0.0.1:8080");
    let ops = [
        "bind tcp 0.0.0.0:8080",
        "bind udp 0.0.0.0:8080",
        "bind tcp 127.0.0.1:8080",
        "bind tcp 127.0.0.1:9000",
        "bind tcp 0.0.0.0:9000",
    ];
    // Inside the cgroup or not: the reservation is a real socket, not a hook.
    let inside = site.client(&ops);
    let outside_cg = {
        let out = Command::new(env!("CARGO_BIN_EXE_netd-sock-client"))
            .arg("--netns")
            .arg(site.w.host.path())
            .args(ops)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for op in ops {
        assert_err(&inside, op, libc::EADDRINUSE);
        assert!(
            outside_cg.contains(&format!("RESULT {op} => err {}", libc::EADDRINUSE)),
            "{op}: {outside_cg}"
        );
    }
    // A port nobody published binds fine.
    let r = site.client(&["bind tcp 0.0.0.0:8081"]);
    assert_eq!(r["bind tcp 0.0.0.0:8081"], "ok");
}

/// Pids of processes whose network namespace is `ns` (by /proc/PID/ns/net inode).
fn processes_in(ns: &Netns) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let want = std::fs::metadata(ns.path()).unwrap().ino();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == want) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn no_proxy_process_anywhere() {
    let site = Site::new(&["8080:80", "8080:80/udp", "8081-8083:81-83"]);
    site.wait_tcp("127.0.0.1:8080");
    let r = site.client(&["tcp 127.0.0.1:8080", "udp 127.0.0.1:8080", "tcp [::1]:8080"]);
    for op in ["tcp 127.0.0.1:8080", "udp 127.0.0.1:8080", "tcp [::1]:8080"] {
        assert!(r[op].starts_with("ok"), "{op}: {}", r[op]);
    }
    // pgrep: no docker-proxy at all in this World's host namespace.
    let out = Command::new("pgrep")
        .args(["-f", "docker-proxy"])
        .output()
        .unwrap();
    let host_procs = processes_in(&site.w.host);
    let proxies: Vec<&str> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|p| p.parse::<u32>().is_ok_and(|pid| host_procs.contains(&pid)))
        .map(|_| "docker-proxy")
        .collect();
    assert!(
        proxies.is_empty(),
        "docker-proxy runs in the host namespace"
    );
    // And no other process either: the daemon is the only one in the host namespace, and it
    // has no children.
    let daemon = site.d.pid().expect("daemon running");
    assert_eq!(host_procs, vec![daemon], "processes in the host namespace");
    let children = std::fs::read_to_string(format!("/proc/{daemon}/task/{daemon}/children"))
        .unwrap_or_default();
    assert!(children.trim().is_empty(), "netd has children: {children}");
}

#[test]
fn host_local_access_survives_a_killed_daemon_and_adopts_on_restart() {
    let mut site = Site::new(&["8080:80", "8080:80/udp"]);
    site.wait_tcp("127.0.0.1:8080");
    site.d.kill9();
    let r = site.client(&["tcp 127.0.0.1:8080", "udp 127.0.0.1:8080"]);
    assert_ok(&r, "tcp 127.0.0.1:8080", &["peer=127.0.0.1:8080"]);
    assert_ok(&r, "udp 127.0.0.1:8080", &["from=127.0.0.1:8080"]);
    site.d.restart();
    site.wait_tcp("127.0.0.1:8080");
    // Adopted, not attached twice: one link per hook on the cgroup.
    let shown = netd_tests::cmd_ok(&[
        "bpftool",
        "cgroup",
        "show",
        &cgroup(&site.d).display().to_string(),
    ]);
    for p in [
        "sock_connect4",
        "sock_sendmsg4",
        "sock_recvmsg4",
        "sock_connect6",
    ] {
        assert_eq!(
            shown.lines().filter(|l| l.contains(p)).count(),
            1,
            "{p}: {shown}"
        );
    }
}

/// Two daemons, each in its own World, each publishing 8080 to its own container: every
/// host-local client reaches its own container only.
fn two_daemons(shared_cgroup: Option<&Path>) {
    let start = |w: &World| match shared_cgroup {
        Some(cg) => Daemon::start_in_cgroup(&w.host, cg, &["--bip", BIP]),
        None => w.daemon(&["--bip", BIP]),
    };
    let (w1, w2) = (World::new(), World::new());
    let (d1, d2) = (start(&w1), start(&w2));
    if let Some(cg) = shared_cgroup {
        // Both daemons' hooks on the one cgroup, side by side (cgroup links stack).
        let shown = netd_tests::cmd_ok(&["bpftool", "cgroup", "show", &cg.display().to_string()]);
        let n = shown
            .lines()
            .filter(|l| l.contains("sock_connect4"))
            .count();
        assert_eq!(n, 2, "{shown}");
    }
    let a = Site::with(w1, d1, &["8080:80", "8080:80/udp"]);
    let b = Site::with(w2, d2, &["8080:80", "8080:80/udp"]);
    a.wait_tcp("127.0.0.1:8080");
    b.wait_tcp("127.0.0.1:8080");
    let (ta, tb) = (a.tcp.peers().len(), b.tcp.peers().len());
    for _ in 0..3 {
        let r = a.client(&["tcp 127.0.0.1:8080", "udp 127.0.0.1:8080"]);
        assert_ok(&r, "tcp 127.0.0.1:8080", &[]);
        assert_ok(&r, "udp 127.0.0.1:8080", &["from=127.0.0.1:8080"]);
    }
    assert_eq!(a.tcp.peers().len(), ta + 3);
    assert_eq!(b.tcp.peers().len(), tb, "b's container served a's client");
    assert_eq!(b.udp.peers().len(), 0);
    for _ in 0..2 {
        let r = b.client(&["tcp 127.0.0.1:8080", "udp 127.0.0.1:8080"]);
        assert_ok(&r, "tcp 127.0.0.1:8080", &[]);
        assert_ok(&r, "udp 127.0.0.1:8080", &["from=127.0.0.1:8080"]);
    }
    assert_eq!(b.tcp.peers().len(), tb + 2);
    assert_eq!(
        a.tcp.peers().len(),
        ta + 3,
        "a's container served b's client"
    );
    assert_eq!(a.udp.peers().len(), 3);
}

#[test]
fn two_daemons_with_the_same_published_port_do_not_interfere() {
    two_daemons(None);
}

/// A cgroup several daemons share, removed on drop (after the daemons, which are dropped
/// first as they are declared later).
struct SharedCgroup(std::path::PathBuf);

impl Drop for SharedCgroup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.0) {
            eprintln!("warning: rmdir {}: {e}", self.0.display());
        }
    }
}

#[test]
fn two_daemons_sharing_one_cgroup_each_serve_their_own_namespace() {
    let root = Path::new("/sys/fs/cgroup/unified");
    assert!(root.join("cgroup.procs").exists(), "cgroup v2 not mounted");
    let cg = SharedCgroup(root.join(unique("netd-test-shared-")));
    std::fs::create_dir(&cg.0).expect("create the shared cgroup");
    two_daemons(Some(&cg.0));
}
