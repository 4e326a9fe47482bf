//! The CNI commands: VERSION, ADD/DEL in both versions, default routes, netns the daemon cannot see.

use super::*;

#[test]
fn version_answers_every_supported_version() {
    for stdin in [r#"{"cniVersion":"1.0.0"}"#, ""] {
        let r = plugin("VERSION", stdin, &[]);
        ok(&r, "VERSION");
        assert_eq!(
            r.out["supportedVersions"],
            json!(["0.4.0", "1.0.0", "1.1.0"]),
            "{}",
            r.out
        );
    }
    let r = plugin("VERSION", r#"{"cniVersion":"0.4.0"}"#, &[]);
    assert_eq!(r.out["cniVersion"], "0.4.0");
}

#[test]
fn add_publishes_a_port_and_del_is_idempotent_in_both_versions() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    blue(&d);
    let sock = d.sock();

    // 1.0.0, a named interface that is not eth0, address and MAC from runtimeConfig.
    let web = w.container("web");
    let c1 = conf(
        "1.0.0",
        &sock,
        Some("blue"),
        json!({"runtimeConfig": {
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}],
            "ips": ["10.77.0.50/24"], "mac": "02:00:00:aa:bb:cc"}}),
    );
    let e1 = env(
        "c0ffee0123456789",
        web.path_str(),
        "net1",
        "IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=x",
    );
    let r = plugin("ADD", &c1, &e1);
    ok(&r, "ADD 1.0.0");
    let res = r.out.clone();
    assert_eq!(res["cniVersion"], "1.0.0");
    assert_eq!(res["interfaces"][0]["name"], "net1");
    assert_eq!(res["interfaces"][0]["mac"], "02:00:00:aa:bb:cc");
    assert_eq!(res["interfaces"][0]["sandbox"], web.path_str());
    assert_eq!(res["ips"][0]["address"], "10.77.0.50/24");
    assert_eq!(res["ips"][0]["gateway"], "10.77.0.1");
    assert_eq!(res["ips"][0]["interface"], 0);
    assert!(res["ips"][0].get("version").is_none(), "{res}");
    assert_eq!(
        res["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "10.77.0.1"})
    );
    assert_eq!(web.addrs4("net1"), vec!["10.77.0.50/24".to_string()]);
    assert_eq!(web.mac("net1"), "02:00:00:aa:bb:cc");
    let v = d.inspect("web");
    assert_eq!(v["network"], "blue");

    // Real TCP from the outside to the published port; the container sees the client.
    let srv = tcp_server(&web, 80);
    let got = tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T);
    assert_eq!(got.unwrap(), "ping");
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP);

    // CHECK against the ADD result.
    let mut with_prev: Value = serde_json::from_str(&c1).unwrap();
    with_prev["prevResult"] = res.clone();
    ok(&plugin("CHECK", &with_prev.to_string(), &e1), "CHECK");

    // 0.4.0 with the address from CNI_ARGS IP= and no K8S_POD_NAME: the name is the ID prefix.
    let db = w.container("db");
    let c2 = conf("0.4.0", &sock, Some("blue"), json!({}));
    let e2 = env(
        "d00d0123456789ab",
        db.path_str(),
        "eth0",
        "IP=10.77.0.60;MAC=02:00:00:00:00:60",
    );
    let r = plugin("ADD", &c2, &e2);
    ok(&r, "ADD 0.4.0");
    assert_eq!(r.out["cniVersion"], "0.4.0");
    assert_eq!(r.out["ips"][0]["version"], "4");
    assert_eq!(r.out["ips"][0]["address"], "10.77.0.60/24");
    assert_eq!(r.out["interfaces"][0]["mac"], "02:00:00:00:00:60");
    assert!(d.ls_has("d00d01234567"), "{}", d.ls());

    // DEL twice: the second finds nothing and still succeeds.
    ok(&plugin("DEL", &with_prev.to_string(), &e1), "DEL");
    assert!(!d.ls_has("web"));
    assert!(web.link("net1").is_none(), "net1 left in the container");
    ok(&plugin("DEL", &with_prev.to_string(), &e1), "second DEL");

    // DEL after a daemon restart, then DEL after the namespace is gone.
    d.restart();
    assert!(d.ls_has("d00d01234567"));
    db.delete();
    ok(&plugin("DEL", &c2, &e2), "DEL after the netns is gone");
    ok(
        &plugin("DEL", &c2, &e2),
        "second DEL after the netns is gone",
    );
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
    no_host_veths_left(&w);
}

