//! The paths (who talks to whom), the correctness check each system must pass on a path before
//! it is measured, and which tools measure each path.
//!
//! | path | client | server | published route | direct route (S0, and P4/P5 always) |
//! | --- | --- | --- | --- | --- |
//! | P1 | outside | srv | 198.51.100.1:host port | srv IP |
//! | P2 | host | srv | 127.0.0.1:host port | srv IP |
//! | P3 | cli | srv | 198.51.100.1:host port (hairpin) | srv IP |
//! | P4 | cli | srv | — (icc on) | srv IP |
//! | P4link | cli | srv | — (icc off, cli linked to srv) | srv IP |
//! | P5 | cli | outside | — (masquerade) | 198.51.100.2 |
//! | P6 | outside | srv (UDP) | 198.51.100.1:host port | srv IP |
//! | P1v6 | outside | srv | [2001:db8:ff::1]:host port | srv IPv6 |
//! | P5v6 | cli | outside | — (routed, no NAT) | 2001:db8:ff::2 |
//! | P6v6 | outside | srv (UDP) | [2001:db8:ff::1]:host port | srv IPv6 |
//!
//! The IPv6 paths run on the dual-stack topology (see [`crate::topology`]); sockperf 3.7 has
//! no IPv6, so they have no ping-pong latency.

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::systems::{Route, System};
use crate::tools::{Values, connrate, iperf, sockperf};
use crate::topology::{ECHO, HOST_IP, HOST6, OUTSIDE, OUTSIDE6, Topology, host_port};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PathId {
    P1,
    P2,
    P3,
    P4,
    P4Link,
    P5,
    P6,
    P1v6,
    P5v6,
    P6v6,
}

