//! icc=false and anti-spoofing on the engine's IPv6 leases.

use super::*;

/// The engine hands each container's IPv6 lease to the datapath's IPv6 policy: under
/// `--icc false` containers reach the outside from their own global address but not each
/// other, and a container sending from an address that is not its own is dropped and counted.
#[test]
fn icc_false_and_anti_spoofing_police_the_engines_ipv6_leases() {
    let w = World::new();
    v6_uplink_routed(&w, "2001:db8:1::/64");
    let d = w.daemon(&[
        "--bip",
        BIP,
        "--icc",
        "false",
        "--ipv6",
        "--fixed-cidr-v6",
        "2001:db8:1::/64",
    ]);
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    d.attach("c1", &c1, &["--ip6", "2001:db8:1::10"]);
    d.attach("c2", &c2, &["--ip6", "2001:db8:1::20"]);

    // Routed traffic to and from the outside passes the policy with the lease's address.
    let out = tcp6_server(&w.outside, 9000);
    assert_eq!(tcp_until(&c1, "[2001:db8:ff::2]:9000"), "ping");
    assert_eq!(out.last_peer_ip(), "2001:db8:1::10");
    let srv = tcp6_server(&c1, 80);
    assert_eq!(tcp_until(&w.outside, "[2001:db8:1::10]:80"), "ping");

    // Container to container over global IPv6 is ICC: dropped and counted.
    let icc0 = drops(&d, "icc-denied");
    assert!(
        tcp_blocked(&c2, "[2001:db8:1::10]:80"),
        "c2 reached c1 over IPv6 under --icc false"
    );
    assert!(drops(&d, "icc-denied") > icc0);

    // c1 sends from an address it was not given: never arrives, counted as spoofed.
    let spoof0 = drops(&d, "spoofed-source-ip");
    addr6(&c1, "2001:db8:1::dead/64", "eth0");
    let udp = udp6_server(&w.outside, 9001);
    let sent = in_netns(&c1, || {
        let sock = UdpSocket::bind(("2001:db8:1::dead", 0))?;
        for _ in 0..5 {
            sock.send_to(b"spoof", "[2001:db8:ff::2]:9001")?;
        }
        Ok(())
    });
    sent.expect("send from the extra address");
    // All five dropped and counted: none is still on its way (no grace period to guess).
    poll_until("all 5 spoofed datagrams counted as dropped", T, || {
        let n = drops(&d, "spoofed-source-ip");
        if n >= spoof0 + 5 { Ok(n) } else { Err(n) }
    });
    assert_eq!(udp.last_peer_ip(), "", "a spoofed datagram arrived");
    // After detach the lease is gone from the maps: its address is another container's to use.
    d.netd_ok(&["detach", "c1"]);
    drop(srv);
    let c3 = w.container("c3");
    d.attach("c3", &c3, &["--ip6", "2001:db8:1::10"]);
    assert_eq!(tcp_until(&c3, "[2001:db8:ff::2]:9000"), "ping");
    assert_eq!(out.last_peer_ip(), "2001:db8:1::10");
}
