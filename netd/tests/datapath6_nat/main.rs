//! IPv6 published ports in from_uplink/to_uplink (root): crafted frames through
//! BPF_PROG_TEST_RUN. A new flow to a published port on a host IPv6 address is translated to
//! the container's IPv6 address and port with the client's address kept, its replies get the
//! published address back, checksums are right after every rewrite (checked from scratch),
//! extension headers and fragments are followed, ICMPv6 errors quoting a translated flow are
//! translated both ways, and only the host's own addresses take a `[::]` binding; an IPv4
//! binding is never reachable over IPv6.

#[path = "../datapath_util/mod.rs"]
mod datapath_util;

use std::net::Ipv6Addr;

use aya::maps::HashMap;
use datapath_util::*;
use netd_common::*;

const NH_HOP: u8 = 0;
const NH_FRAGMENT: u8 = 44;
const NH_ICMPV6: u8 = 58;
const NH_DSTOPTS: u8 = 60;

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
/// The host's address on the uplink.
fn host() -> Ipv6Addr {
    a6("2001:db8:ff::1")
}
/// A second host address with a binding of its own.
fn host2() -> Ipv6Addr {
    a6("2001:db8:ff::2")
}
fn client() -> Ipv6Addr {
    a6("2001:db8:ee::9")
}
/// Container A's global address: it shares its first 32 bits with the host's.
fn a_g() -> Ipv6Addr {
    a6("2001:db8:1::2")
}
fn b_g() -> Ipv6Addr {
    a6("2001:db8:1::3")
}

fn ip6(s: Ipv6Addr, d: Ipv6Addr, nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[nh, 64]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(payload);
    p
}

fn eth6(packet: &[u8]) -> Vec<u8> {
    let mut f = UPLINK_MAC.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

fn sum6(s: Ipv6Addr, d: Ipv6Addr, nh: u8, l4: &[u8]) -> u32 {
    sum16(&s.octets()) + sum16(&d.octets()) + l4.len() as u32 + u32::from(nh) + sum16(l4)
}

/// `l4` with its checksum (at `csum_off`) computed for (s, d).
fn with_csum(s: Ipv6Addr, d: Ipv6Addr, nh: u8, mut l4: Vec<u8>, csum_off: usize) -> Vec<u8> {
    l4[csum_off..csum_off + 2].copy_from_slice(&[0, 0]);
    let c = !fold(sum6(s, d, nh, &l4));
    l4[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
    l4
}

fn tcp(s: Ipv6Addr, d: Ipv6Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(b"hello");
    with_csum(s, d, IPPROTO_TCP, t, 16)
}

fn udp(s: Ipv6Addr, d: Ipv6Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    with_csum(s, d, IPPROTO_UDP, u, 6)
}

fn tcp_frame(s: Ipv6Addr, d: Ipv6Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    eth6(&ip6(s, d, IPPROTO_TCP, &tcp(s, d, sport, dport, flags)))
}

fn udp_frame(s: Ipv6Addr, d: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    eth6(&ip6(s, d, IPPROTO_UDP, &udp(s, d, sport, dport, b"query")))
}

/// An ICMPv6 error (`ty`, `code`) from `s` to `d` quoting `quote` (an IPv6 packet).
fn icmp6_err(s: Ipv6Addr, d: Ipv6Addr, ty: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(quote);
    let m = with_csum(s, d, NH_ICMPV6, m, 2);
    eth6(&ip6(s, d, NH_ICMPV6, &m))
}

/// (saddr, daddr) of an IPv6 frame.
fn addrs(f: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
    let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&f[o..o + 16]).unwrap());
    (a(22), a(38))
}

fn port_at(f: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([f[off], f[off + 1]])
}

/// Asserts the upper-layer checksum of the packet at `ip_off` (an IPv6 header, `l4_off` the
/// upper-layer header) verifies, computed from scratch over its own addresses.
fn assert_l4_csum(f: &[u8], ip_off: usize, l4_off: usize, nh: u8, what: &str) {
    let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&f[o..o + 16]).unwrap());
    let (s, d) = (a(ip_off + 8), a(ip_off + 24));
    let plen = usize::from(port_at(f, ip_off + 4));
    let end = (ip_off + 40 + plen).min(f.len());
    let l4 = &f[l4_off..end];
    assert_eq!(
        fold(sum6(s, d, nh, l4)),
        0xffff,
        "{what}: checksum of {f:02x?}"
    );
}

fn w6(a: Ipv6Addr) -> [u32; 4] {
    in6_words(a.octets())
}

