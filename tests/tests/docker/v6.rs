//! A dockerd IPv6 network: leases, routes, icc policing.

use super::*;

/// `docker network create --ipv6 --subnet V4 --subnet V6` on netd: each container has the
/// IPv6 address Docker's IPAM request got from netd (the engine's lease, the same in `docker
/// inspect`, netd and the container), a default route via the bridge's fe80::1, is reached
/// from the outside and reaches it over routed IPv6 from its own address, and
/// `enable_icc=false` blocks IPv6 between the network's containers.
#[test]
fn dockerd_ipv6_network_gives_leases_routes_and_polices_icc() {
    let x = DockerWorld::new();
    // The host's uplink on 2001:db8:ff::/64; the outside routes the containers' prefix to it.
    v6_uplink_routed(&x.w, "2001:db8:5::/64");

    // netd's IPAM picks no IPv6 prefix: --ipv6 without one is refused, saying what to add.
    let out = x.docker.docker(&network_args(
        "nov6",
        &["--ipv6", "--subnet", "10.79.6.0/24"],
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--subnet PREFIX"), "{err}");

    x.network(
        "v6net",
        "10.79.5.0/24",
        &[
            "--ipv6",
            "--subnet",
            "2001:db8:5::/64",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
        ],
    );
    let n: serde_json::Value =
        serde_json::from_str(&x.d.netd_ok(&["network", "inspect", "v6net"])).unwrap();
    assert_eq!(n["ipv6"], true, "{n}");
    assert_eq!(n["subnet_v6"], "2001:db8:5::/64", "{n}");

    x.run_httpd("c1", &["--network", "name=v6net,driver-opt=netd.name=c1"]);
    x.run_httpd("c2", &["--network", "name=v6net,driver-opt=netd.name=c2"]);
    let v6_of = |name: &str| {
        x.docker.docker_ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}",
            name,
        ])
    };
    let (a1, a2) = (v6_of("c1"), v6_of("c2"));
    assert_eq!(a1, "2001:db8:5::1");
    assert_eq!(a2, "2001:db8:5::2");
    // The engine holds the same lease (policy6 polices it), and the container has it.
    let v = x.d.inspect("c1");
    assert_eq!(v["global_ipv6"], a1, "{v}");
    assert_eq!(v["ipv6_gateway"], "fe80::1", "{v}");
    let addrs = x.docker.docker_ok(&[
        "exec",
        "c1",
        "/bin/busybox",
        "ip",
        "-6",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(addrs.contains("2001:db8:5::1/64"), "{addrs}");
    let routes = x
        .docker
        .docker_ok(&["exec", "c1", "/bin/busybox", "ip", "-6", "route", "show"]);
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("default via fe80::1 dev eth0")),
        "{routes}"
    );

    // Outside → container over routed IPv6: the server sees the outside's own address.
    let got = http_get_until(&x.w.outside, "http://[2001:db8:5::1]:80/cgi-bin/ip").unwrap();
    assert_eq!(got, format!("[{OUTSIDE6}]"));

    // Container → outside from its own global address (busybox httpd there, the same CGI).
    let www = x.docker.dir.join("rootfs/www");
    x.w.outside.spawn(&[
        "busybox",
        "httpd",
        "-f",
        "-p",
        "9000",
        "-h",
        www.to_str().unwrap(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let text = x.exec_get("c1", OUTSIDE6, 9000);
        if text.contains("[2001:db8:") || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(seen.contains("[2001:db8:5::1]"), "{seen}");

    // enable_icc=false: c2, which reaches the outside over IPv6 itself, never reaches c1
    // (the network's bridge ports are isolated, neighbour discovery included).
    let text = x.exec_get("c2", OUTSIDE6, 9000);
    assert!(text.contains("[2001:db8:5::2]"), "c2 -> outside: {text}");
    let text = x.exec_get("c2", &a1, 80);
    assert!(
        !text.contains("[2001:db8:"),
        "c2 reached c1 over IPv6 under enable_icc=false: {text}"
    );

    // docker rm -f releases the IPv6 address: the next container gets it again.
    x.docker.docker_ok(&["rm", "-f", "c1"]);
    x.run_httpd("c3", &["--network", "name=v6net,driver-opt=netd.name=c3"]);
    assert_eq!(v6_of("c3"), "2001:db8:5::1");
    x.docker.docker_ok(&["rm", "-f", "c2", "c3"]);
    x.docker.docker_ok(&["network", "rm", "v6net"]);
    assert!(!x.d.netd_ok(&["network", "ls"]).contains("v6net"));
}
