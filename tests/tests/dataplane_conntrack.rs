//! Conntrack under pressure and over time, with real traffic: a spoofed-ACK flood against a
//! small table followed by new connections, a half-closed connection held for 30 s, and a host
//! socket that reuses the port a container's masqueraded flow was using.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use netd_tests::dataplane::{
    EchoServer, UdpEcho, drops_in, send_raw, stats, tcp_segment, tcp_try, udp_exchange,
};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, World, in_netns, try_poll_until};

const T: Duration = Duration::from_secs(5);

/// Sends `n` bare ACKs (no connection behind them) from the outside to `dst:dport`, each from
/// another source port, through a raw socket in the outside namespace.
fn ack_flood(w: &World, dst: Ipv4Addr, dport: u16, n: u32) {
    let src: Ipv4Addr = OUTSIDE_IP.parse().unwrap();
    send_raw(&w.outside, dst, n, move |i| {
        let seq = i * 7919;
        tcp_segment(
            src,
            dst,
            10_000 + (i % 50_000) as u16,
            dport,
            seq,
            seq.rotate_left(7),
            0x10,
        )
    });
}

#[test]
fn a_spoofed_ack_flood_does_not_lock_out_new_connections() {
    let w = World::new();
    // Room for 128 flows.
    let d = w.daemon(&["--bip", BIP, "--ct-max", "256"]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80"]);
    let _echo = EchoServer::start(&web, 80);
    let target = format!("{HOST_UPLINK_IP}:8080");
    try_poll_until(T, || tcp_try(&w.outside, &target, Duration::from_secs(1)))
        .expect("published port never answered");
    // An established connection that must survive the flood.
    let kept = in_netns(&w.outside, {
        let target: SocketAddr = target.parse().unwrap();
        move || Ok(TcpStream::connect_timeout(&target, T)?)
    })
    .unwrap();
    kept.set_read_timeout(Some(T)).unwrap();
    let mut kept_ref = &kept;
    kept_ref.write_all(b"before\n").unwrap();
    let mut buf = [0u8; 7];
    kept_ref.read_exact(&mut buf).unwrap();

    // Ten times the table's size of bare ACKs, each a "new flow" to the published port.
    ack_flood(&w, HOST_UPLINK_IP.parse().unwrap(), 8080, 2560);

    // New connections get in at once: no SYN needs sending again (a dropped one is resent
    // after 1 s; the count is asserted, not the time, which a loaded machine stretches too).
    let syns0 = netd_tests::netstat::syn_retransmits(&w.outside);
    let started = std::time::Instant::now();
    for i in 0..20 {
        tcp_try(&w.outside, &target, T)
            .unwrap_or_else(|e| panic!("connection {i} after the flood: {e:#}"));
    }
    let took = started.elapsed();
    let resent = netd_tests::netstat::syn_retransmits(&w.outside) - syns0;
    kept_ref.write_all(b"after!\n").unwrap();
    kept_ref.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!\n", "the established connection survived");
    let st = stats(&d);
    assert!(
        drops_in(&st, "conntrack-evicted-unreplied") > 1000,
        "the flood was evicted: {st}"
    );
    assert_eq!(drops_in(&st, "conntrack-full"), 0, "{st}");
    eprintln!(
        "20 connections after the flood took {took:?}, {resent} SYNs resent; evicted {}",
        drops_in(&st, "conntrack-evicted-unreplied")
    );
    assert_eq!(resent, 0, "SYNs after the flood were sent again: {st}");
}

#[test]
fn a_half_closed_connection_is_held_for_30_seconds() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80"]);
    // A server that reads the request to its end, thinks for 30 s, then answers (an HTTP/1.0
    // client or `shutdown(SHUT_WR)` waits that long for its response).
    let listener = in_netns(&web, || Ok(TcpListener::bind("0.0.0.0:80")?)).unwrap();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut req = Vec::new();
        s.read_to_end(&mut req)?;
        std::thread::sleep(Duration::from_secs(30));
        s.write_all(b"late answer to ")?;
        s.write_all(&req)?;
        Ok(())
    });
    let target: SocketAddr = format!("{HOST_UPLINK_IP}:8080").parse().unwrap();
    let got = in_netns(&w.outside, move || {
        let mut s = TcpStream::connect_timeout(&target, T)?;
        s.write_all(b"GET /")?;
        s.shutdown(Shutdown::Write)?;
        s.set_read_timeout(Some(Duration::from_secs(45)))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    })
    .expect("the answer after 30 s");
    assert_eq!(got, b"late answer to GET /");
    server.join().unwrap().unwrap();
}

#[test]
fn a_host_socket_reusing_a_masqueraded_port_gets_its_own_replies() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c1 = w.container("c1");
    d.attach("c1", &c1, &[]);
    let echo = UdpEcho::start(&w.outside, 7101);
    let dst = format!("{OUTSIDE_IP}:7101");
    // The default range (`--masq-ports auto`) is every port outside the namespace's ephemeral
    // range (32768-60999 in a new namespace): 1024-32767. It is reserved from the host's own
    // sockets all the same, in the daemon's namespace only.
    let reserved = w.host.read("/proc/sys/net/ipv4/ip_local_reserved_ports");
    assert!(reserved.contains("1024-32767"), "{reserved:?}");
    // The container talks from port 40000 (a port the host could use) ...
    let got = try_poll_until(T, || {
        udp_exchange(&c1, "0.0.0.0:40000", &dst, b"container".to_vec())
    })
    .expect("container exchange");
    assert_eq!(got, b"container");
    let masq_port = echo.seen()[0].0.port();
    assert!(
        (1024..=32767).contains(&masq_port),
        "masqueraded into the reserved range: {masq_port}"
    );
    // ... and then a host socket opens with that very port towards the same peer: its
    // replies are its own.
    let got = in_netns(&w.host, {
        let dst = dst.clone();
        move || {
            let s = UdpSocket::bind("0.0.0.0:40000")?;
            s.connect(&dst)?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.send(b"host")?;
            let mut buf = [0u8; 16];
            let n = s.recv(&mut buf)?;
            Ok(buf[..n].to_vec())
        }
    })
    .expect("the host socket's reply");
    assert_eq!(got, b"host");
    // The container's flow still works.
    assert_eq!(
        udp_exchange(&c1, "0.0.0.0:40000", &dst, b"again".to_vec()).unwrap(),
        b"again"
    );
    // Host sockets never get a reserved port from the kernel, even with an ephemeral range
    // that overlaps it.
    w.host
        .run_ok(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=30000 65535"]);
    let ports = in_netns(&w.host, || {
        let socks: Vec<UdpSocket> = (0..300)
            .map(|_| UdpSocket::bind("0.0.0.0:0"))
            .collect::<Result<_, _>>()?;
        Ok(socks
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()?)
    })
    .unwrap();
    assert!(
        ports.iter().all(|p| !(1024..=32767).contains(p)),
        "{ports:?}"
    );
}
