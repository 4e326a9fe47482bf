//! Policy hardening end to end (issue 8): VLAN-tagged frames on an uplink with no VLAN device
//! and against the source lists (sent raw), a `deny` cutting an established
//! connection, and a host whose FORWARD policy is DROP (ufw, firewalld). Every
//! "blocked" check is preceded by the same path working, and every drop is expected under its
//! counter (netd's reason, or the FORWARD policy's packet count): a drop, not a hang.
//!
//! A VLAN device named in `--uplink` (and its parent as a second uplink) cannot be tested end
//! to end on the 6.18 test kernel: it is built without `CONFIG_VLAN_8021Q` (see
//! /proc/config.gz), so `ip link add link up0 name up0.100 type vlan id 100` fails with
//! "Unknown device type" in any namespace (bridge VLAN filtering is missing too). What the
//! daemon does with one is unit-tested: `wiring::tests::a_vlan_device_names_its_parent_and_a_veth_does_not`
//! (IFLA_LINK of a `vlan` link is its parent) and
//! `engine::dpsync::vlan_tests::only_uplinks_under_a_vlan_uplink_are_marked` (the parent
//! uplink gets `UPLINK_F_VLAN_PARENT`, so `from_uplink` leaves its tagged frames alone).

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::Duration;

use netd_tests::dataplane::{EchoServer, drops, forward_policy_drops};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP, UPLINK};
use netd_tests::{
    BIP, Daemon, Netns, ServerHandle, World, in_netns, poll_until, tcp_request, tcp_request_until,
    tcp_server, udp_server,
};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Waits until `reason` has counted more than `before` drops.
fn drops_grow(d: &Daemon, reason: &str, before: u64) {
    poll_until(&format!("{reason} drops above {before}"), T, || {
        let n = drops(d, reason);
        if n > before { Ok(n) } else { Err(n) }
    });
}

/// An Ethernet frame from `src_mac` to `dst_mac` carrying a UDP datagram (no UDP checksum,
/// as IPv4 allows) from `src` to `dst`, behind the VLAN tags `tags` (TPID, VLAN id).
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    tags: &[(u16, u16)],
    src: Ipv4Addr,
    dst: SocketAddrV4,
) -> Vec<u8> {
    let payload = b"tagged?";
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let tot = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&tot.to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.ip().octets());
    let sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let csum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, b) in s.split(':').enumerate() {
        m[i] = u8::from_str_radix(b, 16).expect("a MAC address");
    }
    m
}

