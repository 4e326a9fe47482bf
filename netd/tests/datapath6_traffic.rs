//! Real IPv6 traffic between two containers through the attached from_container (root): a
//! "host" namespace with a bridge and the dataplane, two container namespaces on it with
//! global addresses in 2001:db8:1::/64. ping -6 and TCP with `--icc true`, `--icc false` and a
//! link; a datagram with a spoofed source never arrives.

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use std::{
    io::{Read, Write},
    net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use aya::maps::Array;
use datapath_util::*;
use netd::dataplane::{Dataplane, DataplaneConfig};
use netd_common::*;

const BR6: &str = "2001:db8:1::1";
const A6: &str = "2001:db8:1::2";
const B6: &str = "2001:db8:1::3";
const SPOOF6: &str = "2001:db8:1::99";

/// The link-local address of `dev` in `ns` (DAD is off in the test namespaces).
fn link_local(ns: &Netns, dev: &str) -> Ipv6Addr {
    for _ in 0..50 {
        let text = ns.exec(&[
            "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link",
        ]);
        if let Some(a) = text
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
        {
            return a.parse().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no link-local address on {dev} in {}", ns.name);
}

fn sa6(a: &str, port: u16) -> SocketAddr {
    SocketAddr::from((a.parse::<Ipv6Addr>().unwrap(), port))
}

fn ping6(ns: &Netns, dst: &str) -> bool {
    ns.run(&["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", dst])
        .status
        .success()
}

/// Does a TCP connection from `from` to `dst`:80 carry a message there and back? The server
/// in `to` reports the peer it saw.
fn tcp6(from: &Netns, to: &Netns, dst: &'static str) -> Option<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = spawn_in(to, move || {
        let l = TcpListener::bind(sa6("::", 80)).unwrap();
        l.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        for _ in 0..30 {
            if let Ok((mut s, peer)) = l.accept() {
                s.set_nonblocking(false).unwrap();
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).ok()?;
                s.write_all(b"pong").ok()?;
                return Some(peer);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    rx.recv().unwrap();
    let ok = spawn_in(from, move || {
        let mut s = TcpStream::connect_timeout(&sa6(dst, 80), Duration::from_millis(1500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"ping").ok()?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).ok()?;
        (&buf == b"pong").then_some(())
    })
    .join()
    .unwrap();
    let peer = server.join().unwrap();
    ok.and(peer)
}

fn drops(pins: &PinDir, reason: u32) -> u64 {
    drop_counts(&pins.0)[reason as usize]
}

/// The non-zero drop counters, for failure messages.
fn all_drops(pins: &PinDir) -> Vec<(&'static str, u64)> {
    (0..DROP_REASONS)
        .map(|r| (drop_reason_name(r), drops(pins, r)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn set_icc(pins: &PinDir, on: bool) {
    let mut a: Array<_, DpConfig> = Array::try_from(open_map(&pins.0, MAP_CONFIG)).unwrap();
    let mut c = a.get(&0, 0).unwrap();
    if on {
        c.flags |= CFG_F_ICC;
    } else {
        c.flags &= !CFG_F_ICC;
    }
    a.set(0, c, 0).unwrap();
}

#[test]
fn ipv6_between_containers_follows_icc_links_and_anti_spoofing() {
    let h = Netns::new("netd-dpath-h6");
    add_bridge(&h);
    h.exec(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
    h.exec(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
    h.ip(&["addr", "add", &format!("{BR6}/64"), "dev", "netd0", "nodad"]);
    let c1 = plug_container(&h, "c6a", "va", "172.30.0.2/24");
    let c2 = plug_container(&h, "c6b", "vb", "172.30.0.3/24");
    for (c, v6) in [(&c1, A6), (&c2, B6)] {
        c.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
    }
    // An address the kernel lets c1 send from (bound explicitly: deprecated, so never chosen
    // as a source by itself), but the dataplane does not know as c1's.
    c1.ip(&[
        "addr",
        "add",
        &format!("{SPOOF6}/128"),
        "dev",
        "eth0",
        "nodad",
        "preferred_lft",
        "0",
    ]);
    let (a_mac, b_mac, br_mac) = (
        c1.mac_bytes("eth0"),
        c2.mac_bytes("eth0"),
        h.mac_bytes("netd0"),
    );
    let (a_ll, b_ll) = (link_local(&c1, "eth0"), link_local(&c2, "eth0"));

    let pins = PinDir::new();
    let pin_dir = pins.0.clone();
    let dp: Dataplane = h.enter(|| {
        let mut dp = Dataplane::open(&DataplaneConfig {
            pin_dir: pin_dir.clone(),
            ct_max: CT_MAX_DEFAULT,
        })
        .expect("open");
        let (br, va, vb) = (ifindex("netd0"), ifindex("va"), ifindex("vb"));
        for (ifindex, v4, mac) in [(va, A_IP, a_mac), (vb, B_IP, b_mac)] {
            dp.upsert_endpoint(&EndpointInfo {
                ip: ip(v4),
                ifindex,
                mac,
                net_id: 0,
            })
            .unwrap();
        }
        dp.set_endpoint_ipv6(va, a_ll, Some(A6.parse().unwrap()))
            .unwrap();
        dp.set_endpoint_ipv6(vb, b_ll, Some(B6.parse().unwrap()))
            .unwrap();
        set_config(&pin_dir, bridge_config(br, CFG_F_ICC, br_mac));
        dp.attach_endpoint("va").expect("attach va");
        dp.attach_endpoint("vb").expect("attach vb");
        dp
    });

    // --icc true: ping and TCP over the global addresses; B sees A's own address.
    assert!(
        ping6(&c1, B6),
        "--icc true: ping -6 A -> B; drops {:?}",
        all_drops(&pins)
    );
    assert!(ping6(&c1, BR6), "ping -6 A -> the gateway");
    let peer = tcp6(&c1, &c2, B6).expect("--icc true: TCP A -> B over IPv6");
    assert_eq!(peer.ip(), A6.parse::<Ipv6Addr>().unwrap());
    // A datagram from an address that is not A's never arrives; from A's own it does. The
    // receiver is bound before anything is sent, and reads until A's own three (sent last)
    // are in; that the spoofed three were all dropped, the counter says.
    let rx = c2.enter(|| UdpSocket::bind(sa6("::", 9999)).unwrap());
    let udp_rx = std::thread::spawn(move || {
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.iter().filter(|(m, _)| m == b"own").count() < 3 {
            let Ok((n, peer)) = rx.recv_from(&mut buf) else {
                break;
            };
            got.push((buf[..n].to_vec(), peer.ip()));
        }
        got
    });
    let spoofed0 = drops(&pins, DROP_SPOOFED_IP);
    spawn_in(&c1, || {
        for (src, msg) in [(SPOOF6, &b"spoofed"[..]), (A6, &b"own"[..])] {
            let s = UdpSocket::bind(sa6(src, 0)).unwrap();
            for _ in 0..3 {
                s.send_to(msg, sa6(B6, 9999)).unwrap();
            }
        }
    })
    .join()
    .unwrap();
    let got = udp_rx.join().unwrap();
    assert!(
        !got.is_empty(),
        "the datagrams from A's own address arrived"
    );
    for (msg, from) in &got {
        assert_eq!(
            msg, b"own",
            "only A's own datagrams arrive, got one from {from}"
        );
        assert_eq!(*from, A6.parse::<Ipv6Addr>().unwrap());
    }
    assert!(
        drops(&pins, DROP_SPOOFED_IP) >= spoofed0 + 3,
        "spoofed datagrams counted"
    );

    // --icc false: no ping, no TCP between the containers; the gateway stays reachable.
    set_icc(&pins, false);
    let icc0 = drops(&pins, DROP_ICC);
    assert!(!ping6(&c1, B6), "--icc false: ping -6 A -> B got through");
    assert!(
        tcp6(&c1, &c2, B6).is_none(),
        "--icc false: TCP A -> B got through"
    );
    assert!(drops(&pins, DROP_ICC) > icc0, "icc-denied counted");
    assert!(
        ping6(&c1, BR6),
        "--icc false: the gateway is still reachable"
    );

    // A link A -> B tcp/80: that connection works, ping still does not.
    put_link(&pins.0, A_IP, B_IP, IPPROTO_TCP, &[(80, 80)]);
    let peer = tcp6(&c1, &c2, B6).expect("--icc false with a link: TCP A -> B:80");
    assert_eq!(peer.ip(), A6.parse::<Ipv6Addr>().unwrap());
    assert!(tcp6(&c2, &c1, A6).is_none(), "the link is one way");
    assert!(!ping6(&c1, B6), "a tcp link does not open ping");

    h.enter(|| {
        let mut dp = dp;
        dp.detach("va").unwrap();
        dp.detach("vb").unwrap();
    });
}
