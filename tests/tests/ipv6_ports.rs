//! IPv6 published ports end to end (issue 12): a daemon without `--ip` publishes `-p 8080:80`
//! on 0.0.0.0 and [::] for a container with IPv6, `-p [ADDR]:8082:82` on that address only,
//! and an explicit IPv4 host address never over IPv6. An outside IPv6 client reaches the
//! container over TCP and UDP, and the container sees the client's own address (the servers
//! record their peers). The outside has no route to the container subnet: only the published
//! ports (DNAT6) get it there.
//!
//! Every IPv6 address is in 2001:db8::/32, inside namespaces the test creates.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use netd_tests::dataplane::{forward_policy_drops, tcp_blocked};
use netd_tests::ipv6::{HOST6, OUTSIDE6, v6_uplink};
use netd_tests::netns::Netns;
use netd_tests::traffic::{enter_netns, in_netns};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{
    BIP, BRIDGE_IP, Daemon, ServerHandle, World, poll_until, tcp_send, tcp6_server, udp_send,
    udp6_server,
};

const T: Duration = Duration::from_secs(8);

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// The container's servers behind the four bindings [`publish_four`] makes.
struct Four {
    tcp80: ServerHandle,
    udp53: ServerHandle,
    tcp81: ServerHandle,
    tcp82: ServerHandle,
}

/// Attaches `name` with `-p 8080:80 -p 5353:53/udp -p 0.0.0.0:8081:81 -p [HOST6]:8082:82`
/// and starts a server behind each: the attach's answer and the servers.
fn publish_four(d: &Daemon, name: &str, c: &Netns) -> (serde_json::Value, Four) {
    let v6_binding = format!("[{HOST6}]:8082:82");
    let v = d.attach(
        name,
        c,
        &[
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
            "-p",
            "0.0.0.0:8081:81",
            "-p",
            &v6_binding,
        ],
    );
    let four = Four {
        tcp80: tcp6_server(c, 80),
        udp53: udp6_server(c, 53),
        tcp81: tcp6_server(c, 81),
        tcp82: tcp6_server(c, 82),
    };
    (v, four)
}

/// TCP from the outside to `addr` until it answers; asserts the echo of `msg`.
fn tcp_echo(w: &World, addr: &str, msg: &str) {
    let got = poll_until(&format!("TCP to {addr}"), T, || {
        tcp_send(&w.outside, addr, msg)
    });
    assert_eq!(got.trim(), msg);
}

/// `0.0.0.0:8081` is never reachable over IPv6, `[HOST6]:8082` never over IPv4.
fn explicit_addresses_keep_their_family(w: &World, four: &Four) {
    assert!(tcp_blocked(&w.outside, &format!("[{HOST6}]:8081")));
    assert!(four.tcp81.last_peer().is_none(), "nothing reached port 81");
    assert!(tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:8082")));
}

#[test]
fn outside_ipv6_clients_reach_published_ports_with_their_own_address() {
    let w = World::new();
    v6_uplink(&w);
    // No --ip: `-p 8080:80` is 0.0.0.0 and [::].
    let d = w.daemon(&["--bip", BIP, "--ipv6", "--fixed-cidr-v6", "2001:db8:1::/64"]);
    let web = w.container("web");
    let (_, four) = publish_four(&d, "web", &web);

    // TCP over IPv6: DNAT6 to the container's IPv6 address, the client's address kept.
    tcp_echo(&w, &format!("[{HOST6}]:8080"), "ping6");
    assert_eq!(
        four.tcp80.last_peer(),
        ip(OUTSIDE6),
        "the container sees the client"
    );
    // The same binding over IPv4, as before.
    tcp_echo(&w, &format!("{HOST_UPLINK_IP}:8080"), "ping4");
    assert_eq!(four.tcp80.last_peer(), ip(OUTSIDE_IP));

    // UDP over IPv6, the reply from the published address (the connected socket accepts
    // only that source).
    let got = poll_until("UDP to [HOST6]:5353", T, || {
        udp_send(&w.outside, &format!("[{HOST6}]:5353"), "q6")
    });
    assert_eq!(got, "q6");
    assert_eq!(four.udp53.last_peer(), ip(OUTSIDE6));

    // A binding on the IPv6 address itself.
    tcp_echo(&w, &format!("[{HOST6}]:8082"), "eight2");
    assert_eq!(four.tcp82.last_peer(), ip(OUTSIDE6));

    // An explicit IPv4 host address is never reachable over IPv6, only over IPv4; the
    // IPv6-only binding is not on IPv4.
    explicit_addresses_keep_their_family(&w, &four);
    tcp_echo(&w, &format!("{HOST_UPLINK_IP}:8081"), "v4");
}

/// One UDP datagram from an unconnected socket in `ns` to `addr`: the echo and the address it
/// came from.
fn udp_sendto(ns: &Netns, addr: &str, msg: &str) -> Result<(String, SocketAddr)> {
    let addr: SocketAddr = addr.parse().context("socket address")?;
    let msg = msg.to_string();
    in_netns(ns, move || {
        let sock = UdpSocket::bind(("::", 0))?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 2048];
        for _ in 0..6 {
            sock.send_to(msg.as_bytes(), addr)?;
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                return Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
            }
        }
        Err(anyhow!("no UDP reply from {addr}"))
    })
}

