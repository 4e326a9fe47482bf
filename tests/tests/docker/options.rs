//! `docker network create` options reach netd's network through the real dockerd, and are seen
//! in packets: `--ip-range`, a non-default `--gateway`, the MTU, `enable_ip_masquerade=false`,
//! `--internal` publishing nothing; `netd stats` and `netd ct` show Docker's containers, whose
//! published ports take the fast path.

use netd_tests::dataplane::{
    BLOCKED_WAIT, binding_stats, ct, ct_has_kind, forward_policy_drops, tcp_try,
};
use netd_tests::traffic::tcp_server;

use super::*;

fn s(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[test]
fn dockerd_network_options_shape_addresses_routes_mtu_masquerade_and_internal() {
    let x = DockerWorld::new();
    x.network(
        "dko",
        "10.79.7.0/24",
        &[
            "--ip-range",
            "10.79.7.128/25",
            "--gateway",
            "10.79.7.254",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "-o",
            "com.docker.network.bridge.enable_ip_masquerade=false",
        ],
    );
    let n: serde_json::Value =
        serde_json::from_str(&x.d.netd_ok(&["network", "inspect", "dko"])).unwrap();
    assert_eq!(n["gateway"], "10.79.7.254", "{n}");
    assert_eq!(n["mtu"], 1400, "{n}");
    let bridge = s(&n["bridge"]);
    assert!(
        x.w.host
            .addrs4(&bridge)
            .contains(&"10.79.7.254/24".to_string()),
        "bridge {bridge}: {:?}",
        x.w.host.addrs4(&bridge)
    );

    x.run_httpd(
        "oweb",
        &[
            "--network",
            "name=dko,driver-opt=netd.name=oweb",
            "-p",
            "8100:80",
        ],
    );
    x.run_sleeper("ocli", &["--network", "dko"]);
    // --ip-range: both leases come from the range, not from the start of the subnet.
    let web_ip = x.docker_ip("oweb");
    let cli_ip = x.docker_ip("ocli");
    for ip in [&web_ip, &cli_ip] {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!(
            ip.starts_with("10.79.7.") && last >= 128 && last != 254,
            "{ip} is outside --ip-range 10.79.7.128/25"
        );
    }
    assert_ne!(web_ip, cli_ip);
    // The gateway is the container's default route, and the MTU its interface's.
    let routes = x
        .docker
        .docker_ok(&["exec", "ocli", "/bin/busybox", "ip", "-4", "route"]);
    assert!(routes.contains("default via 10.79.7.254"), "{routes}");
    let link = x
        .docker
        .docker_ok(&["exec", "ocli", "/bin/busybox", "ip", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1400"), "{link}");

    // The published port serves the outside with its real address, and netd stats and
    // netd ct show the Docker container's binding and flow by its netd name.
    assert_eq!(x.outside_peer(8100).unwrap(), OUTSIDE_IP);
    let b = binding_stats(&x.d, "oweb", "tcp", 8100)
        .unwrap_or_else(|| panic!("no oweb 8100 in stats: {}", x.d.netd_ok(&["stats"])));
    assert!(b["packets"].as_u64().unwrap() > 0, "{b}");
    let flows = ct(&x.d, &["--ip", &web_ip, "--port", "8100"]);
    let f = flows
        .iter()
        .find(|f| ct_has_kind(f, "published") && f["direction"] == "original")
        .unwrap_or_else(|| panic!("no published flow to oweb: {flows:?}"));
    assert!(s(&f["src"]).starts_with(&format!("{OUTSIDE_IP}:")), "{f}");
    let stats_text = x.d.netd_ok(&["stats"]);
    assert!(stats_text.contains("oweb"), "{stats_text}");

    // enable_ip_masquerade=false: the outside sees the container's own address (it has a
    // route back to the subnet, as a router upstream of the host would).
    x.w.route_outside_to("10.79.7.0/24");
    let srv = tcp_server(&x.w.outside, 7100);
    let out = x.docker.docker_ok(&[
        "exec",
        "ocli",
        "/bin/busybox",
        "sh",
        "-c",
        &format!("echo nomasq | /bin/busybox nc -w 3 {OUTSIDE_IP} 7100"),
    ]);
    assert_eq!(out, "nomasq");
    assert_eq!(srv.last_peer_ip(), cli_ip, "enable_ip_masquerade=false");
    let flows = ct(&x.d, &["--ip", &cli_ip, "--port", "7100"]);
    assert!(
        !flows.is_empty() && !flows.iter().any(|f| ct_has_kind(f, "masquerade")),
        "{flows:?}"
    );

    // --internal: `-p` is accepted by Docker but never reaches the driver
    // (ProgramExternalConnectivity is not called): nothing is published, nothing answers on
    // the host's addresses, and the container cannot leave the network.
    x.network("dki", "10.79.8.0/24", &["--internal"]);
    x.run_httpd(
        "iweb",
        &[
            "--network",
            "name=dki,driver-opt=netd.name=iweb",
            "-p",
            "8101:80",
        ],
    );
    let v = x.d.inspect("iweb");
    assert!(
        v["ports"].as_array().is_none_or(|p| p.is_empty()),
        "an --internal container has published ports: {v}"
    );
    assert_eq!(x.d.netd_ok(&["port", "iweb"]).trim(), "");
    assert!(binding_stats(&x.d, "iweb", "tcp", 8101).is_none());
    for host_ip in [HOST_UPLINK_IP, "127.0.0.1"] {
        let ns = if host_ip == "127.0.0.1" {
            &x.w.host
        } else {
            &x.w.outside
        };
        let r = tcp_try(ns, &format!("{host_ip}:8101"), BLOCKED_WAIT);
        assert!(r.is_err(), "{host_ip}:8101 answered: {r:?}");
    }
    let iweb_ip = x.docker_ip("iweb");
    let srv2 = tcp_server(&x.w.outside, 7101);
    let out = x.docker.docker(&[
        "exec",
        "iweb",
        "/bin/busybox",
        "sh",
        "-c",
        &format!("echo out | /bin/busybox nc -w 2 {OUTSIDE_IP} 7101"),
    ]);
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "out");
    assert!(srv2.peers().is_empty(), "{:?}", srv2.peers());
    // The internal network still works inside itself.
    x.run_sleeper("icli", &["--network", "dki"]);
    assert_eq!(
        x.exec_peer("icli", &iweb_ip, 80),
        x.docker_ip("icli"),
        "same internal network"
    );

    assert_no_iptables_or_proxy(&x.w.host);
    // A Docker container's published port takes netd's fast path both ways, as netd's own
    // containers do: under an iptables FORWARD DROP policy with no rule in the host
    // namespace, the outside is still served with its real address and FORWARD counts
    // nothing.
    x.w.host.run_ok(&["iptables", "-P", "FORWARD", "DROP"]);
    let p0 = forward_policy_drops(&x.w.host, "iptables");
    for _ in 0..3 {
        assert_eq!(x.outside_peer(8100).unwrap(), OUTSIDE_IP);
    }
    assert_eq!(
        forward_policy_drops(&x.w.host, "iptables"),
        p0,
        "a Docker container's published traffic met FORWARD"
    );
    x.docker
        .docker_ok(&["rm", "-f", "oweb", "ocli", "iweb", "icli"]);
    x.docker.docker_ok(&["network", "rm", "dko", "dki"]);
    assert!(x.netd_endpoints().is_empty());
    assert!(x.w.host.links_with_prefix("veth").is_empty());
}