/// What the agent writes for IPv6 published ports: the host's IPv6 addresses, the
/// containers' addresses, bindings `[::]:8080/tcp -> A:80`, `[::]:5353/udp -> A:53`,
/// `[host2]:8081/tcp -> B:81`, `[::1]:9000 -> A:90` (loopback only), and an IPv4-only
/// `0.0.0.0:7000/tcp -> A:7000` (from the shared fixtures' binding 14's range).
fn program6(w: &World) {
    let mut h: HashMap<_, [u32; 4], u32> = HashMap::try_from(w.map(MAP_HOST_ADDRS6)).unwrap();
    h.insert(w6(host()), w.up, 0).unwrap();
    h.insert(w6(host2()), w.up, 0).unwrap();
    let mut e: HashMap<_, [u32; 4], u32> = HashMap::try_from(w.map(MAP_EP6_ADDRS)).unwrap();
    e.insert(w6(a_g()), w.va, 0).unwrap();
    e.insert(w6(b_g()), w.vb, 0).unwrap();
    let mut p: HashMap<_, PortKey, PortTarget> = HashMap::try_from(w.map(MAP_PORTS)).unwrap();
    let t = |ip: Ipv6Addr, port, id, flags| PortTarget {
        container_ip: w6(ip),
        container_port: port,
        flags,
        _pad: 0,
        binding_id: id,
    };
    p.insert(
        PortKey::v6(IPPROTO_TCP, [0; 4], 8080),
        t(a_g(), 80, 61, 0),
        0,
    )
    .unwrap();
    p.insert(
        PortKey::v6(IPPROTO_UDP, [0; 4], 5353),
        t(a_g(), 53, 62, 0),
        0,
    )
    .unwrap();
    p.insert(
        PortKey::v6(IPPROTO_TCP, w6(host2()), 8081),
        t(b_g(), 81, 63, 0),
        0,
    )
    .unwrap();
    p.insert(
        PortKey::v6(IPPROTO_TCP, w6(Ipv6Addr::LOCALHOST), 9000),
        t(a_g(), 90, 64, PORT_F_LOOPBACK),
        0,
    )
    .unwrap();
}

fn world(f: impl FnOnce(&World) + Send) {
    World::with(|w| {
        w.config(|_| {});
        program6(w);
        f(w);
    });
}

fn from_uplink(w: &World, frame: &[u8]) -> (u32, Vec<u8>) {
    w.run(PROG_FROM_UPLINK, w.up, frame)
}

fn to_uplink(w: &World, frame: &[u8]) -> (u32, Vec<u8>) {
    w.run(PROG_TO_UPLINK, w.up, frame)
}

const L4: usize = 14 + 40;

#[test]
fn tcp_to_a_host_address_reaches_the_container_and_replies_come_back_published() {
    world(|w| {
        let syn = tcp_frame(client(), host(), 40000, 8080, TCP_SYN);
        let (v, out) = from_uplink(w, &syn);
        assert_eq!(v, TC_ACT_OK, "translated and passed to the stack");
        assert_eq!(
            addrs(&out),
            (client(), a_g()),
            "the client's address is kept"
        );
        assert_eq!((port_at(&out, L4), port_at(&out, L4 + 2)), (40000, 80));
        assert_l4_csum(&out, 14, L4, IPPROTO_TCP, "DNAT6");
        assert_eq!(&out[out.len() - 5..], b"hello");

        // Both entries in NETD_CT, IPv6-keyed, saying what they translate.
        let k = CtKey::v6(
            w6(client()),
            w6(host()),
            40000u16.to_be(),
            8080u16.to_be(),
            6,
        );
        let e = w.ct(&k).expect("original entry");
        assert_eq!(e.nat_daddr, w6(a_g()));
        assert_eq!(
            e.flags & (CT_F_PUBLISHED | CT_F_DNAT),
            CT_F_PUBLISHED | CT_F_DNAT
        );
        assert_eq!(e.ifindex, w.va, "delivered to A's veth");
        let r = w.ct(&e.peer).expect("reply entry");
        assert_eq!(
            e.peer,
            CtKey::v6(w6(a_g()), w6(client()), 80u16.to_be(), 40000u16.to_be(), 6)
        );
        assert_eq!(r.flags & (CT_F_REPLY | CT_F_SNAT), CT_F_REPLY | CT_F_SNAT);
        assert_eq!(r.tcp_state, CT_TCP_SYN_SENT);

        let synack = tcp_frame(a_g(), client(), 80, 40000, TCP_SYN | TCP_ACK);
        let (v, out) = to_uplink(w, &synack);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(
            addrs(&out),
            (host(), client()),
            "the reply comes from the published address"
        );
        assert_eq!((port_at(&out, L4), port_at(&out, L4 + 2)), (8080, 40000));
        assert_l4_csum(&out, 14, L4, IPPROTO_TCP, "reverse NAT6");
        assert_eq!(w.ct(&k).unwrap().tcp_state, CT_TCP_SYN_RECV);

        // The next segment of the flow takes the tracked translation (and, acknowledging the
        // SYN-ACK, establishes it).
        let (v, out) = from_uplink(w, &tcp_frame(client(), host(), 40000, 8080, TCP_ACK));
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(w.ct(&k).unwrap().tcp_state, CT_TCP_ESTABLISHED);
        assert_eq!(addrs(&out).1, a_g());
        assert_l4_csum(&out, 14, L4, IPPROTO_TCP, "tracked");
        assert_eq!(w.port_stats(61).0, 3, "three packets on the binding");

        // A container's own traffic that is no published reply is not netd's on the uplink.
        let other = tcp_frame(a_g(), client(), 80, 40001, TCP_SYN | TCP_ACK);
        let (v, out) = to_uplink(w, &other);
        assert_eq!((v, out), (TC_ACT_NEXT, other));
    });
}

