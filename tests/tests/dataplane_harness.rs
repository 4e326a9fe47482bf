//! Self-tests of the dataplane test helpers (no netd needed): the ICMP sniffer, clients bound
//! to a chosen source, the blocked-probe helpers and the streaming echo server, between the
//! bare host and outside namespaces.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netd_tests::dataplane::{
    BLOCKED_WAIT, EchoServer, IcmpSniffer, ping_from, tcp_blocked, tcp_try, tcp_try_from,
    tcp_try_from_port, udp_fire_from, udp_try, udp_try_from,
};
use netd_tests::netstat::{retransmits, syn_retransmits};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{World, in_netns, poll_until, tcp_server, udp_server};

const T: Duration = Duration::from_secs(5);

#[test]
fn probes_report_sources_and_blocked_paths() {
    let w = World::new();
    w.outside
        .ip(&["addr", "add", "203.0.113.2/32", "dev", "eth0"]);
    w.host
        .ip(&["route", "add", "203.0.113.0/24", "via", OUTSIDE_IP]);
    let tcp = tcp_server(&w.host, 7001);
    let udp = udp_server(&w.host, 7002);
    let addr = format!("{HOST_UPLINK_IP}:7001");
    assert_eq!(tcp_try(&w.outside, &addr, T).unwrap(), "ping");
    assert_eq!(tcp.last_peer_ip(), OUTSIDE_IP);
    assert_eq!(
        tcp_try_from(&w.outside, "203.0.113.2", &addr, T).unwrap(),
        "ping"
    );
    assert_eq!(tcp.last_peer_ip(), "203.0.113.2");
    assert_eq!(
        tcp_try_from_port(&w.outside, "203.0.113.2:40123", &addr, T).unwrap(),
        "ping"
    );
    assert_eq!(tcp.peers().last().unwrap().to_string(), "203.0.113.2:40123");
    let uaddr = format!("{HOST_UPLINK_IP}:7002");
    assert_eq!(udp_try(&w.outside, &uaddr).unwrap(), "ping");
    assert_eq!(
        udp_try_from(&w.outside, "203.0.113.2", &uaddr).unwrap(),
        "ping"
    );
    assert_eq!(udp.last_peer_ip(), "203.0.113.2");
    let seen = udp.peer_ips().len();
    udp_fire_from(&w.outside, "203.0.113.2", &uaddr, "x").unwrap();
    poll_until("the fired datagram", T, || {
        if udp.peer_ips().len() > seen {
            Ok(())
        } else {
            Err(udp.peer_ips())
        }
    });

    // A blackholed destination is "blocked" within the bounded wait; a closed port too.
    w.host.ip(&["route", "add", "blackhole", "192.0.2.0/24"]);
    w.outside
        .ip(&["route", "add", "192.0.2.0/24", "via", HOST_UPLINK_IP]);
    let t0 = Instant::now();
    assert!(tcp_blocked(&w.outside, "192.0.2.1:80"));
    assert!(t0.elapsed() < BLOCKED_WAIT * 3, "{:?}", t0.elapsed());
    assert!(tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:7999")));
    assert!(udp_try(&w.outside, "192.0.2.1:80").is_err());

    // The sniffer sees echo requests with their source address.
    let sniff = IcmpSniffer::new(&w.outside);
    assert!(ping_from(&w.host, None, OUTSIDE_IP));
    let src = sniff.echo_request_sources();
    assert_eq!(
        src.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        vec![HOST_UPLINK_IP.to_string()]
    );
    assert!(ping_from(&w.outside, Some("203.0.113.2"), HOST_UPLINK_IP));
    assert!(sniff.echo_request_sources().is_empty(), "own requests seen");
}

#[test]
fn echo_server_echoes_streams() {
    let w = World::new();
    let srv = EchoServer::start(&w.host, 7003);
    let addr: SocketAddr = format!("{HOST_UPLINK_IP}:7003").parse().unwrap();
    let got = in_netns(&w.outside, move || {
        let s = TcpStream::connect_timeout(&addr, T)?;
        s.set_read_timeout(Some(T))?;
        let data: Vec<u8> = (0..200_000).map(|i| (i % 251) as u8).collect();
        let r = s.try_clone()?;
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            (&r).read_to_end(&mut v).map(|_| v)
        });
        (&s).write_all(&data)?;
        s.shutdown(std::net::Shutdown::Write)?;
        let v = reader.join().unwrap()?;
        Ok(v == data)
    })
    .unwrap();
    assert!(got, "echo differs");
    assert_eq!(srv.peers().len(), 1);
    assert_eq!(srv.peers()[0].ip().to_string(), OUTSIDE_IP);
}

/// The counters the tests assert "nothing was lost" with do count losses: the host's answers
/// blackholed, the client sends its data and its SYNs again.
#[test]
fn lost_answers_show_as_retransmissions() {
    let w = World::new();
    let l = in_netns(&w.host, || Ok(TcpListener::bind(("0.0.0.0", 7010))?)).unwrap();
    let addr: SocketAddr = format!("{HOST_UPLINK_IP}:7010").parse().unwrap();
    let c = in_netns(&w.outside, move || {
        Ok(TcpStream::connect_timeout(&addr, T)?)
    })
    .unwrap();
    let (mut s, _) = l.accept().unwrap();
    (&c).write_all(b"one").unwrap();
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(retransmits(&c), 0, "nothing lost yet");
    let syns0 = syn_retransmits(&w.outside);

    w.host
        .ip(&["route", "add", "blackhole", &format!("{OUTSIDE_IP}/32")]);
    (&c).write_all(b"two").unwrap();
    poll_until(
        "the client to send its unacknowledged data again",
        T,
        || {
            let n = retransmits(&c);
            if n > 0 { Ok(n) } else { Err(n) }
        },
    );
    let r = in_netns(&w.outside, move || {
        Ok(TcpStream::connect_timeout(
            &addr,
            Duration::from_millis(1500),
        ))
    })
    .unwrap();
    assert!(r.is_err(), "connected with the SYN-ACK blackholed");
    assert!(
        syn_retransmits(&w.outside) > syns0,
        "a SYN sent again is counted"
    );
}
