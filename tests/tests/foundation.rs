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

#[test]
fn bip_creates_bridge_in_host_namespace() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    assert_eq!(w.host.addrs4("netd0"), vec![BIP.to_string()]);
    assert!(w.host.is_up("netd0"), "netd0 is not up");
    let st = d.status();
    assert_eq!(s(&st["bridge"]["name"]), "netd0");
    assert_eq!(s(&st["bridge"]["subnet"]), "172.30.0.0/24");
    assert!(
        s(&st["bridge"]["ip"]).starts_with(BRIDGE_IP),
        "status bridge ip: {}",
        st["bridge"]["ip"]
    );
    assert_eq!(st["uplinks"], serde_json::json!(["up0"]));
    assert_eq!(s(&st["dataplane"]), "ebpf");
    // The uplink keeps its address; nothing else appeared besides the bridge.
    assert_eq!(w.host.addrs4("up0"), vec!["198.51.100.1/24".to_string()]);
    // --ip-forward defaults to true: forwarding on in the daemon's namespace.
    assert_eq!(w.host.read("/proc/sys/net/ipv4/ip_forward").trim(), "1");
}

fn rfc1918(net: &str) -> bool {
    let (ip, _) = net.split_once('/').unwrap();
    let o: std::net::Ipv4Addr = ip.parse().unwrap();
    let o = o.octets();
    o[0] == 10 || (o[0] == 172 && (16..32).contains(&o[1])) || (o[0] == 192 && o[1] == 168)
}

fn overlaps(a: &str, b: &str) -> bool {
    fn range(n: &str) -> (u32, u32) {
        let (ip, len) = n.split_once('/').unwrap();
        let ip = u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap());
        let len: u32 = len.parse().unwrap();
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        (ip & mask, (ip & mask) | !mask)
    }
    let (a0, a1) = range(a);
    let (b0, b1) = range(b);
    a0 <= b1 && b0 <= a1
}

#[test]
fn auto_subnet_is_private_and_overlaps_nothing() {
    let w = World::new();
    // Occupy the ranges Docker would try first, inside the private host namespace.
    // (veth, since this kernel has no dummy driver)
    w.host.ip(&[
        "link", "add", "busy0", "type", "veth", "peer", "name", "busy1",
    ]);
    w.host.ip(&["addr", "add", "172.17.0.1/16", "dev", "busy0"]);
    w.host.ip(&["addr", "add", "172.18.0.1/16", "dev", "busy0"]);
    w.host.ip(&["link", "set", "busy0", "up"]);
    w.host.ip(&["route", "add", "10.0.0.0/8", "dev", "busy0"]);
    let d = w.daemon(&[]);
    let addrs = w.host.addrs4("netd0");
    assert_eq!(addrs.len(), 1, "netd0 addresses: {addrs:?}");
    let bip = &addrs[0];
    assert!(rfc1918(bip), "auto-chosen {bip} is not RFC 1918");
    for used in [
        "172.17.0.0/16",
        "172.18.0.0/16",
        "10.0.0.0/8",
        "198.51.100.0/24",
    ] {
        assert!(
            !overlaps(bip, used),
            "auto-chosen {bip} overlaps {used} in use on the host"
        );
    }
    let c = w.container("c1");
    let ep = d.attach("c1", &c, &[]);
    let ip = s(&ep["ip"]).to_string();
    assert!(
        overlaps(&format!("{ip}/32"), bip),
        "container ip {ip} not in bridge subnet {bip}"
    );
    assert_eq!(
        c.addrs4("eth0"),
        vec![format!("{ip}/{}", bip.split('/').nth(1).unwrap())]
    );
}

