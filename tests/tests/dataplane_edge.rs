//! Edge cases of the NAT dataplane: fragmented datagrams through published ports and
//! masquerade, TCP resets and ICMP errors translated back to the right party, masquerade port
//! collisions (between containers, and with host sockets), and many parallel connections.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use netd_tests::dataplane::{
    EchoServer, UdpEcho, exchange_with_ip_options, tcp_connect_result, tcp_try, udp_exchange,
};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, World, in_netns, try_poll_until};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn fragmented_datagrams_cross_published_ports_and_masquerade() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80/udp"]);
    let web_echo = UdpEcho::start(&web, 80);
    let out_echo = UdpEcho::start(&w.outside, 7101);
    // 4000 bytes: three fragments each way at MTU 1500.
    let big = payload(4000);
    let got = try_poll_until(T, || {
        udp_exchange(
            &w.outside,
            "0.0.0.0:0",
            &format!("{HOST_UPLINK_IP}:8080"),
            big.clone(),
        )
    })
    .unwrap_or_else(|e| panic!("fragmented datagram to the published port: {e}"));
    assert!(got == big, "echo of {} bytes differs", got.len());
    let (src, n) = *web_echo.seen().last().unwrap();
    assert_eq!((src.ip().to_string(), n), (OUTSIDE_IP.to_string(), 4000));

    let got = try_poll_until(T, || {
        udp_exchange(
            &web,
            "0.0.0.0:0",
            &format!("{OUTSIDE_IP}:7101"),
            big.clone(),
        )
    })
    .unwrap_or_else(|e| panic!("fragmented datagram masqueraded to the outside: {e}"));
    assert!(got == big, "echo of {} bytes differs", got.len());
    let (src, n) = *out_echo.seen().last().unwrap();
    assert_eq!(
        (src.ip().to_string(), n),
        (HOST_UPLINK_IP.to_string(), 4000)
    );
}

#[test]
fn resets_and_icmp_errors_are_translated_back() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80", "-p", "8080:80/udp"]);
    // Nothing listens in the container: its RST and port-unreachable must reach the client
    // as if they came from 198.51.100.1:8080, so the client fails fast instead of timing out.
    let target = format!("{HOST_UPLINK_IP}:8080");
    assert_eq!(
        tcp_connect_result(&w.outside, &target, T),
        Err(ErrorKind::ConnectionRefused),
        "outside -> published port with no listener"
    );
    let e = udp_exchange(&w.outside, "0.0.0.0:0", &target, b"x".to_vec())
        .expect_err("a reply from a container with no listener");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    // And the other way: the outside's RST / port unreachable reach the masqueraded container.
    let closed = format!("{OUTSIDE_IP}:7999");
    assert_eq!(
        tcp_connect_result(&web, &closed, T),
        Err(ErrorKind::ConnectionRefused),
        "container -> closed outside port"
    );
    let e = udp_exchange(&web, "0.0.0.0:0", &closed, b"x".to_vec())
        .expect_err("a reply from a closed outside port");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
}

#[test]
fn masquerade_keeps_colliding_source_ports_apart() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let ((c1, _), (c2, _)) = w.two_attached(&d);
    let echo = UdpEcho::start(&w.outside, 7101);
    let dst = format!("{OUTSIDE_IP}:7101");
    // A host socket already talking to the same destination from port 40000.
    let host_sock = in_netns(&w.host, {
        let dst = dst.clone();
        move || {
            let s = UdpSocket::bind("0.0.0.0:40000")?;
            s.connect(&dst)?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            Ok(s)
        }
    })
    .unwrap();
    let host_exchange = |msg: &[u8]| -> Vec<u8> {
        host_sock.send(msg).unwrap();
        let mut buf = [0u8; 64];
        let n = host_sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("host socket lost its reply: {e}"));
        buf[..n].to_vec()
    };
    assert_eq!(host_exchange(b"host"), b"host");
    // Two containers with the very same source port, and the host's.
    for (c, msg) in [(&c1, "one"), (&c2, "two")] {
        let got = try_poll_until(T, || {
            udp_exchange(c, "0.0.0.0:40000", &dst, msg.as_bytes().to_vec())
        })
        .unwrap_or_else(|e| panic!("{msg}: {e}"));
        assert_eq!(got, msg.as_bytes());
    }
    // Each container again (their flows are still tracked), and the host socket too.
    assert_eq!(
        udp_exchange(&c1, "0.0.0.0:40000", &dst, b"one".to_vec()).unwrap(),
        b"one"
    );
    assert_eq!(
        udp_exchange(&c2, "0.0.0.0:40000", &dst, b"two".to_vec()).unwrap(),
        b"two"
    );
    assert_eq!(host_exchange(b"host"), b"host");
    let sources: std::collections::BTreeSet<SocketAddr> =
        echo.seen().iter().map(|(a, _)| *a).collect();
    assert_eq!(
        sources.len(),
        3,
        "host + two containers from port 40000 should be three distinct sources: {sources:?}"
    );
    assert!(
        sources.iter().all(|a| a.ip().to_string() == HOST_UPLINK_IP),
        "{sources:?}"
    );
}

