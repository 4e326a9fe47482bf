//! Networks as first-class objects (`netd network create|rm|ls|inspect`, `attach --network`):
//! each has its own bridge and subnet, containers on one reach each other, containers on two
//! cannot (as on Docker's user-defined networks), `enable_icc=false` and `--internal` hold per
//! network, overlapping subnets and removing a network in use are refused, and networks
//! survive a restart.

use std::time::Duration;

use netd_tests::dataplane::{drops, tcp_blocked};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP, UPLINK};
use netd_tests::{BIP, Daemon, World, tcp_request_until, tcp_server};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

#[test]
fn networks_are_created_used_isolated_and_removed() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let out = d.netd_ok(&[
        "network",
        "create",
        "blue",
        "--subnet",
        "10.77.0.0/26",
        "-o",
        "com.docker.network.bridge.name=netdt-blue",
    ]);
    assert_eq!(out.trim(), "blue");
    let n: serde_json::Value =
        serde_json::from_str(&d.netd_ok(&["network", "inspect", "blue"])).unwrap();
    assert_eq!(s(&n["gateway"]), "10.77.0.1");
    assert_eq!(s(&n["bridge"]), "netdt-blue");
    assert_eq!(
        w.host.addrs4("netdt-blue"),
        vec!["10.77.0.1/26".to_string()]
    );
    let ls = d.netd_ok(&["network", "ls"]);
    assert!(ls.contains("netd0") && ls.contains("blue"), "{ls}");

    let a1 = w.container("a1");
    let a2 = w.container("a2");
    let d0 = w.container("d0");
    let v1 = d.attach("a1", &a1, &["--network", "blue"]);
    assert_eq!(s(&v1["ip"]), "10.77.0.2");
    assert_eq!(s(&v1["network"]), "blue");
    assert_eq!(s(&v1["net"]), "blue");
    assert_eq!(s(&v1["gateway"]), "10.77.0.1");
    let v2 = d.attach(
        "a2",
        &a2,
        &["--net", "blue", "--ip", "10.77.0.20", "-p", "8080:80"],
    );
    assert_eq!(s(&v2["ip"]), "10.77.0.20");
    assert_eq!(
        w.host.master(&s(&v2["host_ifname"])).as_deref(),
        Some("netdt-blue")
    );
    // A joiner (--net container:a1) shares a1's interface and network.
    let vj = d.attach("j1", &a1, &["--net", "container:a1"]);
    assert_eq!(s(&vj["net"]), "container:a1");
    assert_eq!(s(&vj["network"]), "blue");
    assert_eq!(vj["prefix_len"], 26);
    d.netd_ok(&["detach", "j1"]);
    let v0 = d.attach("d0", &d0, &[]);
    assert_eq!(s(&v0["network"]), "netd0");
    let d0_ip = s(&v0["ip"]);

    // Same network: real TCP, from the container's own address.
    let srv = tcp_server(&a2, 80);
    assert_eq!(tcp_request_until(&a1, "10.77.0.20:80", T).unwrap(), "ping");
    assert_eq!(srv.last_peer_ip(), "10.77.0.2");
    // A published port reaches a created network's container from the outside.
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap(),
        "ping"
    );
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP);
    // Two networks: neither way, although both sides are up and listening.
    let srv0 = tcp_server(&d0, 80);
    assert!(a1.ping("10.77.0.1", T), "a1 reaches its gateway");
    assert!(tcp_blocked(&a1, &format!("{d0_ip}:80")), "blue -> netd0");
    assert!(tcp_blocked(&d0, "10.77.0.20:80"), "netd0 -> blue");
    assert!(srv0.peer_ips().is_empty(), "{:?}", srv0.peer_ips());

    // Refusals: overlaps (another network, the default one), removal in use, the default.
    for (subnet, want) in [
        ("10.77.0.0/16", "overlaps network blue"),
        ("172.30.0.0/16", "overlaps the default network"),
        ("198.51.100.0/25", "an address or route of the host"),
    ] {
        let err = d.netd_err(&["network", "create", "red", "--subnet", subnet]);
        assert!(err.contains(want), "{subnet}: {err}");
    }
    let err = d.netd_err(&["network", "rm", "blue"]);
    assert!(err.contains("a1, a2"), "{err}");
    let err = d.netd_err(&["network", "rm", "netd0"]);
    assert!(err.contains("default network"), "{err}");
    let err = d.netd_err(&[
        "attach",
        "x",
        "--netns",
        a1.path_str(),
        "--network",
        "nosuch",
    ]);
    assert!(err.contains("no such network: nosuch"), "{err}");

    // Networks persist: after a restart blue is there and its containers still talk.
    d.restart();
    let ls = d.netd_ok(&["network", "ls"]);
    assert!(ls.contains("blue"), "{ls}");
    assert_eq!(tcp_request_until(&a1, "10.77.0.20:80", T).unwrap(), "ping");
    assert!(
        tcp_blocked(&a1, &format!("{d0_ip}:80")),
        "blue -> netd0 after restart"
    );

    d.netd_ok(&["detach", "a1"]);
    d.netd_ok(&["detach", "a2"]);
    d.netd_ok(&["network", "rm", "blue"]);
    assert!(w.host.link("netdt-blue").is_none(), "bridge left behind");
    assert!(!d.netd_ok(&["network", "ls"]).contains("blue"));
    let rules = w.host.run_ok(&["ip", "rule", "show"]);
    assert!(!rules.contains("10.77.0.0/26"), "{rules}");
}

