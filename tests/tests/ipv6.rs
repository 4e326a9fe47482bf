//! IPv6 dual stack (the seed's "IPv6", "Using NDP proxying" and "Docker IPv6 cluster"):
//! `--ipv6`, `--fixed-cidr-v6`, `--default-gateway-v6`, `--ip6` and `network create --ipv6`.
//! Addresses derive from the MAC as the seed shows, traffic is routed (not NATed) both ways
//! and the servers assert the source they saw, NDP proxying answers for containers on an
//! uplink's /64 until they are detached, and two hosts behind a router reach each other's
//! containers by IPv6 and by a published IPv4 port.
//!
//! Every IPv6 address here is in the documentation prefix 2001:db8::/32, inside namespaces the
//! test creates.

use std::net::UdpSocket;
use std::time::Duration;

use netd_tests::dataplane::{drops, tcp_blocked};
use netd_tests::ipv6::{addr6, no_dad, v6_uplink_routed};
use netd_tests::netns::Netns;
use netd_tests::traffic::in_netns;
use netd_tests::world::{HOST_UPLINK_IP, UPLINK};
use netd_tests::{BIP, Daemon, World, poll_until, tcp_send, tcp6_server, udp_send, udp6_server};

const T: Duration = Duration::from_secs(8);

fn s(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

/// `ip -6 addr show dev` as "addr/len" strings.
fn addrs6(ns: &Netns, dev: &str) -> Vec<String> {
    let v = ns.ip_json(&["-6", "addr", "show", "dev", dev]);
    let mut out = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            out.push(format!("{}/{}", s(&a["local"]), a["prefixlen"]));
        }
    }
    out
}

