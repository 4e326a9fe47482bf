//! Datapath tests (root): the NAT/policy programs run on crafted frames through
//! BPF_PROG_TEST_RUN after the maps were filled through their pins, exactly as the agent fills
//! them. Each test asserts verdicts, rewritten bytes, checksums recomputed from scratch here,
//! connection-tracking entries and drop counters.
//!
//! Every test works in its own network namespace (veth interfaces stand in for the uplink and
//! the containers' veths, so the programs see real ifindexes) and its own pin directory, both
//! removed on drop. Nothing is attached anywhere: BPF_PROG_TEST_RUN attaches nothing.

#[path = "../datapath_util/mod.rs"]
mod datapath_util;

use datapath_util::*;
use netd::dataplane::{Dataplane, DataplaneConfig};
use netd_common::*;

const CLIENT: [u8; 4] = [203, 0, 113, 7];
const REMOTE: [u8; 4] = [192, 0, 2, 9];

// ------------------------------------------------------------------------------------------
// (g) ICMP errors quoting translated flows.

const ROUTER: [u8; 4] = [192, 0, 2, 254];

// ------------------------------------------------------------------------------------------
// (g) the fast path (CFG_F_FAST_PATH): redirects instead of the host's routing.

/// Routing for the fast path's FIB lookups: forwarding on, the uplink up with its address
/// and MAC, CLIENT's network via a resolved gateway, REMOTE's via an unresolved one.
fn routes_for_fast_path(w: &World) {
    let _ = w;
    let mac = UPLINK_MAC.map(|b| format!("{b:02x}")).join(":");
    let gw_mac = GW_MAC.map(|b| format!("{b:02x}")).join(":");
    in_world(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    in_world(&["ip", "link", "set", "up0", "address", &mac]);
    for dev in ["up0", "up0p", "va", "vap", "vb", "vbp"] {
        in_world(&["ip", "link", "set", dev, "up"]);
    }
    in_world(&["ip", "addr", "add", "198.51.100.1/24", "dev", "up0"]);
    in_world(&[
        "ip",
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        "198.51.100.254",
    ]);
    in_world(&[
        "ip",
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        "198.51.100.253",
    ]);
    in_world(&[
        "ip",
        "neigh",
        "replace",
        "198.51.100.254",
        "lladdr",
        &gw_mac,
        "dev",
        "up0",
        "nud",
        "permanent",
    ]);
}

fn ttl(frame: &[u8]) -> u8 {
    frame[22]
}

/// The frame with another TTL (IPv4 checksum recomputed).
fn with_ttl(frame: &[u8], ttl: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[22] = ttl;
    f[24..26].fill(0);
    let c = !fold(sum16(&f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

mod conntrack;
mod fast_path;
mod icmp_errors;
mod nat;
mod packets;
mod policy;
mod port_table;
mod prefilter;
