//! The private topology every system is measured on, built with the netns harness
//! (`netd_tests::World`, `Daemon`, `Container`): an outside namespace, a host namespace where
//! `netd daemon` wires the bridge `netd0`, and container namespaces.
//!
//! ```text
//!  outside 198.51.100.2 ==veth== up0 198.51.100.1 [host: netd0 172.30.0.1/24] ==veth== srv   172.30.0.x
//!  (servers for P5, clients                                                 ==veth== cli   (--link srv:srv)
//!   for P1/P6)                                                              ==veth== other (no link)
//! ```
//!
//! `srv` runs the servers (echo 7, iperf3 5201, sockperf 11111, netd-connrate 80); the outside
//! namespace runs the same set for P5. For S4 ([`TopoOpts::docker`]) dockerd starts srv, cli
//! and other on a netd network of its own and publishes srv's ports ([`crate::docker`]).
//!
//! The IPv6 paths get a dual-stack topology of their own ([`TopoOpts::ipv6`]): the uplink and
//! the outside on 2001:db8:ff::/64 (host `2001:db8:ff::1`, outside `2001:db8:ff::2`), the
//! daemon with `--ipv6 --fixed-cidr-v6 2001:db8:1::/64` (each container gets a global address),
//! the outside routing that prefix via the host (IPv6 is routed, never NATed: P5v6's replies
//! and S0 need the route), and the echo and connection-rate servers on `[::]` (iperf3 listens
//! on both families anyway; sockperf 3.7 has no IPv6). A fresh topology is built for each system (same shape,
//! same addresses), so no state (conntrack, rules, maps) leaks from one system to the next;
//! dropping it stops every process and deletes every namespace.
//!
//! The daemon's `--cgroup` is the private cgroup v2 directory the harness makes for it (never a
//! root cgroup; checked before anything joins it). Processes on the host and in containers (the
//! servers in `srv`, and the clients of paths that start there) join it, as every process does
//! in production where `--cgroup` is the cgroup v2 root; the outside namespace (another machine)
//! does not.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use netd_tests::docker::MountNs;
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{
    BIP, Container, Daemon, Netns, ServerHandle, World, tcp_server, tcp6_server, udp_server,
    udp6_server,
};

use crate::docker::DockerSide;
use crate::proc::Proc;
use crate::tools::{connrate, iperf, sockperf};

pub use netd_tests::ipv6::{HOST6, OUTSIDE6};
pub use netd_tests::world::{HOST_UPLINK_IP as HOST_IP, OUTSIDE_IP as OUTSIDE};

/// The container subnet (the harness's `BIP`).
pub const SUBNET: &str = "172.30.0.0/24";
/// The containers' IPv6 prefix in the dual-stack topology (`--fixed-cidr-v6`).
pub const SUBNET6: &str = "2001:db8:1::/64";
pub const BRIDGE: &str = "netd0";
/// Host ports of filler publications in the sweep start here.
pub const FILLER_PORT_BASE: u16 = 20000;
/// Ports per filler container.
pub const FILLER_PORTS_PER_CONTAINER: u16 = 1000;
/// The port published by "one more" in the sweep (through the CLI).
pub const ONE_MORE_PORT: u16 = 40000;
/// The port published by "one more" through the HTTP API (netd only).
pub const ONE_MORE_API_PORT: u16 = 40001;

/// One published mapping of `srv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mapping {
    pub host_port: u16,
    pub container_port: u16,
    pub proto: &'static str,
}

/// The echo service used by the correctness checks.
pub const ECHO: u16 = 7;
pub const ECHO_HOST: u16 = 7007;
pub const CONNRATE_HOST: u16 = 8080;

/// Everything `srv` publishes (host port -> container port).
pub fn srv_mappings() -> Vec<Mapping> {
    let m = |h, c, p| Mapping {
        host_port: h,
        container_port: c,
        proto: p,
    };
    vec![
        m(ECHO_HOST, ECHO, "tcp"),
        m(ECHO_HOST, ECHO, "udp"),
        m(iperf::PORT, iperf::PORT, "tcp"),
        m(iperf::PORT, iperf::PORT, "udp"),
        m(sockperf::PORT, sockperf::PORT, "tcp"),
        m(sockperf::PORT, sockperf::PORT, "udp"),
        m(CONNRATE_HOST, connrate::PORT, "tcp"),
    ]
}

/// The host port for a container port of `srv`.
pub fn host_port(container_port: u16) -> u16 {
    srv_mappings()
        .iter()
        .find(|m| m.container_port == container_port)
        .map(|m| m.host_port)
        .unwrap_or(container_port)
}

