//! podman runs containers on a netd network, with its own port reservation.

use super::*;

#[test]
fn podman_runs_a_container_on_a_netd_network() {
    assert!(
        podman_installed(),
        "podman is not installed: run cargo xtask setup"
    );
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--dns", "192.0.2.53"]);
    blue(&d);
    let cni = CniDirs::new();
    cni.install(&d, &["blue"], &[]);
    let p = Podman::new(&w, &cni.bin, &cni.conf, false);
    let nets = p.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        nets.lines().any(|l| l == "blue"),
        "podman network ls: {nets}"
    );
    let image = p.import_busybox();
    let parent = p.parent_arg();
    p.ok(&[
        "run",
        "-d",
        &parent,
        "--name",
        "web",
        "--network",
        "blue",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:8082:80",
        "-p",
        "9000-9001:7000-7001/udp",
        image,
        "sh",
        "-c",
        SERVE,
    ]);
    let v = d.inspect("web");
    assert_eq!(v["network"], "blue", "{v}");
    let ip = v["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.77.0."), "{v}");
    let mut ports: Vec<String> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p["host_ip"].as_str().unwrap(),
                p["host_port"],
                p["container_port"],
                p["proto"].as_str().unwrap()
            )
        })
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [
            "0.0.0.0:8080->80/tcp",
            "0.0.0.0:9000->7000/udp",
            "0.0.0.0:9001->7001/udp",
            "127.0.0.1:8082->80/tcp"
        ],
        "{v}"
    );
    let reply = netd_tests::try_poll_until(Duration::from_secs(10), || {
        tcp_exchange(&w.outside, &format!("{HOST_UPLINK_IP}:8080"))
    })
    .expect("outside -> published port");
    assert!(reply.starts_with("got hello"), "{reply}");
    // The container sees the outside client's own address.
    assert!(
        reply.contains(&format!("{ip}:80 ")) && reply.contains(&format!("{OUTSIDE_IP}:")),
        "{reply}"
    );
    // A host process reaches the loopback-only port (netd's socket hooks, no proxy).
    let cg = netd_tests::dataplane::daemon_cgroup(&d).expect("the daemon's cgroup");
    let local = netd_tests::try_poll_until(T, || {
        netd_tests::dataplane::socat_in_cgroup(&cg, &w.host, "tcp", "127.0.0.1:8082")
    })
    .expect("host -> 127.0.0.1:8082");
    assert!(local.starts_with("got ping"), "{local}");
    // Real UDP through the published range: a datagram from the outside to each host port
    // reaches its container port (a server in the container's namespace, which podman made)
    // from the client's address, and the reply comes back.
    let pid = p.ok(&["inspect", "web", "--format", "{{.State.Pid}}"]);
    let web_ns = netd_tests::Netns::attach("netdt-pw-", pid.trim().parse().unwrap()).unwrap();
    for (host_port, container_port) in [(9000, 7000), (9001, 7001)] {
        let srv = netd_tests::udp_server(&web_ns, container_port);
        let addr = format!("{HOST_UPLINK_IP}:{host_port}");
        let got = netd_tests::try_poll_until(T, || netd_tests::udp_request(&w.outside, &addr));
        assert_eq!(
            got.expect("outside -> published UDP port"),
            "ping",
            "{addr}"
        );
        assert_eq!(srv.last_peer_ip(), OUTSIDE_IP, "{addr}");
    }
    // The result's DNS (the daemon's --dns) is the container's nameserver.
    let resolv = p.ok(&["exec", "web", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
    let port = p.ok(&["port", "web"]);
    assert!(
        port.contains("80/tcp -> 0.0.0.0:8080"),
        "podman port: {port}"
    );
    assert!(
        port.contains("80/tcp -> 127.0.0.1:8082"),
        "podman port: {port}"
    );
    let insp = p.ok(&[
        "inspect",
        "web",
        "--format",
        "{{.NetworkSettings.Networks.blue.IPAddress}}",
    ]);
    assert_eq!(insp.trim(), ip);

    // default_network = "blue": no --network; --ip and --mac-address reach netd.
    p.ok(&[
        "run",
        "-d",
        &parent,
        "--name",
        "db",
        "--ip",
        "10.77.0.42",
        "--mac-address",
        "02:00:00:00:00:42",
        image,
        "sleep",
        "1000",
    ]);
    let v = d.inspect("db");
    assert_eq!(
        (v["network"].as_str(), v["ip"].as_str(), v["mac"].as_str()),
        (Some("blue"), Some("10.77.0.42"), Some("02:00:00:00:00:42")),
        "{v}"
    );
    let mac = p.ok(&[
        "inspect",
        "db",
        "--format",
        "{{.NetworkSettings.Networks.blue.MacAddress}}",
    ]);
    assert_eq!(mac.trim(), "02:00:00:00:00:42");
    p.ok(&["rm", "-f", "-t", "0", "db"]);
    assert!(!d.ls_has("db"), "{}", d.ls());

    // Masquerade, on netd's default network (a second conflist): the outside sees the
    // host's address, and only a masqueraded flow can be answered (it has no route back).
    cni.install(&d, &["netd0"], &[]);
    let srv = tcp_server(&w.outside, 9999);
    p.ok(&[
        "run",
        "--rm",
        &parent,
        "--name",
        "out",
        "--network",
        "netd0",
        image,
        "sh",
        "-c",
        &format!("echo hi | nc -w 3 {OUTSIDE_IP} 9999"),
    ]);
    assert_eq!(srv.peer_ips().len(), 1, "{:?}", srv.peers());
    assert_eq!(srv.last_peer_ip(), HOST_UPLINK_IP);
    assert!(!d.ls_has("out"), "{}", d.ls());

    p.ok(&["rm", "-f", "-t", "0", "web"]);
    assert_eq!(
        d.ls().lines().count(),
        1,
        "netd ls after podman rm: {}",
        d.ls()
    );
    no_host_veths_left(&w);
}

/// Podman's default `enable_port_reservation = true`: conmon holds the published host port, so
/// netd's own reservation is refused (the clash, reported as a CNI error, nothing left behind)
/// until the conflist says `"reservePorts": false` (`netd cni install
/// --runtime-reserves-ports`); then the port works and conmon is what holds it.
#[test]
fn podman_with_its_own_port_reservation() {
    let w = World::new();
    // netd reserves published ports with bind hooks on its cgroup (the cgroup v2 root in
    // production); podman here runs outside the test daemon's private cgroup, so the hooks
    // cannot see its bind. The socket fallback reserves for every process of the namespace,
    // which is what podman's own reservation clashes with.
    let d = w.daemon_with_env(&["--bip", BIP], &[("NETD_PORT_RESERVE", "socket")]);
    blue(&d);
    let cni = CniDirs::new();
    cni.install(&d, &["blue"], &[]);
    let p = Podman::new(&w, &cni.bin, &cni.conf, true);
    let image = p.import_busybox();
    let parent = p.parent_arg();
    let run = [
        "run", "-d", &parent, "--name", "web", "-p", "8080:80", image, "sh", "-c", SERVE,
    ];
    let o = p.run(&run);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "podman run should clash: {stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
    let _ = p.run(&["rm", "-f", "-t", "0", "web"]);

    cni.install(&d, &["blue"], &["--force", "--runtime-reserves-ports"]);
    p.ok(&run);
    let v = d.inspect("web");
    let ip = v["ip"].as_str().unwrap().to_string();
    let reply = netd_tests::try_poll_until(Duration::from_secs(10), || {
        tcp_exchange(&w.outside, &format!("{HOST_UPLINK_IP}:8080"))
    })
    .expect("outside -> published port");
    assert!(
        reply.contains(&format!("{ip}:80 ")) && reply.contains(&format!("{OUTSIDE_IP}:")),
        "{reply}"
    );
    let holders = w.host.run_ok(&["ss", "-Htlnp", "sport = :8080"]);
    assert!(holders.contains("conmon"), "who holds 8080: {holders}");
    p.ok(&["rm", "-f", "-t", "0", "web"]);
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
}

/// A conflist in CNI 1.0.0 (`netd cni install` writes 0.4.0): podman's libcni runs the plugin
/// in that version, caches a 1.0.0 result, and the container is reached through its published
/// port; `podman rm` leaves nothing.
#[test]
fn podman_with_a_cni_1_0_0_conflist() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    let cni = CniDirs::new();
    cni.install(&d, &["blue"], &[]);
    let path = cni.conf.join("blue.conflist");
    let mut list: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(list["cniVersion"], "0.4.0", "{list}");
    list["cniVersion"] = json!("1.0.0");
    std::fs::write(&path, list.to_string()).unwrap();
    let p = Podman::new(&w, &cni.bin, &cni.conf, false);
    let image = p.import_busybox();
    p.serve(image, "web", &["--network", "blue", "-p", "8080:80"]);
    let v = d.inspect("web");
    let ip = v["ip"].as_str().unwrap().to_string();
    let cached = p.cached_results("blue");
    assert_eq!(cached.len(), 1, "{cached:?}");
    let res = &cached[0]["result"];
    assert_eq!(res["cniVersion"], "1.0.0", "{res}");
    assert_eq!(res["ips"][0]["address"], format!("{ip}/24"), "{res}");
    assert!(res["ips"][0].get("version").is_none(), "{res}");
    let reply = netd_tests::try_poll_until(Duration::from_secs(10), || {
        tcp_exchange(&w.outside, &format!("{HOST_UPLINK_IP}:8080"))
    })
    .expect("outside -> published port");
    assert_eq!(peer_of(&reply, &ip).as_deref(), Some(OUTSIDE_IP), "{reply}");
    let insp = p.ok(&[
        "inspect",
        "web",
        "--format",
        "{{.NetworkSettings.Networks.blue.IPAddress}}",
    ]);
    assert_eq!(insp.trim(), ip);
    p.ok(&["rm", "-f", "-t", "0", "web"]);
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
    assert!(p.cached_results("blue").is_empty());
    no_host_veths_left(&w);
}
