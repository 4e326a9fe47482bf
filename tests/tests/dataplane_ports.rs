//! Published ports end to end ("Binding container ports to the host"): `-p` in all its forms,
//! `-P` with `--expose`, `--ip`, `netd port`, per-binding counters, the refusal of direct access
//! to unpublished container ports, and the host-port reservation (conflicts with other
//! containers and with host processes, release on detach).

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use netd_tests::dataplane::{
    binding_stats, ct, daemon_cgroup, drops, socat_in_cgroup, tcp_blocked, udp_try,
};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{
    BIP, Daemon, World, in_netns, poll_until, tcp_arrives_from, tcp_request, tcp_request_until,
    tcp_server, try_poll_until, udp_arrives_from, udp_server,
};

const T: Duration = Duration::from_secs(5);
/// A second address of the host on its uplink (same subnet as the outside).
const HOST_IP2: &str = "198.51.100.3";

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn port_lines(d: &netd_tests::Daemon, name: &str) -> Vec<String> {
    d.netd_ok(&["port", name])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn published_ports_reach_the_container_with_the_client_address() {
    let w = World::new();
    w.host
        .ip(&["addr", "add", &format!("{HOST_IP2}/24"), "dev", "up0"]);
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    let ep = d.attach(
        "web",
        &web,
        &[
            "-p",
            "8080:80",
            "-p",
            "8080:80/udp",
            "-p",
            "9000-9002:7000-7002",
            "-p",
            &format!("{HOST_UPLINK_IP}:8082:82"),
            "-p",
            &format!("{HOST_IP2}:8083:83"),
            "-p",
            "127.0.0.1:8081:80",
        ],
    );
    let web_ip = s(&ep["ip"]).to_string();
    let tcp80 = tcp_server(&web, 80);
    let udp80 = udp_server(&web, 80);
    let range: Vec<_> = (7000..=7002).map(|p| tcp_server(&web, p)).collect();
    let tcp82 = tcp_server(&web, 82);
    let tcp83 = tcp_server(&web, 83);
    let unpublished = tcp_server(&web, 84);
    let unpublished_udp = udp_server(&web, 85);

    // TCP and UDP on 0.0.0.0:8080; the container sees the real client address.
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap(),
        "ping"
    );
    assert_eq!(tcp80.peer_ips().len(), 1);
    assert_eq!(tcp80.last_peer_ip(), OUTSIDE_IP);
    udp_arrives_from(
        &w.outside,
        &format!("{HOST_UPLINK_IP}:8080"),
        &udp80,
        OUTSIDE_IP,
    );
    // Reachable through every host address when bound to 0.0.0.0.
    assert_eq!(
        tcp_request(&w.outside, &format!("{HOST_IP2}:8080")).unwrap(),
        "ping"
    );

    // A range maps port by port.
    for (i, host_port) in (9000..=9002).enumerate() {
        assert_eq!(
            tcp_request(&w.outside, &format!("{HOST_UPLINK_IP}:{host_port}")).unwrap(),
            "ping",
            "host port {host_port}"
        );
        for (j, srv) in range.iter().enumerate() {
            let want = usize::from(j <= i);
            assert_eq!(
                srv.peer_ips().len(),
                want,
                "after {host_port}: container port {} saw {:?}",
                srv.port,
                srv.peer_ips()
            );
        }
        assert_eq!(range[i].last_peer_ip(), OUTSIDE_IP);
    }

    // ip:hostPort:containerPort is reachable only through that address.
    tcp_arrives_from(
        &w.outside,
        &format!("{HOST_UPLINK_IP}:8082"),
        &tcp82,
        OUTSIDE_IP,
    );
    assert!(
        tcp_blocked(&w.outside, &format!("{HOST_IP2}:8082")),
        "{HOST_IP2}:8082 reached a binding made on {HOST_UPLINK_IP} only"
    );
    tcp_arrives_from(&w.outside, &format!("{HOST_IP2}:8083"), &tcp83, OUTSIDE_IP);
    assert!(
        tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:8083")),
        "{HOST_UPLINK_IP}:8083 reached a binding made on {HOST_IP2} only"
    );
    assert_eq!(tcp82.peer_ips().len(), 1);
    assert_eq!(tcp83.peer_ips().len(), 1);

    // A loopback binding is not reachable from outside.
    let seen80 = tcp80.peer_ips().len();
    assert!(
        tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:8081")),
        "127.0.0.1:8081 binding reachable from outside"
    );
    assert_eq!(tcp80.peer_ips().len(), seen80);

    // An unpublished port is not reachable even when the outside routes the container
    // subnet to the host; the drop is counted.
    w.route_outside_to("172.30.0.0/24");
    let before = drops(&d, "direct-access-to-container");
    assert!(
        tcp_blocked(&w.outside, &format!("{web_ip}:84")),
        "unpublished {web_ip}:84 reachable from outside"
    );
    assert!(
        udp_try(&w.outside, &format!("{web_ip}:85")).is_err(),
        "unpublished {web_ip}:85/udp reachable from outside"
    );
    assert!(unpublished.peer_ips().is_empty());
    assert!(unpublished_udp.peer_ips().is_empty());
    poll_until("direct-access-to-container drops", T, || {
        let n = drops(&d, "direct-access-to-container");
        if n > before { Ok(n) } else { Err(n) }
    });

    // `netd port`: one "PORT/PROTO -> IP:PORT" line per published port.
    let lines = port_lines(&d, "web");
    for want in [
        "80/tcp -> 0.0.0.0:8080",
        "80/udp -> 0.0.0.0:8080",
        "7000/tcp -> 0.0.0.0:9000",
        "7001/tcp -> 0.0.0.0:9001",
        "7002/tcp -> 0.0.0.0:9002",
        "82/tcp -> 198.51.100.1:8082",
        "83/tcp -> 198.51.100.3:8083",
        "80/tcp -> 127.0.0.1:8081",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "netd port web lacks {want:?}: {lines:?}"
        );
    }
    assert_eq!(d.netd_ok(&["port", "web", "7001"]).trim(), "0.0.0.0:9001");
    assert_eq!(d.netd_ok(&["port", "web", "80/udp"]).trim(), "0.0.0.0:8080");

    // Per-binding counters grow with traffic.
    let b0 = binding_stats(&d, "web", "tcp", 8080)
        .unwrap_or_else(|| panic!("no tcp 8080 binding in stats: {}", d.netd_ok(&["stats"])));
    assert!(
        b0["packets"].as_u64().unwrap() > 0,
        "binding saw traffic already: {b0}"
    );
    for _ in 0..3 {
        tcp_request(&w.outside, &format!("{HOST_UPLINK_IP}:8080")).unwrap();
    }
    poll_until("tcp 8080 binding counters to grow", T, || {
        let b = binding_stats(&d, "web", "tcp", 8080).unwrap();
        if b["packets"].as_u64() > b0["packets"].as_u64()
            && b["bytes"].as_u64() > b0["bytes"].as_u64()
        {
            Ok(())
        } else {
            Err(format!("before {b0}, now {b}"))
        }
    });
    let u = binding_stats(&d, "web", "udp", 8080).expect("udp 8080 binding in stats");
    assert!(u["packets"].as_u64().unwrap() >= 2, "udp binding: {u}");
}

