//! Dual-stack containers: addresses, routes, NDP proxy, gateway, published ports.

use super::*;

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