#[test]
fn many_parallel_connections_through_a_published_port() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    let web_ip = s(&d.attach("web", &web, &["-p", "8080:80"])["ip"]).to_string();
    let echo = EchoServer::start(&web, 80);
    let target = format!("{HOST_UPLINK_IP}:8080");
    try_poll_until(T, || tcp_try(&w.outside, &target, Duration::from_secs(1)))
        .expect("published port never answered");
    let outside = std::sync::Arc::new(w.outside.path().to_path_buf());
    let handles: Vec<_> = (0..64)
        .map(|_| {
            let (outside, target) = (outside.clone(), target.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                netd_tests::traffic::enter_netns(&outside)?;
                use std::io::{Read, Write};
                let addr: SocketAddr = target.parse()?;
                let s = std::net::TcpStream::connect_timeout(&addr, T)?;
                s.set_read_timeout(Some(T))?;
                let data = payload(32 * 1024);
                let r = s.try_clone()?;
                let reader = std::thread::spawn(move || {
                    let mut v = Vec::new();
                    (&r).read_to_end(&mut v).map(|_| v)
                });
                (&s).write_all(&data)?;
                s.shutdown(std::net::Shutdown::Write)?;
                let v = reader.join().unwrap()?;
                anyhow::ensure!(v == data, "echoed {} of {} bytes", v.len(), data.len());
                Ok(())
            })
        })
        .collect();
    let errors: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap().err().map(|e| format!("{e:#}")))
        .collect();
    assert!(
        errors.is_empty(),
        "{} of 64 failed: {errors:?}",
        errors.len()
    );
    assert!(echo.peers().len() > 64);
    assert!(
        echo.peers()
            .iter()
            .all(|p| p.ip().to_string() == OUTSIDE_IP),
        "container saw {:?} (web is {web_ip})",
        echo.peers()
    );
}

#[test]
fn packets_with_ip_options_are_translated() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80", "-p", "8080:80/udp"]);
    let t80 = netd_tests::tcp_server(&web, 80);
    let u80 = netd_tests::udp_server(&web, 80);
    let out = netd_tests::udp_server(&w.outside, 7101);
    let target = format!("{HOST_UPLINK_IP}:8080");
    try_poll_until(T, || tcp_try(&w.outside, &target, Duration::from_secs(1)))
        .expect("published port never answered");
    for proto in ["tcp", "udp"] {
        assert_eq!(
            exchange_with_ip_options(&w.outside, proto, &target)
                .unwrap_or_else(|e| panic!("{proto} with IP options to {target}: {e:#}")),
            "ping"
        );
    }
    assert_eq!(t80.last_peer_ip(), OUTSIDE_IP);
    assert_eq!(u80.last_peer_ip(), OUTSIDE_IP);
    assert_eq!(
        exchange_with_ip_options(&web, "udp", &format!("{OUTSIDE_IP}:7101"))
            .unwrap_or_else(|e| panic!("masqueraded udp with IP options: {e:#}")),
        "ping"
    );
    assert_eq!(out.last_peer_ip(), HOST_UPLINK_IP);
}
