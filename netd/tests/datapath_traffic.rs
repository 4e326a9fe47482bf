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
    process::Command,
    time::Duration,
};

use aya::maps::{Array, HashMap};
use datapath_util::*;
use netd::dataplane::{Dataplane, DataplaneConfig};
use netd_common::*;

const OUTSIDE_IP: [u8; 4] = [198, 51, 100, 2];

fn nsenter(ns: &Netns, argv: &[&str]) {
    let net = format!("--net={}", ns.path().display());
    let out = Command::new("nsenter")
        .arg(&net)
        .args(argv)
        .output()
        .expect("nsenter");
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "link", "show", dev])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("link/ether");
    let mut m = [0u8; 6];
    for (i, b) in mac.split(':').enumerate() {
        m[i] = u8::from_str_radix(b, 16).unwrap();
    }
    m
}

fn sa(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

/// Runs `f` on a new thread inside `ns`; join it with `.join()`.
fn spawn_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
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
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["cat", "/proc/net/snmp"])
        .output()
        .expect("read /proc/net/snmp");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

fn real_traffic(fast: bool) {
    let h = Netns::new("h");
    let c = Netns::new("c");
    let o = Netns::new("o");
    h.ip(&[
        "link", "add", "up0", "type", "veth", "peer", "name", "out0", "netns", &o.name,
    ]);
    h.ip(&[
        "link", "add", "va", "type", "veth", "peer", "name", "eth0", "netns", &c.name,
    ]);
    h.ip(&["link", "add", "netd0", "type", "bridge"]);
    h.ip(&["link", "set", "va", "master", "netd0"]);
    h.ip(&["addr", "add", "198.51.100.1/24", "dev", "up0"]);
    h.ip(&["addr", "add", "172.30.0.1/24", "dev", "netd0"]);
    for dev in ["lo", "up0", "va", "netd0"] {
        h.ip(&["link", "set", dev, "up"]);
    }
    c.ip(&["addr", "add", "172.30.0.2/24", "dev", "eth0"]);
    c.ip(&["link", "set", "lo", "up"]);
    c.ip(&["link", "set", "eth0", "up"]);
    c.ip(&["route", "add", "default", "via", "172.30.0.1"]);
    o.ip(&["addr", "add", "198.51.100.2/24", "dev", "out0"]);
    o.ip(&["link", "set", "lo", "up"]);
    o.ip(&["link", "set", "out0", "up"]);
    // The outside can route to the container subnet (direct access must still fail).
    o.ip(&["route", "add", "172.30.0.0/24", "via", "198.51.100.1"]);
    nsenter(&h, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (ns, dev, args) in [
        (&h, "up0", ["tx", "off"]),
        (&h, "va", ["tx", "off"]),
        (&o, "out0", ["rx", "off"]),
        (&c, "eth0", ["rx", "off"]),
    ] {
        nsenter(ns, &["ethtool", "-K", dev, args[0], args[1]]);
    }
    let a_mac = mac_of(&c, "eth0");
    let bridge_mac = fast.then(|| mac_of(&h, "netd0"));

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
    let server = spawn_in(&c, || {
        let l = TcpListener::bind(sa(A_IP, 80)).unwrap();
        let (mut s, peer) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        peer
    });
    std::thread::sleep(Duration::from_millis(200));
    let sent: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let echoed = spawn_in(&o, {
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
    let udp_server = spawn_in(&c, || {
        let s = UdpSocket::bind(sa(A_IP, 53)).unwrap();
        let mut buf = [0u8; 64];
        let (n, peer) = s.recv_from(&mut buf).unwrap();
        s.send_to(&buf[..n], peer).unwrap();
        peer
    });
    std::thread::sleep(Duration::from_millis(100));
    spawn_in(&o, || {
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
    let outside = spawn_in(&o, || {
        let l = TcpListener::bind(sa(OUTSIDE_IP, 9000)).unwrap();
        let (mut s, peer) = l.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"world").unwrap();
        peer
    });
    std::thread::sleep(Duration::from_millis(100));
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
    let fwd = forwarded(&h);
    if fast {
        assert!(
            fwd <= 5,
            "{fwd} datagrams forwarded by the stack on the fast path"
        );
    } else {
        assert!(fwd > 100, "only {fwd} datagrams forwarded by the stack");
    }

    // Direct access to the container's address is refused.
    spawn_in(&o, || {
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
    let mut hosts: HashMap<_, u32, u32> =
        HashMap::try_from(open_map(pin_dir, MAP_HOST_ADDRS)).unwrap();
    for (a, i) in [(UPLINK_IP, up), (BRIDGE_IP, br), ([127, 0, 0, 1], 1)] {
        hosts.insert(ip(a), i, 0).unwrap();
    }
    let mut uplinks: HashMap<_, u32, UplinkInfo> =
        HashMap::try_from(open_map(pin_dir, MAP_UPLINKS)).unwrap();
    uplinks
        .insert(
            up,
            UplinkInfo {
                ip: ip(UPLINK_IP),
                flags: 0,
            },
            0,
        )
        .unwrap();
    let ep = EndpointInfo {
        ip: ip(A_IP),
        ifindex: va,
        mac: a_mac,
        net_id: 0,
    };
    let mut eps: HashMap<_, u32, EndpointInfo> =
        HashMap::try_from(open_map(pin_dir, MAP_ENDPOINTS)).unwrap();
    eps.insert(va, ep, 0).unwrap();
    let mut by_ip: HashMap<_, u32, EndpointInfo> =
        HashMap::try_from(open_map(pin_dir, MAP_EP_BY_IP)).unwrap();
    by_ip.insert(ip(A_IP), ep, 0).unwrap();
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
    let mut cfg: Array<_, DpConfig> = Array::try_from(open_map(pin_dir, MAP_CONFIG)).unwrap();
    cfg.set(
        0,
        DpConfig {
            flags: CFG_F_MASQ | bridge_mac.map_or(0, |_| CFG_F_FAST_PATH),
            bridge_ifindex: br,
            bridge_ip: ip(BRIDGE_IP),
            subnet: ip([172, 30, 0, 0]),
            subnet_mask: ip([255, 255, 255, 0]),
            snat_port_min: 32768,
            snat_port_max: 60999,
            ct_tcp_syn_s: 60,
            ct_tcp_established_s: 3600,
            ct_tcp_closing_s: 120,
            ct_udp_s: 60,
            ct_icmp_s: 30,
            ct_unreplied_s: 30,
            bridge_mac: bridge_mac.unwrap_or_default(),
            _pad2: 0,
            _pad_ports: [0; 3],
            ct_tcp_time_wait_s: 120,
            ct_tcp_close_s: 10,
            ct_ring_slots: Array::<_, CtRingSlot>::try_from(open_map(pin_dir, MAP_CT_RING))
                .unwrap()
                .len(),
        },
        0,
    )
    .unwrap();
}