/// Sends `frame` `n` times out of `ifname` in `ns` through a packet socket: the tags stay
/// in-band, as from a NIC without VLAN offload (the kernel takes a single tag off into
/// the skb before TC; this kernel has no 802.1Q devices to make them).
fn send_frames(ns: &Netns, ifname: &str, frame: Vec<u8>, n: usize) {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    in_netns(ns, move || {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        anyhow::ensure!(ifindex != 0, "no interface {ifname:?}");
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        for _ in 0..n {
            // SAFETY: frame and sll are valid for the lengths given.
            let rc = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            anyhow::ensure!(rc >= 0, "sendto: {}", std::io::Error::last_os_error());
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    })
    .expect("send raw frames");
}

/// Has `srv` received a datagram from `ip`?
fn seen_from(srv: &ServerHandle, ip: &str) -> bool {
    srv.peer_ips().iter().any(|i| i.to_string() == ip)
}

/// Tagged frames (802.1Q, 802.1ad, both) on an uplink that has no VLAN device: the kernel
/// would discard them after TC ingress, so netd must neither translate them nor deliver them
/// on the fast path, to a published port or to a container address; with an allow list, XDP
/// sees through the tags.
#[test]
fn vlan_tagged_frames_without_a_vlan_device_are_neither_translated_nor_delivered() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    let web_ip: Ipv4Addr = s(&d.attach("web", &web, &["-p", "5353:53/udp"])["ip"])
        .parse()
        .unwrap();
    let srv = udp_server(&web, 53);
    let (up_mac, out_mac) = (mac(&w.host.mac(UPLINK)), mac(&w.outside.mac("eth0")));
    let src: Ipv4Addr = OUTSIDE_IP.parse().unwrap();
    let published = SocketAddrV4::new(HOST_UPLINK_IP.parse().unwrap(), 5353);
    // Untagged, the same frame gets in (the outside knows the uplink's MAC from now on).
    send_frames(
        &w.outside,
        "eth0",
        udp_frame(up_mac, out_mac, &[], src, published),
        3,
    );
    poll_until("the untagged datagram in web", T, || {
        if seen_from(&srv, OUTSIDE_IP) {
            Ok(())
        } else {
            Err(srv.peer_ips())
        }
    });
    let before = srv.peer_ips().len();
    let tag_sets: [&[(u16, u16)]; 3] =
        [&[(0x8100, 5)], &[(0x88a8, 5)], &[(0x88a8, 7), (0x8100, 5)]];
    for tags in tag_sets {
        for dst in [published, SocketAddrV4::new(web_ip, 53)] {
            let v0 = drops(&d, "vlan-tag-without-device");
            send_frames(
                &w.outside,
                "eth0",
                udp_frame(up_mac, out_mac, tags, src, dst),
                3,
            );
            if tags.len() == 1 {
                // One tag: the kernel takes it off before TC, which refuses the frame.
                drops_grow(&d, "vlan-tag-without-device", v0);
            }
        }
    }
    // With an allow list that leaves the outside out, XDP drops them all, tags or not.
    d.netd_ok(&["filter", "allow", "192.0.2.0/24"]);
    for tags in tag_sets {
        let na0 = drops(&d, "source-not-allowed");
        send_frames(
            &w.outside,
            "eth0",
            udp_frame(up_mac, out_mac, tags, src, published),
            3,
        );
        drops_grow(&d, "source-not-allowed", na0);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        srv.peer_ips().len(),
        before,
        "a tagged datagram reached web: {:?}",
        srv.peer_ips()
    );
}

#[test]
fn a_deny_added_later_cuts_an_established_connection() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80"]);
    let _echo = EchoServer::start(&web, 80);
    let addr = format!("{HOST_UPLINK_IP}:8080");
    let stream = in_netns(&w.outside, move || {
        let s = TcpStream::connect_timeout(&addr.parse()?, T)?;
        Ok(s)
    })
    .expect("connect to the published port");
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    (&stream).write_all(b"one").unwrap();
    let n = (&stream).read(&mut buf).expect("echo before the deny");
    assert_eq!(&buf[..n], b"one");

    let denied0 = drops(&d, "source-denied");
    d.netd_ok(&["filter", "deny", &format!("{OUTSIDE_IP}/32")]);
    (&stream).write_all(b"two").unwrap();
    let r = (&stream).read(&mut buf);
    assert!(
        r.is_err(),
        "the established connection still works after the deny: {r:?}"
    );
    drops_grow(&d, "source-denied", denied0);

    // Lifted, the connection goes on (TCP retransmits what was dropped): it was cut, not
    // reset.
    d.netd_ok(&["filter", "rm", &format!("{OUTSIDE_IP}/32")]);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = (&stream)
        .read(&mut buf)
        .expect("echo after the deny is lifted");
    assert_eq!(&buf[..n], b"two");
}

