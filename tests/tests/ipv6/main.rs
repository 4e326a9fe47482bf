//! IPv6 dual stack (the seed's "IPv6", "Using NDP proxying" and "Docker IPv6 cluster"):
//! `--ipv6`, `--fixed-cidr-v6`, `--default-gateway-v6`, `--ip6` and `network create --ipv6`.
//! Addresses derive from the MAC as the seed shows, traffic is routed (not NATed) both ways
//! and the servers assert the source they saw, NDP proxying answers for containers on an
//! uplink's /64 until they are detached, and two hosts behind a router reach each other's
//! containers by IPv6 and by a published IPv4 port.
//!
//! Every IPv6 address here is in the documentation prefix 2001:db8::/32, inside namespaces the
//! test creates.

use std::net::UdpSocket;
use std::time::Duration;

use netd_tests::dataplane::{drops, tcp_blocked};
use netd_tests::ipv6::{addr6, no_dad, v6_uplink_routed};
use netd_tests::netns::Netns;
use netd_tests::traffic::in_netns;
use netd_tests::world::{HOST_UPLINK_IP, UPLINK};
use netd_tests::{BIP, Daemon, World, poll_until, tcp_send, tcp6_server, udp_send, udp6_server};

const T: Duration = Duration::from_secs(8);

fn s(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

/// `ip -6 addr show dev` as "addr/len" strings.
fn addrs6(ns: &Netns, dev: &str) -> Vec<String> {
    let v = ns.ip_json(&["-6", "addr", "show", "dev", dev]);
    let mut out = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            out.push(format!("{}/{}", s(&a["local"]), a["prefixlen"]));
        }
    }
    out
}

fn routes6(ns: &Netns) -> Vec<String> {
    ns.ip(&["-6", "route", "show"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn tcp_until(ns: &Netns, addr: &str) -> String {
    poll_until(&format!("TCP to {addr}"), T, || tcp_send(ns, addr, "ping"))
}

fn ping6(ns: &Netns, addr: &str) -> bool {
    ns.ping(addr, T)
}

mod config;
mod containers;
mod policy;
mod routing;
