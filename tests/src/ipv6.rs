//! IPv6 in a test world: addresses without duplicate address detection, and the uplink's
//! IPv6 subnet 2001:db8:ff::/64 (the documentation prefix) between the host and the outside.

use crate::netns::Netns;
use crate::world::{UPLINK, World};

/// The host's IPv6 address on its uplink, in [`v6_uplink`]'s 2001:db8:ff::/64.
pub const HOST6: &str = "2001:db8:ff::1";
/// The outside's IPv6 address, in [`v6_uplink`]'s 2001:db8:ff::/64.
pub const OUTSIDE6: &str = "2001:db8:ff::2";

/// Turns DAD off in a test namespace (new interfaces too), so addresses the test adds are
/// usable at once.
pub fn no_dad(ns: &Netns) {
    ns.run_ok(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    ]);
}

/// `ip -6 addr add CIDR dev DEV nodad` in `ns`.
pub fn addr6(ns: &Netns, cidr: &str, dev: &str) {
    ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
}

/// The host's uplink and the outside's eth0 on 2001:db8:ff::/64 ([`HOST6`], [`OUTSIDE6`]),
/// without DAD in either; the outside gets no route to the containers.
pub fn v6_uplink(w: &World) {
    no_dad(&w.host);
    no_dad(&w.outside);
    addr6(&w.host, &format!("{HOST6}/64"), UPLINK);
    addr6(&w.outside, &format!("{OUTSIDE6}/64"), "eth0");
}

/// [`v6_uplink`], and the outside routes the container prefix `routed` to the host.
pub fn v6_uplink_routed(w: &World, routed: &str) {
    v6_uplink(w);
    w.outside.ip(&["-6", "route", "add", routed, "via", HOST6]);
}