#[test]
fn udp_published_on_ipv6_keeps_checksums() {
    world(|w| {
        let (v, out) = from_uplink(w, &udp_frame(client(), host(), 41000, 5353));
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(addrs(&out), (client(), a_g()));
        assert_eq!(port_at(&out, L4 + 2), 53);
        assert_l4_csum(&out, 14, L4, IPPROTO_UDP, "UDP DNAT6");
        let (v, out) = to_uplink(w, &udp_frame(a_g(), client(), 53, 41000));
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(addrs(&out), (host(), client()));
        assert_eq!(port_at(&out, L4), 5353);
        assert_l4_csum(&out, 14, L4, IPPROTO_UDP, "UDP reverse");
    });
}

#[test]
fn bindings_take_only_their_addresses() {
    world(|w| {
        // [host2]:8081 is host2's only.
        let (v, out) = from_uplink(w, &tcp_frame(client(), host2(), 40000, 8081, TCP_SYN));
        assert_eq!(v, TC_ACT_OK);
        assert_eq!((addrs(&out).1, port_at(&out, L4 + 2)), (b_g(), 81));
        let f = tcp_frame(client(), host(), 40000, 8081, TCP_SYN);
        assert_eq!(from_uplink(w, &f), (TC_ACT_NEXT, f), "host's other address");
        // [::] takes host addresses only: not what the host routes elsewhere.
        for d in [a6("2001:db8:ff::77"), a_g()] {
            let f = tcp_frame(client(), d, 40000, 8080, TCP_SYN);
            assert_eq!(from_uplink(w, &f), (TC_ACT_NEXT, f), "to {d}");
        }
        // An IPv4 binding (0.0.0.0:7000-7009 in the shared fixtures) is not reachable over
        // IPv6.
        let f = tcp_frame(client(), host(), 40000, 7000, TCP_SYN);
        assert_eq!(from_uplink(w, &f), (TC_ACT_NEXT, f), "IPv4-only binding");
        // A loopback binding from outside is dropped, as for IPv4.
        let f = tcp_frame(client(), Ipv6Addr::LOCALHOST, 40000, 9000, TCP_SYN);
        assert_eq!(from_uplink(w, &f).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_LOOPBACK_ONLY), 1);
        let k = CtKey::v6(
            w6(client()),
            w6(host()),
            40000u16.to_be(),
            7000u16.to_be(),
            6,
        );
        assert!(
            w.ct(&k).is_none(),
            "nothing tracked for what was not translated"
        );
    });
}