/// Creates the network "quiet": 10.78.0.0/24, `enable_icc=false`.
fn create_quiet(d: &Daemon) {
    d.netd_ok(&[
        "network",
        "create",
        "quiet",
        "--subnet",
        "10.78.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
    ]);
}

#[test]
fn icc_and_internal_hold_per_network() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    create_quiet(&d);
    d.netd_ok(&[
        "network",
        "create",
        "inner",
        "--subnet",
        "10.79.0.0/24",
        "--internal",
    ]);
    let q1 = w.container("q1");
    let q2 = w.container("q2");
    d.attach("q1", &q1, &["--network", "quiet", "--ip", "10.78.0.10"]);
    d.attach("q2", &q2, &["--network", "quiet", "--ip", "10.78.0.11"]);
    let _srv = tcp_server(&q2, 80);
    // enable_icc=false: the containers reach their gateway but not each other.
    assert!(q1.ping("10.78.0.1", T), "q1 reaches its gateway");
    assert!(
        tcp_blocked(&q1, "10.78.0.11:80"),
        "icc off on quiet: {}",
        w.host.run_ok(&["bridge", "-d", "link", "show"])
    );
    // The default network keeps its own icc (true): its containers still talk.
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    d.attach("c1", &c1, &["--ip", "172.30.0.10"]);
    d.attach("c2", &c2, &["--ip", "172.30.0.11"]);
    let _srv2 = tcp_server(&c2, 80);
    assert_eq!(tcp_request_until(&c1, "172.30.0.11:80", T).unwrap(), "ping");

    // --internal: no default route, nothing outside reachable, no published ports.
    let i1 = w.container("i1");
    let i2 = w.container("i2");
    d.attach("i1", &i1, &["--network", "inner"]);
    let v2 = d.attach("i2", &i2, &["--network", "inner"]);
    assert!(v2["gateway"].is_null(), "{v2}");
    assert!(
        !i1.routes4().iter().any(|r| r.starts_with("default")),
        "{:?}",
        i1.routes4()
    );
    let _srv3 = tcp_server(&i2, 80);
    assert_eq!(
        tcp_request_until(&i1, &format!("{}:80", s(&v2["ip"])), T).unwrap(),
        "ping"
    );
    assert!(
        !i1.ping_once(OUTSIDE_IP),
        "internal container reached the outside"
    );
    let err = d.netd_err(&[
        "attach",
        "i3",
        "--netns",
        w.container("i3").path_str(),
        "--network",
        "inner",
        "-p",
        "8080:80",
    ]);
    assert!(err.contains("internal"), "{err}");
}