impl PathId {
    pub const ALL: [PathId; 10] = [
        PathId::P1,
        PathId::P2,
        PathId::P3,
        PathId::P4,
        PathId::P4Link,
        PathId::P5,
        PathId::P6,
        PathId::P1v6,
        PathId::P5v6,
        PathId::P6v6,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PathId::P1 => "P1 outside→published",
            PathId::P2 => "P2 host→127.0.0.1:port",
            PathId::P3 => "P3 container→hostIP:port",
            PathId::P4 => "P4 container↔container (icc on)",
            PathId::P4Link => "P4 container↔container (icc off, link)",
            PathId::P5 => "P5 container→outside",
            PathId::P6 => "P6 UDP outside→published",
            PathId::P1v6 => "P1v6 outside→published (IPv6)",
            PathId::P5v6 => "P5v6 container→outside (IPv6, routed)",
            PathId::P6v6 => "P6v6 UDP outside→published (IPv6)",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            PathId::P1 => "P1",
            PathId::P2 => "P2",
            PathId::P3 => "P3",
            PathId::P4 => "P4",
            PathId::P4Link => "P4link",
            PathId::P5 => "P5",
            PathId::P6 => "P6",
            PathId::P1v6 => "P1v6",
            PathId::P5v6 => "P5v6",
            PathId::P6v6 => "P6v6",
        }
    }

    /// The ids `--paths` takes, comma-separated.
    pub fn known() -> String {
        PathId::ALL.map(PathId::short).join(", ")
    }

    /// P4link needs a topology with icc off; every other path shares one with icc on.
    pub fn icc(self) -> bool {
        self != PathId::P4Link
    }

    /// The IPv6 paths share the dual-stack topology.
    pub fn ipv6(self) -> bool {
        matches!(self, PathId::P1v6 | PathId::P5v6 | PathId::P6v6)
    }

    /// The measurements taken on the path.
    pub fn tools(self) -> &'static [Tool] {
        match self {
            PathId::P1 => &[Tool::Tcp1, Tool::Tcp2, Tool::TcpLat, Tool::Conn],
            PathId::P2 | PathId::P3 | PathId::P5 => &[Tool::Tcp1, Tool::TcpLat, Tool::Conn],
            PathId::P4 | PathId::P4Link => &[Tool::Tcp1, Tool::TcpLat],
            PathId::P6 => &[Tool::UdpPps, Tool::UdpLat],
            PathId::P1v6 | PathId::P5v6 => &[Tool::Tcp1, Tool::Conn],
            PathId::P6v6 => &[Tool::UdpPps],
        }
    }

    /// The namespace the client runs in.
    pub fn client_ns(self, t: &Topology) -> &Path {
        match self {
            PathId::P1 | PathId::P6 | PathId::P1v6 | PathId::P6v6 => t.world.outside.path(),
            PathId::P2 => t.world.host.path(),
            _ => t.cli.c.path(),
        }
    }

    /// The cgroup the client joins: the daemon's `--cgroup` for clients on the host or in a
    /// container (in production `--cgroup` is the cgroup v2 root, so every host and container
    /// process is under the socket hooks; they act only on sockets of the daemon's network
    /// namespace), none for the outside (another machine). The same for every system: under
    /// S0–S2 the daemon runs `--dataplane none`, so the cgroup has no programs.
    pub fn client_cgroup(self, t: &Topology) -> Option<&Path> {
        match self {
            PathId::P1 | PathId::P6 | PathId::P1v6 | PathId::P6v6 => None,
            _ => t.cgroup(),
        }
    }

    /// Where the client connects for the server's `container_port`.
    pub fn target(self, t: &Topology, route: Route, container_port: u16) -> Result<(String, u16)> {
        Ok(match (route, self) {
            (_, PathId::P5) => (OUTSIDE.to_string(), container_port),
            (_, PathId::P5v6) => (OUTSIDE6.to_string(), container_port),
            (Route::Published, PathId::P2) => ("127.0.0.1".into(), host_port(container_port)),
            (Route::Published, PathId::P1v6 | PathId::P6v6) => {
                (HOST6.into(), host_port(container_port))
            }
            (Route::Published, _) => (HOST_IP.into(), host_port(container_port)),
            (_, PathId::P1v6 | PathId::P6v6) => {
                let ip6 = t.srv.ip6.clone().with_context(|| {
                    format!("{}: srv has no IPv6 address to route to", self.short())
                })?;
                (ip6, container_port)
            }
            _ => (t.srv.ip.clone(), container_port),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tool {
    /// iperf3 TCP, 1 stream.
    Tcp1,
    /// iperf3 TCP, 2 streams.
    Tcp2,
    /// iperf3 UDP, 64-byte datagrams, unlimited rate.
    UdpPps,
    /// sockperf TCP ping-pong.
    TcpLat,
    /// sockperf UDP ping-pong.
    UdpLat,
    /// netd-connrate connect/request/close.
    Conn,
}

impl Tool {
    pub fn short(self) -> &'static str {
        match self {
            Tool::Tcp1 => "tcp1",
            Tool::Tcp2 => "tcp2",
            Tool::UdpPps => "udp64",
            Tool::TcpLat => "tcp_lat",
            Tool::UdpLat => "udp_lat",
            Tool::Conn => "conn",
        }
    }
}

/// Durations of one measurement.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Durations {
    pub iperf_s: u32,
    pub sockperf_s: u32,
    pub conn_s: f64,
}

/// Runs one tool on a path.
pub fn measure(
    t: &Topology,
    path: PathId,
    route: Route,
    tool: Tool,
    d: Durations,
) -> Result<Values> {
    let ns = path.client_ns(t);
    let cg = path.client_cgroup(t);
    match tool {
        Tool::Tcp1 | Tool::Tcp2 | Tool::UdpPps => {
            let (ip, port) = path.target(t, route, iperf::PORT)?;
            let mode = match tool {
                Tool::Tcp1 => iperf::Mode::Tcp { streams: 1 },
                Tool::Tcp2 => iperf::Mode::Tcp { streams: 2 },
                _ => iperf::Mode::UdpSmall,
            };
            iperf::client(ns, cg, &ip, port, mode, d.iperf_s)
        }
        Tool::TcpLat | Tool::UdpLat => {
            let (ip, port) = path.target(t, route, sockperf::PORT)?;
            sockperf::client(ns, cg, &ip, port, tool == Tool::TcpLat, d.sockperf_s)
        }
        Tool::Conn => {
            let (ip, port) = path.target(t, route, connrate::PORT)?;
            connrate::client(ns, cg, &ip, port, d.conn_s)
        }
    }
}

/// The correctness check of `sys` on `path`: the echo service answers through the path, and,
/// for systems that claim NAT and filtering, the address the server sees is right (client IP
/// kept through DNAT from outside, host IP after masquerade) and, with icc off, a container
/// without a link is refused.
pub fn check(t: &Topology, sys: &dyn System, path: PathId) -> Result<()> {
    let route = sys.route(path);
    let ns = path.client_ns(t);
    let cg = path.client_cgroup(t);
    let token = format!("netd-bench-{}-{}", sys.id(), path.short());
    let (ip, port) = path.target(t, route, ECHO)?;
    let udp = matches!(path, PathId::P6 | PathId::P6v6);
    connrate::echo(ns, cg, &ip, port, udp, &token)?;
    if !sys.nat_and_filters() {
        return Ok(());
    }
    match path {
        PathId::P1 | PathId::P6 | PathId::P1v6 | PathId::P6v6 => {
            let (server, client) = match path {
                PathId::P1 => (&t.srv_echo_tcp, OUTSIDE),
                PathId::P6 => (&t.srv_echo_udp, OUTSIDE),
                PathId::P1v6 => (&t.srv_echo_tcp, OUTSIDE6),
                _ => (&t.srv_echo_udp, OUTSIDE6),
            };
            let seen = server.last_peer_ip();
            if seen != client {
                bail!("the server saw client {seen}, not the real client {client}");
            }
        }
        PathId::P5 => {
            let seen = t.out_echo_tcp.last_peer_ip();
            if seen != HOST_IP {
                bail!("the outside saw {seen}, not the masquerade address {HOST_IP}");
            }
        }
        PathId::P5v6 => {
            let own = t.cli.ip6.as_deref().unwrap_or("(none)");
            let seen = t.out_echo_tcp.last_peer_ip();
            if seen != own {
                bail!(
                    "the outside saw {seen}, not the container's own address {own} (IPv6 is routed)"
                );
            }
        }
        PathId::P4Link
            if connrate::echo_within(
                t.other.c.path(),
                cg,
                &t.srv.ip,
                ECHO,
                false,
                "blocked",
                std::time::Duration::from_millis(500),
            )
            .is_ok() =>
        {
            bail!("icc=false: an unlinked container still reached srv:{ECHO}");
        }
        _ => {}
    }
    Ok(())
}
