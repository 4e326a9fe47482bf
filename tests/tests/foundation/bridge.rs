//! The bridge: its subnet, fixed-cidr, MTU, adopting an existing bridge, restarts.

use super::*;

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
