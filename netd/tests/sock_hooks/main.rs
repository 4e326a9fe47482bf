//! Socket-hook tests (root): the `netd-sock` programs loaded, attached to a private cgroup v2
//! directory, and exercised by a real client process placed in that cgroup and in a private
//! "host" network namespace. The "containers" are servers on a local address of that
//! namespace, and the TC object is never loaded ([`SockHooks`] creates the shared maps when
//! nothing pinned them): these tests need only the socket hooks, not the TC datapath.
//!
//! Safety: programs attach only to a cgroup directory this file creates (a child of the cgroup
//! v2 mount), holding only the client processes it starts; the links are detached and the
//! directory removed on drop. Nothing runs in the root network namespace.
//!
//! The client is this test binary re-executed (test `client_helper`, which does nothing
//! unless NETD_SOCK_CLIENT is set): it joins the cgroup and the namespace before exec, so
//! every socket it opens runs the hooks.

use std::{
    collections::HashMap,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use netd::dataplane::sock::{BindHooks, SockHooks, netns_cookie};
use netd_common::{
    ALL_SOCK_PROGRAMS, BIND_SOCK_PROGRAMS, IPPROTO_TCP, IPPROTO_UDP, MAP_HOST_ADDRS, MAP_PORTS,
    PORT_F_NO_RESERVE, PortEntry, PortKey, PortTarget,
};

const CGROUP2: &str = "/sys/fs/cgroup/unified";
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[path = "../datapath_util/mod.rs"]
mod datapath_util;

use datapath_util::{Netns, PinDir, run_cmd as run, unique};
use netd_tests::sockclient;

/// A namespace for the socket tests: loopback up, as host-local clients need it.
fn netns(tag: &str) -> Netns {
    let ns = Netns::new(&format!("netd-dpath-{tag}-"));
    ns.ip(&["link", "set", "lo", "up"]);
    ns
}

/// A private child of the cgroup v2 mount, removed on drop (the clients in it have exited by
/// then; links still attached to it are released with it).
struct Cgroup(PathBuf);

impl Cgroup {
    fn new() -> Self {
        assert!(
            Path::new(CGROUP2).join("cgroup.procs").exists(),
            "cgroup v2 is not mounted at {CGROUP2}"
        );
        let dir = Path::new(CGROUP2).join(unique("-cg"));
        fs::create_dir(&dir).expect("create a private cgroup");
        Self(dir)
    }

    fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(&self.0).expect("stat cgroup").ino()
    }

    /// `bpftool cgroup show <dir>`: the programs attached here.
    fn bpftool(&self) -> String {
        let path = self.0.display().to_string();
        String::from_utf8(run(&["bpftool", "cgroup", "show", &path]).stdout).unwrap()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            match fs::remove_dir(&self.0) {
                Ok(()) => return,
                // A client that is still exiting.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    eprintln!("warning: rmdir {}: {e}", self.0.display());
                    return;
                }
            }
        }
        eprintln!("warning: {} still busy; left in place", self.0.display());
    }
}