#[test]
fn fixed_cidr_inside_bip_limits_container_addresses() {
    let w = World::new();
    let d = w.daemon(&["--bip", "172.30.0.1/24", "--fixed-cidr", "172.30.0.128/25"]);
    let ((c1, ip1), (_c2, ip2)) = w.two_attached(&d);
    assert_ne!(ip1, ip2);
    for ip in [&ip1, &ip2] {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!(
            ip.starts_with("172.30.0.") && (128..255).contains(&last),
            "{ip} is outside --fixed-cidr 172.30.0.128/25"
        );
    }
    // Containers still get the bridge's netmask, not the fixed-cidr's.
    assert_eq!(c1.addrs4("eth0"), vec![format!("{ip1}/24")]);
    // An explicit --ip outside the fixed range is refused.
    let c3 = w.container("c3");
    let err = d.netd_err(&[
        "attach",
        "c3",
        "--netns",
        c3.path_str(),
        "--ip",
        "172.30.0.20",
    ]);
    assert!(
        err.contains("172.30.0.20"),
        "error does not name the address: {err}"
    );
}

#[test]
fn fixed_cidr_outside_bip_is_refused_at_startup() {
    let w = World::new();
    let out = w.daemon_exit(&["--bip", "172.30.0.1/24", "--fixed-cidr", "10.99.0.0/24"]);
    assert!(
        !out.status.success(),
        "daemon accepted a fixed-cidr outside bip"
    );
    assert!(
        out.stderr.contains("10.99.0.0/24"),
        "error does not name the bad range: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("fixed-cidr"),
        "error does not name the option: {}",
        out.stderr
    );
    assert!(
        w.host.link("netd0").is_none(),
        "a failed start left netd0 behind"
    );
}

#[test]
fn mtu_applies_to_bridge_and_container() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--mtu", "1400"]);
    assert_eq!(w.host.mtu("netd0"), 1400);
    assert_eq!(d.status()["bridge"]["mtu"], 1400);
    let c = w.container("c1");
    let ep = d.attach("c1", &c, &[]);
    assert_eq!(c.mtu("eth0"), 1400);
    assert_eq!(w.host.mtu(s(&ep["host_ifname"])), 1400);
}

#[test]
fn own_bridge_is_adopted_and_left_in_place() {
    let w = World::new();
    w.host.ip(&["link", "add", "br0", "type", "bridge"]);
    w.host.ip(&["addr", "add", "192.168.5.1/24", "dev", "br0"]);
    w.host.ip(&["link", "set", "br0", "up"]);
    let mut d = w.daemon(&["-b", "br0"]);
    assert!(
        w.host.link("netd0").is_none(),
        "netd0 created although -b br0 was given"
    );
    let st = d.status();
    assert_eq!(s(&st["bridge"]["name"]), "br0");
    assert_eq!(s(&st["bridge"]["subnet"]), "192.168.5.0/24");
    let c = w.container("c1");
    let ep = d.attach("c1", &c, &[]);
    let ip = s(&ep["ip"]).to_string();
    assert!(
        ip.starts_with("192.168.5."),
        "ip {ip} not from br0's subnet"
    );
    assert_eq!(s(&ep["gateway"]), "192.168.5.1");
    assert_eq!(w.host.master(s(&ep["host_ifname"])).as_deref(), Some("br0"));
    assert!(
        c.ping("192.168.5.1", T),
        "container cannot reach br0's address"
    );
    let st = d.stop().expect("daemon was running");
    assert!(st.success(), "daemon exited with {st} on SIGTERM");
    assert!(
        w.host.link("br0").is_some(),
        "daemon deleted the bridge it did not create"
    );
    assert_eq!(w.host.addrs4("br0"), vec!["192.168.5.1/24".to_string()]);
}

