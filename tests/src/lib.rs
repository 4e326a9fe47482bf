//! End-to-end test harness for netd.
//!
//! Every test builds its own [`World`]: a private "host" network namespace where the real
//! `netd` binary runs, an "outside" namespace joined to it by a veth pair (198.51.100.0/24),
//! and one namespace per container. Nothing here touches the root network namespace: every
//! namespace, process, directory and bpffs mount a test creates carries a name unique to this
//! run (pid + counter) and is removed by an RAII guard on drop, also when the test panics.
//!
//! - [`netns`]: the [`Netns`] guard and running commands inside a namespace.
//! - [`world`]: the [`World`] topology (host, outside, containers).
//! - [`dataplane`]: counters, conntrack and reachability probes for the NAT/policy tests.
//! - [`bpf`]: what the kernel reports attached to each interface (BPF_PROG_QUERY).
//! - [`daemon`]: the [`Daemon`] guard around a running `netd daemon`, and CLI helpers.
//! - [`files`]: temporary directories and hosts/resolv.conf parsers.
//! - [`ipv6`]: IPv6 addresses without DAD, the uplink's IPv6 subnet.
//! - [`traffic`]: TCP/UDP servers and clients that run inside a namespace via setns(2).
//! - [`docker`] and [`podman`]: the real dockerd and podman driving netd in a test world.
//! - [`sockclient`]: the socket-hook clients' operations (one line of result each).
//! - [`netstat`]: the kernel's counters in a namespace (/proc/net/snmp, netstat) and TCP
//!   retransmissions, for asserting "nothing was lost" without timing the traffic.

pub mod bpf;
pub mod daemon;
pub mod dataplane;
pub mod docker;
pub mod files;
pub mod ipv6;
pub mod netns;
pub mod netstat;
pub mod podman;
pub mod sockclient;
pub mod traffic;
pub mod world;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use daemon::Daemon;
pub use files::TempDir;
pub use netns::Netns;
pub use traffic::{
    ServerHandle, in_netns, spawn_in, tcp_arrives_from, tcp_request, tcp_request_until, tcp_send,
    tcp_server, tcp_udp_arrive_from, tcp6_server, udp_arrives_from, udp_request, udp_send,
    udp_server, udp6_server,
};
pub use world::{Container, World};

/// The container subnet most tests pass with `--bip` (private to each test's host netns).
pub const BIP: &str = "172.30.0.1/24";
/// The bridge address of [`BIP`].
pub const BRIDGE_IP: &str = "172.30.0.1";

/// The MAC Docker derives from a container IPv4 address: 02:42 followed by the four bytes.
pub fn mac_for_ip(ip: &str) -> String {
    let ip: std::net::Ipv4Addr = ip.parse().expect("IPv4 address");
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix><pid>x<n>`.
///
/// Namespace and directory names only need to be unique machine-wide; interface names the
/// tests create live inside private namespaces, so they can be fixed.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// Runs a command (program + args) and returns its output; panics only if it cannot be spawned.
pub fn cmd(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Runs a command and panics with its output unless it succeeds; returns the output.
pub fn run_cmd(argv: &[&str]) -> Output {
    let out = cmd(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command and panics with its output unless it succeeds; returns stdout.
pub fn cmd_ok(argv: &[&str]) -> String {
    String::from_utf8_lossy(&run_cmd(argv).stdout).into_owned()
}

/// Calls `f` until it returns `Ok`, or panics with the last error once `timeout` has passed.
pub fn poll_until<T, E: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> T {
    match try_poll_until(timeout, &mut f) {
        Ok(v) => v,
        Err(e) => panic!("timed out after {timeout:?} waiting for {what}: last error: {e:?}"),
    }
}

/// Calls `f` until it returns `Ok` or `timeout` has passed; returns the last result.
pub fn try_poll_until<T, E>(
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    let mut wait = Duration::from_millis(20);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Runs `c` with stdout/stderr captured; kills it and panics if it takes longer than `limit`.
/// It returns as soon as the child has exited (its pipes close then, unless it left a process
/// holding them: then within 10 ms), so the CLI latencies the benchmarks time through it are
/// the CLI's own, not a polling interval's.
pub fn output_with_timeout(mut c: Command, limit: Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let (eof_tx, eof_rx) = std::sync::mpsc::channel::<()>();
    let eof_tx2 = eof_tx.clone();
    let ro = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        let _ = eof_tx.send(());
        v
    });
    let re = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        let _ = eof_tx2.send(());
        v
    });
    let deadline = Instant::now() + limit;
    let mut eofs = 0;
    let status = loop {
        // Both pipes at EOF: the child has exited (or closed them); wait for it.
        if eofs == 2 {
            break child.wait().expect("wait");
        }
        match eof_rx.recv_timeout(Duration::from_millis(10)) {
            Ok(()) => eofs += 1,
            Err(_) => {
                if let Some(st) = child.try_wait().expect("try_wait") {
                    break st;
                }
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{c:?} did not finish within {limit:?}");
        }
    };
    Output {
        status,
        stdout: ro.join().unwrap(),
        stderr: re.join().unwrap(),
    }
}