#[test]
fn publish_all_and_default_bind_address() {
    let w = World::new();
    w.host
        .ip(&["addr", "add", &format!("{HOST_IP2}/24"), "dev", "up0"]);
    let d = w.daemon(&["--bip", BIP, "--ip", HOST_IP2]);
    let web = w.container("web");
    d.attach(
        "web",
        &web,
        &[
            "--expose", "90", "--expose", "91/udp", "-P", "-p", "8086:86",
        ],
    );
    let (lo, hi) = {
        let r = w.host.read("/proc/sys/net/ipv4/ip_local_port_range");
        let v: Vec<u16> = r.split_whitespace().map(|x| x.parse().unwrap()).collect();
        (v[0], v[1])
    };
    let lines = port_lines(&d, "web");
    let host_port = |cport: &str| -> u16 {
        let l = lines
            .iter()
            .find(|l| l.starts_with(&format!("{cport} -> ")))
            .unwrap_or_else(|| panic!("netd port web lacks {cport}: {lines:?}"));
        let (ip, port) = l.rsplit_once(' ').unwrap().1.rsplit_once(':').unwrap();
        assert_eq!(ip, HOST_IP2, "{l}: not bound to the daemon's --ip");
        port.parse().unwrap()
    };
    let p90 = host_port("90/tcp");
    let p91 = host_port("91/udp");
    assert_eq!(host_port("86/tcp"), 8086);
    for p in [p90, p91] {
        assert!(
            (lo..=hi).contains(&p),
            "-P chose {p}, outside the ephemeral range {lo}-{hi}"
        );
    }
    let t90 = tcp_server(&web, 90);
    let u91 = udp_server(&web, 91);
    let t86 = tcp_server(&web, 86);
    tcp_arrives_from(&w.outside, &format!("{HOST_IP2}:{p90}"), &t90, OUTSIDE_IP);
    udp_arrives_from(&w.outside, &format!("{HOST_IP2}:{p91}"), &u91, OUTSIDE_IP);
    assert_eq!(
        tcp_request(&w.outside, &format!("{HOST_IP2}:8086")).unwrap(),
        "ping"
    );
    // --ip restricts the default binding to that address.
    assert!(
        tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:8086")),
        "binding made on --ip {HOST_IP2} reachable via {HOST_UPLINK_IP}"
    );
    assert_eq!(t86.peer_ips().len(), 1);
}

