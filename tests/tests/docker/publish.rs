//! dockerd runs a published container on a netd network.

use super::*;

#[test]
fn dockerd_runs_a_published_container_on_a_netd_network() {
    let mut x = DockerWorld::new();

    // Without netd's IPAM the network is refused, saying what to add.
    let out = x.docker.docker(&[
        "network",
        "create",
        "-d",
        "netd",
        "--subnet",
        "10.79.1.0/24",
        "noipam",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ipam-driver netd"), "{err}");

    x.network("dknet", "10.79.0.0/24", &[]);
    let n: serde_json::Value =
        serde_json::from_str(&x.d.netd_ok(&["network", "inspect", "dknet"])).unwrap();
    assert_eq!(n["subnet"], "10.79.0.0/24");
    assert_eq!(n["gateway"], "10.79.0.1");

    x.run_httpd(
        "web",
        &[
            "--network",
            "name=dknet,driver-opt=netd.name=web",
            "-p",
            "8080:80",
        ],
    );
    let v = x.d.inspect("web");
    assert_eq!(v["ip"], "10.79.0.2", "{v}");
    assert_eq!(v["ports"][0]["host_port"], 8080, "{v}");
    assert_eq!(x.docker_ip("web"), "10.79.0.2");
    // From the outside: served, and the server sees the client's own address.
    assert_eq!(x.outside_peer(8080).unwrap(), OUTSIDE_IP);
    assert_no_iptables_or_proxy(&x.w.host);
    let port = x.d.netd_ok(&["port", "web"]);
    assert!(port.contains("8080"), "{port}");

    // docker rm -f: no endpoint, veth, lease or port left.
    x.docker.docker_ok(&["rm", "-f", "web"]);
    assert!(!x.d.ls_has("web"));
    assert!(
        x.w.host.links_with_prefix("veth").is_empty(),
        "{:?}",
        x.w.host.links()
    );
    assert!(x.outside_peer(8080).is_err());
    // The other -p forms, --ip and --mac-address.
    let web3 = [
        "--network",
        "dknet",
        "--ip",
        "10.79.0.50",
        "--mac-address",
        "02:aa:bb:cc:dd:ee",
        "-p",
        "127.0.0.1:8081:80",
        "-p",
        "80",
        "-p",
        "8000-8002:80",
    ];
    x.docker
        .docker_ok_with("/usr/bin/docker", &run_args("web3", &web3, &HTTPD));
    // The 28.x client refuses --mac-address against API 1.41, so x.docker.io's 20.10 client
    // runs this one; without driver-opt netd.name the endpoint is named by its id prefix.
    let ls = x.netd_ls();
    let v = ls
        .iter()
        .find(|e| e["ip"] == "10.79.0.50")
        .unwrap_or_else(|| panic!("no netd endpoint with 10.79.0.50: {ls:?}"))
        .clone();
    assert!(v["name"].as_str().unwrap().starts_with("d-"), "{v}");
    assert_eq!(v["ip"], "10.79.0.50", "{v}");
    assert_eq!(v["mac"], "02:aa:bb:cc:dd:ee", "{v}");
    let mac = x.docker.docker_ok(&[
        "exec",
        "web3",
        "/bin/busybox",
        "cat",
        "/sys/class/net/eth0/address",
    ]);
    assert_eq!(mac, "02:aa:bb:cc:dd:ee");
    let ports: Vec<(String, u64)> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["host_ip"].as_str().unwrap().to_string(),
                p["host_port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports.len(), 3, "{v}");
    assert!(
        ports.contains(&("127.0.0.1".to_string(), 8081)),
        "{ports:?}"
    );
    let ranged = ports
        .iter()
        .find(|(_, p)| (8000..=8002).contains(p))
        .expect("a port of 8000-8002");
    let picked = ports
        .iter()
        .find(|(_, p)| *p != 8081 && !(8000..=8002).contains(p))
        .expect("a picked port");
    for (_, port) in [ranged, picked] {
        assert_eq!(x.outside_peer(*port as u16).unwrap(), OUTSIDE_IP, "{port}");
    }
    // 8081 is published on 127.0.0.1 only: not reachable from the outside.
    let out = x.w.outside.run(&[
        "curl",
        "-s",
        "--max-time",
        "2",
        &format!("http://{HOST_UPLINK_IP}:8081/"),
    ]);
    assert!(!out.status.success());
    // A host port in use is refused, and the refused container leaves nothing behind.
    let out = x.docker.docker(&run_args(
        "clash",
        &["--network", "dknet", "-p", "127.0.0.1:8081:80"],
        &SLEEPER,
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("8081") && err.contains("already allocated"),
        "{err}"
    );
    x.docker.docker_ok(&["rm", "-f", "clash"]);
    let ls = x.d.netd_ok(&["ls"]);
    assert_eq!(x.netd_ls().len(), 1, "{ls}");
    assert_eq!(
        x.w.host.links_with_prefix("veth").len(),
        1,
        "{:?}",
        x.w.host.links()
    );
    x.docker.docker_ok(&["rm", "-f", "web3"]);
    assert!(
        x.w.host.links_with_prefix("veth").is_empty(),
        "{:?}",
        x.w.host.links()
    );

    // The leases are free again: the next container gets the first address.
    x.run_sleeper("web2", &["--network", "dknet"]);
    assert_eq!(x.docker_ip("web2"), "10.79.0.2");
    // --restart always across a dockerd restart: dockerd stops the container (Revoke, Leave,
    // DeleteEndpoint), starts it again on a new endpoint with the same address, and the port
    // works again; nothing of the old endpoint is left.
    x.run_httpd(
        "always",
        &[
            "--restart",
            "always",
            "--network",
            "dknet",
            "--ip",
            "10.79.0.60",
            "-p",
            "8090:80",
        ],
    );
    x.outside_peer(8090).unwrap();
    let before = x.w.host.links_with_prefix("veth");
    x.docker.restart(&x.mnt, &x.w.host);
    x.wait_running("always");
    assert_eq!(x.outside_peer(8090).unwrap(), OUTSIDE_IP);
    let after = x.w.host.links_with_prefix("veth");
    // web2 (no restart policy) stayed stopped: only the restarted container has a veth, a
    // new one.
    assert_eq!(after.len(), 1, "{before:?} -> {after:?}");
    assert!(!before.contains(&after[0]), "{before:?} -> {after:?}");
    let ls = x.netd_ls();
    assert_eq!(
        ls.iter().map(|e| e["ip"].clone()).collect::<Vec<_>>(),
        ["10.79.0.60"],
        "{ls:?}"
    );
    x.docker.docker_ok(&["rm", "-f", "always"]);
    x.docker.docker_ok(&["start", "web2"]);

    // Same network: containers reach each other from their own addresses; another Docker
    // network's container cannot.
    x.run_httpd("srv", &["--network", "dknet"]);
    x.network("dkb", "10.79.2.0/24", &[]);
    x.run_sleeper("far", &["--network", "dkb"]);
    let near = x.exec_get("web2", "10.79.0.3", 80);
    assert!(near.contains("10.79.0.2"), "same network: {near}");
    let far = x.exec_get("far", "10.79.0.3", 80);
    assert!(!far.contains("10.79"), "another network reached srv: {far}");
    x.docker.docker_ok(&["rm", "-f", "srv", "far"]);
    x.docker.docker_ok(&["network", "rm", "dkb"]);
    x.docker.docker_ok(&["rm", "-f", "web2"]);
    // Without --subnet netd picks a free private subnet; --internal gives no way out.
    x.network_create("dkint", &["--internal"]);
    let n: serde_json::Value =
        serde_json::from_str(&x.d.netd_ok(&["network", "inspect", "dkint"])).unwrap();
    assert_eq!(n["internal"], true, "{n}");
    let sub = n["subnet"].as_str().unwrap().to_string();
    let net: std::net::Ipv4Addr = sub.split('/').next().unwrap().parse().unwrap();
    assert!(net.is_private() && !sub.starts_with("10.79.0."), "{n}");
    x.run_sleeper("inner", &["--network", "dkint"]);
    let routes = x
        .docker
        .docker_ok(&["exec", "inner", "/bin/busybox", "ip", "-4", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    assert!(routes.contains(&sub.to_string()), "{routes}");
    x.docker.docker_ok(&["rm", "-f", "inner"]);
    x.docker.docker_ok(&["network", "rm", "dkint"]);
    x.docker.docker_ok(&["network", "rm", "dknet"]);
    assert!(!x.d.netd_ok(&["network", "ls"]).contains("dknet"));
    assert_no_iptables_or_proxy(&x.w.host);
}
