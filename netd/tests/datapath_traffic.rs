//! Real traffic through the attached datapath (root): an "outside" namespace, a "host"
//! namespace with the uplink, a bridge and the dataplane attached, and a container namespace.
//! TCP and UDP cross published ports and masquerade both ways, and direct access is refused.
//!
//! Checksums are really checked: senders hand CHECKSUM_PARTIAL packets to their veth (the
//! default), the host's egress interfaces have TX checksumming off, so the kernel completes
//! each checksum in software *after* the programs rewrote addresses and ports, and receivers
//! have RX checksumming off, so their stack verifies it (veth would otherwise mark packets as
//! verified). A wrong pseudo-header update loses the connection.

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use datapath_util::*;
use netd::dataplane::{Dataplane, DataplaneConfig};
use netd_common::*;

const OUTSIDE_IP: [u8; 4] = [198, 51, 100, 2];

fn sa(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

#[test]
fn real_traffic_through_published_ports_and_masquerade() {
    real_traffic(false);
}

/// The same traffic with the fast path on: published traffic goes into the container with
/// bpf_redirect_peer, replies and masqueraded traffic out with bpf_fib_lookup + redirect.
#[test]
fn real_traffic_on_the_fast_path() {
    real_traffic(true);
}

/// Datagrams the host namespace forwarded through its stack (Ip ForwDatagrams).
fn forwarded(ns: &Netns) -> u64 {
    netd_tests::netstat::counter(ns, "Ip", "ForwDatagrams")
}

/// Binds a socket in `ns` (on a thread there; the socket stays in it): the server thread that
/// gets it is listening before any client starts, no sleep needed.
fn bound<S: Send>(ns: &Netns, bind: impl FnOnce() -> std::io::Result<S> + Send) -> S {
    ns.enter(bind)
        .unwrap_or_else(|e| panic!("bind in {}: {e}", ns.name()))
}

fn real_traffic(fast: bool) {
    // host (up0 198.51.100.1) <-> outside (eth0 198.51.100.2), the bridge, container A.
    let w = netd_tests::World::new();
    let (h, o) = (&w.host, &w.outside);
    add_bridge(h);
    let c = plug_container(h, "c", "va", "172.30.0.2/24");
    c.ip(&["route", "add", "default", "via", "172.30.0.1"]);
    // The outside can route to the container subnet (direct access must still fail).
    o.ip(&["route", "add", "172.30.0.0/24", "via", "198.51.100.1"]);
    h.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (ns, dev, args) in [
        (h, "up0", ["tx", "off"]),
        (h, "va", ["tx", "off"]),
        (o, "eth0", ["rx", "off"]),
        (&c, "eth0", ["rx", "off"]),
    ] {
        ns.exec(&["ethtool", "-K", dev, args[0], args[1]]);
    }
    let a_mac = c.mac_bytes("eth0");
    let bridge_mac = fast.then(|| h.mac_bytes("netd0"));

    let pins = PinDir::new();
    let pin_dir = pins.0.clone();
    let dp: Dataplane = h.enter(|| {
        let mut dp = Dataplane::open(&DataplaneConfig {
            pin_dir: pin_dir.clone(),
            ct_max: netd_common::CT_MAX_DEFAULT,
        })
        .expect("open");
        let (up, br, va) = (ifindex("up0"), ifindex("netd0"), ifindex("va"));
        program(&pin_dir, up, br, va, a_mac, bridge_mac);
        dp.attach_uplink("up0").expect("attach_uplink");
        dp.attach_endpoint("va").expect("attach_endpoint");
        dp
    });

    // Published TCP: the container sees the client's own address; 1 MiB each way.
    let l = bound(&c, || TcpListener::bind(sa(A_IP, 80)));
    let server = std::thread::spawn(move || {
        let (mut s, peer) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        peer
    });
    let sent: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let echoed = spawn_in(o, {
        let sent = sent.clone();
        move || {
            let mut s = TcpStream::connect_timeout(&sa(UPLINK_IP, 8080), Duration::from_secs(5))
                .expect("connect to the published port");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let w = {
                let mut s2 = s.try_clone().unwrap();
                std::thread::spawn(move || s2.write_all(&sent).unwrap())
            };
            let mut back = vec![0u8; 1 << 20];
            s.read_exact(&mut back)
                .expect("echo through the published port");
            w.join().unwrap();
            back
        }
    })
    .join()
    .unwrap();
    assert!(echoed == sent, "1 MiB came back intact");
    assert_eq!(server.join().unwrap().ip(), sa(OUTSIDE_IP, 0).ip());

    // Published UDP: the reply comes from the published address (connected socket).
    let s = bound(&c, || UdpSocket::bind(sa(A_IP, 53)));
    let udp_server = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, peer) = s.recv_from(&mut buf).unwrap();
        s.send_to(&buf[..n], peer).unwrap();
        peer
    });
    spawn_in(o, || {
        let s = UdpSocket::bind(sa(OUTSIDE_IP, 0)).unwrap();
        s.connect(sa(UPLINK_IP, 5353)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send(b"udp through a published port").unwrap();
        let mut buf = [0u8; 64];
        let n = s
            .recv(&mut buf)
            .expect("UDP reply from the published address");
        assert_eq!(&buf[..n], b"udp through a published port");
    })
    .join()
    .unwrap();
    assert_eq!(udp_server.join().unwrap().ip(), sa(OUTSIDE_IP, 0).ip());

    // Masquerade: the outside sees the uplink's address.
    let l = bound(o, || TcpListener::bind(sa(OUTSIDE_IP, 9000)));
    let outside = std::thread::spawn(move || {
        let (mut s, peer) = l.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"world").unwrap();
        peer
    });
    spawn_in(&c, || {
        let mut s = TcpStream::connect_timeout(&sa(OUTSIDE_IP, 9000), Duration::from_secs(5))
            .expect("masqueraded connect");
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"world");
    })
    .join()
    .unwrap();
    assert_eq!(outside.join().unwrap().ip(), sa(UPLINK_IP, 0).ip());

    // The fast path forwarded (nearly) nothing through the stack: only a new masqueraded
    // flow's first packet (a connection's first SYN and its retries) takes it.
    let fwd = forwarded(h);
    if fast {
        assert!(
            fwd <= 5,
            "{fwd} datagrams forwarded by the stack on the fast path"
        );
    } else {
        assert!(fwd > 100, "only {fwd} datagrams forwarded by the stack");
    }

    // Direct access to the container's address is refused.
    spawn_in(o, || {
        let r = TcpStream::connect_timeout(&sa(A_IP, 80), Duration::from_millis(800));
        assert!(r.is_err(), "direct access must fail");
    })
    .join()
    .unwrap();
    let drops: aya::maps::PerCpuArray<_, u64> =
        aya::maps::PerCpuArray::try_from(open_map(&pins.0, MAP_DROPS)).unwrap();
    let direct: u64 = drops.get(&DROP_DIRECT_ACCESS, 0).unwrap().iter().sum();
    assert!(direct >= 1, "direct access counted");
    for reason in [
        DROP_MALFORMED,
        DROP_REWRITE_FAILED,
        DROP_CT_CLASH,
        DROP_SPOOFED_IP,
    ] {
        let n: u64 = drops.get(&reason, 0).unwrap().iter().sum();
        assert_eq!(n, 0, "{}", drop_reason_name(reason));
    }
    h.enter(|| {
        let mut dp = dp;
        dp.detach("up0").unwrap();
        dp.detach("va").unwrap();
    });
}