/// The per-network dataplane: a created network's containers are masqueraded to the outside
/// (the outside sees the host's address), and containers of two networks reach each other
/// only through a published port on a host address (as in Docker); the direct way is dropped
/// by the programs and counted.
#[test]
fn created_networks_go_out_masqueraded_and_cross_only_through_published_ports() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    d.netd_ok(&["network", "create", "green", "--subnet", "10.81.0.0/24"]);
    let g1 = w.container("g1");
    let g2 = w.container("g2");
    let d0 = w.container("d0");
    d.attach("g1", &g1, &["--network", "green", "--ip", "10.81.0.10"]);
    d.attach(
        "g2",
        &g2,
        &["--network", "green", "--ip", "10.81.0.11", "-p", "8082:80"],
    );
    d.attach("d0", &d0, &["--ip", "172.30.0.10", "-p", "8081:80"]);
    let srv_g2 = tcp_server(&g2, 80);
    let srv_d0 = tcp_server(&d0, 80);

    // Out: masqueraded to the uplink's address.
    let out = tcp_server(&w.outside, 9000);
    netd_tests::tcp_arrives_from(&g1, &format!("{OUTSIDE_IP}:9000"), &out, HOST_UPLINK_IP);

    // Across networks through a published port on the host's address, both ways; the
    // container sees the client's own address.
    assert_eq!(
        tcp_request_until(&d0, &format!("{HOST_UPLINK_IP}:8082"), T).unwrap(),
        "ping"
    );
    assert_eq!(srv_g2.last_peer_ip(), "172.30.0.10");
    assert_eq!(
        tcp_request_until(&g1, &format!("{HOST_UPLINK_IP}:8081"), T).unwrap(),
        "ping"
    );
    assert_eq!(srv_d0.last_peer_ip(), "10.81.0.10");
    // Through the other network's gateway address too (a host address).
    assert_eq!(
        tcp_request_until(&g1, "172.30.0.1:8081", T).unwrap(),
        "ping"
    );

    // Directly: dropped by the programs, counted.
    let before = drops(&d, "other-network");
    assert!(tcp_blocked(&g1, "172.30.0.10:80"), "green -> netd0");
    assert!(tcp_blocked(&d0, "10.81.0.11:80"), "netd0 -> green");
    assert!(
        drops(&d, "other-network") >= before + 2,
        "{}",
        d.netd_ok(&["stats"])
    );
}

/// Without the eBPF programs the kernel would route between the two bridges; netd's
/// policy-routing rules (`from A to B prohibit`) keep the networks apart, and go with the
/// network.
#[test]
fn routing_rules_keep_networks_apart_without_the_ebpf_dataplane() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--dataplane", "none"]);
    d.netd_ok(&["network", "create", "blue", "--subnet", "10.77.0.0/24"]);
    let a1 = w.container("a1");
    let d0 = w.container("d0");
    d.attach("a1", &a1, &["--network", "blue", "--ip", "10.77.0.10"]);
    d.attach("d0", &d0, &["--ip", "172.30.0.10"]);
    let _s1 = tcp_server(&a1, 80);
    let _s0 = tcp_server(&d0, 80);
    // Both reach their own gateway and the host's other bridge address is routed, but not
    // the other network's containers.
    assert!(a1.ping("10.77.0.1", T) && d0.ping("172.30.0.1", T));
    assert!(tcp_blocked(&a1, "172.30.0.10:80"), "blue -> netd0");
    assert!(tcp_blocked(&d0, "10.77.0.10:80"), "netd0 -> blue");
    let rules = w.host.run_ok(&["ip", "rule", "show"]);
    for (from, to) in [
        ("10.77.0.0/24", "172.30.0.0/24"),
        ("172.30.0.0/24", "10.77.0.0/24"),
    ] {
        assert!(
            rules
                .lines()
                .any(|l| l.contains(&format!("from {from} to {to} ")) && l.ends_with("prohibit")),
            "{rules}"
        );
    }
    d.netd_ok(&["detach", "a1"]);
    d.netd_ok(&["network", "rm", "blue"]);
    let rules = w.host.run_ok(&["ip", "rule", "show"]);
    assert!(!rules.contains("prohibit"), "{rules}");
}

