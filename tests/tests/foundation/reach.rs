//! Traffic between containers, from the host and from outside.

use super::*;

#[test]
fn containers_talk_tcp_and_udp_over_the_bridge_with_their_own_ips() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let ((c1, ip1), (c2, ip2)) = w.two_attached(&d);

    let tcp = tcp_server(&c2, 8080);
    let udp = udp_server(&c2, 5353);
    assert_eq!(tcp_request(&c1, &format!("{ip2}:8080")).unwrap(), "ping");
    assert_eq!(
        tcp.peer_ips()
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        vec![ip1.clone()]
    );
    assert_eq!(udp_request(&c1, &format!("{ip2}:5353")).unwrap(), "ping");
    assert!(
        udp.peer_ips().iter().all(|i| i.to_string() == ip1),
        "udp peers {:?}",
        udp.peers()
    );
    assert!(!udp.peers().is_empty());

    // And the other way round.
    let tcp1 = tcp_server(&c1, 8081);
    assert_eq!(tcp_request(&c2, &format!("{ip1}:8081")).unwrap(), "ping");
    assert_eq!(tcp1.last_peer_ip(), ip2);
}

#[test]
fn host_namespace_reaches_container() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c1");
    let ip = s(&d.attach("c1", &c, &[])["ip"]).to_string();
    let srv = tcp_server(&c, 80);
    assert_eq!(tcp_request(&w.host, &format!("{ip}:80")).unwrap(), "ping");
    assert_eq!(
        srv.last_peer_ip(),
        BRIDGE_IP,
        "host traffic should come from the bridge address"
    );
    assert!(w.host.ping(&ip, T));
}

/// Plain routing, as Docker 1.8 allowed it: only without the eBPF dataplane, which drops direct
/// access to container addresses from the uplinks (published ports are the way in).
#[test]
fn outside_reaches_container_by_routing_without_dataplane() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--ip-masq", "false", "--dataplane", "none"]);
    let c = w.container("c1");
    let ip = s(&d.attach("c1", &c, &[])["ip"]).to_string();
    w.route_outside_to("172.30.0.0/24");
    let tcp = tcp_server(&c, 8080);
    let udp = udp_server(&c, 5300);
    assert_eq!(
        tcp_request(&w.outside, &format!("{ip}:8080")).unwrap(),
        "ping"
    );
    assert_eq!(
        tcp.last_peer_ip(),
        OUTSIDE_IP,
        "source rewritten on a routed path"
    );
    assert_eq!(
        udp_request(&w.outside, &format!("{ip}:5300")).unwrap(),
        "ping"
    );
    assert_eq!(udp.last_peer_ip(), OUTSIDE_IP);
    // The container reaches the outside address too (replies and new connections).
    let out_srv = tcp_server(&w.outside, 9000);
    assert_eq!(
        tcp_request(&c, &format!("{OUTSIDE_IP}:9000")).unwrap(),
        "ping"
    );
    assert_eq!(
        out_srv.last_peer_ip(),
        ip,
        "--ip-masq false must keep the container's source"
    );
    assert!(c.ping(HOST_UPLINK_IP, T));
}

#[test]
fn p2p_link_carries_traffic_between_two_containers() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let ((c1, ip1), (c2, ip2)) = w.two_attached(&d);
    let host_links = w.host.links();
    d.netd_ok(&["p2p", "c1", "c2"]);
    assert_eq!(
        w.host.links(),
        host_links,
        "p2p link must not touch the host namespace"
    );
    // Each side got one more interface and a /32 route to the other.
    assert_eq!(c1.links().len(), 3, "c1 links: {:?}", c1.links());
    assert_eq!(c2.links().len(), 3, "c2 links: {:?}", c2.links());
    let r1 = c1.routes4();
    assert!(
        r1.iter()
            .any(|r| r.starts_with(&format!("{ip2} dev ")) && !r.contains("dev eth0")),
        "c1 has no /32 route to {ip2} over the direct link: {r1:?}"
    );
    let r2 = c2.routes4();
    assert!(
        r2.iter()
            .any(|r| r.starts_with(&format!("{ip1} dev ")) && !r.contains("dev eth0")),
        "c2 has no /32 route to {ip1}: {r2:?}"
    );
    // Take the bridge path away: traffic must still flow, over the direct link.
    c1.ip(&["link", "set", "eth0", "down"]);
    c2.ip(&["link", "set", "eth0", "down"]);
    assert!(c1.ping(&ip2, T), "no ping over the p2p link");
    let srv = tcp_server(&c2, 9100);
    netd_tests::tcp_arrives_from(&c1, &format!("{ip2}:9100"), &srv, &ip1);
}
