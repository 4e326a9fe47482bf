//! The real dockerd 20.10 (Debian's docker.io) drives netd as network and IPAM driver `netd`.
//!
//! dockerd, its containerd and netd share the world's host network namespace and a private
//! mount namespace with tmpfs over /run and /etc/docker (Docker's hard-coded paths), as
//! ../shared/docs/engines.md describes; the image is imported from a busybox-static rootfs;
//! the client is this machine's docker CLI talking to the test's own dockerd socket.
//! Scenario: `docker network create -d netd --ipam-driver netd`, `docker run -p 8080:80`
//! served from the outside namespace with the client's real address seen by the server, no
//! iptables rule and no docker-proxy in the host netns, and `docker rm -f` / `docker network
//! rm` leaving no veth, lease, port or bridge behind.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use netd_tests::Netns;
use netd_tests::docker::{
    DockerWorld, HTTPD, SLEEPER, http_get_until, network_args, run_args, unmap,
};
use netd_tests::ipv6::{OUTSIDE6, v6_uplink_routed};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};

/// No iptables rule and no docker-proxy process in the host namespace.
fn assert_no_iptables_or_proxy(host: &Netns) {
    for tool in ["iptables-save", "iptables-legacy-save"] {
        let out = host.run(&[tool]);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let rules: Vec<&str> = text.lines().filter(|l| l.starts_with("-A")).collect();
            assert!(rules.is_empty(), "{tool} in the host netns: {rules:?}");
        }
    }
    let host_ns = fs::read_link(host.path()).ok();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "docker-proxy" {
            let ns = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            let ino = fs::metadata(host.path())
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok();
            let in_host = ns
                .as_ref()
                .zip(ino)
                .is_some_and(|(n, i)| n.to_string_lossy().contains(&i.to_string()));
            assert!(
                !in_host && ns != host_ns,
                "a docker-proxy (pid {pid}) runs in the host netns"
            );
        }
    }
}

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