/// TCP from `ns` to `addr`: sends a line, half-closes, and reads until the other side
/// closes (the echo server answers after the line, the relay must pass the FIN on and keep
/// the way back open).
fn tcp_half_close(ns: &Netns, addr: &str, msg: &str) -> Result<String> {
    use std::io::Read as _;
    let addr: SocketAddr = addr.parse().context("socket address")?;
    let msg = msg.to_string();
    in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, T)?;
        s.set_read_timeout(Some(T))?;
        s.write_all(format!("{msg}\n").as_bytes())?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut got = String::new();
        s.read_to_string(&mut got)?;
        Ok(got)
    })
}

/// Issue 12: a container without IPv6 is published on `[::]` too (and on an IPv6 host
/// address when asked) through the daemon's NAT46 relay, as docker-proxy did: the outside
/// IPv6 client reaches it over TCP and UDP, the container sees the bridge gateway's IPv4
/// address, and the replies come from the published address.
#[test]
fn ipv4_only_container_is_published_on_ipv6_through_the_nat46_relay() {
    let w = World::new();
    v6_uplink(&w);
    // No --ipv6: the container has IPv4 only.
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("v4only");
    let (v, four) = publish_four(&d, "v4only", &web);
    assert!(v["global_ipv6"].is_null(), "{v}");
    let ports = v["ports"].as_array().unwrap();
    assert_eq!(ports[0]["host_ip"], "0.0.0.0", "{v}");
    assert_eq!(ports[0]["host_ip6"], "::", "a dual binding says so: {v}");
    assert!(
        ports[2]["host_ip6"].is_null(),
        "0.0.0.0:8081 is IPv4 only: {v}"
    );
    assert_eq!(ports[3]["host_ip"], HOST6, "{v}");
    let Four {
        tcp80,
        udp53,
        tcp82,
        ..
    } = &four;

    // TCP over IPv6 to the IPv4-only container: the container sees the host's address on
    // the bridge (the gateway), as behind docker-proxy.
    tcp_echo(&w, &format!("[{HOST6}]:8080"), "ping6");
    assert_eq!(
        tcp80.last_peer(),
        ip(BRIDGE_IP),
        "the container sees the gateway"
    );
    // Half-close passes through: the echo arrives after the client's FIN, then EOF.
    let got = tcp_half_close(&w.outside, &format!("[{HOST6}]:8080"), "half").unwrap();
    assert_eq!(got, "half\n");
    // IPv4 stays in eBPF: the container sees the IPv4 client itself.
    tcp_echo(&w, &format!("{HOST_UPLINK_IP}:8080"), "ping4");
    assert_eq!(tcp80.last_peer(), ip(OUTSIDE_IP));

    // UDP over IPv6: the reply comes from the published address and port.
    let (got, from) = poll_until("UDP to [HOST6]:5353", T, || {
        udp_sendto(&w.outside, &format!("[{HOST6}]:5353"), "q6")
    });
    assert_eq!(got, "q6");
    assert_eq!(
        from,
        format!("[{HOST6}]:5353").parse::<SocketAddr>().unwrap()
    );
    assert_eq!(udp53.last_peer(), ip(BRIDGE_IP));
    // A second datagram of the same client takes the same flow (the same upstream port).
    let peers_before = udp53.peers();
    let got = udp_send(&w.outside, &format!("[{HOST6}]:5353"), "again").unwrap();
    assert_eq!(got, "again");
    let peers = udp53.peers();
    assert!(peers.len() > peers_before.len(), "{peers:?}");

    // The explicit IPv6 host address.
    tcp_echo(&w, &format!("[{HOST6}]:8082"), "eight2");
    assert_eq!(tcp82.last_peer(), ip(BRIDGE_IP));
    // An explicit IPv4 host address is still IPv4 only; the IPv6-only binding not on IPv4.
    explicit_addresses_keep_their_family(&w, &four);

    // `netd ls` lists both sides of the dual binding; `netd port` one line per port, as in
    // Docker 1.8, an IPv6 host address in brackets.
    let ls = d.ls();
    assert!(
        ls.contains("0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"),
        "{ls}"
    );
    assert!(ls.contains(&format!("[{HOST6}]:8082->82/tcp")), "{ls}");
    let port = d.netd_ok(&["port", "v4only", "82"]);
    assert_eq!(port.trim(), format!("[{HOST6}]:8082"), "{port}");
    // The relay's counters.
    let stats: serde_json::Value =
        serde_json::from_str(&d.netd_ok(&["stats", "--json"])).expect("stats JSON");
    let r = &stats["relay46"];
    assert_eq!(r["listeners"], 3, "8080/tcp, 5353/udp, 8082/tcp: {r}");
    assert!(r["tcp_total"].as_u64().unwrap() >= 3, "{r}");
    assert!(r["udp_flows_total"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["bytes_to_container"].as_u64().unwrap() > 0, "{r}");

    // Unpublished with the container: the relay's ports are free again.
    d.netd_ok(&["detach", "v4only"]);
    let r: serde_json::Value =
        serde_json::from_str(&d.netd_ok(&["stats", "--json"])).expect("stats JSON");
    assert_eq!(r["relay46"]["listeners"], 0, "{r}");
    in_netns(&w.host, || {
        let l = poll_until("[::]:8080 free", T, || {
            std::net::TcpListener::bind(("::", 8080)).map_err(|e| e.to_string())
        });
        drop(l);
        Ok(())
    })
    .unwrap();
}

/// A daemon `--ip` that is an IPv6 address publishes an IPv4-only container there (relayed)
/// instead of refusing it.
#[test]
fn ipv6_host_addresses_are_relayed_for_a_container_without_ipv6() {
    let w = World::new();
    v6_uplink(&w);
    let mut d = w.daemon(&["--bip", BIP]);
    let c = w.container("v4only");
    let v = d.attach("v4only", &c, &["-p", &format!("[{HOST6}]:8080:80")]);
    assert_eq!(v["ports"][0]["host_ip"], HOST6, "{v}");
    let srv = tcp6_server(&c, 80);
    tcp_echo(&w, &format!("[{HOST6}]:8080"), "hi");
    assert_eq!(srv.last_peer(), ip(BRIDGE_IP));
    // A host process cannot take the relayed port.
    let held = in_netns(&w.host, || {
        Ok(std::net::TcpListener::bind((HOST6.parse::<IpAddr>().unwrap(), 8080)).is_err())
    })
    .unwrap();
    assert!(held, "[{HOST6}]:8080 is the relay's");
    // A port already held on the host's IPv6 side is refused by name, and nothing is left.
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let host = w.host.path().to_path_buf();
    let holder = std::thread::spawn(move || {
        enter_netns(&host).unwrap();
        let l = std::net::TcpListener::bind((HOST6.parse::<IpAddr>().unwrap(), 9090)).unwrap();
        tx.send(()).unwrap();
        let _ = stop_rx.recv();
        drop(l);
    });
    rx.recv().unwrap();
    let err = d.netd_err(&["publish", "v4only", "9090:90"]);
    // (Hook reservations find the holder with sock_diag before the relay's bind would.)
    assert!(
        err.contains("port 9090/tcp is already in use on the host"),
        "{err}"
    );
    let v = d.inspect("v4only");
    assert_eq!(
        v["ports"].as_array().unwrap().len(),
        1,
        "the refused publish left nothing: {v}"
    );
    stop_tx.send(()).unwrap();
    holder.join().unwrap();
    // Without IPv6 on the daemon, `-p 9090:90` is 0.0.0.0 and [::] now.
    d.netd_ok(&["publish", "v4only", "9090:90"]);
    let v = d.inspect("v4only");
    assert_eq!(v["ports"][1]["host_ip"], "0.0.0.0", "{v}");
    assert_eq!(v["ports"][1]["host_ip6"], "::", "{v}");
    let srv90 = tcp6_server(&c, 90);
    // A restarted daemon relays its bindings again (its ports are in the pinned table
    // before it binds them).
    d.restart();
    for (port, srv) in [(8080, &srv), (9090, &srv90)] {
        tcp_echo(&w, &format!("[{HOST6}]:{port}"), "again");
        assert_eq!(srv.last_peer(), ip(BRIDGE_IP));
    }
}

/// Issue 12, the IPv6 fast path: under a default-drop ip6tables FORWARD policy in the host
/// namespace with no rule at all, published IPv6 traffic reaches the container and its replies
/// reach the client only by skipping the host's forwarding both ways: with the fast path
/// (DNAT6, then `bpf_redirect_peer` into the container; the reply routed with
/// `bpf_fib_lookup`, translated back and redirected to the uplink by `from_container6`).
/// Without it, even with the replies allowed (`-i netd0`), FORWARD's policy drops the
/// inbound packets and counts them.
fn forward6_drop(fast_path: &str) {
    let w = World::new();
    v6_uplink(&w);
    w.host.run_ok(&["ip6tables", "-P", "FORWARD", "DROP"]);
    if fast_path == "false" {
        w.host
            .run_ok(&["ip6tables", "-A", "FORWARD", "-i", "netd0", "-j", "ACCEPT"]);
    }
    let d = w.daemon(&[
        "--bip",
        BIP,
        "--ipv6",
        "--fixed-cidr-v6",
        "2001:db8:1::/64",
        "--fast-path",
        fast_path,
    ]);
    let web = w.container("web");
    let (_, four) = publish_four(&d, "web", &web);
    let published = format!("[{HOST6}]:8080");
    let p0 = forward_policy_drops(&w.host, "ip6tables");
    if fast_path == "false" {
        assert!(
            tcp_blocked(&w.outside, &published),
            "{published} got through FORWARD DROP on the stack path"
        );
        assert!(four.tcp80.last_peer().is_none());
        assert!(
            forward_policy_drops(&w.host, "ip6tables") > p0,
            "FORWARD's policy counted no drop"
        );
        return;
    }
    tcp_echo(&w, &published, "fast6");
    assert_eq!(
        four.tcp80.last_peer(),
        ip(OUTSIDE6),
        "the client's own address"
    );
    let got = poll_until("UDP to [HOST6]:5353", T, || {
        udp_send(&w.outside, &format!("[{HOST6}]:5353"), "q6")
    });
    assert_eq!(got, "q6");
    assert_eq!(four.udp53.last_peer(), ip(OUTSIDE6));
    for _ in 0..3 {
        assert_eq!(
            tcp_send(&w.outside, &published, "again").unwrap().trim(),
            "again"
        );
    }
    assert_eq!(
        forward_policy_drops(&w.host, "ip6tables"),
        p0,
        "nothing met FORWARD, either way"
    );
}

#[test]
fn forward_drop_host_ipv6_with_the_fast_path() {
    forward6_drop("true");
}

#[test]
fn forward_drop_host_ipv6_without_the_fast_path() {
    forward6_drop("false");
}

/// A daemon started with `--ip 0.0.0.0` (issue 12): a binding that names no host address takes
/// the daemon's IPv4 address only, so it is never reachable over IPv6, neither translated in
/// eBPF (a container with IPv6) nor relayed; over IPv4 it is served.
#[test]
fn a_daemon_ip_of_0_0_0_0_publishes_nothing_on_ipv6() {
    let w = World::new();
    v6_uplink(&w);
    let d = w.daemon(&[
        "--bip",
        BIP,
        "--ipv6",
        "--fixed-cidr-v6",
        "2001:db8:1::/64",
        "--ip",
        "0.0.0.0",
    ]);
    let web = w.container("web");
    let v = d.attach("web", &web, &["-p", "8080:80"]);
    assert!(v["global_ipv6"].is_string(), "a dual-stack container: {v}");
    let srv = tcp6_server(&web, 80);
    tcp_echo(&w, &format!("{HOST_UPLINK_IP}:8080"), "v4");
    assert_eq!(srv.last_peer(), ip(OUTSIDE_IP));
    let n = srv.peers().len();
    assert!(tcp_blocked(&w.outside, &format!("[{HOST6}]:8080")));
    assert_eq!(srv.peers().len(), n, "an IPv6 client reached the container");
    let b = &d.inspect("web")["ports"][0];
    assert_eq!(b["host_ip"], "0.0.0.0", "{b}");
    assert!(b["host_ip6"].is_null(), "{b}");
}
