//! IPv6 published ports end to end (issue 12): a daemon without `--ip` publishes `-p 8080:80`
//! on 0.0.0.0 and [::] for a container with IPv6, `-p [ADDR]:8082:82` on that address only,
//! and an explicit IPv4 host address never over IPv6. An outside IPv6 client reaches the
//! container over TCP and UDP, and the container sees the client's own address (the servers
//! record their peers). The outside has no route to the container subnet: only the published
//! ports (DNAT6) get it there.
//!
//! Every IPv6 address is in 2001:db8::/32, inside namespaces the test creates.

use std::net::IpAddr;
use std::time::Duration;

use netd_tests::dataplane::tcp_blocked;
use netd_tests::ipv6::{HOST6, OUTSIDE6, v6_uplink};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, World, poll_until, tcp_send, tcp6_server, udp_send, udp6_server};

const T: Duration = Duration::from_secs(8);

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn outside_ipv6_clients_reach_published_ports_with_their_own_address() {
    let w = World::new();
    v6_uplink(&w);
    // No --ip: `-p 8080:80` is 0.0.0.0 and [::].
    let d = w.daemon(&["--bip", BIP, "--ipv6", "--fixed-cidr-v6", "2001:db8:1::/64"]);
    let web = w.container("web");
    d.attach(
        "web",
        &web,
        &[
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
            "-p",
            "0.0.0.0:8081:81",
            "-p",
            &format!("[{HOST6}]:8082:82"),
        ],
    );
    let tcp80 = tcp6_server(&web, 80);
    let udp53 = udp6_server(&web, 53);
    let tcp81 = tcp6_server(&web, 81);
    let tcp82 = tcp6_server(&web, 82);

    // TCP over IPv6: DNAT6 to the container's IPv6 address, the client's address kept.
    let got = poll_until("TCP to [HOST6]:8080", T, || {
        tcp_send(&w.outside, &format!("[{HOST6}]:8080"), "ping6")
    });
    assert_eq!(got.trim(), "ping6");
    assert_eq!(
        tcp80.last_peer(),
        ip(OUTSIDE6),
        "the container sees the client"
    );
    // The same binding over IPv4, as before.
    let got = poll_until("TCP to HOST:8080", T, || {
        tcp_send(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), "ping4")
    });
    assert_eq!(got.trim(), "ping4");
    assert_eq!(tcp80.last_peer(), ip(OUTSIDE_IP));

    // UDP over IPv6, the reply from the published address (the connected socket accepts
    // only that source).
    let got = poll_until("UDP to [HOST6]:5353", T, || {
        udp_send(&w.outside, &format!("[{HOST6}]:5353"), "q6")
    });
    assert_eq!(got, "q6");
    assert_eq!(udp53.last_peer(), ip(OUTSIDE6));

    // A binding on the IPv6 address itself.
    let got = poll_until("TCP to [HOST6]:8082", T, || {
        tcp_send(&w.outside, &format!("[{HOST6}]:8082"), "eight2")
    });
    assert_eq!(got.trim(), "eight2");
    assert_eq!(tcp82.last_peer(), ip(OUTSIDE6));

    // An explicit IPv4 host address is never reachable over IPv6, only over IPv4.
    assert!(tcp_blocked(&w.outside, &format!("[{HOST6}]:8081")));
    assert!(tcp81.last_peer().is_none(), "nothing reached port 81");
    let got = poll_until("TCP to HOST:8081", T, || {
        tcp_send(&w.outside, &format!("{HOST_UPLINK_IP}:8081"), "v4")
    });
    assert_eq!(got.trim(), "v4");
    // The IPv6-only binding is not on IPv4.
    assert!(tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:8082")));
}

#[test]
fn ipv6_host_addresses_need_a_container_with_ipv6() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("v4only");
    let err = d.netd_err(&[
        "attach",
        "v4only",
        "--netns",
        c.path_str(),
        "-p",
        "[2001:db8:ff::1]:8080:80",
    ]);
    assert!(
        err.contains("IPv6 host address 2001:db8:ff::1 needs a container with an IPv6 address"),
        "{err}"
    );
    assert!(c.link("eth0").is_none(), "the refused attach left nothing");
    // Without IPv6, `-p 8080:80` is what it always was: 0.0.0.0.
    let v = d.attach("v4only", &c, &["-p", "8080:80"]);
    assert_eq!(v["ports"][0]["host_ip"], "0.0.0.0", "{v}");
}