#[test]
fn dockerd_keeps_networking_across_netd_restarts_and_a_dockerd_crash() {
    let mut x = DockerWorld::new();
    x.network("dkr", "10.79.4.0/24", &[]);
    x.run_httpd(
        "web",
        &[
            "--network",
            "name=dkr,driver-opt=netd.name=web",
            "-p",
            "8080:80",
        ],
    );
    x.run_httpd(
        "always",
        &[
            "--restart",
            "always",
            "--network",
            "name=dkr,driver-opt=netd.name=always",
            "-p",
            "8090:80",
        ],
    );
    assert_eq!(x.docker_ip("web"), "10.79.4.2");
    assert_eq!(x.docker_ip("always"), "10.79.4.3");
    assert_eq!(x.outside_peer(8080).unwrap(), OUTSIDE_IP);
    let veths = x.w.host.links_with_prefix("veth");
    assert_eq!(veths.len(), 2, "{veths:?}");

    // 1. netd killed (SIGKILL) and started again, then stopped cleanly and started again,
    // under the running dockerd: the containers keep their addresses and published ports,
    // netd knows the same endpoints and veths, and a new `docker run` works.
    let mut d_restarts = 0;
    for kill in [true, false] {
        if kill {
            x.d.kill9();
        } else {
            x.d.stop();
        }
        // While netd is down the pinned dataplane keeps serving the published port.
        if kill {
            assert_eq!(x.outside_peer(8080).unwrap(), OUTSIDE_IP, "netd down");
        }
        x.d.restart();
        d_restarts += 1;
        assert_eq!(
            x.netd_endpoints(),
            vec![
                ("always".to_string(), "10.79.4.3".to_string()),
                ("web".to_string(), "10.79.4.2".to_string())
            ],
            "after netd restart {d_restarts}"
        );
        assert_eq!(x.w.host.links_with_prefix("veth"), veths);
        assert_eq!(x.outside_peer(8080).unwrap(), OUTSIDE_IP);
        assert_eq!(x.outside_peer(8090).unwrap(), OUTSIDE_IP);
        assert!(x.d.netd_ok(&["port", "web"]).contains("8080"));
        let ip = x.docker.docker_ok(&[
            "exec",
            "web",
            "/bin/busybox",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        ]);
        assert!(ip.contains("10.79.4.2/24"), "{ip}");
        // A new container gets the next address and its port works.
        x.run_httpd(
            "late",
            &[
                "--network",
                "name=dkr,driver-opt=netd.name=late",
                "-p",
                "8085:80",
            ],
        );
        assert_eq!(x.docker_ip("late"), "10.79.4.4");
        assert_eq!(x.outside_peer(8085).unwrap(), OUTSIDE_IP);
        x.docker.docker_ok(&["rm", "-f", "late"]);
        assert!(!x.d.ls_has("late"));
        assert_eq!(x.w.host.links_with_prefix("veth"), veths);
    }

    // 2. dockerd killed (SIGKILL): containerd and the containers live on, and so does their
    // networking. Started again without --live-restore, dockerd kills the old containers and
    // cleans their sandboxes (libnetwork's sandboxCleanup calls Leave and DeleteEndpoint), and
    // starts the --restart always one again on a new endpoint: the same address, its port
    // working, the stopped container's endpoint and veth gone.
    x.docker.kill9();
    assert_eq!(x.outside_peer(8090).unwrap(), OUTSIDE_IP, "dockerd down");
    x.docker.start_again(&x.mnt, &x.w.host);
    x.wait_running("always");
    assert_eq!(x.outside_peer(8090).unwrap(), OUTSIDE_IP);
    // Without --ip the address is whatever the IPAM hands out first, as with Docker's own
    // (its endpoints were all released): Docker and netd agree on it.
    let always_ip = x.docker_ip("always");
    assert_eq!(
        x.docker
            .docker_ok(&["inspect", "-f", "{{.State.Running}}", "web"]),
        "false"
    );
    assert_eq!(
        x.netd_endpoints(),
        vec![("always".to_string(), always_ip.clone())],
        "stale endpoints after the dockerd crash\n{}",
        x.docker.log()
    );
    let after = x.w.host.links_with_prefix("veth");
    assert_eq!(after.len(), 1, "{veths:?} -> {after:?}");
    assert!(!veths.contains(&after[0]), "{veths:?} -> {after:?}");
    assert!(
        x.outside_peer(8080).is_err(),
        "the stopped container's port is still served"
    );
    // Its port is free again: `docker start` publishes it on a new endpoint.
    x.docker.docker_ok(&["start", "web"]);
    let web_ip = x.docker_ip("web");
    assert_ne!(web_ip, always_ip);
    assert_eq!(x.d.inspect("web")["ip"], web_ip.as_str());
    assert_eq!(x.outside_peer(8080).unwrap(), OUTSIDE_IP);

    // 3. `docker restart`: a new endpoint; the address is kept or not exactly as with Docker's
    // own bridge driver (the oracle, a user-defined bridge network in the same dockerd), and
    // the published port works again.
    x.docker.docker_ok(&[
        "network",
        "create",
        "-d",
        "bridge",
        "--subnet",
        "10.80.0.0/24",
        "-o",
        "com.docker.network.bridge.name=brk0",
        "oracle",
    ]);
    for n in ["o1", "o2"] {
        x.run_httpd(n, &["--network", "oracle"]);
    }
    let o1 = x.docker_ip("o1");
    x.docker.docker_ok(&["restart", "-t", "1", "o1"]);
    let oracle_same = x.docker_ip("o1") == o1;
    let before = x.docker_ip("web");
    x.docker.docker_ok(&["restart", "-t", "1", "web"]);
    let now = x.docker_ip("web");
    assert_eq!(
        now == before,
        oracle_same,
        "docker restart: bridge {o1} -> {}, netd {before} -> {now}",
        x.docker_ip("o1")
    );
    eprintln!(
        "docker restart: Docker's bridge kept the address: {oracle_same}; netd {before} -> {now}"
    );
    assert_eq!(x.d.inspect("web")["ip"], now.as_str());
    assert_eq!(x.outside_peer(8080).unwrap(), OUTSIDE_IP);
    assert_eq!(x.netd_endpoints().len(), 2);
    assert_eq!(x.w.host.links_with_prefix("veth").len(), 2 + 2);
    x.docker
        .docker_ok(&["rm", "-f", "o1", "o2", "web", "always"]);
    x.docker.docker_ok(&["network", "rm", "oracle", "dkr"]);
    assert!(x.netd_endpoints().is_empty());
    assert!(x.w.host.links_with_prefix("veth").is_empty());
    assert_no_iptables_or_proxy(&x.w.host);
}