/// `--link` on a created network with `enable_icc=false` (issue 9: links were refused off the
/// default network): the linking container reaches the target's exposed port, from its own
/// address, and nothing else; the link is one way, a container without it stays out, and a
/// link to a container on another network is refused.
#[test]
fn links_work_on_a_created_network_with_icc_off() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    create_quiet(&d);
    let web = w.container("web");
    let cli = w.container("cli");
    let other = w.container("other");
    d.attach(
        "web",
        &web,
        &["--network", "quiet", "--ip", "10.78.0.10", "--expose", "80"],
    );
    d.attach(
        "cli",
        &cli,
        &[
            "--network",
            "quiet",
            "--ip",
            "10.78.0.11",
            "--link",
            "web:db",
        ],
    );
    d.attach(
        "other",
        &other,
        &["--network", "quiet", "--ip", "10.78.0.12"],
    );
    let web80 = tcp_server(&web, 80);
    let _web81 = tcp_server(&web, 81);
    let _cli80 = tcp_server(&cli, 80);
    let icc0 = drops(&d, "icc-denied");

    // The link: cli reaches web's exposed 80/tcp by address and by its alias's address.
    assert_eq!(tcp_request_until(&cli, "10.78.0.10:80", T).unwrap(), "ping");
    assert_eq!(
        web80.last_peer_ip(),
        "10.78.0.11",
        "web sees cli's own address"
    );
    let hosts = d.etc_file("cli", "hosts");
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with("10.78.0.10") && l.contains("db")),
        "cli's hosts file names the link: {hosts}"
    );
    // Only the exposed port, only that way, only for the linked container.
    assert!(
        tcp_blocked(&cli, "10.78.0.10:81"),
        "cli -> web:81 (not exposed)"
    );
    assert!(
        tcp_blocked(&web, "10.78.0.11:80"),
        "web -> cli:80 (the link is one way)"
    );
    assert!(
        tcp_blocked(&other, "10.78.0.10:80"),
        "other -> web:80 (no link)"
    );
    assert!(
        drops(&d, "icc-denied") > icc0,
        "the refused connections are counted"
    );

    // A link to a container on another network is refused, and leaves nothing behind.
    let c0 = w.container("c0");
    let err = d.netd_err(&["attach", "c0", "--netns", c0.path_str(), "--link", "web"]);
    assert!(
        err.contains("web is on network quiet, not on network netd0"),
        "{err}"
    );
    let ls = d.netd_ok(&["ls"]);
    assert!(!ls.contains("c0"), "{ls}");
}

/// Issue 9: `network create --icc/--ip-masq/--mtu/--bridge` are the `-o` keys as flags: icc
/// off holds between two containers (real TCP refused, the gateway still answers), masquerade
/// off lets the outside see the container's own address, the MTU and the bridge name are the
/// network's; a flag and an `-o` of the same key that disagree are refused and make nothing.
#[test]
fn network_create_flags_are_the_driver_options() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let err = d.netd_err(&[
        "network",
        "create",
        "quiet",
        "--subnet",
        "10.78.0.0/24",
        "--icc",
        "false",
        "-o",
        "com.docker.network.bridge.enable_icc=true",
    ]);
    assert!(
        err.contains(
            "--icc false conflicts with -o com.docker.network.bridge.enable_icc=true: give one of them"
        ),
        "{err}"
    );
    assert!(!d.netd_ok(&["network", "ls"]).contains("quiet"));
    let err = d.netd_err(&["network", "create", "quiet", "--icc", "maybe"]);
    assert!(err.contains("maybe"), "{err}");
    // The same setting as a flag and as -o is no conflict.
    d.netd_ok(&[
        "network",
        "create",
        "quiet",
        "--subnet",
        "10.78.0.0/24",
        "--icc",
        "false",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "--ip-masq",
        "false",
        "--mtu",
        "1400",
        "--bridge",
        "netdt-quiet",
    ]);
    let n: serde_json::Value =
        serde_json::from_str(&d.netd_ok(&["network", "inspect", "quiet"])).unwrap();
    assert_eq!(
        (&n["icc"], &n["ip_masq"], &n["mtu"], &n["bridge"]),
        (
            &serde_json::json!(false),
            &serde_json::json!(false),
            &serde_json::json!(1400),
            &serde_json::json!("netdt-quiet")
        ),
        "{n}"
    );
    assert_eq!(w.host.mtu("netdt-quiet"), 1400);

    let q1 = w.container("q1");
    let q2 = w.container("q2");
    d.attach("q1", &q1, &["--network", "quiet", "--ip", "10.78.0.10"]);
    d.attach("q2", &q2, &["--network", "quiet", "--ip", "10.78.0.11"]);
    assert_eq!(q1.mtu("eth0"), 1400);
    let _srv = tcp_server(&q2, 80);
    assert!(q1.ping("10.78.0.1", T), "q1 reaches its gateway");
    assert!(tcp_blocked(&q1, "10.78.0.11:80"), "--icc false on quiet");
    // --ip-masq false: routed out with the container's own address.
    w.route_outside_to("10.78.0.0/24");
    let out = tcp_server(&w.outside, 9000);
    // Not masqueraded.
    netd_tests::tcp_arrives_from(&q1, &format!("{OUTSIDE_IP}:9000"), &out, "10.78.0.10");

    // --icc true on another network: its containers talk.
    d.netd_ok(&[
        "network",
        "create",
        "loud",
        "--subnet",
        "10.78.1.0/24",
        "--icc",
        "true",
    ]);
    let l1 = w.container("l1");
    let l2 = w.container("l2");
    d.attach("l1", &l1, &["--network", "loud", "--ip", "10.78.1.10"]);
    d.attach("l2", &l2, &["--network", "loud", "--ip", "10.78.1.11"]);
    let _srv2 = tcp_server(&l2, 80);
    assert_eq!(tcp_request_until(&l1, "10.78.1.11:80", T).unwrap(), "ping");
}

