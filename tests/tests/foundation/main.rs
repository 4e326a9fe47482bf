//! The foundation, end to end: the bridge (`--bip`, auto subnet, `--fixed-cidr`, `--mtu`,
//! `-b`), per-container wiring (eth0, MAC, IP, routes, lo), traffic between containers, from
//! the host and from outside, the `--net` modes, point-to-point links and detach.

use std::time::Duration;

use netd_tests::traffic::udp_request;
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{
    BIP, BRIDGE_IP, Container, Daemon, World, mac_for_ip, tcp_request, tcp_server, udp_server,
};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

mod api;
mod bridge;
mod cleanup;
mod container;
mod modes;
mod reach;
