//! podman on created networks (masquerade, icc, two networks) and IPv6.

use super::*;

/// Podman on netd networks created with netd's own CLI: masquerade from a created network,
/// `enable_icc=false` keeping two of its containers apart, and a container on two netd
/// networks (`--network a,b`, then `podman network connect` / `disconnect`), each attachment
/// a netd endpoint of its own (`NAME` for eth0, `NAME-eth1` for the next).
#[test]
fn podman_on_created_networks_masquerade_icc_and_two_networks() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    d.netd_ok(&[
        "network",
        "create",
        "red",
        "--subnet",
        "10.78.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
    ]);
    d.netd_ok(&["network", "create", "green", "--subnet", "10.76.0.0/24"]);
    let cni = CniDirs::new();
    cni.install(&d, &["blue", "red", "green"], &[]);
    let p = Podman::new(&w, &cni.bin, &cni.conf, false);
    let image = p.import_busybox();
    let parent = p.parent_arg();
    let serve = |name: &str, net: &str| {
        p.serve(image, name, &["--network", net]);
        d.inspect(name)["ip"].as_str().unwrap().to_string()
    };
    // What a one-shot container on `net` gets back from ADDR:80 (empty when nothing answered).
    let fetch = |net: &str, addr: &str| -> String {
        let o = p.run(&[
            "run",
            "--rm",
            &parent,
            "--network",
            net,
            image,
            "sh",
            "-c",
            &format!("(echo hi; sleep 1) | nc -w 3 {addr} 80"),
        ]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    // Masquerade from a created network: the outside (no route back) sees the host's address.
    let srv = tcp_server(&w.outside, 9998);
    p.ok(&[
        "run",
        "--rm",
        &parent,
        "--network",
        "red",
        image,
        "sh",
        "-c",
        &format!("echo hi | nc -w 3 {OUTSIDE_IP} 9998"),
    ]);
    assert_eq!(srv.peer_ips().len(), 1, "{:?}", srv.peers());
    assert_eq!(srv.last_peer_ip(), HOST_UPLINK_IP);

    // icc=false on red: a red container cannot reach another, which serves the host.
    let a = serve("a", "red");
    assert!(a.starts_with("10.78.0."), "{a}");
    let from_host = netd_tests::try_poll_until(T, || tcp_exchange(&w.host, &format!("{a}:80")))
        .expect("host -> a");
    assert!(from_host.starts_with("got hello"), "{from_host}");
    let got = fetch("red", &a);
    assert!(
        !got.contains("got hi"),
        "icc=false: a red container reached a: {got}"
    );
    // The same on green (icc on) works, from the client's own address.
    let g = serve("g", "green");
    let got = fetch("green", &g);
    assert!(got.contains("got hi"), "{got}");
    let peer = peer_of(&got, &g).unwrap_or_default();
    assert!(peer.starts_with("10.76.0.") && peer != g, "{got}");

    // A container on two netd networks: eth0 and eth1 (podman's order of the two varies), one
    // netd endpoint each; one default route, through the gateway of one of them.
    p.ok(&[
        "run",
        "-d",
        &parent,
        "--name",
        "multi",
        "--network",
        "green,blue",
        image,
        "sh",
        "-c",
        SERVE,
    ]);
    let found = Podman::endpoints_of(&d, "multi");
    assert_eq!(found.len(), 2, "two endpoints for multi: {found:?}");
    let (m0, m1) = (found[0].clone(), found[1].clone());
    assert_eq!(
        (m0["ifname"].as_str(), m1["ifname"].as_str()),
        (Some("eth0"), Some("eth1"))
    );
    let mut nets = [
        m0["network"].as_str().unwrap(),
        m1["network"].as_str().unwrap(),
    ];
    nets.sort();
    assert_eq!(nets, ["blue", "green"], "{m0} {m1}");
    let ip_on = |net: &str| {
        let m = if m0["network"] == net { &m0 } else { &m1 };
        m["ip"].as_str().unwrap().to_string()
    };
    let (blue_ip, green_ip) = (ip_on("blue"), ip_on("green"));
    let (blue_ip, green_ip) = (blue_ip.as_str(), green_ip.as_str());
    let routes = p.ok(&["exec", "multi", "ip", "-4", "route"]);
    assert_eq!(routes.matches("default").count(), 1, "{routes}");
    assert!(
        [&m0, &m1].iter().any(|m| routes.contains(&format!(
            "default via {} dev {}",
            m["gateway"].as_str().unwrap(),
            m["ifname"].as_str().unwrap()
        ))),
        "{routes}"
    );
    let addrs = p.ok(&["exec", "multi", "ip", "-4", "-o", "addr"]);
    assert!(
        addrs.contains(&format!("{green_ip}/24")) && addrs.contains(&format!("{blue_ip}/24")),
        "{addrs}"
    );
    // Reached on each network from that network's containers, each seen from its own address.
    for (net, ip, prefix) in [
        ("green", green_ip, "10.76.0."),
        ("blue", blue_ip, "10.77.0."),
    ] {
        let got = fetch(net, ip);
        assert!(got.contains("got hi"), "{net} -> multi {ip}: {got}");
        let peer = peer_of(&got, ip).unwrap_or_default();
        assert!(
            peer.starts_with(prefix) && peer != green_ip && peer != blue_ip,
            "{net} -> multi {ip}: {got}"
        );
    }

    // podman network connect / disconnect: a's second interface comes and goes alone.
    p.ok(&["network", "connect", "green", "a"]);
    let a1 = d.inspect("a-eth1");
    assert_eq!(a1["network"], "green", "{a1}");
    let a1_ip = a1["ip"].as_str().unwrap().to_string();
    let got = fetch("green", &a1_ip);
    assert!(got.contains("got hi"), "green -> a {a1_ip}: {got}");
    p.ok(&["network", "disconnect", "green", "a"]);
    assert!(!d.ls_has("a-eth1"), "{}", d.ls());
    assert!(d.ls_has("a"), "{}", d.ls());

    p.ok(&["rm", "-f", "-t", "0", "a", "g", "multi"]);
    assert_eq!(
        d.ls().lines().count(),
        1,
        "netd ls after podman rm: {}",
        d.ls()
    );
    no_host_veths_left(&w);
}

/// The CNI result on an `--ipv6` netd network lists the IPv6 lease too: podman's container has
/// the global address (the one netd derived from the MAC), a default route via fe80::1, and is
/// reached from the outside over routed IPv6. A container on two networks whose first
/// interface (the one holding the default route) is disconnected gets the default route
/// through the remaining one, and still reaches the outside.
#[test]
fn podman_ipv6_result_and_default_route_after_disconnect() {
    let w = World::new();
    netd_tests::ipv6::v6_uplink_routed(&w, "2001:db8:75::/64");
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    d.netd_ok(&[
        "network",
        "create",
        "v6n",
        "--ipv6",
        "--subnet",
        "10.75.0.0/24",
        "--subnet",
        "2001:db8:75::/64",
    ]);
    let cni = CniDirs::new();
    cni.install(&d, &["blue", "v6n"], &[]);
    let p = Podman::new(&w, &cni.bin, &cni.conf, false);
    let image = p.import_busybox();
    let parent = p.parent_arg();
    p.serve(image, "s6", &["--network", "v6n"]);
    let v = d.inspect("s6");
    // 10.75.0.2 → 02:42:0a:4b:00:02 → the /64's address ending in the MAC.
    assert_eq!(v["global_ipv6"], "2001:db8:75::242:a4b:2", "{v}");
    let ip6 = v["global_ipv6"].as_str().unwrap().to_string();
    // podman keeps what the CNI result listed.
    let seen = p.ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}/{{.GlobalIPv6PrefixLen}} {{.IPv6Gateway}}{{end}}",
        "s6",
    ]);
    assert_eq!(seen.trim(), format!("{ip6}/64 fe80::1"));
    let addrs = p.ok(&["exec", "s6", "ip", "-6", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip6}/64")), "{addrs}");
    let routes = p.ok(&["exec", "s6", "ip", "-6", "route"]);
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("default via fe80::1 dev eth0")),
        "{routes}"
    );
    let got = netd_tests::try_poll_until(T, || tcp_exchange(&w.outside, &format!("[{ip6}]:80")))
        .expect("outside -> s6 over IPv6");
    assert!(got.starts_with("got hello"), "{got}");
    assert!(got.contains("2001:db8:ff::2"), "routed, not NATed: {got}");

    // Two networks; disconnect the one whose interface holds the IPv4 default route.
    p.ok(&[
        "run",
        "-d",
        &parent,
        "--name",
        "m",
        "--network",
        "v6n,blue",
        image,
        "sleep",
        "1000",
    ]);
    let eps = Podman::endpoints_of(&d, "m");
    assert_eq!(eps.len(), 2, "{eps:?}");
    let default_via = || {
        let r = p.ok(&["exec", "m", "ip", "-4", "route"]);
        r.lines()
            .find_map(|l| l.strip_prefix("default via "))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let gw_before = default_via();
    let holder = eps
        .iter()
        .find(|e| e["gateway"] == gw_before.as_str())
        .unwrap_or_else(|| panic!("default via {gw_before:?} is none of {eps:?}"));
    let other = eps.iter().find(|e| e["name"] != holder["name"]).unwrap();
    p.ok(&[
        "network",
        "disconnect",
        holder["network"].as_str().unwrap(),
        "m",
    ]);
    assert!(!d.ls_has(holder["name"].as_str().unwrap()), "{}", d.ls());
    assert_eq!(default_via(), other["gateway"].as_str().unwrap());
    // And the way out works through it (masqueraded to the host's uplink address).
    let srv = tcp_server(&w.outside, 9997);
    p.ok(&[
        "exec",
        "m",
        "sh",
        "-c",
        &format!("echo hi | nc -w 3 {OUTSIDE_IP} 9997"),
    ]);
    assert_eq!(srv.last_peer_ip(), HOST_UPLINK_IP);
    p.ok(&["rm", "-f", "-t", "0", "s6", "m"]);
    no_host_veths_left(&w);
}