/// How a topology is wired.
#[derive(Clone, Copy, Debug)]
pub struct TopoOpts {
    /// `--dataplane` of the daemon: `none` (wiring only) or `ebpf`.
    pub dataplane: &'static str,
    pub icc: bool,
    /// Pass `-p` for srv's mappings to netd (only when netd is the system under test).
    pub publish_in_netd: bool,
    /// More `netd daemon` arguments (e.g. a fast-path setting).
    pub daemon_extra: &'static [&'static str],
    /// The dual-stack topology of the IPv6 paths (see the module docs).
    pub ipv6: bool,
    /// With `ipv6`, whether containers get IPv6 addresses (the daemon's `--ipv6`); without,
    /// they are IPv4 only and netd publishes them on `[::]` through its NAT46 relay.
    pub ipv6_containers: bool,
    /// S4: dockerd, with netd as its network driver, runs srv, cli and other and publishes
    /// srv's ports (`docker run -p`; see [`crate::docker`]). IPv4 only.
    pub docker: bool,
}

impl TopoOpts {
    /// The options of the IPv4-only topology (the IPv6 fields off).
    pub fn v4(dataplane: &'static str, icc: bool, publish_in_netd: bool) -> TopoOpts {
        TopoOpts {
            dataplane,
            icc,
            publish_in_netd,
            daemon_extra: &[],
            ipv6: false,
            ipv6_containers: false,
            docker: false,
        }
    }

    /// The same options for the dual-stack topology when `ipv6` (containers with IPv6).
    pub fn with_ipv6(self, ipv6: bool) -> TopoOpts {
        TopoOpts {
            ipv6,
            ipv6_containers: ipv6,
            ..self
        }
    }
}

/// An attached container and its addresses.
pub struct Endpoint {
    pub c: Container,
    pub ip: String,
    /// The global IPv6 address (dual-stack topology with IPv6 containers only).
    pub ip6: Option<String>,
}

/// A filler container of the sweep and the host ports published to it (same number inside).
pub struct Filler {
    pub ep: Endpoint,
    pub ports: std::ops::RangeInclusive<u16>,
}

pub struct Topology {
    // Field order is drop order: processes first, then the daemon, then the namespaces.
    servers: Vec<Proc>,
    pub srv_echo_tcp: ServerHandle,
    pub srv_echo_udp: ServerHandle,
    pub out_echo_tcp: ServerHandle,
    /// S4's dockerd and containers (removed before netd stops).
    pub docker: Option<DockerSide>,
    pub daemon: Daemon,
    /// S4: the mount namespace dockerd and netd share (dropped after netd).
    _mnt: Option<MountNs>,
    pub srv: Endpoint,
    pub cli: Endpoint,
    pub other: Endpoint,
    pub fillers: Vec<Filler>,
    /// The sweep's icc-off variant: a container linked to every filler (Docker then writes link
    /// rules for every exposed filler port).
    pub linker: Option<Endpoint>,
    pub onemore: Option<Endpoint>,
    pub world: World,
    pub opts: TopoOpts,
}

/// Runs `f`, turning a panic of the harness (which panics on failure) into an error.
pub fn catch<T>(what: &str, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        anyhow!("{what}: {msg}")
    })
}