#[test]
fn daemon_restart_reuses_its_bridge() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    assert!(w.host.link("netd0").is_some());
    let st = d.stop().expect("daemon was running");
    assert!(st.success(), "daemon exited with {st} on SIGTERM");
    // Whether netd0 outlives the daemon is netd's choice (Docker leaves docker0); a restart
    // must come back with the same bridge address either way.
    d.restart();
    assert_eq!(w.host.addrs4("netd0"), vec![BIP.to_string()]);
}

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
fn net_host_creates_no_interfaces_and_copies_host_files() {
    let w = World::new();
    let files = netd_tests::TempDir::new();
    let resolv = files.write(
        "resolv.conf",
        "nameserver 192.0.2.53\nsearch example.test\n",
    );
    let d = w.daemon(&["--bip", BIP, "--resolv-conf", resolv.to_str().unwrap()]);
    let c = w.container("h1");
    let links_before = w.host.links();
    let ep = d.attach("h1", &c, &["--net", "host"]);
    assert_eq!(
        w.host.links(),
        links_before,
        "--net host created interfaces"
    );
    assert_eq!(
        c.links(),
        vec!["lo".to_string()],
        "--net host touched the given netns"
    );
    assert_eq!(s(&ep["net"]), "host");
    assert!(ep["host_ifname"].is_null());
    assert!(
        ep["ip"].is_null(),
        "--net host leased an address: {}",
        ep["ip"]
    );
    assert_eq!(
        d.etc_file("h1", "hosts"),
        std::fs::read_to_string("/etc/hosts").unwrap(),
        "hosts is not a copy of the host's"
    );
    assert_eq!(
        d.etc_file("h1", "resolv.conf"),
        "nameserver 192.0.2.53\nsearch example.test\n"
    );
}

#[test]
fn net_none_has_only_loopback() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("n1");
    let links_before = w.host.links();
    let ep = d.attach("n1", &c, &["--net", "none"]);
    assert_eq!(s(&ep["net"]), "none");
    assert!(ep["ip"].is_null());
    assert!(ep["host_ifname"].is_null());
    assert_eq!(c.links(), vec!["lo".to_string()]);
    assert!(c.is_up("lo"), "--net none still brings lo up");
    assert!(c.ping_once("127.0.0.1"));
    assert_eq!(
        w.host.links(),
        links_before,
        "--net none created host interfaces"
    );
    // The hostname file is still written.
    assert!(d.etc_dir("n1").join("hostname").exists());
}

#[test]
fn net_container_shares_the_namespace() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c1 = w.container("c1");
    let ep1 = d.attach("c1", &c1, &[]);
    let host_links = w.host.links();
    let ep2 = d.attach("c2", &c1, &["--net", "container:c1"]);
    assert_eq!(s(&ep2["net"]), "container:c1");
    assert_eq!(ep2["ip"], ep1["ip"], "container:c1 must share c1's address");
    assert!(
        ep2["host_ifname"].is_null(),
        "a second veth was made: {}",
        ep2["host_ifname"]
    );
    assert_eq!(
        w.host.links(),
        host_links,
        "new host interfaces for container:c1"
    );
    let mut links = c1.links();
    links.sort();
    assert_eq!(links, vec!["eth0".to_string(), "lo".to_string()]);
    // Both "containers" share ports: a server in the namespace answers on loopback.
    let _srv = tcp_server(&c1, 7000);
    assert_eq!(tcp_request(&c1, "127.0.0.1:7000").unwrap(), "ping");
    assert!(d.ls_has("c1") && d.ls_has("c2"));
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

