//! Two hosts behind a router reach each other's containers over IPv6.

use super::*;

/// The seed's routed cluster: host1 and host2, each with its own container subnet, behind a
/// router that holds the routes to both.
#[test]
fn two_hosts_behind_a_router_reach_each_others_containers() {
    // Router = w.outside (eth0 towards host1); host2 is joined to it by a second veth.
    let w = World::new();
    let router = &w.outside;
    let host2 = Netns::new("netdt-h2-");
    host2.ip(&["link", "set", "lo", "up"]);
    router.ip(&[
        "link",
        "add",
        "eth1",
        "type",
        "veth",
        "peer",
        "name",
        UPLINK,
        "netns",
        host2.name(),
    ]);
    for ns in [&w.host, router, &host2] {
        no_dad(ns);
    }
    router.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth1"]);
    router.ip(&["link", "set", "eth1", "up"]);
    host2.ip(&["addr", "add", "203.0.113.1/24", "dev", UPLINK]);
    host2.ip(&["link", "set", UPLINK, "up"]);
    addr6(&w.host, "2001:db8:1::1/64", UPLINK);
    addr6(router, "2001:db8:1::2/64", "eth0");
    addr6(&host2, "2001:db8:2::1/64", UPLINK);
    addr6(router, "2001:db8:2::2/64", "eth1");
    router.run_ok(&[
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
    ]);
    // The router knows both hosts' container subnets (a /48 per host, as in the seed).
    router.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:1::/48",
        "via",
        "2001:db8:1::1",
    ]);
    router.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:2::/48",
        "via",
        "2001:db8:2::1",
    ]);
    // The hosts know only their default gateway, the router.
    w.host
        .ip(&["route", "add", "default", "via", "198.51.100.2"]);
    w.host
        .ip(&["-6", "route", "add", "default", "via", "2001:db8:1::2"]);
    host2.ip(&["route", "add", "default", "via", "203.0.113.2"]);
    host2.ip(&["-6", "route", "add", "default", "via", "2001:db8:2::2"]);

    let d1 = w.daemon(&[
        "--bip",
        BIP,
        "--ipv6",
        "--fixed-cidr-v6",
        "2001:db8:1:1::/64",
    ]);
    let d2 = Daemon::start(
        &host2,
        &[
            "--bip",
            "172.31.0.1/24",
            "--ipv6",
            "--fixed-cidr-v6",
            "2001:db8:2:1::/64",
        ],
    );
    let c1 = w.container("c1");
    let c2 = Netns::new("netdt-c-");
    let v1 = d1.attach("c1", &c1, &[]);
    let v2 = d2.attach("c2", &c2, &["-p", "8080:80"]);
    assert_eq!(s(&v1["global_ipv6"]), "2001:db8:1:1:0:242:ac1e:2");
    assert_eq!(s(&v2["global_ipv6"]), "2001:db8:2:1:0:242:ac1f:2");

    // By IPv6, routed end to end: each side sees the other container's own address.
    let srv2 = tcp6_server(&c2, 80);
    assert_eq!(tcp_until(&c1, "[2001:db8:2:1:0:242:ac1f:2]:80"), "ping");
    assert_eq!(srv2.last_peer_ip(), "2001:db8:1:1:0:242:ac1e:2");
    let srv1 = tcp6_server(&c1, 80);
    assert_eq!(tcp_until(&c2, "[2001:db8:1:1:0:242:ac1e:2]:80"), "ping");
    assert_eq!(srv1.last_peer_ip(), "2001:db8:2:1:0:242:ac1f:2");
    assert!(ping6(&c1, "2001:db8:2:1:0:242:ac1f:2"));
    let udp2 = udp6_server(&c2, 81);
    assert_eq!(
        poll_until("UDP between hosts", T, || udp_send(
            &c1,
            "[2001:db8:2:1:0:242:ac1f:2]:81",
            "x"
        )),
        "x"
    );
    assert_eq!(udp2.last_peer_ip(), "2001:db8:1:1:0:242:ac1e:2");
    // By a published IPv4 port: c1 is masqueraded behind host1, DNATed on host2.
    assert_eq!(tcp_until(&c1, "203.0.113.1:8080"), "ping");
    assert_eq!(srv2.last_peer_ip(), HOST_UPLINK_IP);
}