/// Binds `port` in the host namespace like a host process would: a python process in the
/// daemon's cgroup (where its bind hooks apply; on a real host that is the root cgroup, every
/// process), SO_REUSEADDR set, listening for TCP. Returns the error text, None if it bound.
fn host_bind_error(w: &World, d: &Daemon, proto: &str, ip: &str, port: u16) -> Option<String> {
    use std::process::{Command, Stdio};
    let cg = daemon_cgroup(d).expect("the test daemon runs with --cgroup");
    let ty = if proto == "tcp" {
        "SOCK_STREAM"
    } else {
        "SOCK_DGRAM"
    };
    let listen = if proto == "tcp" { "s.listen()" } else { "pass" };
    let py = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.{ty})\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         try:\n s.bind(('{ip}', {port})); {listen}; print('ok')\n\
         except OSError as e:\n print('err', e.errno, e.strerror)"
    );
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec nsenter --net={} python3 -c \"$0\"",
        cg.display(),
        w.host.path_str(),
    );
    let mut c = Command::new("sh");
    c.args(["-c", &script, &py]).stdin(Stdio::null());
    let out = netd_tests::output_with_timeout(c, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !text.is_empty(),
        "python bind {proto} {ip}:{port}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (text != "ok").then_some(text)
}

/// Binds in the test process itself, outside the daemon's cgroup.
fn bind_outside_cgroup(w: &World, proto: &str, ip: &str, port: u16) -> bool {
    let addr = format!("{ip}:{port}");
    let tcp = proto == "tcp";
    in_netns(&w.host, move || {
        Ok(if tcp {
            TcpListener::bind(&addr).is_ok()
        } else {
            UdpSocket::bind(&addr).is_ok()
        })
    })
    .unwrap()
}

fn reserved_ports(w: &World) -> String {
    in_netns(&w.host, || {
        Ok(std::fs::read_to_string(
            "/proc/sys/net/ipv4/ip_local_reserved_ports",
        )?)
    })
    .unwrap()
}

/// Is `port` in an ip_local_reserved_ports list?
fn lists(reserved: &str, port: u16) -> bool {
    reserved.trim().split(',').any(|r| {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= port && port <= b)
    })
}

#[test]
fn host_ports_are_reserved_and_released() {
    reserved_and_released(None);
}