/// DEL of the interface that holds the IPv4 default route moves the route to the namespace's
/// other netd interface before DEL returns: the daemon's detach took the departing
/// interface's addresses and routes at once (its veth is deleted in the background).
#[test]
fn del_moves_the_default_route_to_the_remaining_interface() {
    let w = World::new();
    // Background deletions 200 ms late (as on a loaded machine): DEL must not need them.
    let d = w.daemon_with_env(&["--bip", BIP], &[("NETD_REAPER_DELAY_MS", "200")]);
    blue(&d);
    let sock = d.sock();
    let m = w.container("m");
    let on_default = conf("1.0.0", &sock, None, json!({}));
    let on_blue = conf("1.0.0", &sock, Some("blue"), json!({}));
    let e0 = env("feed00000000feed", m.path_str(), "eth0", "K8S_POD_NAME=m");
    let e1 = env("feed00000000feed", m.path_str(), "net1", "K8S_POD_NAME=m");
    ok(&plugin("ADD", &on_default, &e0), "ADD eth0");
    ok(&plugin("ADD", &on_blue, &e1), "ADD net1");
    let default_via = |ns: &netd_tests::Netns| -> Vec<String> {
        ns.routes4()
            .into_iter()
            .filter(|r| r.starts_with("default "))
            .collect()
    };
    let routes = default_via(&m);
    assert!(
        routes.len() == 1 && routes[0].starts_with("default via 172.30.0.1 dev eth0"),
        "{routes:?}"
    );
    ok(&plugin("DEL", &on_default, &e0), "DEL eth0");
    assert!(m.link("eth0").is_none(), "{:?}", m.links());
    let routes = default_via(&m);
    assert!(
        routes.len() == 1 && routes[0].starts_with("default via 10.77.0.1 dev net1"),
        "default route not moved to net1: {routes:?}"
    );
    // The way out works through it (masqueraded to the host's uplink address).
    let srv = tcp_server(&w.outside, 9997);
    netd_tests::tcp_arrives_from(&m, &format!("{OUTSIDE_IP}:9997"), &srv, HOST_UPLINK_IP);
    ok(&plugin("DEL", &on_blue, &e1), "DEL net1");
    no_host_veths_left(&w);
}

/// CNI_NETNS as podman passes it: a bind mount that exists only in the runtime's mount
/// namespace (here the plugin's own); in the daemon's view the path is an empty file.
#[test]
fn netns_bind_mount_the_daemon_cannot_see() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let app = w.container("app");
    let tmp = TempDir::new();
    let private = tmp.path().join("netns");
    std::fs::write(&private, b"").unwrap();
    let c = conf(
        "1.0.0",
        &d.sock(),
        None,
        json!({"runtimeConfig": {"portMappings": [{"hostPort": 8081, "containerPort": 81, "protocol": "tcp"}]}}),
    );
    let private_s = private.to_str().unwrap();
    let e = env("abc123abc123abc1", private_s, "eth0", "K8S_POD_NAME=app");
    let script = r#"mount --bind "$1" "$2" && exec "$3""#;
    let plugin = plugin_bin();
    let mut all = vec![("CNI_COMMAND", "ADD")];
    all.extend_from_slice(&e);
    let argv = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        app.path_str(),
        private_s,
        plugin.to_str().unwrap(),
    ];
    let r = run_argv(&argv, &c, &all);
    ok(&r, "ADD through a private bind mount");
    assert_eq!(r.out["interfaces"][0]["sandbox"], private_s);
    assert_eq!(app.addrs4("eth0").len(), 1);
    let srv = tcp_server(&app, 81);
    tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8081"), T).unwrap();
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP);
    // The daemon cannot open the stored path, yet a restart keeps the endpoint: its veth lives.
    d.restart();
    assert!(d.ls_has("app"), "endpoint reaped on restart: {}", d.ls());
    tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8081"), T).unwrap();
    // DEL from the runtime's side needs no namespace at all.
    let mut del = vec![("CNI_COMMAND", "DEL")];
    del.extend_from_slice(&e);
    ok(&run_argv(&[plugin.to_str().unwrap()], &c, &del), "DEL");
    assert!(!d.ls_has("app"));
}

