//! dockerd publishes UDP and exposed ports, serves host and hairpin, masquerades.

use super::*;

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