/// The fallback where the kernel refuses the bind hooks, forced: one socket per port.
#[test]
fn host_ports_are_reserved_with_sockets_when_the_bind_hooks_are_off() {
    reserved_and_released(Some("socket"));
}

fn reserved_and_released(mode: Option<&str>) {
    let w = World::new();
    let d = match mode {
        // The masquerade range is kept away from the published ports, so that the reserved
        // list shows exactly what publishing adds and detach removes.
        None => w.daemon(&["--bip", BIP, "--masq-ports", "61000-65535"]),
        Some(m) => w.daemon_with_env(
            &["--bip", BIP, "--masq-ports", "61000-65535"],
            &[("NETD_PORT_RESERVE", m)],
        ),
    };
    let hooks = mode.is_none();
    let web = w.container("web");
    let web_ip =
        s(&d.attach("web", &web, &["-p", "8080:80", "-p", "8080:80/udp"])["ip"]).to_string();
    let srv = tcp_server(&web, 80);

    // Another container cannot take the same host port.
    let c2 = w.container("c2");
    let err = d.netd_err(&["attach", "c2", "--netns", c2.path_str(), "-p", "8080:80"]);
    assert!(err.contains("already allocated"), "{err}");
    assert!(err.contains("8080"), "error does not name the port: {err}");
    assert!(!d.ls_has("c2"), "failed attach left c2 behind");
    // A different protocol or port is fine, and a range overlapping 8080 is not.
    let err = d.netd_err(&[
        "attach",
        "c2",
        "--netns",
        c2.path_str(),
        "-p",
        "8079-8081:79-81",
    ]);
    assert!(err.contains("already allocated"), "{err}");

    // Host processes cannot bind the published ports (TCP and UDP, wildcard or specific, with
    // SO_REUSEADDR).
    for (proto, ip) in [
        ("tcp", "0.0.0.0"),
        ("tcp", HOST_UPLINK_IP),
        ("tcp", "127.0.0.1"),
        ("udp", "0.0.0.0"),
    ] {
        let e = host_bind_error(&w, &d, proto, ip, 8080)
            .unwrap_or_else(|| panic!("a host process could bind {proto} {ip}:8080"));
        assert!(
            e.contains("Address already in use"),
            "{proto} {ip}:8080: {e}"
        );
    }
    assert_eq!(host_bind_error(&w, &d, "tcp", "0.0.0.0", 8082), None);
    // How: the bind hooks (no socket held: a process outside the test's cgroup is not
    // refused; autobind skips the port), or a socket per port.
    assert_eq!(bind_outside_cgroup(&w, "tcp", "0.0.0.0", 8080), hooks);
    assert_eq!(
        lists(&reserved_ports(&w), 8080),
        hooks,
        "{}",
        reserved_ports(&w)
    );

    // Publishing a port a host process listens on fails clearly and leaves nothing behind.
    let holder = in_netns(&w.host, || Ok(TcpListener::bind("0.0.0.0:8085")?)).unwrap();
    let c3 = w.container("c3");
    let err = d.netd_err(&["attach", "c3", "--netns", c3.path_str(), "-p", "8085:80"]);
    assert!(err.contains("in use on the host"), "{err}");
    assert!(err.contains("8085"), "{err}");
    assert!(!d.ls_has("c3"));
    drop(holder);
    d.attach("c3", &c3, &["-p", "8085:80"]);

    // Detach frees the port and forgets the container's flows.
    tcp_arrives_from(
        &w.outside,
        &format!("{HOST_UPLINK_IP}:8080"),
        &srv,
        OUTSIDE_IP,
    );
    assert!(
        !ct(&d, &["--ip", &web_ip]).is_empty(),
        "no conntrack entries for {web_ip} after a published-port request"
    );
    d.netd_ok(&["detach", "web"]);
    let left = ct(&d, &["--ip", &web_ip]);
    assert!(
        left.is_empty(),
        "flows of {web_ip} survive detach: {left:?}"
    );
    assert_eq!(host_bind_error(&w, &d, "tcp", "0.0.0.0", 8080), None);
    assert_eq!(host_bind_error(&w, &d, "udp", "0.0.0.0", 8080), None);
    assert!(!lists(&reserved_ports(&w), 8080), "{}", reserved_ports(&w));
    d.attach("c2", &c2, &["-p", "8080:80"]);
    let srv2 = tcp_server(&c2, 80);
    tcp_arrives_from(
        &w.outside,
        &format!("{HOST_UPLINK_IP}:8080"),
        &srv2,
        OUTSIDE_IP,
    );
}

