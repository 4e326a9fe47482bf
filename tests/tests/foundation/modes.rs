//! Network modes host, none and container:.

use super::*;

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
