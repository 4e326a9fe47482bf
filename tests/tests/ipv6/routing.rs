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

/// Issue 12, P5v6: routed IPv6 (no NAT) under a default-drop ip6tables FORWARD policy in the
/// host namespace with no rule at all. With the fast path the outside reaches the container's
/// own global address over TCP and UDP and the container reaches the outside from it (the
/// servers see the real addresses both ways), and FORWARD counts no packet: inbound is
/// `bpf_redirect_peer`ed into the container by from_uplink, outbound routed with
/// `bpf_fib_lookup` and redirected to the uplink by from_container6. Without it both
/// directions meet FORWARD's policy and are dropped there.
fn routed6_forward_drop(fast_path: &str) {
    use netd_tests::dataplane::forward_policy_drops;
    use netd_tests::ipv6::OUTSIDE6;

    let w = World::new();
    v6_uplink_routed(&w, "2001:db8:1::/64");
    w.host.run_ok(&["ip6tables", "-P", "FORWARD", "DROP"]);
    let d = w.daemon(&[
        "--bip",
        BIP,
        "--ipv6",
        "--fixed-cidr-v6",
        "2001:db8:1::/64",
        "--fast-path",
        fast_path,
    ]);
    let c = w.container("c1");
    let g = s(&d.attach("c1", &c, &[])["global_ipv6"]);
    let (tcp_in, udp_in) = (tcp6_server(&c, 80), udp6_server(&c, 53));
    let (tcp_out, udp_out) = (tcp6_server(&w.outside, 9000), udp6_server(&w.outside, 9001));
    let (to_c_tcp, to_c_udp) = (format!("[{g}]:80"), format!("[{g}]:53"));
    let (to_out_tcp, to_out_udp) = (format!("[{OUTSIDE6}]:9000"), format!("[{OUTSIDE6}]:9001"));
    let p0 = forward_policy_drops(&w.host, "ip6tables");
    if fast_path == "false" {
        assert!(tcp_blocked(&w.outside, &to_c_tcp), "{to_c_tcp} got through");
        assert!(udp_send(&w.outside, &to_c_udp, "in").is_err());
        assert!(tcp_blocked(&c, &to_out_tcp), "{to_out_tcp} got through");
        assert!(udp_send(&c, &to_out_udp, "out").is_err());
        assert!(tcp_in.last_peer().is_none() && udp_in.last_peer().is_none());
        assert!(tcp_out.last_peer().is_none() && udp_out.last_peer().is_none());
        let p1 = forward_policy_drops(&w.host, "ip6tables");
        assert!(p1 >= p0 + 4, "FORWARD's policy counted {} drops", p1 - p0);
        return;
    }
    // In: the outside to the container's own address.
    assert_eq!(tcp_until(&w.outside, &to_c_tcp), "ping");
    assert_eq!(tcp_in.last_peer_ip(), OUTSIDE6);
    let got = poll_until("UDP in", T, || udp_send(&w.outside, &to_c_udp, "u-in"));
    assert_eq!(got, "u-in");
    assert_eq!(udp_in.last_peer_ip(), OUTSIDE6);
    // Out: the container from its own address.
    assert_eq!(tcp_until(&c, &to_out_tcp), "ping");
    assert_eq!(tcp_out.last_peer_ip(), g);
    let got = poll_until("UDP out", T, || udp_send(&c, &to_out_udp, "u-out"));
    assert_eq!(got, "u-out");
    assert_eq!(udp_out.last_peer_ip(), g);
    for _ in 0..3 {
        assert_eq!(
            tcp_send(&w.outside, &to_c_tcp, "again").unwrap().trim(),
            "again"
        );
        assert_eq!(tcp_send(&c, &to_out_tcp, "again").unwrap().trim(), "again");
    }
    assert_eq!(
        forward_policy_drops(&w.host, "ip6tables"),
        p0,
        "nothing met FORWARD, either way"
    );
}

#[test]
fn forward_drop_routed_ipv6_with_the_fast_path() {
    routed6_forward_drop("true");
}

#[test]
fn forward_drop_routed_ipv6_without_the_fast_path() {
    routed6_forward_drop("false");
}