#[test]
fn host_processes_reach_published_ports_without_a_proxy() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let Some(cg) = daemon_cgroup(&d) else {
        eprintln!("skipped: no cgroup v2 hierarchy at /sys/fs/cgroup/unified");
        return;
    };
    let web = w.container("web");
    d.attach(
        "web",
        &web,
        &[
            "-p",
            "8080:80",
            "-p",
            "8080:80/udp",
            "-p",
            "127.0.0.1:8081:81",
        ],
    );
    let t80 = tcp_server(&web, 80);
    let u80 = udp_server(&web, 80);
    let t81 = tcp_server(&web, 81);
    // Docker's docker-proxy made these work from the host; netd's socket hooks must too.
    let servers = [&t80, &u80, &t81];
    for (proto, addr, srv) in [
        ("tcp", "127.0.0.1:8081", 2),
        ("tcp", "127.0.0.1:8080", 0),
        ("tcp", "198.51.100.1:8080", 0),
        ("tcp", "172.30.0.1:8080", 0),
        ("udp", "127.0.0.1:8080", 1),
        ("udp", "198.51.100.1:8080", 1),
    ] {
        let before = servers[srv].peer_ips().len();
        let reply = try_poll_until(T, || socat_in_cgroup(&cg, &w.host, proto, addr))
            .unwrap_or_else(|e| panic!("host process -> {addr}/{proto}: {e:#}"));
        assert_eq!(reply, "ping", "{addr}/{proto}");
        assert!(
            servers[srv].peer_ips().len() > before,
            "{addr}/{proto} was answered by something other than the container"
        );
    }
    eprintln!(
        "container saw host connections from {:?} / {:?}",
        t80.peer_ips(),
        t81.peer_ips()
    );
}

#[test]
fn a_thousand_port_range_is_published_and_reserved() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    let fds = d.fd_count();
    let t0 = std::time::Instant::now();
    d.attach("web", &web, &["-p", "20000-20999:20000-20999"]);
    eprintln!("published 1000 ports in {:?}", t0.elapsed());
    // One port-table entry a port, and no socket or proxy a port (what made it slow).
    let tcp = |ports: std::ops::RangeInclusive<u16>| -> Vec<(u8, u16)> {
        ports.map(|p| (netd_common::IPPROTO_TCP, p)).collect()
    };
    assert_eq!(
        netd_tests::bpf::port_table_v4(&d.map_pin(netd_common::MAP_PORTS)),
        tcp(20000..=20999)
    );
    let held = d.fd_count();
    assert!(
        held < fds + 100,
        "the daemon went from {fds} to {held} descriptors"
    );
    let servers: Vec<_> = [20000, 20500, 20999]
        .iter()
        .map(|p| tcp_server(&web, *p))
        .collect();
    for srv in &servers {
        let addr = format!("{HOST_UPLINK_IP}:{}", srv.port);
        tcp_arrives_from(&w.outside, &addr, srv, OUTSIDE_IP);
    }
    assert!(tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:21000")));
    let c2 = w.container("c2");
    let err = d.netd_err(&["attach", "c2", "--netns", c2.path_str(), "-p", "20500:80"]);
    assert!(err.contains("already allocated"), "{err}");
    assert!(host_bind_error(&w, &d, "tcp", "0.0.0.0", 20777).is_some());
    assert_eq!(port_lines(&d, "web").len(), 1000);
    d.netd_ok(&["detach", "web"]);
    assert_eq!(host_bind_error(&w, &d, "tcp", "0.0.0.0", 20777), None);
}