fn routes6(ns: &Netns) -> Vec<String> {
    ns.ip(&["-6", "route", "show"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn tcp_until(ns: &Netns, addr: &str) -> String {
    poll_until(&format!("TCP to {addr}"), T, || tcp_send(ns, addr, "ping"))
}

fn ping6(ns: &Netns, addr: &str) -> bool {
    ns.ping(addr, T)
}

#[test]
fn dual_stack_containers_get_mac_addresses_and_are_routed() {
    let w = World::new();
    v6_uplink_routed(&w, "2001:db8:1::/64");
    // An uplink that takes its configuration from router advertisements keeps it.
    w.host.run_ok(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{UPLINK}.accept_ra=1"),
    ]);
    let d = w.daemon(&["--bip", BIP, "--ipv6", "--fixed-cidr-v6", "2001:db8:1::/64"]);

    // The bridge, the route and forwarding, as the seed's commands would leave them.
    assert!(
        addrs6(&w.host, "netd0").contains(&"fe80::1/64".to_string()),
        "{:?}",
        addrs6(&w.host, "netd0")
    );
    let r = routes6(&w.host);
    assert!(
        r.iter().any(|l| l.starts_with("2001:db8:1::/64 dev netd0")),
        "{r:?}"
    );
    for k in ["all", "default"] {
        assert_eq!(
            w.host
                .read(&format!("/proc/sys/net/ipv6/conf/{k}/forwarding"))
                .trim(),
            "1"
        );
    }
    assert_eq!(
        w.host
            .read(&format!("/proc/sys/net/ipv6/conf/{UPLINK}/accept_ra"))
            .trim(),
        "2"
    );

    // Addresses from the MAC (172.30.0.2 → 02:42:ac:1e:00:02), as in the seed.
    let c1 = w.container("c1");
    let v = d.attach("c1", &c1, &[]);
    assert_eq!(s(&v["mac"]), "02:42:ac:1e:00:02");
    assert_eq!(s(&v["link_local_ipv6"]), "fe80::42:acff:fe1e:2");
    assert_eq!(s(&v["global_ipv6"]), "2001:db8:1::242:ac1e:2");
    assert_eq!(v["global_ipv6_prefix_len"], 64);
    assert_eq!(s(&v["ipv6_gateway"]), "fe80::1");
    let a = addrs6(&c1, "eth0");
    for want in ["2001:db8:1::242:ac1e:2/64", "fe80::42:acff:fe1e:2/64"] {
        assert!(a.contains(&want.to_string()), "{want} not in {a:?}");
    }
    let r = routes6(&c1);
    assert!(
        r.iter()
            .any(|l| l.starts_with("default via fe80::1 dev eth0")),
        "{r:?}"
    );
    assert!(
        r.iter().any(|l| l.starts_with("2001:db8:1::/64 dev eth0")),
        "{r:?}"
    );
    // --ip6 chooses.
    let c2 = w.container("c2");
    let v2 = d.attach("c2", &c2, &["--ip6", "2001:db8:1::99"]);
    assert_eq!(s(&v2["global_ipv6"]), "2001:db8:1::99");
    assert!(addrs6(&c2, "eth0").contains(&"2001:db8:1::99/64".to_string()));

    // hosts lists the global address with Docker's ip6-* lines; ls and inspect show it.
    let hosts = d.etc_file("c1", "hosts");
    for want in [
        "::1\tlocalhost ip6-localhost ip6-loopback\n",
        "fe00::0\tip6-localnet\n",
        "ff00::0\tip6-mcastprefix\n",
        "ff02::1\tip6-allnodes\n",
        "ff02::2\tip6-allrouters\n",
        "172.30.0.2\tc1\n",
        "2001:db8:1::242:ac1e:2\tc1\n",
    ] {
        assert!(hosts.contains(want), "{want:?} not in hosts:\n{hosts}");
    }
    let ls = d.ls();
    let line = ls.lines().find(|l| l.starts_with("c2 ")).expect("c2 in ls");
    assert!(line.contains("2001:db8:1::99"), "{ls}");
    assert!(ls.lines().next().unwrap().contains("IPV6"), "{ls}");

    // Outside → container global address, routed: the server sees the outside's own address.
    let srv = tcp6_server(&c1, 80);
    assert_eq!(tcp_until(&w.outside, "[2001:db8:1::242:ac1e:2]:80"), "ping");
    assert_eq!(srv.last_peer_ip(), "2001:db8:ff::2");
    assert!(ping6(&w.outside, "2001:db8:1::99"));

    // Container → outside from its own global address (TCP and UDP).
    let out_tcp = tcp6_server(&w.outside, 9000);
    assert_eq!(tcp_until(&c1, "[2001:db8:ff::2]:9000"), "ping");
    assert_eq!(out_tcp.last_peer_ip(), "2001:db8:1::242:ac1e:2");
    let out_udp = udp6_server(&w.outside, 9001);
    assert_eq!(
        poll_until("UDP out", T, || udp_send(
            &c2,
            "[2001:db8:ff::2]:9001",
            "u6"
        )),
        "u6"
    );
    assert_eq!(out_udp.last_peer_ip(), "2001:db8:1::99");
    // Container ↔ container over IPv6 on the bridge, and IPv4 still works beside it.
    assert_eq!(tcp_until(&c2, "[2001:db8:1::242:ac1e:2]:80"), "ping");
    assert_eq!(srv.last_peer_ip(), "2001:db8:1::99");
    assert_eq!(tcp_until(&c2, "172.30.0.2:80"), "ping");
    assert_eq!(srv.last_peer_ip(), "172.30.0.3");

    // The lease survives a restart (state), and detach frees the address.
    let mut d = d;
    d.restart();
    assert_eq!(s(&d.inspect("c2")["global_ipv6"]), "2001:db8:1::99");
    d.netd_ok(&["detach", "c2"]);
    let c3 = w.container("c3");
    let v3 = d.attach("c3", &c3, &["--ip6", "2001:db8:1::99"]);
    assert_eq!(s(&v3["global_ipv6"]), "2001:db8:1::99");
}

#[test]
fn ndp_proxy_answers_for_containers_until_detach() {
    // The seed's example: the host is 2001:db8::c001 on 2001:db8::/64 and gives containers
    // 2001:db8::c008/125; a neighbour on the same /64 has NO route to the container subnet.
    let w = World::new();
    no_dad(&w.host);
    no_dad(&w.outside);
    addr6(&w.host, "2001:db8::c001/64", UPLINK);
    addr6(&w.outside, "2001:db8::c0ff/64", "eth0");
    let d = w.daemon(&[
        "--bip",
        BIP,
        "--ipv6",
        "--fixed-cidr-v6",
        "2001:db8::c008/125",
    ]);
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    // A /125 is smaller than /80: addresses are taken in order, the first is c009.
    assert_eq!(
        s(&d.attach("c1", &c1, &[])["global_ipv6"]),
        "2001:db8::c009"
    );
    assert_eq!(
        s(&d.attach("c2", &c2, &[])["global_ipv6"]),
        "2001:db8::c00a"
    );
    let proxies = w.host.ip(&["-6", "neigh", "show", "proxy", "dev", UPLINK]);
    assert!(
        proxies.contains("2001:db8::c009") && proxies.contains("2001:db8::c00a"),
        "{proxies}"
    );
    assert_eq!(
        w.host
            .read(&format!("/proc/sys/net/ipv6/conf/{UPLINK}/proxy_ndp"))
            .trim(),
        "1"
    );
    assert!(
        w.outside
            .ip(&["-6", "route", "show"])
            .lines()
            .all(|l| !l.contains("c008")),
        "the neighbour must have no route to the container subnet"
    );

    let srv = tcp6_server(&c1, 80);
    assert_eq!(tcp_until(&w.outside, "[2001:db8::c009]:80"), "ping");
    assert_eq!(srv.last_peer_ip(), "2001:db8::c0ff");
    assert!(ping6(&w.outside, "2001:db8::c00a"));

    d.netd_ok(&["detach", "c1"]);
    let proxies = w.host.ip(&["-6", "neigh", "show", "proxy", "dev", UPLINK]);
    assert!(!proxies.contains("2001:db8::c009"), "{proxies}");
    assert!(proxies.contains("2001:db8::c00a"), "{proxies}");
    // The neighbour forgets what it learnt; nobody answers its solicitation for c009 now,
    // while c00a (still attached) still resolves and answers.
    w.outside.ip(&["-6", "neigh", "flush", "dev", "eth0"]);
    assert!(!w.outside.ping_once("2001:db8::c009"));
    // Resolution ends either with an answer (lladdr) or when its solicitations ran out
    // (FAILED; an entry gone is unanswered too), however long the loaded machine takes.
    let n = poll_until(
        "the outside's neighbour entry for c009 to be resolved or FAILED",
        Duration::from_secs(15),
        || {
            let n = w
                .outside
                .ip(&["-6", "neigh", "show", "2001:db8::c009", "dev", "eth0"]);
            if n.contains("lladdr") || n.contains("FAILED") || n.trim().is_empty() {
                Ok(n)
            } else {
                Err(n)
            }
        },
    );
    assert!(
        !n.contains("lladdr"),
        "someone still answers for the detached container's address: {n}"
    );
    let ok = ping6(&w.outside, "2001:db8::c00a");
    assert!(
        ok,
        "c00a unreachable after c1's detach: outside neigh {} host proxies {} host neigh {}",
        w.outside.ip(&["-6", "neigh", "show"]),
        w.host.ip(&["-6", "neigh", "show", "proxy"]),
        w.host.ip(&["-6", "neigh", "show"])
    );
}

#[test]
fn gateway_v6_ip6_errors_and_ipv6_published_ports() {
    let w = World::new();
    let d = w.daemon(&[
        "--bip",
        BIP,
        "--ipv6",
        "--fixed-cidr-v6",
        "2001:db8:1::/64",
        "--default-gateway-v6",
        "2001:db8:1::fffe",
    ]);
    let a = w.container("a");
    let v = d.attach("a", &a, &["--ip6", "2001:db8:1::10"]);
    assert_eq!(s(&v["ipv6_gateway"]), "2001:db8:1::fffe");
    let r = routes6(&a);
    assert!(
        r.iter()
            .any(|l| l.starts_with("default via 2001:db8:1::fffe dev eth0")),
        "{r:?}"
    );
    let b = w.container("b");
    let links_before = w.host.links();
    let ls_before = d.ls();
    for (args, want) in [
        (
            vec!["--ip6", "2001:db8:2::10"],
            "--ip6 2001:db8:2::10 is outside the container IPv6 subnet 2001:db8:1::/64",
        ),
        (
            vec!["--ip6", "2001:db8:1::fffe"],
            "2001:db8:1::fffe is reserved",
        ),
        (
            vec!["--ip6", "2001:db8:1::10"],
            "IPv6 address 2001:db8:1::10 is already in use by \"a\"",
        ),
        (vec!["--ip6", "10.0.0.1"], "\"10.0.0.1\""),
        (
            vec!["--net", "none", "--ip6", "2001:db8:1::11"],
            "--ip6 needs --net bridge",
        ),
    ] {
        let mut argv = vec!["attach", "b", "--netns", b.path_str()];
        argv.extend(args.iter().copied());
        let err = d.netd_err(&argv);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(w.host.links(), links_before, "{args:?} left an interface");
        assert_eq!(d.ls(), ls_before, "{args:?} changed ls");
    }
    assert!(b.link("eth0").is_none());
    assert!(d.etc_dir("b").symlink_metadata().is_err());

    // IPv6 off: --ip6 is refused with a reason.
    let w2 = World::new();
    let d2 = w2.daemon(&["--bip", BIP]);
    let c = w2.container("c");
    let err = d2.netd_err(&[
        "attach",
        "c",
        "--netns",
        c.path_str(),
        "--ip6",
        "2001:db8::5",
    ]);
    assert!(err.contains("--ip6 2001:db8::5: IPv6 is off"), "{err}");
    let v = d2.attach("c", &c, &[]);
    assert!(
        v.get("global_ipv6").is_none() && v.get("link_local_ipv6").is_none(),
        "{v}"
    );
}

#[test]
fn bad_ipv6_daemon_options_are_refused_at_startup() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--fixed-cidr-v6", "2001:db8:1::/64"],
            "--fixed-cidr-v6 2001:db8:1::/64 needs --ipv6",
        ),
        (
            &["--default-gateway-v6", "2001:db8:1::1"],
            "--default-gateway-v6 2001:db8:1::1 needs --ipv6",
        ),
        (
            &["--ipv6", "--fixed-cidr-v6", "2001:db8:1::/127"],
            "--fixed-cidr-v6 2001:db8:1::/127: the prefix is longer than /126",
        ),
        (
            &["--ipv6", "--fixed-cidr-v6", "2001:db8:1::5/64"],
            "--fixed-cidr-v6 2001:db8:1::5/64 is not a network address",
        ),
        (
            &[
                "--ipv6",
                "--fixed-cidr-v6",
                "2001:db8:1::/64",
                "--default-gateway-v6",
                "2001:db8:2::1",
            ],
            "--default-gateway-v6 2001:db8:2::1 is not a host address of the subnet 2001:db8:1::/64",
        ),
        (
            &["--ipv6", "--default-gateway-v6", "2001:db8:2::1"],
            "--default-gateway-v6 2001:db8:2::1 needs --fixed-cidr-v6",
        ),
        (
            &["--ipv6", "--fixed-cidr-v6", "2001:db8:zz::/64"],
            "2001:db8:zz::/64",
        ),
    ];
    for (args, want) in cases {
        let w = World::new();
        let mut argv = vec!["--bip", BIP];
        argv.extend_from_slice(args);
        let out = w.daemon_exit(&argv);
        assert!(!out.status.success(), "daemon {args:?} started");
        assert!(
            out.stderr.contains(want),
            "daemon {args:?}: error does not say {want:?}: {}",
            out.stderr
        );
        assert!(
            w.host.link("netd0").is_none(),
            "daemon {args:?} left netd0 behind"
        );
    }
}