/// With a default-drop FORWARD policy in the host namespace (never the machine's own), what
/// netd's README tells the operator to allow is exactly what published ports and masquerade
/// need, with and without the fast path; without it, the stack-path packets are dropped there.
fn forward_drop(fast_path: &str) {
    let w = World::new();
    w.host.run_ok(&["iptables", "-P", "FORWARD", "DROP"]);
    let d = w.daemon(&["--bip", BIP, "--fast-path", fast_path]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80"]);
    let _srv = tcp_server(&web, 80);
    let out = tcp_server(&w.outside, 7100);
    let published = format!("{HOST_UPLINK_IP}:8080");
    let outbound = format!("{OUTSIDE_IP}:7100");

    // Without the rules: a masqueraded flow's first packet takes the stack's path (it is
    // translated at the uplink, after routing), and so does everything without the fast path.
    let p0 = forward_policy_drops(&w.host, "iptables");
    assert!(
        tcp_request(&web, &outbound).is_err(),
        "masquerade got through FORWARD DROP"
    );
    if fast_path == "false" {
        assert!(
            tcp_request(&w.outside, &published).is_err(),
            "a published port got through FORWARD DROP on the stack path"
        );
    }
    assert!(
        forward_policy_drops(&w.host, "iptables") > p0,
        "FORWARD's policy counted no drop"
    );
    assert!(out.peers().is_empty());

    // The README's two rules: forwarding to and from the bridge.
    w.host
        .run_ok(&["iptables", "-A", "FORWARD", "-i", "netd0", "-j", "ACCEPT"]);
    w.host
        .run_ok(&["iptables", "-A", "FORWARD", "-o", "netd0", "-j", "ACCEPT"]);
    assert_eq!(tcp_request_until(&web, &outbound, T).unwrap(), "ping");
    assert_eq!(out.last_peer_ip(), HOST_UPLINK_IP, "masqueraded");
    assert_eq!(
        tcp_request_until(&w.outside, &published, T).unwrap(),
        "ping"
    );
    let p1 = forward_policy_drops(&w.host, "iptables");
    for _ in 0..3 {
        assert_eq!(tcp_request(&web, &outbound).unwrap(), "ping");
        assert_eq!(tcp_request(&w.outside, &published).unwrap(), "ping");
    }
    assert_eq!(
        forward_policy_drops(&w.host, "iptables"),
        p1,
        "nothing more dropped"
    );
}

#[test]
fn forward_drop_host_with_the_fast_path() {
    forward_drop("true");
}

#[test]
fn forward_drop_host_without_the_fast_path() {
    forward_drop("false");
}

/// The path MTU the kernel holds for the connected socket `fd` (IP_MTU).
fn ip_mtu(fd: i32) -> i32 {
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: mtu and len are valid for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&raw mut mtu).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "IP_MTU: {}", std::io::Error::last_os_error());
    mtu
}

/// `--mtu` below the uplink's: a client's don't-fragment datagram to a published port is too
/// big for the bridge, and the host answers "fragmentation needed" quoting the packet as it
/// DNAT'd it. The error must leave quoting the client's own packet (the published address and
/// port), or the client's kernel matches it to no socket and PMTU discovery never learns the
/// smaller MTU.
fn pmtu(fast_path: &str) {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--mtu", "1400", "--fast-path", fast_path]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "5353:53/udp"]);
    let srv = udp_server(&web, 53);
    let published = format!("{HOST_UPLINK_IP}:5353");
    let sock = in_netns(&w.outside, move || {
        let s = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
        s.connect(published.as_str())?;
        let v: libc::c_int = libc::IP_PMTUDISC_DO;
        // SAFETY: v is a valid c_int for the call.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&raw const v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        anyhow::ensure!(rc == 0, "IP_MTU_DISCOVER");
        Ok(s)
    })
    .expect("a client socket");
    assert_eq!(ip_mtu(sock.as_raw_fd()), 1500, "the uplink's MTU at first");
    // Small datagrams get through.
    sock.send(&[1u8; 100]).unwrap();
    poll_until("a small datagram in web", T, || {
        if srv.peers().is_empty() {
            Err(())
        } else {
            Ok(())
        }
    });
    // A 1500-byte datagram does not fit the bridge: the client learns 1400.
    let learned = poll_until("the client to learn the bridge's MTU", T, || {
        let _ = sock.send(&[2u8; 1472]);
        std::thread::sleep(Duration::from_millis(100));
        let m = ip_mtu(sock.as_raw_fd());
        if m == 1400 { Ok(m) } else { Err(m) }
    });
    assert_eq!(learned, 1400);
    let err = sock.send(&[3u8; 1472]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE), "{err}");
    // And a datagram that fits arrives (a send may first report the errors that came in,
    // pending on the connected socket).
    let n = srv.peers().len();
    poll_until("a 1400-byte datagram in web", T, || {
        let _ = sock.send(&[4u8; 1372]);
        std::thread::sleep(Duration::from_millis(50));
        if srv.peers().len() > n {
            Ok(())
        } else {
            Err(())
        }
    });
}