#[test]
fn detach_removes_veth_lease_and_files() {
    let w = World::new();
    // Background deletions 200 ms late (as on a loaded machine): what detach must have done
    // before it returns cannot be the deletion's work.
    let d = w.daemon_with_env(&["--bip", BIP], &[("NETD_REAPER_DELAY_MS", "200")]);
    let c1 = w.container("c1");
    let ep = d.attach("c1", &c1, &["--ip", "172.30.0.9"]);
    let host_if = s(&ep["host_ifname"]).to_string();
    let etc = d.etc_dir("c1");
    assert!(etc.join("hosts").exists());
    d.netd_ok(&["detach", "c1"]);
    // When detach returns, nothing of the endpoint is left that anyone sees: no eth0, no
    // address or route in the container, the host end (deleted in the background) off the
    // bridge.
    assert!(c1.link("eth0").is_none(), "eth0 still in the container");
    let addrs = c1.ip(&["-4", "-o", "addr", "show"]);
    assert!(
        addrs.lines().all(|l| l.contains(" lo ")),
        "addresses left in the container: {addrs}"
    );
    assert!(c1.routes4().is_empty(), "routes left: {:?}", c1.routes4());
    if let Some(l) = w.host.link(&host_if) {
        assert!(l["master"].is_null(), "{host_if} still on the bridge: {l}");
    }
    // The pair itself goes in the background.
    netd_tests::poll_until(
        "the veth pair to go after detach",
        Duration::from_secs(10),
        || match (w.host.link(&host_if).is_none(), c1.links()) {
            (true, l) if l == ["lo"] => Ok(()),
            gone => Err(format!("{host_if} gone, container links: {gone:?}")),
        },
    );
    assert!(!etc.exists(), "{} still exists after detach", etc.display());
    assert!(!d.ls_has("c1"));
    let err = d.netd_err(&["inspect", "c1"]);
    assert!(err.contains("c1"), "inspect error does not name c1: {err}");
    // The lease is free again: same IP for another container, and the name is reusable.
    let _c2 = leased_again(&w, &d, "c2", "172.30.0.9");
    d.attach("c1", &c1, &[]);
    assert!(c1.ping("172.30.0.9", T));
}

/// A new container `name` attached with `--ip ip` gets it: the address was released.
fn leased_again(w: &World, d: &Daemon, name: &str, ip: &str) -> Container {
    let c = w.container(name);
    assert_eq!(
        s(&d.attach(name, &c, &["--ip", ip])["ip"]),
        ip,
        "{ip} was not released"
    );
    c
}

#[test]
fn netns_deleted_behind_netds_back_is_cleaned_on_detach() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c1 = w.container("c1");
    let ep = d.attach("c1", &c1, &["--ip", "172.30.0.7"]);
    let host_if = s(&ep["host_ifname"]).to_string();
    c1.delete();
    d.netd_ok(&["detach", "c1"]);
    assert!(!d.ls_has("c1"));
    assert!(w.host.link(&host_if).is_none());
    let _c2 = leased_again(&w, &d, "c2", "172.30.0.7");
}

#[test]
fn netns_deleted_while_daemon_down_is_cleaned_on_restart() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    d.attach("c1", &c1, &["--ip", "172.30.0.7"]);
    d.attach("c2", &c2, &[]);
    d.stop();
    c1.delete();
    d.restart();
    assert!(
        !d.ls_has("c1"),
        "endpoint of a vanished netns survived restart:\n{}",
        d.ls()
    );
    assert!(d.ls_has("c2"));
    let _c3 = leased_again(&w, &d, "c3", "172.30.0.7");
}

#[test]
fn published_ports_are_listed() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("web");
    let ep = d.attach("web", &c, &["-p", "8080:80", "-p", "127.0.0.1:5353:53/udp"]);
    let mut ports: Vec<String> = ep["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{} {}:{}",
                p["container_port"],
                s(&p["proto"]),
                s(&p["host_ip"]),
                p["host_port"]
            )
        })
        .collect();
    ports.sort();
    assert_eq!(ports, vec!["53/udp 127.0.0.1:5353", "80/tcp 0.0.0.0:8080"]);
    let out = d.netd_ok(&["port", "web", "80"]);
    assert_eq!(out.trim(), "0.0.0.0:8080");
    let out = d.netd_ok(&["port", "web"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8080"]
    );
}

#[test]
fn http_api_lists_endpoints_as_json() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c1");
    d.attach("c1", &c, &[]);
    let sock = d.sock();
    let out = netd_tests::cmd_ok(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://netd/v1/endpoints",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let list = v
        .as_array()
        .or_else(|| v["endpoints"].as_array())
        .unwrap_or_else(|| panic!("not a list of endpoints: {v}"));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "c1");
    assert_eq!(list[0]["ip"], "172.30.0.2");
    let one = netd_tests::cmd_ok(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://netd/v1/endpoints/c1",
    ]);
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["mac"], "02:42:ac:1e:00:02");
    let status = netd_tests::cmd_ok(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://netd/v1/endpoints/nosuch",
    ]);
    assert_eq!(status, "404");
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
