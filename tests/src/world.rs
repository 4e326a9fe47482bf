//! [`World`]: a private host namespace (where netd runs), an "outside" namespace joined to it
//! by a veth pair, and container namespaces.
//!
//! ```text
//!   outside ns                     host ns (netd runs here)            container ns
//!   eth0 198.51.100.2/24 <==veth==> up0 198.51.100.1/24  netd0 ... <==veth==> eth0
//! ```

use std::ops::Deref;

use crate::daemon::{Daemon, DaemonExit};
use crate::netns::Netns;

/// The host's address on the uplink `up0`.
pub const HOST_UPLINK_IP: &str = "198.51.100.1";
/// The outside namespace's address on its `eth0`.
pub const OUTSIDE_IP: &str = "198.51.100.2";
/// The uplink interface name in the host namespace.
pub const UPLINK: &str = "up0";

/// The test topology; every namespace in it is deleted on drop.
pub struct World {
    /// Where netd runs; has `lo` up and the uplink `up0`.
    pub host: Netns,
    /// The "outside world": `eth0` 198.51.100.2/24, no routes beyond its subnet.
    pub outside: Netns,
}

impl World {
    pub fn new() -> World {
        let host = Netns::new("netdt-h-");
        let outside = Netns::new("netdt-o-");
        host.ip(&["link", "set", "lo", "up"]);
        outside.ip(&["link", "set", "lo", "up"]);
        host.ip(&[
            "link",
            "add",
            UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            outside.name(),
        ]);
        host.ip(&[
            "addr",
            "add",
            &format!("{HOST_UPLINK_IP}/24"),
            "dev",
            UPLINK,
        ]);
        host.ip(&["link", "set", UPLINK, "up"]);
        outside.ip(&["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "eth0"]);
        outside.ip(&["link", "set", "eth0", "up"]);
        World { host, outside }
    }

    /// A fresh, unconfigured namespace for a container called `name` (the name netd will use).
    pub fn container(&self, name: &str) -> Container {
        Container {
            name: name.to_string(),
            ns: Netns::new("netdt-c-"),
        }
    }

    /// Containers "c1" and "c2" attached to `d` with no options, each with its IPv4 address.
    pub fn two_attached(&self, d: &Daemon) -> ((Container, String), (Container, String)) {
        let c1 = self.container("c1");
        let c2 = self.container("c2");
        let ip1 = d.attach_ip("c1", &c1, &[]);
        let ip2 = d.attach_ip("c2", &c2, &[]);
        ((c1, ip1), (c2, ip2))
    }

    /// Starts `netd daemon --uplink up0 ... <args>` in the host namespace; panics if it does
    /// not come up.
    pub fn daemon(&self, args: &[&str]) -> Daemon {
        Daemon::start(&self.host, args)
    }

    /// [`World::daemon`] with extra environment variables (the `NETD_*` test knobs, e.g.
    /// `NETD_REAPER_DELAY_MS`); waits until it is ready.
    pub fn daemon_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::spawn_with_env(&self.host, args, env);
        d.wait_until_ready();
        d
    }

    /// Runs `netd daemon ... <args>` expecting it to exit by itself (within 10 s); returns its
    /// exit status and output.
    pub fn daemon_exit(&self, args: &[&str]) -> DaemonExit {
        Daemon::run_to_exit(&self.host, args)
    }

    /// Gives the outside namespace a route to `cidr` via the host's uplink address.
    pub fn route_outside_to(&self, cidr: &str) {
        self.outside
            .ip(&["route", "add", cidr, "via", HOST_UPLINK_IP]);
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// A container's namespace plus the name netd knows it by.
pub struct Container {
    pub name: String,
    pub ns: Netns,
}

impl Deref for Container {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.ns
    }
}