#[test]
fn network_create_ipv6_subnet() {
    let w = World::new();
    v6_uplink_routed(&w, "2001:db8:77::/64");
    let d = w.daemon(&["--bip", BIP]);
    let err = d.netd_err(&["network", "create", "x", "--subnet", "2001:db8:77::/64"]);
    assert!(err.contains("create the network with --ipv6"), "{err}");
    let err = d.netd_err(&[
        "network",
        "create",
        "x",
        "--ipv6",
        "--subnet",
        "2001:db8:77::1/64",
    ]);
    assert!(
        err.contains("2001:db8:77::1/64 is not a network address"),
        "{err}"
    );
    assert!(!d.netd_ok(&["network", "ls"]).contains("\nx "));
    d.netd_ok(&[
        "network",
        "create",
        "v6net",
        "--ipv6",
        "--subnet",
        "10.77.0.0/24",
        "--subnet",
        "2001:db8:77::/64",
        "-o",
        "com.docker.network.bridge.name=netdt-v6",
    ]);
    let n: serde_json::Value =
        serde_json::from_str(&d.netd_ok(&["network", "inspect", "v6net"])).unwrap();
    assert_eq!(s(&n["subnet_v6"]), "2001:db8:77::/64");
    assert_eq!(n["ipv6"], true);
    assert!(addrs6(&w.host, "netdt-v6").contains(&"fe80::1/64".to_string()));
    assert!(
        routes6(&w.host)
            .iter()
            .any(|l| l.starts_with("2001:db8:77::/64 dev netdt-v6")),
        "{:?}",
        routes6(&w.host)
    );
    let c = w.container("c");
    let v = d.attach("c", &c, &["--network", "v6net"]);
    // 10.77.0.2 → 02:42:0a:4d:00:02.
    assert_eq!(s(&v["global_ipv6"]), "2001:db8:77::242:a4d:2");
    let srv = tcp6_server(&c, 80);
    assert_eq!(tcp_until(&w.outside, "[2001:db8:77::242:a4d:2]:80"), "ping");
    assert_eq!(srv.last_peer_ip(), "2001:db8:ff::2");
    // A containers on the default network (IPv4 only there) gets no IPv6.
    let c0 = w.container("c0");
    assert!(d.attach("c0", &c0, &[]).get("global_ipv6").is_none());
}

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