/// The "container": a TCP server echoing one line and a UDP server echoing each datagram, on
/// `addr` inside `ns`. Every client's source address is recorded.
struct Servers {
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    fn start(ns: &Netns, addr: &str) -> Self {
        let addr: SocketAddr = addr.parse().unwrap();
        let (tcp, udp) = ns.enter(|| {
            let tcp = TcpListener::bind(addr).expect("bind tcp server");
            tcp.set_nonblocking(true).unwrap();
            let udp = UdpSocket::bind(addr).expect("bind udp server");
            udp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            (tcp, udp)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (s1, p1) = (stop.clone(), peers.clone());
        let t1 = std::thread::spawn(move || {
            while !s1.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((s, peer)) => {
                        p1.lock().unwrap().push(peer);
                        let _ = echo_line(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let (s2, p2) = (stop.clone(), peers.clone());
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, src)) = udp.recv_from(&mut buf) {
                    p2.lock().unwrap().push(src);
                    let _ = udp.send_to(&buf[..n], src);
                }
            }
        });
        Self {
            stop,
            peers,
            threads: vec![t1, t2],
        }
    }

    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn echo_line(s: TcpStream) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    (&s).write_all(line.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// The client process.

/// One client operation, run in the child: `netd_tests::sockclient`'s grammar, and
/// `bindtcp ADDR`/`bindudp ADDR` for its `bind tcp|udp ADDR`.
fn client_op(op: &str) -> String {
    let (kind, addr) = op.split_once(' ').expect("op: KIND ADDR");
    match kind {
        "bindtcp" => sockclient::bind("tcp", addr),
        "bindudp" => sockclient::bind("udp", addr),
        "tcp" | "udp" | "udpc" => sockclient::run(op),
        _ => panic!("unknown op {op}"),
    }
}

/// Not a test on its own: the body of the client process (see the file comment).
#[test]
fn client_helper() {
    let Ok(ops) = std::env::var("NETD_SOCK_CLIENT") else {
        return;
    };
    for op in ops.split(';') {
        println!("RESULT {op} => {}", client_op(op));
    }
}

/// Runs `ops` in a client process inside `cgroup` (if any) and `ns`; returns op -> result.
fn client(ns: &Netns, cgroup: Option<&Cgroup>, ops: &[&str]) -> HashMap<String, String> {
    let netns = fs::File::open(ns.path()).expect("open netns");
    let procs = cgroup.map(|c| {
        fs::OpenOptions::new()
            .write(true)
            .open(c.0.join("cgroup.procs"))
            .expect("open cgroup.procs")
    });
    let (netns_fd, procs_fd) = (netns.as_raw_fd(), procs.as_ref().map(|f| f.as_raw_fd()));
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "client_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("NETD_SOCK_CLIENT", ops.join(";"));
    // SAFETY: between fork and exec the child only makes two syscalls on descriptors the
    // parent opened (no allocation, no locks): "0" moves the writer itself into the cgroup.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = procs_fd {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        // libtest may print "test client_helper ... " on the first line.
        .filter_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .filter_map(|l| l.split_once(" => "))
        .map(|(op, r)| (op.to_owned(), r.to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The setup.

/// The "container" address (on a veth of the host namespace) and the host's own
/// address (in NETD_HOST_ADDRS).
const CONTAINER: &str = "10.99.0.2";
const HOST_IP: &str = "192.0.2.1";

fn be(ip: &str) -> u32 {
    u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap()).to_be()
}

fn port(proto: u8, host_ip: &str, host_port: u16, cport: u16, id: u32) -> PortEntry {
    PortEntry {
        host_ip: be(host_ip),
        proto,
        host_port_start: host_port,
        host_port_end: host_port,
        container_port: cport,
        container_ip: be(CONTAINER),
        binding_id: id,
        ..Default::default()
    }
}

/// Writes the published ports (one NETD_PORTS entry per port) and the host addresses, through
/// the pinned maps, as the agent would.
fn program_maps(pin_dir: &Path, ports: Vec<PortEntry>, host_addrs: &[(u32, u32)]) {
    let open = |name: &str| {
        let path = netd::dataplane::pinned_map(pin_dir, name);
        Map::from_map_data(MapData::from_pin(&path).expect("pinned map")).expect("map")
    };
    let mut table: BpfHashMap<MapData, PortKey, PortTarget> =
        BpfHashMap::try_from(open(MAP_PORTS)).unwrap();
    for e in &ports {
        for (k, t) in e.expand() {
            table.insert(k, t, 0).expect("write NETD_PORTS");
            // The agent's marker for the bind hook: some address holds (proto, port).
            if e.reserves() {
                table
                    .insert(PortKey::any(k.proto, k.port), t, 0)
                    .expect("write NETD_PORTS");
            }
        }
    }
    let mut addrs: BpfHashMap<MapData, u32, u32> =
        BpfHashMap::try_from(open(MAP_HOST_ADDRS)).unwrap();
    for &(ip, ifindex) in host_addrs {
        addrs.insert(ip, ifindex, 0).expect("write NETD_HOST_ADDRS");
    }
}

struct Setup {
    // Drop order: the client processes are gone; detach (hooks), then the cgroup and the pins.
    hooks: Option<SockHooks>,
    servers: Servers,
    h: Netns,
    cg: Cgroup,
    pins: PinDir,
}

impl Setup {
    /// A host namespace with the container servers, the socket hooks attached to a private
    /// cgroup for this namespace, and the maps programmed with 0.0.0.0:8080/tcp+udp and
    /// 127.0.0.1:9000/tcp (loopback only).
    fn new() -> Self {
        let h = netns("h");
        // veth pairs rather than dummies: the dummy module may be missing.
        h.ip(&[
            "link", "add", "ctr0", "type", "veth", "peer", "name", "ctr1",
        ]);
        h.ip(&["link", "set", "ctr1", "up"]);
        h.ip(&["addr", "add", &format!("{CONTAINER}/24"), "dev", "ctr0"]);
        h.ip(&["link", "set", "ctr0", "up"]);
        h.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        h.ip(&["link", "set", "up1", "up"]);
        h.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "up0"]);
        h.ip(&["link", "set", "up0", "up"]);
        let servers = Servers::start(&h, &format!("{CONTAINER}:80"));
        let pins = PinDir::new();
        let cg = Cgroup::new();
        // The socket hooks alone: no TC object is loaded (its pins would be reused if there).
        let hooks = SockHooks::open(&pins.config()).expect("open");
        let cookie = h.enter(|| netns_cookie().expect("netns cookie"));
        hooks
            .attach(&cg.0, cookie)
            .expect("attach the socket hooks");
        let up0 = h.enter(|| nix::net::if_::if_nametoindex("up0").unwrap());
        program_maps(
            &pins.0,
            vec![
                port(IPPROTO_TCP, "0.0.0.0", 8080, 80, 1),
                port(IPPROTO_UDP, "0.0.0.0", 8080, 80, 2),
                port(IPPROTO_TCP, "127.0.0.1", 9000, 80, 3),
                // The runtime holds this one itself (reserve_ports false).
                PortEntry {
                    flags: PORT_F_NO_RESERVE,
                    ..port(IPPROTO_TCP, "0.0.0.0", 8443, 80, 4)
                },
            ],
            &[(be(HOST_IP), up0)],
        );
        Self {
            hooks: Some(hooks),
            servers,
            h,
            cg,
            pins,
        }
    }

    fn hooks(&self) -> &SockHooks {
        self.hooks.as_ref().unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(hooks) = self.hooks.as_ref() {
            if let Err(e) = hooks.detach() {
                eprintln!("warning: detach the socket hooks: {e}");
            }
        }
    }
}

fn assert_ok(results: &HashMap<String, String>, op: &str, want: &[&str]) {
    let r = results
        .get(op)
        .unwrap_or_else(|| panic!("no result for {op}: {results:#?}"));
    assert!(r.starts_with("ok reply=ping"), "{op}: {r}");
    for w in want {
        assert!(r.contains(w), "{op}: want {w:?} in {r:?}");
    }
}

fn assert_refused(results: &HashMap<String, String>, op: &str) {
    let r = &results[op];
    assert!(
        r == &format!("err {}", libc::ECONNREFUSED),
        "{op} must not be redirected (nothing listens there): {r}"
    );
}

mod bind;
mod connect;
mod lifecycle;
