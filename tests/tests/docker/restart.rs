//! dockerd keeps networking across netd restarts and a dockerd crash.

use super::*;

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
    // No lease leaked across the crash and the removals: the next two containers get the
    // network's first two addresses, the ones web and always had before dockerd was killed.
    x.run_sleeper("f1", &["--network", "dkr"]);
    x.run_sleeper("f2", &["--network", "dkr"]);
    assert_eq!(
        (x.docker_ip("f1"), x.docker_ip("f2")),
        ("10.79.4.2".to_string(), "10.79.4.3".to_string()),
        "a lease outlived its container"
    );
    x.docker.docker_ok(&["rm", "-f", "f1", "f2"]);
    x.docker.docker_ok(&["network", "rm", "oracle", "dkr"]);
    assert!(x.netd_endpoints().is_empty());
    assert!(x.w.host.links_with_prefix("veth").is_empty());
    assert_no_iptables_or_proxy(&x.w.host);
}