/// Docker's `-o com.docker.network.bridge.host_binding_ipv4=IP` (issue 10): a network's
/// published ports that name no host address are published on IP only; one that names an
/// address keeps it; other networks keep the daemon's default. A bad value is refused.
#[test]
fn host_binding_ipv4_is_the_networks_default_host_address() {
    const IP2: &str = "198.51.100.3";
    let w = World::new();
    w.host
        .ip(&["addr", "add", &format!("{IP2}/24"), "dev", UPLINK]);
    let d = w.daemon(&["--bip", BIP]);
    let err = d.netd_err(&[
        "network",
        "create",
        "bound",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=not-an-ip",
    ]);
    assert!(
        err.contains("host_binding_ipv4=not-an-ip: expected an IPv4 address"),
        "{err}"
    );
    assert!(!d.netd_ok(&["network", "ls"]).contains("bound"));
    let host_binding = format!("com.docker.network.bridge.host_binding_ipv4={IP2}");
    d.netd_ok(&[
        "network",
        "create",
        "bound",
        "--subnet",
        "10.79.0.0/24",
        "-o",
        &host_binding,
    ]);
    let n: serde_json::Value =
        serde_json::from_str(&d.netd_ok(&["network", "inspect", "bound"])).unwrap();
    assert_eq!(n["host_binding_ipv4"], IP2, "{n}");

    let web = w.container("web");
    let v = d.attach(
        "web",
        &web,
        &[
            "--network",
            "bound",
            "-p",
            "8080:80",
            "-p",
            "0.0.0.0:8081:80",
        ],
    );
    assert_eq!(v["ports"][0]["host_ip"], IP2, "{v}");
    assert!(
        v["ports"][0]["host_ip6"].is_null(),
        "one address, no [::] side: {v}"
    );
    assert_eq!(v["ports"][1]["host_ip"], "0.0.0.0", "{v}");
    let srv = tcp_server(&web, 80);
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{IP2}:8080"), T).unwrap(),
        "ping"
    );
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP);
    assert!(tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:8080")));
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8081"), T).unwrap(),
        "ping"
    );
    // `netd publish` later takes the network's address too.
    let p = d.netd_ok(&["publish", "web", "8082:80"]);
    assert!(p.contains(&format!("{IP2}:8082")), "{p}");
    // The default network keeps 0.0.0.0.
    let other = w.container("other");
    let v = d.attach("other", &other, &["-p", "8090:80"]);
    assert_eq!(v["ports"][0]["host_ip"], "0.0.0.0", "{v}");
    // Kept across a restart (the network is in the state).
    let mut d = d;
    d.restart();
    let n: serde_json::Value =
        serde_json::from_str(&d.netd_ok(&["network", "inspect", "bound"])).unwrap();
    assert_eq!(n["host_binding_ipv4"], IP2, "{n}");
}