/// The engine hands each container's IPv6 lease to the datapath's IPv6 policy: under
/// `--icc false` containers reach the outside from their own global address but not each
/// other, and a container sending from an address that is not its own is dropped and counted.
#[test]
fn icc_false_and_anti_spoofing_police_the_engines_ipv6_leases() {
    let w = World::new();
    v6_uplink_routed(&w, "2001:db8:1::/64");
    let d = w.daemon(&[
        "--bip",
        BIP,
        "--icc",
        "false",
        "--ipv6",
        "--fixed-cidr-v6",
        "2001:db8:1::/64",
    ]);
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    d.attach("c1", &c1, &["--ip6", "2001:db8:1::10"]);
    d.attach("c2", &c2, &["--ip6", "2001:db8:1::20"]);

    // Routed traffic to and from the outside passes the policy with the lease's address.
    let out = tcp6_server(&w.outside, 9000);
    assert_eq!(tcp_until(&c1, "[2001:db8:ff::2]:9000"), "ping");
    assert_eq!(out.last_peer_ip(), "2001:db8:1::10");
    let srv = tcp6_server(&c1, 80);
    assert_eq!(tcp_until(&w.outside, "[2001:db8:1::10]:80"), "ping");

    // Container to container over global IPv6 is ICC: dropped and counted.
    let icc0 = drops(&d, "icc-denied");
    assert!(
        tcp_blocked(&c2, "[2001:db8:1::10]:80"),
        "c2 reached c1 over IPv6 under --icc false"
    );
    assert!(drops(&d, "icc-denied") > icc0);

    // c1 sends from an address it was not given: never arrives, counted as spoofed.
    let spoof0 = drops(&d, "spoofed-source-ip");
    addr6(&c1, "2001:db8:1::dead/64", "eth0");
    let udp = udp6_server(&w.outside, 9001);
    let sent = in_netns(&c1, || {
        let sock = UdpSocket::bind(("2001:db8:1::dead", 0))?;
        for _ in 0..5 {
            sock.send_to(b"spoof", "[2001:db8:ff::2]:9001")?;
        }
        Ok(())
    });
    sent.expect("send from the extra address");
    // All five dropped and counted: none is still on its way (no grace period to guess).
    poll_until("all 5 spoofed datagrams counted as dropped", T, || {
        let n = drops(&d, "spoofed-source-ip");
        if n >= spoof0 + 5 { Ok(n) } else { Err(n) }
    });
    assert_eq!(udp.last_peer_ip(), "", "a spoofed datagram arrived");
    // After detach the lease is gone from the maps: its address is another container's to use.
    d.netd_ok(&["detach", "c1"]);
    drop(srv);
    let c3 = w.container("c3");
    d.attach("c3", &c3, &["--ip6", "2001:db8:1::10"]);
    assert_eq!(tcp_until(&c3, "[2001:db8:ff::2]:9000"), "ping");
    assert_eq!(out.last_peer_ip(), "2001:db8:1::10");
}