#[test]
fn pmtu_discovery_through_a_published_port_with_the_fast_path() {
    pmtu("true");
}

#[test]
fn pmtu_discovery_through_a_published_port_without_the_fast_path() {
    pmtu("false");
}

/// Counts, on a thread, the frames received on `ifname` in `ns` over `wait` that carry UDP to
/// `port` (untagged IPv4), seen by a packet socket: what reaches the interface, whatever the
/// stack then does with it.
fn udp_frames_seen(
    ns: &Netns,
    ifname: &str,
    port: u16,
    wait: Duration,
) -> std::thread::JoinHandle<usize> {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    // The socket is bound here, before this returns: what is sent next is seen.
    let open = move || -> anyhow::Result<OwnedFd> {
        let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = ifindex as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: sll is a valid sockaddr_ll of length len.
        anyhow::ensure!(
            unsafe { libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), len) } == 0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: tv is a valid timeval.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(fd)
    };
    let fd = in_netns(ns, open).expect("a packet socket");
    let count = move || {
        let deadline = std::time::Instant::now() + wait;
        let mut seen = 0;
        let mut buf = [0u8; 2048];
        while std::time::Instant::now() < deadline {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 42 {
                continue;
            }
            let f = &buf[..n as usize];
            let ihl = usize::from(f[14] & 0x0f) * 4;
            if f[12..14] == [0x08, 0x00]
                && f[23] == 17
                && f.len() >= 14 + ihl + 4
                && u16::from_be_bytes([f[14 + ihl + 2], f[14 + ihl + 3]]) == port
            {
                seen += 1;
            }
        }
        seen
    };
    std::thread::spawn(count)
}

/// Container a sends UDP to the outside with b's MAC as its gateway's (a static neighbour):
/// the bridge delivers by MAC, so under `--icc false` such frames must not reach b. Returns
/// how many b's eth0 saw, and the icc-foreign-dst-mac drops they counted.
fn frames_to_a_neighbours_mac(icc: &str) -> (usize, u64) {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--icc", icc]);
    let a = w.container("a");
    let b = w.container("b");
    d.attach("a", &a, &[]);
    d.attach("b", &b, &[]);
    let b_mac = b.mac("eth0");
    a.ip(&[
        "neigh",
        "replace",
        netd_tests::BRIDGE_IP,
        "lladdr",
        &b_mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let mac0 = drops(&d, "icc-foreign-dst-mac");
    let sniffer = udp_frames_seen(&b, "eth0", 7199, Duration::from_secs(2));
    for _ in 0..5 {
        let _ =
            netd_tests::dataplane::udp_fire_from(&a, "0.0.0.0", &format!("{OUTSIDE_IP}:7199"), "x");
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = sniffer.join().unwrap();
    (seen, drops(&d, "icc-foreign-dst-mac") - mac0)
}

#[test]
fn icc_false_keeps_frames_to_another_containers_mac_from_it() {
    let (seen, dropped) = frames_to_a_neighbours_mac("true");
    assert!(seen >= 3, "--icc true: b saw {seen} of a's frames");
    assert_eq!(dropped, 0);
    let (seen, dropped) = frames_to_a_neighbours_mac("false");
    assert_eq!(seen, 0, "--icc false: b saw a's frames to its MAC");
    assert!(dropped >= 5, "icc-foreign-dst-mac counted {dropped}");
}
