//! IPv6 daemon options and networks with an IPv6 subnet.

use super::*;

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
