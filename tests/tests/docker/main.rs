//! The real dockerd 20.10 (Debian's docker.io) drives netd as network and IPAM driver `netd`.
//!
//! dockerd, its containerd and netd share the world's host network namespace and a private
//! mount namespace with tmpfs over /run and /etc/docker (Docker's hard-coded paths), as
//! ../shared/docs/engines.md describes; the image is imported from a busybox-static rootfs;
//! the client is this machine's docker CLI talking to the test's own dockerd socket.
//! Scenario: `docker network create -d netd --ipam-driver netd`, `docker run -p 8080:80`
//! served from the outside namespace with the client's real address seen by the server, no
//! iptables rule and no docker-proxy in the host netns, and `docker rm -f` / `docker network
//! rm` leaving no veth, lease, port or bridge behind.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use netd_tests::Netns;
use netd_tests::docker::{
    DockerWorld, HTTPD, SLEEPER, http_get_until, network_args, run_args, unmap,
};
use netd_tests::ipv6::{OUTSIDE6, v6_uplink_routed};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};

/// No iptables rule and no docker-proxy process in the host namespace.
fn assert_no_iptables_or_proxy(host: &Netns) {
    for tool in ["iptables-save", "iptables-legacy-save"] {
        let out = host.run(&[tool]);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let rules: Vec<&str> = text.lines().filter(|l| l.starts_with("-A")).collect();
            assert!(rules.is_empty(), "{tool} in the host netns: {rules:?}");
        }
    }
    let host_ns = fs::read_link(host.path()).ok();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "docker-proxy" {
            let ns = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            let ino = fs::metadata(host.path())
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok();
            let in_host = ns
                .as_ref()
                .zip(ino)
                .is_some_and(|(n, i)| n.to_string_lossy().contains(&i.to_string()));
            assert!(
                !in_host && ns != host_ns,
                "a docker-proxy (pid {pid}) runs in the host netns"
            );
        }
    }
}

mod links;
mod options;
mod ports;
mod publish;
mod restart;
mod v6;
