//! A container's interface: eth0, MAC, IP, routes, gateway, its name.

use super::*;

#[test]
fn container_gets_eth0_mac_ip_route_and_lo() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c1");
    let host_veths_before = w.host.links_with_prefix("veth");
    let ep = d.attach("c1", &c, &[]);
    let ip = s(&ep["ip"]).to_string();
    assert_eq!(ip, "172.30.0.2", "first address of the pool");
    assert_eq!(ep["prefix_len"], 24);
    assert_eq!(s(&ep["mac"]), mac_for_ip(&ip));
    assert_eq!(s(&ep["gateway"]), BRIDGE_IP);
    assert_eq!(s(&ep["name"]), "c1");
    assert_eq!(s(&ep["net"]), "bridge");
    assert_eq!(s(&ep["netns"]), c.path_str());
    assert!(!s(&ep["hostname"]).is_empty());
    assert_eq!(
        s(&ep["etc_dir"]),
        d.etc_dir("c1").display().to_string(),
        "default etc dir"
    );
    // Inside the container.
    let mut links = c.links();
    links.sort();
    assert_eq!(links, vec!["eth0".to_string(), "lo".to_string()]);
    assert_eq!(c.addrs4("eth0"), vec![format!("{ip}/24")]);
    assert_eq!(c.mac("eth0"), mac_for_ip(&ip));
    assert!(c.is_up("eth0") && c.is_up("lo"));
    let routes = c.routes4();
    assert!(
        routes
            .iter()
            .any(|r| r.starts_with(&format!("default via {BRIDGE_IP} dev eth0"))),
        "no default route via the bridge: {routes:?}"
    );
    assert!(
        c.ping_once("127.0.0.1"),
        "lo does not work in the container"
    );
    // On the host: one new veth, named veth+hex, enslaved to netd0.
    let host_if = s(&ep["host_ifname"]).to_string();
    assert!(
        host_if.len() > 4 && host_if[4..].chars().all(|ch| ch.is_ascii_hexdigit()),
        "host_ifname {host_if} is not veth+hex"
    );
    assert!(host_if.starts_with("veth"));
    let mut after = w.host.links_with_prefix("veth");
    after.retain(|l| !host_veths_before.contains(l));
    assert_eq!(after, vec![host_if.clone()]);
    assert_eq!(w.host.master(&host_if).as_deref(), Some("netd0"));
    assert!(w.host.is_up(&host_if));
    // And the container reaches its gateway.
    assert!(c.ping(BRIDGE_IP, T), "container cannot ping the bridge");
}

#[test]
fn mac_address_and_ip_flags_are_honoured() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c1");
    let ep = d.attach(
        "c1",
        &c,
        &["--mac-address", "02:aa:bb:cc:dd:ee", "--ip", "172.30.0.50"],
    );
    assert_eq!(s(&ep["ip"]), "172.30.0.50");
    assert_eq!(s(&ep["mac"]), "02:aa:bb:cc:dd:ee");
    assert_eq!(c.mac("eth0"), "02:aa:bb:cc:dd:ee");
    assert_eq!(c.addrs4("eth0"), vec!["172.30.0.50/24".to_string()]);
    // The next automatic address skips nothing but is not .50.
    let c2 = w.container("c2");
    let ep2 = d.attach("c2", &c2, &[]);
    assert_eq!(s(&ep2["ip"]), "172.30.0.2");
    assert!(c2.ping("172.30.0.50", T));
}

#[test]
fn default_gateway_option_sets_container_route() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--default-gateway", "172.30.0.254"]);
    let c = w.container("c1");
    let ep = d.attach("c1", &c, &[]);
    assert_eq!(s(&ep["gateway"]), "172.30.0.254");
    let routes = c.routes4();
    assert!(
        routes
            .iter()
            .any(|r| r.starts_with("default via 172.30.0.254 dev eth0")),
        "routes: {routes:?}"
    );
    assert_ne!(
        s(&ep["ip"]),
        "172.30.0.254",
        "the gateway address was leased"
    );
}

/// The container's interface is named by the request (`--ifname`, default eth0), not fixed:
/// it gets the address, MAC and default route, carries traffic, and goes with detach.
#[test]
fn the_container_interface_takes_the_requested_name() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c1");
    let v = d.attach("c1", &c, &["--ifname", "net1", "--ip", "172.30.0.10"]);
    assert_eq!(v["ifname"], "net1", "{v}");
    assert_eq!(c.addrs4("net1"), vec!["172.30.0.10/24".to_string()]);
    assert_eq!(c.mac("net1"), "02:42:ac:1e:00:0a");
    assert!(c.link("eth0").is_none(), "{:?}", c.links());
    assert!(
        c.routes4()
            .iter()
            .any(|r| r.starts_with("default via 172.30.0.1 dev net1")),
        "{:?}",
        c.routes4()
    );
    assert!(c.ping("172.30.0.1", T), "c1 pings the bridge over net1");
    d.netd_ok(&["detach", "c1"]);
    // The name is free when detach returns (the veth is deleted in the background).
    assert!(c.link("net1").is_none(), "{:?}", c.links());
}