#[test]
fn extension_headers_are_walked_to_the_ports() {
    world(|w| {
        let t = tcp(client(), host(), 40002, 8080, TCP_SYN);
        let mut payload = vec![NH_DSTOPTS, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop, PadN
        payload.extend_from_slice(&[IPPROTO_TCP, 0, 1, 4, 0, 0, 0, 0]); // destination options
        payload.extend_from_slice(&t);
        let f = eth6(&ip6(client(), host(), NH_HOP, &payload));
        let (v, out) = from_uplink(w, &f);
        assert_eq!(v, TC_ACT_OK);
        let l4 = L4 + 16;
        assert_eq!(addrs(&out).1, a_g());
        assert_eq!(port_at(&out, l4 + 2), 80);
        assert_eq!(&out[L4..l4], &payload[..16], "extension headers untouched");
        assert_l4_csum(&out, 14, l4, IPPROTO_TCP, "after extension headers");
    });
}

/// A fragment header before `data` (an upper-layer fragment).
fn fragment(s: Ipv6Addr, d: Ipv6Addr, nh: u8, offset8: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let mut p = vec![nh, 0];
    p.extend_from_slice(&((offset8 << 3) | u16::from(more)).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(data);
    eth6(&ip6(s, d, NH_FRAGMENT, &p))
}

#[test]
fn fragments_follow_their_first_fragment() {
    world(|w| {
        let data = [7u8; 40];
        let u = udp(client(), host(), 41001, 5353, &data);
        let (first, later) = u.split_at(24);
        let f1 = fragment(client(), host(), IPPROTO_UDP, 0, true, first);
        let f2 = fragment(client(), host(), IPPROTO_UDP, 3, false, later);
        // A later fragment whose first one was never seen is left alone.
        let (v, out) = from_uplink(w, &f2);
        assert_eq!((v, &out), (TC_ACT_NEXT, &f2));
        let (v, o1) = from_uplink(w, &f1);
        assert_eq!(v, TC_ACT_OK);
        let (v, o2) = from_uplink(w, &f2);
        assert_eq!(
            v, TC_ACT_OK,
            "the later fragment follows the first one's flow"
        );
        assert_eq!(addrs(&o1).1, a_g());
        assert_eq!(addrs(&o2).1, a_g());
        assert_eq!(
            &o2[L4 + 8..],
            later,
            "no L4 header to rewrite in a later fragment"
        );
        // Reassembled, the datagram's checksum verifies with the new addresses.
        let mut whole = o1[L4 + 8..].to_vec();
        whole.extend_from_slice(&o2[L4 + 8..]);
        assert_eq!(port_at(&whole, 2), 53);
        assert_eq!(
            fold(sum6(client(), a_g(), IPPROTO_UDP, &whole)),
            0xffff,
            "reassembled"
        );
    });
}

#[test]
fn icmpv6_errors_quoting_a_translated_flow_are_translated() {
    world(|w| {
        from_uplink(w, &tcp_frame(client(), host(), 40003, 8080, TCP_SYN));
        // A router on the way says the host's (translated) reply could not be delivered.
        let router = a6("2001:db8:ee::1");
        let sent = ip6(
            host(),
            client(),
            IPPROTO_TCP,
            &tcp(host(), client(), 8080, 40003, TCP_SYN | TCP_ACK),
        );
        let err = icmp6_err(router, host(), 1, 3, &sent);
        let (v, out) = from_uplink(w, &err);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(
            addrs(&out),
            (router, a_g()),
            "the error goes to the container"
        );
        let q = L4 + 8;
        let quoted = |f: &[u8]| {
            let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&f[o..o + 16]).unwrap());
            (a(q + 8), a(q + 24), port_at(f, q + 40), port_at(f, q + 42))
        };
        assert_eq!(
            quoted(&out),
            (a_g(), client(), 80, 40003),
            "as the container sent it"
        );
        assert_l4_csum(&out, 14, L4, NH_ICMPV6, "ICMPv6 checksum");
        assert_l4_csum(&out, q, q + 40, IPPROTO_TCP, "quoted TCP checksum");

        // A container's port unreachable about a published UDP flow leaves from the
        // published address, quoting what the client sent.
        from_uplink(w, &udp_frame(client(), host(), 41002, 5353));
        let got = ip6(
            client(),
            a_g(),
            IPPROTO_UDP,
            &udp(client(), a_g(), 41002, 53, b"query"),
        );
        let err = icmp6_err(a_g(), client(), 1, 4, &got);
        let (v, out) = to_uplink(w, &err);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(addrs(&out), (host(), client()));
        assert_eq!(quoted(&out), (client(), host(), 41002, 5353));
        assert_l4_csum(&out, 14, L4, NH_ICMPV6, "ICMPv6 checksum");
        assert_l4_csum(&out, q, q + 40, IPPROTO_UDP, "quoted UDP checksum");

        // An error about a flow netd never translated is the stack's.
        let stray = ip6(
            host(),
            client(),
            IPPROTO_TCP,
            &tcp(host(), client(), 22, 40009, TCP_ACK),
        );
        let err = icmp6_err(router, host(), 1, 3, &stray);
        assert_eq!(from_uplink(w, &err), (TC_ACT_NEXT, err));
    });
}

/// Prints what the verifier spent on the programs this path runs in (`--nocapture`).
#[test]
fn verified_insns() {
    World::with(|w| {
        for p in [
            PROG_FROM_UPLINK,
            PROG_TO_UPLINK,
            PROG_FROM_CONTAINER,
            PROG_TO_CONTAINER,
            PROG_TO_UPLINK6,
            PROG_FROM_CONTAINER6,
        ] {
            let n =
                w.dp.program(p)
                    .unwrap()
                    .info()
                    .unwrap()
                    .verified_instruction_count();
            println!("verified_insns {p} {n:?}");
        }
    });
}

mod fast_path;
mod routed;