#[test]
fn dockerd_publishes_udp_and_exposed_ports_serves_host_and_hairpin_and_masquerades() {
    let x = DockerWorld::new();
    x.network("dkp", "10.79.5.0/24", &[]);
    let gateway = "10.79.5.1";
    x.run_httpd(
        "web",
        &[
            "--network",
            "name=dkp,driver-opt=netd.name=web",
            "-p",
            "8080:80",
        ],
    );
    let web_ip = x.docker_ip("web");

    // 4a. -p 5353:53/udp: a UDP server in the container (the host's socat, /usr mounted
    // read-only) answers each datagram with the address it came from.
    x.docker.docker_ok(&run_args(
        "dns",
        &[
            "--network",
            "name=dkp,driver-opt=netd.name=dns",
            "-p",
            "5353:53/udp",
            "-v",
            "/usr:/usr:ro",
        ],
        &[
            "/usr/bin/socat",
            "UDP-RECVFROM:53,fork",
            "SYSTEM:echo $SOCAT_PEERADDR",
        ],
    ));
    let got = netd_tests::poll_until("udp 5353 from the outside", Duration::from_secs(10), || {
        netd_tests::traffic::udp_send(&x.w.outside, &format!("{HOST_UPLINK_IP}:5353"), "q")
    });
    assert_eq!(got.trim(), OUTSIDE_IP);
    let port = x.d.netd_ok(&["port", "dns"]);
    assert!(port.contains("5353") && port.contains("udp"), "{port}");

    // 4b. --expose 80 -P: netd picks the host port (Docker sends HostPort 0).
    x.run_httpd(
        "exposed",
        &[
            "--network",
            "name=dkp,driver-opt=netd.name=exposed",
            "--expose",
            "80",
            "-P",
        ],
    );
    let v = x.d.inspect("exposed");
    let ports = v["ports"].as_array().expect("ports").clone();
    assert_eq!(ports.len(), 1, "{v}");
    assert_eq!(ports[0]["container_port"], 80, "{v}");
    let picked = ports[0]["host_port"].as_u64().unwrap() as u16;
    assert!(picked != 0 && picked != 80, "{v}");
    assert_eq!(x.outside_peer(picked).unwrap(), OUTSIDE_IP);

    // 5a. Host-local: a host process (in the daemon's cgroup, where its socket hooks apply)
    // reaches the published port on 127.0.0.1 and on the uplink address.
    let cgroup = x.d.cgroup().expect("the harness gives the daemon a cgroup");
    for host_ip in ["127.0.0.1", HOST_UPLINK_IP] {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec nsenter --net={} curl -s --max-time 3 http://{host_ip}:8080/cgi-bin/ip",
            cgroup.display(),
            x.w.host.path_str()
        );
        let got = netd_tests::poll_until("host-local curl", Duration::from_secs(10), || {
            let out = Command::new("sh").args(["-c", &script]).output().unwrap();
            if out.status.success() {
                Ok(unmap(&String::from_utf8_lossy(&out.stdout)))
            } else {
                Err(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        });
        // The container sees the network's gateway, as Docker's MASQUERADE of host-local
        // traffic (route_localnet) gives it.
        assert_eq!(got, gateway, "host-local {host_ip}:8080");
    }

    // 5b. Hairpin: web reaches its own published port through the host's uplink address and
    // sees the gateway (never its own address: that reply would not come back through the
    // NAT); another container reaching it is seen from its own address (DNAT only), as with
    // Docker's hairpin rules.
    let own = x.exec_peer("web", HOST_UPLINK_IP, 8080);
    assert_eq!(own, gateway, "web -> its own {HOST_UPLINK_IP}:8080");
    let exposed_ip = x.docker_ip("exposed");
    let near = x.exec_peer("exposed", HOST_UPLINK_IP, 8080);
    assert_eq!(near, exposed_ip, "exposed -> {HOST_UPLINK_IP}:8080");

    // 5c. Masquerade: a container reaches a server in the outside namespace (which has no
    // route to the container subnet), and the server sees the host's uplink address.
    let srv = netd_tests::traffic::tcp_server(&x.w.outside, 7000);
    let out = x.docker.docker_ok(&[
        "exec",
        "web",
        "/bin/busybox",
        "sh",
        "-c",
        &format!("echo masq | /bin/busybox nc -w 3 {OUTSIDE_IP} 7000"),
    ]);
    assert_eq!(out, "masq");
    assert_eq!(srv.last_peer_ip(), HOST_UPLINK_IP);

    // 6. --link on a user-defined network is an embedded-DNS alias (Docker's resolver at
    // 127.0.0.11 in the container), whatever the driver; it grants nothing past icc: on a
    // network with enable_icc=false a linked container is still kept apart.
    x.run_sleeper("cli", &["--network", "dkp", "--link", "web:webalias"]);
    let ns = x
        .docker
        .docker_ok(&["exec", "cli", "/bin/busybox", "nslookup", "webalias"]);
    assert!(ns.contains(&web_ip), "nslookup webalias: {ns}");
    let cli_ip = x.docker_ip("cli");
    assert_eq!(x.exec_peer("cli", &web_ip, 80), cli_ip);

    x.network(
        "dkq",
        "10.79.6.0/24",
        &["-o", "com.docker.network.bridge.enable_icc=false"],
    );
    x.run_httpd("qweb", &["--network", "dkq"]);
    let qweb_ip = x.docker_ip("qweb");
    x.run_sleeper("qcli", &["--network", "dkq", "--link", "qweb:qalias"]);
    let ns = x
        .docker
        .docker_ok(&["exec", "qcli", "/bin/busybox", "nslookup", "qalias"]);
    assert!(ns.contains(&qweb_ip), "nslookup qalias: {ns}");
    let blocked = x.exec_get("qcli", &qweb_ip, 80);
    assert!(
        !blocked.contains("10.79.6."),
        "icc=false let a linked container through: {blocked}"
    );

    assert_no_iptables_or_proxy(&x.w.host);
    x.docker
        .docker_ok(&["rm", "-f", "web", "dns", "exposed", "cli", "qweb", "qcli"]);
    x.docker.docker_ok(&["network", "rm", "dkp", "dkq"]);
    assert!(x.netd_endpoints().is_empty());
    assert!(x.w.host.links_with_prefix("veth").is_empty());
}

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
