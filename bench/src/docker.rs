//! The Docker side of S4's topology: Debian's dockerd 20.10 with netd as its network and IPAM
//! driver, both in the world's host namespace and a private mount namespace (the harness's
//! [`DockerWorld::start_in`]), one netd network made by `docker network create -d netd
//! --ipam-driver netd`, and `srv`, `cli` and `other` started by `docker run --network` (busybox
//! `sleep`; srv with `-p` for every mapping the other systems publish). The bench's own servers
//! then run in srv's network namespace, named for the bench by `ip netns attach` of the
//! container's pid (`docker inspect .State.Pid`), as they run in a namespace the harness made
//! for the other systems.
//!
//! Cleanup: [`DockerSide`]'s drop removes the containers (`docker rm -f`: dockerd's Leave and
//! DeleteEndpoint reach netd) and the network, then stops dockerd; the topology then drops
//! netd and the mount namespace (which kills anything left in it) and the world.

use anyhow::{Context as _, Result, anyhow, bail};
use netd_tests::docker::{DockerWorld, Dockerd, IMAGE, MountNs, network_args};
use netd_tests::{Container, Daemon, Netns, World};

use crate::topology::{Endpoint, Mapping, catch};

/// The Docker network srv, cli and other are on (`-o netd.name=` the same).
pub const NET: &str = "benchnet";
/// Its subnet (netd's own default network keeps the harness's 172.30.0.0/24).
pub const NET_SUBNET: &str = "172.31.0.0/24";
/// The containers' command: busybox sleeps while the bench's servers serve in its netns.
const IDLE: [&str; 3] = ["/bin/busybox", "sleep", "1000000"];

/// dockerd, with netd as its network driver, and the containers it runs for the bench.
/// Dropping it removes the containers and the network, then stops dockerd.
pub struct DockerSide {
    containers: Vec<String>,
    network: bool,
    pub dockerd: Dockerd,
}

impl DockerSide {
    /// netd (`netd daemon` with `daemon_args`), the plugin spec, dockerd and the image in
    /// `world`, and the netd network [`NET`]. Returns what the topology holds, in drop order.
    pub fn start(world: &World, daemon_args: &[&str]) -> Result<(DockerSide, Daemon, MountNs)> {
        let (dockerd, daemon, mnt) = catch("dockerd with netd", || {
            DockerWorld::start_in(world, daemon_args)
        })?
        .map_err(|e| anyhow!("dockerd with netd: {e}"))?;
        let mut side = DockerSide {
            containers: vec![],
            network: false,
            dockerd,
        };
        let name = format!("netd.name={NET}");
        side.docker(&network_args(NET, &["--subnet", NET_SUBNET, "-o", &name]))?;
        side.network = true;
        Ok((side, daemon, mnt))
    }

    /// `docker ARGS`; its stdout, or an error with its stderr and dockerd's log.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let out = self.dockerd.docker(args);
        if !out.status.success() {
            bail!(
                "docker {args:?}: {}\n--- dockerd log (end) ---\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log_tail(&self.dockerd.log())
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// srv (publishing `mappings` with `-p HOST:CONTAINER/PROTO`), cli and other.
    pub fn endpoints(&mut self, mappings: &[Mapping]) -> Result<(Endpoint, Endpoint, Endpoint)> {
        let mut publish = vec![];
        for m in mappings {
            publish.push("-p".to_string());
            publish.push(format!("{}:{}/{}", m.host_port, m.container_port, m.proto));
        }
        Ok((
            self.run("srv", &publish)?,
            self.run("cli", &[])?,
            self.run("other", &[])?,
        ))
    }

    /// `docker run -d --name NAME --network NET OPTS IMAGE sleep`; the container's network
    /// namespace (attached under a bench name) and its address.
    fn run(&mut self, name: &str, opts: &[String]) -> Result<Endpoint> {
        let mut args = vec!["run", "-d", "--name", name, "--network", NET];
        args.extend(opts.iter().map(String::as_str));
        args.push(IMAGE);
        args.extend(IDLE);
        // Recorded first: a container that half started is removed too.
        self.containers.push(name.to_string());
        self.docker(&args)?;
        let pid: u32 = self
            .docker(&["inspect", "-f", "{{.State.Pid}}", name])?
            .parse()
            .with_context(|| format!("docker inspect {name}: no pid"))?;
        if pid == 0 {
            bail!("docker inspect {name}: the container does not run");
        }
        let ip = self.docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ])?;
        if ip.is_empty() {
            bail!("docker inspect {name}: no address on {NET}");
        }
        let ns = Netns::attach("netdt-c-", pid).map_err(anyhow::Error::msg)?;
        Ok(Endpoint {
            c: Container {
                name: name.to_string(),
                ns,
            },
            ip,
            ip6: None,
        })
    }

    /// dockerd's pid (its CPU counts as the system's).
    pub fn pid(&self) -> u32 {
        self.dockerd.pid()
    }
}

impl Drop for DockerSide {
    fn drop(&mut self) {
        // `rm -f` kills at once: `sleep` as a container's pid 1 ignores SIGTERM, so a stop
        // would wait out Docker's 10 s timeout for each.
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.containers.iter().map(String::as_str));
            if let Err(e) = self.docker(&args) {
                eprintln!("warning: {e:#}");
            }
        }
        if self.network {
            if let Err(e) = self.docker(&["network", "rm", NET]) {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// The last 20 lines of a log.
fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
