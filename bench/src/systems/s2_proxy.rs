//! S2: Debian docker.io's real `/usr/sbin/docker-proxy`, one process per published port,
//! started in the host namespace:
//! `docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port P -container-ip IP -container-port C`
//! with fd 3 open (docker-proxy writes `0\n` there once it listens, or `1\n<error>`).
//!
//! This docker-proxy (20.10.24) listens on IPv4 only for `-host-ip 0.0.0.0`, so on the
//! dual-stack topology each port also gets a second one, `-host-ip ::`, to srv's IPv6 address,
//! as Docker 20.10 with IPv6 does for an unspecified host address.

use std::io::Read as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::{Memory, Route, System};
use crate::memory::rss_bytes;
use crate::paths::PathId;
use crate::proc::{Proc, in_ns};
use crate::topology::{ONE_MORE_PORT, TopoOpts, Topology, srv_mappings};

pub const DOCKER_PROXY: &str = "/usr/sbin/docker-proxy";

#[derive(Default)]
pub struct DockerProxy {
    procs: Vec<Proc>,
}

/// Starts one docker-proxy in `t`'s host namespace and waits for its status on fd 3.
fn start(t: &Topology, proto: &str, host_port: u16, ip: &str, port: u16) -> Result<Proc> {
    start_on(t, "0.0.0.0", proto, host_port, ip, port)
}

/// [`start`] on the host address `host_ip`.
fn start_on(
    t: &Topology,
    host_ip: &str,
    proto: &str,
    host_port: u16,
    ip: &str,
    port: u16,
) -> Result<Proc> {
    let (rd, wr): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let mut c = in_ns(
        t.world.host.path(),
        &[
            DOCKER_PROXY,
            "-proto",
            proto,
            "-host-ip",
            host_ip,
            "-host-port",
            &host_port.to_string(),
            "-container-ip",
            ip,
            "-container-port",
            &port.to_string(),
        ],
    );
    let wr_fd = wr.as_raw_fd();
    // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(wr_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = c.spawn().context("start docker-proxy")?;
    let proc = Proc::adopt("docker-proxy", child);
    drop(wr);
    // docker-proxy closes fd 3 after writing its status; a crash closes it too.
    let mut status = String::new();
    std::fs::File::from(rd)
        .read_to_string(&mut status)
        .context("read docker-proxy status")?;
    if !status.starts_with('0') {
        bail!(
            "docker-proxy {proto} {host_ip} {host_port} -> {ip} {port} failed: {}",
            status.trim()
        );
    }
    Ok(proc)
}

impl System for DockerProxy {
    fn id(&self) -> &'static str {
        "S2"
    }
    fn topo_opts(&self, icc: bool, ipv6: bool) -> TopoOpts {
        TopoOpts::v4("none", icc, false).with_ipv6(ipv6)
    }
    fn setup(&mut self, t: &Topology) -> Result<()> {
        if !std::path::Path::new(DOCKER_PROXY).exists() {
            bail!("{DOCKER_PROXY} is missing (install docker.io)");
        }
        for m in srv_mappings() {
            self.procs
                .push(start(t, m.proto, m.host_port, &t.srv.ip, m.container_port)?);
            if let Some(ip6) = t.srv.ip6.as_deref().filter(|_| t.opts.ipv6) {
                self.procs.push(start_on(
                    t,
                    "::",
                    m.proto,
                    m.host_port,
                    ip6,
                    m.container_port,
                )?);
            }
        }
        Ok(())
    }
    fn teardown(&mut self, _t: &Topology) {
        self.procs.clear();
    }
    fn route(&self, path: PathId) -> Route {
        match path {
            PathId::P4 | PathId::P4Link | PathId::P5 | PathId::P5v6 => Route::NotApplicable,
            _ => Route::Published,
        }
    }
    fn nat_and_filters(&self) -> bool {
        false
    }
    fn pids(&self, _t: &Topology) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }
    fn publish_fillers(&mut self, t: &Topology) -> Result<Duration> {
        let t0 = Instant::now();
        for f in &t.fillers {
            for port in f.ports.clone() {
                self.procs.push(start(t, "tcp", port, &f.ep.ip, port)?);
            }
        }
        Ok(t0.elapsed())
    }
    fn publish_one_more(&mut self, t: &Topology) -> Result<Duration> {
        let ip = t
            .onemore
            .as_ref()
            .context("no onemore container")?
            .ip
            .clone();
        let t0 = Instant::now();
        self.procs.push(start(t, "tcp", ONE_MORE_PORT, &ip, 80)?);
        Ok(t0.elapsed())
    }
    fn memory(&self, _t: &Topology) -> Option<Memory> {
        Some(Memory {
            processes: self.procs.len() as u32,
            rss_bytes: self.procs.iter().filter_map(|p| rss_bytes(p.pid())).sum(),
            bpf_map_bytes: 0,
        })
    }
}