impl Topology {
    pub fn build(opts: TopoOpts) -> Result<Topology> {
        // The harness gives each daemon a private cgroup under the hybrid layout's v2 mount;
        // without one netd would attach its socket hooks to its default, the v2 root.
        if !Path::new(CGROUP_V2_MOUNT).join("cgroup.procs").exists() {
            bail!(
                "{CGROUP_V2_MOUNT} is not a cgroup v2 mount: the harness could not give netd a \
                 private --cgroup, and the bench never lets it use a root cgroup"
            );
        }
        let world = catch("create namespaces", World::new)?;
        let icc = opts.icc.to_string();
        let mut args = vec!["--bip", BIP, "--dataplane", opts.dataplane, "--icc", &icc];
        if opts.ipv6 {
            catch("IPv6 uplink", || {
                netd_tests::ipv6::v6_uplink_routed(&world, SUBNET6)
            })?;
            if opts.ipv6_containers {
                args.extend(["--ipv6", "--fixed-cidr-v6", SUBNET6]);
            }
        }
        args.extend_from_slice(opts.daemon_extra);
        if opts.docker && opts.ipv6 {
            bail!("the Docker topology (S4) is IPv4 only");
        }
        let (mut docker, daemon, mnt) = if opts.docker {
            let (side, d, m) = DockerSide::start(&world, &args)?;
            (Some(side), d, Some(m))
        } else {
            (None, catch("start netd", || world.daemon(&args))?, None)
        };
        let cg = private_cgroup(&daemon)?;
        let mut srv_args = vec![];
        for m in srv_mappings() {
            srv_args.push("--expose".to_string());
            srv_args.push(format!("{}/{}", m.container_port, m.proto));
            if opts.publish_in_netd {
                srv_args.push("-p".to_string());
                srv_args.push(format!("{}:{}/{}", m.host_port, m.container_port, m.proto));
            }
        }
        let (srv, cli, other) = match docker.as_mut() {
            Some(side) => side.endpoints(&srv_mappings())?,
            None => (
                Self::attach_new(&world, &daemon, "srv", &srv_args)?,
                Self::attach_new(&world, &daemon, "cli", &["--link".into(), "srv:srv".into()])?,
                Self::attach_new(&world, &daemon, "other", &[])?,
            ),
        };
        if opts.ipv6 && opts.ipv6_containers && (srv.ip6.is_none() || cli.ip6.is_none()) {
            bail!(
                "netd --ipv6 --fixed-cidr-v6 {SUBNET6} gave srv or cli no global IPv6 address \
                 (netd inspect: srv {:?}, cli {:?})",
                srv.ip6,
                cli.ip6
            );
        }
        for ns in [&world.outside, &cli.c.ns, &other.c.ns] {
            catch("sysctl", || {
                ns.run_ok(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=15000 65000"])
            })?;
        }
        // Dual-stack servers in the IPv6 topology (IPv4 clients arrive v4-mapped).
        type Echo = fn(&Netns, u16) -> ServerHandle;
        let (tcp_echo, udp_echo, any): (Echo, Echo, &str) = if opts.ipv6 {
            (tcp6_server, udp6_server, "::")
        } else {
            (tcp_server, udp_server, "0.0.0.0")
        };
        let srv_echo_tcp = catch("echo server", || tcp_echo(&srv.c, ECHO))?;
        let srv_echo_udp = catch("echo server", || udp_echo(&srv.c, ECHO))?;
        let out_echo_tcp = catch("echo server", || tcp_echo(&world.outside, ECHO))?;
        let mut servers = vec![];
        for (ns, cg) in [
            (srv.c.path(), Some(cg.as_path())),
            (world.outside.path(), None),
        ] {
            servers.push(iperf::server(ns, cg, iperf::PORT)?);
            servers.push(sockperf::server(ns, cg, sockperf::PORT, true)?);
            servers.push(sockperf::server(ns, cg, sockperf::PORT, false)?);
            servers.push(connrate::server(ns, cg, any, connrate::PORT)?);
        }
        let t = Topology {
            servers,
            srv_echo_tcp,
            srv_echo_udp,
            out_echo_tcp,
            docker,
            daemon,
            _mnt: mnt,
            srv,
            cli,
            other,
            fillers: vec![],
            linker: None,
            onemore: None,
            world,
            opts,
        };
        t.wait_listening(&t.srv.c.ns)?;
        t.wait_listening(&t.world.outside)?;
        Ok(t)
    }

    fn attach_new(world: &World, d: &Daemon, name: &str, args: &[String]) -> Result<Endpoint> {
        let c = catch("create namespace", || world.container(name))?;
        let mut argv: Vec<&str> = vec!["attach", name, "--netns", c.path_str()];
        argv.extend(args.iter().map(String::as_str));
        let out = d.netd(&argv);
        if !out.status.success() {
            bail!(
                "netd {argv:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v = catch("inspect", || d.inspect(name))?;
        let ip = v["ip"].as_str().context("inspect has no ip")?.to_string();
        let ip6 = v["global_ipv6"].as_str().map(str::to_string);
        Ok(Endpoint { c, ip, ip6 })
    }

    /// Waits until every TCP and UDP server port listens in `ns` (per `ss`).
    fn wait_listening(&self, ns: &netd_tests::Netns) -> Result<()> {
        let want_tcp = [iperf::PORT, sockperf::PORT, connrate::PORT];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tcp = String::from_utf8_lossy(&ns.run(&["ss", "-ltnH"]).stdout).into_owned();
            let udp = String::from_utf8_lossy(&ns.run(&["ss", "-lunH"]).stdout).into_owned();
            let has = |t: &str, p: u16| t.contains(&format!(":{p} "));
            if want_tcp.iter().all(|p| has(&tcp, *p)) && has(&udp, sockperf::PORT) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "servers in {} did not start listening: {tcp} {udp}",
                    ns.name()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails if a server has died.
    pub fn servers_alive(&mut self) -> Result<()> {
        for s in &mut self.servers {
            s.alive()?;
        }
        Ok(())
    }

    /// pids of the servers (their CPU counts as the servers' side of a run).
    pub fn server_pids(&self) -> Vec<u32> {
        self.servers.iter().map(Proc::pid).collect()
    }

    /// The daemon's private `--cgroup` (checked at build: a child directory of the v2 mount
    /// named by the harness, never a root cgroup).
    pub fn cgroup(&self) -> Option<&Path> {
        self.daemon.cgroup()
    }

    /// Attaches filler containers for `n` ports in all (1000 per container, from 20000),
    /// without publishing anything: each system publishes them its own way
    /// ([`crate::systems::System::publish_fillers`]). With `expose`, each filler exposes its
    /// ports (`--expose A-B/tcp`, as `-p` implies in Docker), which links to it then open.
    pub fn add_fillers(&mut self, n: u32, expose: bool) -> Result<()> {
        for (k, ports) in filler_ranges(n).into_iter().enumerate() {
            let mut args = vec![];
            if expose {
                args.push("--expose".to_string());
                args.push(format!("{}-{}/tcp", ports.start(), ports.end()));
            }
            let ep = Self::attach_new(&self.world, &self.daemon, &format!("fill{k}"), &args)?;
            self.fillers.push(Filler { ep, ports });
        }
        Ok(())
    }

    /// Attaches the container "linker" with `--link fillK` to every filler (icc off: Docker
    /// writes two rules per exposed port of each, netd one NETD_LINKS entry per pair).
    pub fn attach_linker(&mut self) -> Result<()> {
        let mut args = vec![];
        for f in &self.fillers {
            args.push("--link".to_string());
            args.push(f.ep.c.name.clone());
        }
        self.linker = Some(Self::attach_new(
            &self.world,
            &self.daemon,
            "linker",
            &args,
        )?);
        Ok(())
    }

    /// Attaches the container "onemore" (no ports); returns its address.
    pub fn attach_one_more(&mut self) -> Result<String> {
        let ep = Self::attach_new(&self.world, &self.daemon, "onemore", &[])?;
        let ip = ep.ip.clone();
        self.onemore = Some(ep);
        Ok(ip)
    }

    /// `netd publish NAME SPEC...` through the CLI; returns its wall time (process start
    /// included).
    pub fn netd_publish(&self, name: &str, specs: &[String]) -> Result<Duration> {
        let mut argv: Vec<&str> = vec!["publish", name];
        argv.extend(specs.iter().map(String::as_str));
        let t0 = Instant::now();
        let out = self.daemon.netd(&argv);
        let took = t0.elapsed();
        if !out.status.success() {
            bail!(
                "netd publish {name} ({} specs): {}",
                specs.len(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(took)
    }

    /// `POST /v1/endpoints/NAME/ports` straight on the daemon's socket (what `netd publish`
    /// sends, without starting a process); returns the request's round-trip time.
    pub fn api_publish(&self, name: &str, specs: &[String]) -> Result<Duration> {
        use std::io::{Read as _, Write as _};
        let body = serde_json::json!({ "publish": specs }).to_string();
        let req = http_post(&format!("/v1/endpoints/{name}/ports"), &body);
        let t0 = Instant::now();
        let mut s = std::os::unix::net::UnixStream::connect(self.daemon.sock())
            .context("connect to the daemon's API socket")?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.write_all(req.as_bytes())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let took = t0.elapsed();
        let resp = String::from_utf8_lossy(&resp);
        match http_status(&resp) {
            Some(code) if (200..300).contains(&code) => Ok(took),
            _ => bail!(
                "POST /v1/endpoints/{name}/ports: {}",
                resp.lines().next().unwrap_or("no answer")
            ),
        }
    }

    pub fn host_ip(&self) -> &'static str {
        HOST_UPLINK_IP
    }

    pub fn outside_ip(&self) -> &'static str {
        OUTSIDE_IP
    }
}

/// The cgroup v2 mount of the hybrid layout, under which the harness makes each daemon's
/// private cgroup.
pub const CGROUP_V2_MOUNT: &str = "/sys/fs/cgroup/unified";

/// The daemon's `--cgroup`, checked to be a private child directory of the v2 mount (what the
/// harness makes), never the mount itself or another root cgroup.
fn private_cgroup(d: &Daemon) -> Result<std::path::PathBuf> {
    let cg = d
        .cgroup()
        .context("the daemon has no private --cgroup")?
        .to_path_buf();
    if !is_private_cgroup(&cg) {
        bail!("refusing to use {} as the daemon's cgroup", cg.display());
    }
    Ok(cg)
}

/// `/sys/fs/cgroup/unified/netd-test-*` (one level below the mount, the harness's naming).
pub fn is_private_cgroup(p: &Path) -> bool {
    p.parent() == Some(Path::new(CGROUP_V2_MOUNT))
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("netd-test-"))
        && p.join("cgroup.procs").exists()
}

/// The host-port ranges of the fillers for `n` ports: 1000 per container from 20000 up to
/// 65535, then from 1 up (N = 65 000 takes nearly every port), skipping the ports `srv` and
/// "one more" publish; a range ends early where it meets one.
pub fn filler_ranges(n: u32) -> Vec<std::ops::RangeInclusive<u16>> {
    let used: Vec<u16> = srv_mappings()
        .iter()
        .map(|m| m.host_port)
        .chain([ONE_MORE_PORT, ONE_MORE_API_PORT])
        .collect();
    let order = (FILLER_PORT_BASE..=u16::MAX).chain(1..FILLER_PORT_BASE);
    let mut v: Vec<std::ops::RangeInclusive<u16>> = vec![];
    let mut left = n;
    for p in order.filter(|p| !used.contains(p)) {
        if left == 0 {
            break;
        }
        match v.last_mut() {
            Some(r)
                if u32::from(*r.end()) + 1 == u32::from(p)
                    && r.end() - r.start() + 1 < FILLER_PORTS_PER_CONTAINER =>
            {
                *r = *r.start()..=p;
            }
            _ => v.push(p..=p),
        }
        left -= 1;
    }
    v
}

/// One `-p` spec per port (`P:P/tcp`): netd then holds one port-table entry per port, the
/// same count of entries as Docker's per-port rules (a range spec would be a single entry).
pub fn port_specs(ports: &std::ops::RangeInclusive<u16>) -> Vec<String> {
    ports.clone().map(|p| format!("{p}:{p}/tcp")).collect()
}

/// An HTTP/1.1 POST with a JSON body for the daemon's API (one request per connection).
pub fn http_post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: netd\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The status code of an HTTP response.
pub fn http_status(resp: &str) -> Option<u16> {
    let line = resp.lines().next()?;
    let mut it = line.split_whitespace();
    it.next().filter(|v| v.starts_with("HTTP/"))?;
    it.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fillers_hold_1000_ports_each() {
        assert_eq!(filler_ranges(0), vec![]);
        assert_eq!(filler_ranges(1), vec![20000..=20000]);
        let r = filler_ranges(2500);
        assert_eq!(r, vec![20000..=20999, 21000..=21999, 22000..=22499]);
        assert_eq!(filler_ranges(10_000).len(), 10);
        assert_eq!(*filler_ranges(10_000).last().unwrap().end(), 29_999);
        // 65 000: every port but srv's and "one more"'s, wrapping below 20000.
        let r = filler_ranges(65_000);
        assert_eq!(r.iter().map(|r| r.clone().count()).sum::<usize>(), 65_000);
        assert!(
            r.iter()
                .all(|r| !r.contains(&ONE_MORE_PORT) && !r.contains(&CONNRATE_HOST))
        );
        assert!(r.iter().any(|r| r.contains(&1)));
    }

    #[test]
    fn one_spec_per_port() {
        assert_eq!(
            port_specs(&(20000..=20002)),
            ["20000:20000/tcp", "20001:20001/tcp", "20002:20002/tcp"]
        );
    }

    #[test]
    fn only_harness_cgroups_are_private() {
        assert!(!is_private_cgroup(Path::new("/sys/fs/cgroup/unified")));
        assert!(!is_private_cgroup(Path::new("/sys/fs/cgroup")));
        assert!(!is_private_cgroup(Path::new(
            "/sys/fs/cgroup/unified/system.slice"
        )));
        assert!(!is_private_cgroup(Path::new(
            "/sys/fs/cgroup/unified/a/netd-test-1"
        )));
    }

    #[test]
    fn http_request_and_status() {
        let r = http_post("/v1/endpoints/x/ports", "{}");
        assert!(r.starts_with("POST /v1/endpoints/x/ports HTTP/1.1\r\n"));
        assert!(r.contains("Content-Length: 2\r\n"));
        assert!(r.ends_with("\r\n\r\n{}"));
        assert_eq!(http_status("HTTP/1.1 201 Created\r\n\r\n[]"), Some(201));
        assert_eq!(http_status("HTTP/1.1 409 Conflict\r\n"), Some(409));
        assert_eq!(http_status("garbage"), None);
    }
}