/// Programs the maps as the agent does for this topology.
/// With `bridge_mac`, the fast path is on.
fn program(
    pin_dir: &std::path::Path,
    up: u32,
    br: u32,
    va: u32,
    a_mac: [u8; 6],
    bridge_mac: Option<[u8; 6]>,
) {
    put_host_addrs(pin_dir, up, br);
    put_uplink(pin_dir, up);
    put_endpoint(
        pin_dir,
        &EndpointInfo {
            ip: ip(A_IP),
            ifindex: va,
            mac: a_mac,
            net_id: 0,
        },
    );
    let bindings = [
        PortEntry {
            proto: IPPROTO_TCP,
            host_port_start: 8080,
            host_port_end: 8080,
            container_port: 80,
            container_ip: ip(A_IP),
            binding_id: 1,
            ..Default::default()
        },
        PortEntry {
            proto: IPPROTO_UDP,
            host_port_start: 5353,
            host_port_end: 5353,
            container_port: 53,
            container_ip: ip(A_IP),
            binding_id: 2,
            ..Default::default()
        },
    ];
    write_ports(open_map(pin_dir, MAP_PORTS), &bindings);
    set_config(
        pin_dir,
        DpConfig {
            flags: CFG_F_MASQ | bridge_mac.map_or(0, |_| CFG_F_FAST_PATH),
            snat_port_min: 32768,
            snat_port_max: 60999,
            bridge_mac: bridge_mac.unwrap_or_default(),
            ..base_config(pin_dir, br)
        },
    );
}