/// An endpoint ADDed through the plugin whose namespace goes while the daemon is stopped is
/// reaped when the daemon starts: gone from `netd ls`, its veth deleted, its address and
/// published host port free for another container (whose traffic then works); a DEL from the
/// runtime afterwards still succeeds.
#[test]
fn start_reaps_a_cni_endpoint_whose_netns_is_gone() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    blue(&d);
    let sock = d.sock();
    let c = conf(
        "1.0.0",
        &sock,
        Some("blue"),
        json!({"runtimeConfig": {
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "ips": ["10.77.0.70/24"]}}),
    );
    let gone = w.container("gone");
    let e = env(
        "9011e0123456789a",
        gone.path_str(),
        "eth0",
        "K8S_POD_NAME=gone",
    );
    ok(&plugin("ADD", &c, &e), "ADD");
    assert!(d.ls_has("gone"), "{}", d.ls());
    assert_eq!(host_veths(&w).len(), 1, "{:?}", host_veths(&w));

    d.stop();
    gone.delete();
    d.restart();
    assert!(!d.ls_has("gone"), "endpoint kept after start: {}", d.ls());
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
    no_host_veths_left(&w);

    // Its address and host port are free: another container gets both, and is reached.
    let next = w.container("next");
    let e2 = env(
        "4e47000123456789",
        next.path_str(),
        "eth0",
        "K8S_POD_NAME=next",
    );
    ok(
        &plugin("ADD", &c, &e2),
        "ADD with the reaped endpoint's address and port",
    );
    assert_eq!(next.addrs4("eth0"), vec!["10.77.0.70/24".to_string()]);
    let srv = tcp_server(&next, 80);
    let got = tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T);
    assert_eq!(got.unwrap(), "ping");
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP);

    // The runtime's DEL of the reaped container succeeds and leaves the other alone.
    ok(&plugin("DEL", &c, &e), "DEL after the reap");
    assert!(d.ls_has("next"), "{}", d.ls());
    ok(&plugin("DEL", &c, &e2), "DEL next");
    no_host_veths_left(&w);
}

/// The ADD result's `dns` is what the container's resolv.conf (the one netd writes for the
/// endpoint) says: the daemon's `--dns`/`--dns-search` here, in both versions.
#[test]
fn add_result_dns_is_the_containers_resolv_conf() {
    use netd_tests::files::{resolv_nameservers, resolv_search};
    let w = World::new();
    let d = w.daemon(&[
        "--bip",
        BIP,
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "example.test",
    ]);
    blue(&d);
    for (version, name, id) in [
        ("1.0.0", "dns1", "d1500000000000d1"),
        ("0.4.0", "dns0", "d0500000000000d0"),
    ] {
        let ns = w.container(name);
        let args = format!("K8S_POD_NAME={name}");
        let e = env(id, ns.path_str(), "eth0", &args);
        let c = conf(version, &d.sock(), Some("blue"), json!({}));
        let r = plugin("ADD", &c, &e);
        ok(&r, &format!("ADD {version}"));
        let resolv = d.etc_file(name, "resolv.conf");
        assert_eq!(resolv_nameservers(&resolv), ["192.0.2.53"], "{resolv}");
        assert_eq!(resolv_search(&resolv), ["example.test"], "{resolv}");
        assert_eq!(
            r.out["dns"],
            json!({"nameservers": resolv_nameservers(&resolv), "search": resolv_search(&resolv)}),
            "{version}: {} vs resolv.conf {resolv:?}",
            r.out
        );
        ok(&plugin("DEL", &c, &e), "DEL");
    }
}
