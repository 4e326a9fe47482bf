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
//! namespace runs the same set for P5. A fresh topology is built for each system (same shape,
//! same addresses), so no state (conntrack, rules, maps) leaks from one system to the next;
//! dropping it stops every process and deletes every namespace.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, Container, Daemon, ServerHandle, World, tcp_server, udp_server};

use crate::proc::Proc;
use crate::tools::{connrate, iperf, sockperf};

pub use netd_tests::world::{HOST_UPLINK_IP as HOST_IP, OUTSIDE_IP as OUTSIDE};

/// The container subnet (the harness's `BIP`).
pub const SUBNET: &str = "172.30.0.0/24";
pub const BRIDGE: &str = "netd0";
/// Host ports of filler publications in the sweep start here.
pub const FILLER_PORT_BASE: u16 = 20000;
/// Ports per filler container.
pub const FILLER_PORTS_PER_CONTAINER: u16 = 1000;
/// The port published by "one more" in the sweep.
pub const ONE_MORE_PORT: u16 = 40000;

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
}

/// An attached container and its address.
pub struct Endpoint {
    pub c: Container,
    pub ip: String,
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
    pub daemon: Daemon,
    pub srv: Endpoint,
    pub cli: Endpoint,
    pub other: Endpoint,
    pub fillers: Vec<Filler>,
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
        let world = catch("create namespaces", World::new)?;
        let icc = opts.icc.to_string();
        let daemon = catch("start netd", || {
            world.daemon(&["--bip", BIP, "--dataplane", opts.dataplane, "--icc", &icc])
        })?;
        let mut srv_args = vec![];
        for m in srv_mappings() {
            srv_args.push("--expose".to_string());
            srv_args.push(format!("{}/{}", m.container_port, m.proto));
            if opts.publish_in_netd {
                srv_args.push("-p".to_string());
                srv_args.push(format!("{}:{}/{}", m.host_port, m.container_port, m.proto));
            }
        }
        let srv = Self::attach_new(&world, &daemon, "srv", &srv_args)?;
        let cli = Self::attach_new(&world, &daemon, "cli", &["--link".into(), "srv:srv".into()])?;
        let other = Self::attach_new(&world, &daemon, "other", &[])?;
        for ns in [&world.outside, &cli.c.ns, &other.c.ns] {
            catch("sysctl", || {
                ns.run_ok(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=15000 65000"])
            })?;
        }
        let srv_echo_tcp = catch("echo server", || tcp_server(&srv.c, ECHO))?;
        let srv_echo_udp = catch("echo server", || udp_server(&srv.c, ECHO))?;
        let out_echo_tcp = catch("echo server", || tcp_server(&world.outside, ECHO))?;
        let mut servers = vec![];
        for ns in [srv.c.path(), world.outside.path()] {
            servers.push(iperf::server(ns, iperf::PORT)?);
            servers.push(sockperf::server(ns, sockperf::PORT, true)?);
            servers.push(sockperf::server(ns, sockperf::PORT, false)?);
            servers.push(connrate::server(ns, connrate::PORT)?);
        }
        let t = Topology {
            servers,
            srv_echo_tcp,
            srv_echo_udp,
            out_echo_tcp,
            daemon,
            srv,
            cli,
            other,
            fillers: vec![],
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
        let ip = catch("inspect", || d.inspect(name))?["ip"]
            .as_str()
            .context("inspect has no ip")?
            .to_string();
        Ok(Endpoint { c, ip })
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

    /// Attaches filler containers holding `n` published ports in all (1000 per container,
    /// host port = container port, from 20000); with `publish_in_netd` they are passed to netd
    /// as `-p`. Returns the summed wall time of the attach calls.
    pub fn add_fillers(&mut self, n: u32) -> Result<Duration> {
        let mut total = Duration::ZERO;
        let mut left = n;
        let mut next = FILLER_PORT_BASE;
        let mut k = 0;
        while left > 0 {
            let count = left.min(u32::from(FILLER_PORTS_PER_CONTAINER)) as u16;
            let ports = next..=next + count - 1;
            let spec = if count == 1 {
                format!("{next}:{next}/tcp")
            } else {
                format!(
                    "{}-{}:{}-{}/tcp",
                    ports.start(),
                    ports.end(),
                    ports.start(),
                    ports.end()
                )
            };
            let mut args = vec![];
            if self.opts.publish_in_netd {
                args = vec!["-p".to_string(), spec];
            }
            let t0 = Instant::now();
            let ep = Self::attach_new(&self.world, &self.daemon, &format!("fill{k}"), &args)?;
            total += t0.elapsed();
            self.fillers.push(Filler { ep, ports });
            left -= u32::from(count);
            next += count;
            k += 1;
        }
        Ok(total)
    }

    /// Attaches one more container publishing [`ONE_MORE_PORT`] (for netd); returns the wall
    /// time of the attach call and the container's address.
    pub fn attach_one_more(&mut self) -> Result<(Duration, String)> {
        let args = if self.opts.publish_in_netd {
            vec!["-p".to_string(), format!("{ONE_MORE_PORT}:80/tcp")]
        } else {
            vec![]
        };
        let t0 = Instant::now();
        let ep = Self::attach_new(&self.world, &self.daemon, "onemore", &args)?;
        let took = t0.elapsed();
        let ip = ep.ip.clone();
        self.fillers.push(Filler {
            ep,
            ports: ONE_MORE_PORT..=ONE_MORE_PORT,
        });
        Ok((took, ip))
    }

    pub fn host_ip(&self) -> &'static str {
        HOST_UPLINK_IP
    }

    pub fn outside_ip(&self) -> &'static str {
        OUTSIDE_IP
    }
}
