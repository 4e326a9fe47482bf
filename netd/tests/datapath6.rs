//! IPv6 policy in from_container (root): crafted frames through BPF_PROG_TEST_RUN after the
//! IPv6 maps were filled through the dataplane's API, as the agent fills them. Verdicts and
//! drop counters per rule: source addresses, neighbour discovery, router advertisements and
//! redirects, endpoints without IPv6, `--icc false` with links, network isolation, extension
//! headers and fragments. Plus the API itself: whole-or-nothing changes, and pins left by a
//! netd without the IPv6 maps.

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use std::net::Ipv6Addr;

use aya::maps::HashMap;
use datapath_util::*;
use netd::dataplane::{Dataplane, DataplaneError};
use netd_common::*;

const NH_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_ICMPV6: u8 = 58;
const NH_DSTOPTS: u8 = 60;

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The link-local address a MAC gives (modified EUI-64).
fn eui64(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

fn a_ll() -> Ipv6Addr {
    eui64(A_MAC)
}
fn b_ll() -> Ipv6Addr {
    eui64(B_MAC)
}
fn a_g() -> Ipv6Addr {
    a6("2001:db8:1::2")
}
fn b_g() -> Ipv6Addr {
    a6("2001:db8:1::3")
}
fn gw() -> Ipv6Addr {
    a6("2001:db8:1::1")
}
fn outside() -> Ipv6Addr {
    a6("2001:db8:ff::9")
}

/// The multicast MAC of an IPv6 group (33:33 + its last 32 bits).
fn group_mac(g: Ipv6Addr) -> [u8; 6] {
    let o = g.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// An IPv6 packet (from the IPv6 header on) of `nh` carrying `payload`.
fn ip6(s: Ipv6Addr, d: Ipv6Addr, nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[nh, 255]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(payload);
    p
}

fn eth6(src: [u8; 6], dst: [u8; 6], packet: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

fn icmp6(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(body);
    m
}

/// A link-layer address option (1: source, 2: target).
fn lla(ty: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut o = vec![ty, 1];
    o.extend_from_slice(&mac);
    o
}

/// A neighbour solicitation or advertisement (`ty` 135/136) for `target` with `opts`.
fn nd(ty: u8, target: Ipv6Addr, opts: &[u8]) -> Vec<u8> {
    let mut body = if ty == 136 {
        vec![0x60, 0, 0, 0]
    } else {
        vec![0; 4]
    };
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(opts);
    icmp6(ty, &body)
}

/// An 8-byte hop-by-hop or destination options header (PadN) before `next`.
fn opts_hdr(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// A fragment header: `offset` in 8-byte units, more fragments, identification.
fn frag_hdr(next: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

fn run(w: &World, ifindex: u32, frame: &[u8]) -> u32 {
    w.run(PROG_FROM_CONTAINER, ifindex, frame).0
}

/// The endpoints' IPv6 maps as the API writes them: A with link-local and global, B too
/// unless `b` is false (then B has no IPv6 configuration).
fn program6(w: &World, b: bool) {
    let pins = w.pins.0.clone();
    let mut dp = Dataplane::open(&netd::dataplane::DataplaneConfig {
        pin_dir: pins,
        ct_max: CT_MAX_DEFAULT,
    })
    .expect("a second handle on the pinned maps");
    dp.set_endpoint_ipv6(w.va, a_ll(), Some(a_g())).unwrap();
    if b {
        dp.set_endpoint_ipv6(w.vb, b_ll(), Some(b_g())).unwrap();
    }
}

#[test]
fn ipv6_sources_must_be_the_endpoints_own() {
    World::with(|w| {
        w.config(|c| c.flags |= CFG_F_ICC);
        program6(w, true);
        let out = |s| {
            eth6(
                A_MAC,
                BRIDGE_MAC,
                &ip6(s, outside(), 17, &udp(1000, 53, b"q")),
            )
        };
        assert_eq!(run(w, w.va, &out(a_g())), TC_ACT_OK, "own global");
        let to_gw = eth6(
            A_MAC,
            BRIDGE_MAC,
            &ip6(a_ll(), a6("fe80::1"), 17, &udp(1, 2, b"")),
        );
        assert_eq!(run(w, w.va, &to_gw), TC_ACT_OK, "own link-local");
        assert_eq!(run(w, w.va, &out(b_g())), TC_ACT_SHOT, "B's global");
        assert_eq!(run(w, w.va, &out(b_ll())), TC_ACT_SHOT, "B's link-local");
        assert_eq!(run(w, w.va, &out(a6("fe80::99"))), TC_ACT_SHOT);
        assert_eq!(run(w, w.va, &out(a6("2001:db8:1::99"))), TC_ACT_SHOT);
        assert_eq!(run(w, w.va, &out(Ipv6Addr::UNSPECIFIED)), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_SPOOFED_IP), 5);
        // Duplicate address detection: `::` to the solicited-node group, for its own address.
        let dad = |target: Ipv6Addr, dst: Ipv6Addr| {
            eth6(
                A_MAC,
                group_mac(dst),
                &ip6(Ipv6Addr::UNSPECIFIED, dst, NH_ICMPV6, &nd(135, target, &[])),
            )
        };
        assert_eq!(run(w, w.va, &dad(a_g(), solicited_node(a_g()))), TC_ACT_OK);
        assert_eq!(
            run(w, w.va, &dad(a_ll(), solicited_node(a_ll()))),
            TC_ACT_OK
        );
        // ... never for another's address (DAD denial), nor to another group.
        assert_eq!(
            run(w, w.va, &dad(b_g(), solicited_node(b_g()))),
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_ND_SPOOF), 1);
        assert_eq!(run(w, w.va, &dad(a_g(), a6("ff02::1"))), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_SPOOFED_IP), 6);
        // An MLDv2 report from `::` (sent before the link-local address is ready).
        let report = eth6(
            A_MAC,
            group_mac(a6("ff02::16")),
            &ip6(
                Ipv6Addr::UNSPECIFIED,
                a6("ff02::16"),
                NH_ICMPV6,
                &icmp6(143, &[0; 4]),
            ),
        );
        assert_eq!(run(w, w.va, &report), TC_ACT_OK);
        // Another MAC is refused before any of this.
        let f = eth6(
            B_MAC,
            BRIDGE_MAC,
            &ip6(a_g(), outside(), 17, &udp(1, 2, b"")),
        );
        assert_eq!(run(w, w.va, &f), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_SPOOFED_MAC), 1);
    });
}

#[test]
fn neighbour_discovery_cannot_claim_another_address() {
    World::with(|w| {
        w.config(|c| c.flags |= CFG_F_ICC);
        program6(w, true);
        let send = |dst_mac, d: Ipv6Addr, msg: Vec<u8>| {
            run(
                w,
                w.va,
                &eth6(A_MAC, dst_mac, &ip6(a_ll(), d, NH_ICMPV6, &msg)),
            )
        };
        let all = a6("ff02::1");
        // Advertising its own addresses, with its own MAC.
        assert_eq!(
            send(group_mac(all), all, nd(136, a_g(), &lla(2, A_MAC))),
            TC_ACT_OK
        );
        assert_eq!(send(B_MAC, b_ll(), nd(136, a_ll(), &[])), TC_ACT_OK);
        // Another's address, or its own with another's MAC.
        assert_eq!(
            send(group_mac(all), all, nd(136, b_g(), &lla(2, A_MAC))),
            TC_ACT_SHOT
        );
        assert_eq!(send(group_mac(all), all, nd(136, b_ll(), &[])), TC_ACT_SHOT);
        assert_eq!(
            send(group_mac(all), all, nd(136, a_g(), &lla(2, B_MAC))),
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_ND_SPOOF), 3);
        // Solicitations resolve anyone's address, announcing its own MAC only.
        let sn = solicited_node(b_g());
        assert_eq!(
            send(group_mac(sn), sn, nd(135, b_g(), &lla(1, A_MAC))),
            TC_ACT_OK
        );
        assert_eq!(
            send(group_mac(sn), sn, nd(135, b_g(), &lla(1, B_MAC))),
            TC_ACT_SHOT
        );
        // A router solicitation's option too.
        let rs = |mac| icmp6(133, &[&[0u8; 4][..], &lla(1, mac)].concat());
        assert_eq!(
            send(group_mac(a6("ff02::2")), a6("ff02::2"), rs(A_MAC)),
            TC_ACT_OK
        );
        assert_eq!(
            send(group_mac(a6("ff02::2")), a6("ff02::2"), rs(B_MAC)),
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_ND_SPOOF), 5);
        // An option of length 0 is malformed.
        assert_eq!(
            send(
                group_mac(all),
                all,
                nd(136, a_g(), &[2, 0, 0, 0, 0, 0, 0, 0])
            ),
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_MALFORMED), 1);
    });
}

#[test]
fn router_advertisements_and_redirects_are_dropped() {
    World::with(|w| {
        w.config(|c| c.flags |= CFG_F_ICC);
        program6(w, true);
        let all = a6("ff02::1");
        let ra = icmp6(134, &[64, 0, 0, 30, 0, 0, 0, 0, 0, 0, 0, 0]);
        let f = eth6(A_MAC, group_mac(all), &ip6(a_ll(), all, NH_ICMPV6, &ra));
        assert_eq!(run(w, w.va, &f), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ROUTER_ADVERT), 1);
        // Also behind extension headers.
        let hidden = [opts_hdr(NH_DSTOPTS), opts_hdr(NH_ICMPV6), ra.clone()].concat();
        let f = eth6(A_MAC, group_mac(all), &ip6(a_ll(), all, NH_HOP, &hidden));
        assert_eq!(run(w, w.va, &f), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ROUTER_ADVERT), 2);
        let redirect = icmp6(
            137,
            &[[0u8; 4].as_slice(), &gw().octets(), &b_g().octets()].concat(),
        );
        let f = eth6(A_MAC, B_MAC, &ip6(a_ll(), b_ll(), NH_ICMPV6, &redirect));
        assert_eq!(run(w, w.va, &f), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_REDIRECT), 1);
        assert_eq!(w.drop_count(DROP_SPOOFED_IP), 0);
        // B without IPv6 configuration: the same reasons.
        let f = eth6(B_MAC, group_mac(all), &ip6(b_ll(), all, NH_ICMPV6, &ra));
        assert_eq!(run(w, w.vb, &f), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ROUTER_ADVERT), 3);
    });
}

#[test]
fn an_endpoint_without_ipv6_keeps_to_its_link_local_address() {
    World::with(|w| {
        w.config(|c| c.flags |= CFG_F_ICC);
        program6(w, false);
        let sn = solicited_node(a_ll());
        let ns = eth6(
            B_MAC,
            group_mac(sn),
            &ip6(b_ll(), sn, NH_ICMPV6, &nd(135, a_ll(), &lla(1, B_MAC))),
        );
        assert_eq!(
            run(w, w.vb, &ns),
            TC_ACT_OK,
            "NS from its EUI-64 link-local"
        );
        let dad_sn = solicited_node(b_ll());
        let dad = eth6(
            B_MAC,
            group_mac(dad_sn),
            &ip6(
                Ipv6Addr::UNSPECIFIED,
                dad_sn,
                NH_ICMPV6,
                &nd(135, b_ll(), &[]),
            ),
        );
        assert_eq!(run(w, w.vb, &dad), TC_ACT_OK, "DAD for its link-local");
        let na = eth6(
            B_MAC,
            A_MAC,
            &ip6(b_ll(), a_ll(), NH_ICMPV6, &nd(136, b_ll(), &[])),
        );
        assert_eq!(run(w, w.vb, &na), TC_ACT_OK);
        let mld = eth6(
            B_MAC,
            group_mac(a6("ff02::16")),
            &ip6(b_ll(), a6("ff02::16"), NH_ICMPV6, &icmp6(143, &[0; 4])),
        );
        assert_eq!(run(w, w.vb, &mld), TC_ACT_OK);
        // --icc true: link-local traffic, as Docker without IPv6 passed it.
        let data = eth6(B_MAC, A_MAC, &ip6(b_ll(), a_ll(), 17, &udp(1, 2, b"x")));
        assert_eq!(run(w, w.vb, &data), TC_ACT_OK);
        let ping = icmp6(128, &[0, 1, 0, 1]);
        let f = eth6(B_MAC, A_MAC, &ip6(b_ll(), a_ll(), NH_ICMPV6, &ping));
        assert_eq!(run(w, w.vb, &f), TC_ACT_OK);
        // Beyond the link: it has no address for that.
        let f = eth6(
            B_MAC,
            BRIDGE_MAC,
            &ip6(b_ll(), outside(), 17, &udp(1, 2, b"x")),
        );
        assert_eq!(run(w, w.vb, &f), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_IPV6_OFF), 1);
        // Another source, or an advertisement for another's address.
        let ns = eth6(
            B_MAC,
            group_mac(sn),
            &ip6(a6("fe80::5"), sn, NH_ICMPV6, &nd(135, a_ll(), &[])),
        );
        assert_eq!(run(w, w.vb, &ns), TC_ACT_SHOT);
        assert_eq!(
            run(w, w.vb, &ipv6_frame(B_MAC)),
            TC_ACT_SHOT,
            "from fe80::2"
        );
        assert_eq!(w.drop_count(DROP_SPOOFED_IP), 2);
        let na = eth6(
            B_MAC,
            A_MAC,
            &ip6(b_ll(), a_ll(), NH_ICMPV6, &nd(136, a_ll(), &[])),
        );
        assert_eq!(run(w, w.vb, &na), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ND_SPOOF), 1);
        // --icc false: neighbour discovery only, even towards the host.
        w.config(|c| c.flags &= !CFG_F_ICC);
        assert_eq!(run(w, w.vb, &dad), TC_ACT_OK);
        assert_eq!(run(w, w.vb, &data), TC_ACT_SHOT);
        let f = eth6(
            B_MAC,
            BRIDGE_MAC,
            &ip6(b_ll(), a6("fe80::1"), 17, &udp(1, 2, b"x")),
        );
        assert_eq!(run(w, w.vb, &f), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ICC), 2);
    });
}

#[test]
fn icc_false_and_links_apply_to_ipv6() {
    World::with(|w| {
        w.config(|_| {});
        program6(w, true);
        let a_to = |dst_mac, d: Ipv6Addr, nh, l4: &[u8]| {
            run(w, w.va, &eth6(A_MAC, dst_mac, &ip6(a_g(), d, nh, l4)))
        };
        assert_eq!(a_to(B_MAC, b_g(), 6, &tcp(33000, 80, TCP_SYN)), TC_ACT_SHOT);
        assert_eq!(a_to(B_MAC, b_ll(), 17, &udp(33000, 80, b"")), TC_ACT_SHOT);
        let ping = icmp6(128, &[0, 1, 0, 1]);
        assert_eq!(a_to(B_MAC, b_g(), NH_ICMPV6, &ping), TC_ACT_SHOT);
        let all = a6("ff02::1");
        assert_eq!(a_to(group_mac(all), all, 17, &udp(1, 2, b"")), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ICC), 4);
        // Neighbour discovery still resolves neighbours, unicast or multicast.
        let sn = solicited_node(b_g());
        assert_eq!(
            a_to(
                group_mac(sn),
                sn,
                NH_ICMPV6,
                &nd(135, b_g(), &lla(1, A_MAC))
            ),
            TC_ACT_OK
        );
        assert_eq!(
            a_to(B_MAC, b_g(), NH_ICMPV6, &nd(136, a_g(), &[])),
            TC_ACT_OK
        );
        // The host (gateway, routed destinations) is always reachable, by the bridge's MAC.
        assert_eq!(
            a_to(BRIDGE_MAC, gw(), 6, &tcp(33000, 22, TCP_SYN)),
            TC_ACT_OK
        );
        assert_eq!(
            a_to(BRIDGE_MAC, outside(), 6, &tcp(33000, 443, TCP_SYN)),
            TC_ACT_OK
        );
        // ... but not through another container's MAC.
        assert_eq!(
            a_to(B_MAC, outside(), 6, &tcp(33000, 443, TCP_SYN)),
            TC_ACT_SHOT
        );
        assert_eq!(
            a_to(group_mac(all), outside(), 6, &tcp(1, 443, TCP_SYN)),
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_ICC_MAC), 2);

        // --link: A may reach B on tcp/80; B answers from 80; nothing else.
        w.link(A_IP, B_IP, IPPROTO_TCP, &[(80, 80)]);
        assert_eq!(a_to(B_MAC, b_g(), 6, &tcp(33000, 80, TCP_SYN)), TC_ACT_OK);
        assert_eq!(a_to(B_MAC, b_ll(), 6, &tcp(33000, 80, TCP_SYN)), TC_ACT_OK);
        let b_to =
            |d: Ipv6Addr, l4: &[u8]| run(w, w.vb, &eth6(B_MAC, A_MAC, &ip6(b_g(), d, 6, l4)));
        assert_eq!(b_to(a_g(), &tcp(80, 33000, TCP_SYN | TCP_ACK)), TC_ACT_OK);
        assert_eq!(b_to(a_g(), &tcp(5555, 80, TCP_SYN)), TC_ACT_SHOT);
        assert_eq!(a_to(B_MAC, b_g(), 6, &tcp(33000, 81, TCP_SYN)), TC_ACT_SHOT);
        assert_eq!(a_to(B_MAC, b_g(), 17, &udp(33000, 80, b"")), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ICC), 7);

        // --icc true: containers talk freely...
        w.config(|c| c.flags |= CFG_F_ICC);
        assert_eq!(a_to(B_MAC, b_g(), 6, &tcp(34000, 81, TCP_SYN)), TC_ACT_OK);
        assert_eq!(a_to(group_mac(all), all, 17, &udp(1, 2, b"")), TC_ACT_OK);
        // ... within their network: B on another network is out of reach.
        let mut eps: HashMap<_, u32, EndpointInfo> =
            HashMap::try_from(w.map(MAP_ENDPOINTS)).unwrap();
        let mut b = eps.get(&w.vb, 0).unwrap();
        b.net_id = 1;
        eps.insert(w.vb, b, 0).unwrap();
        assert_eq!(a_to(B_MAC, b_g(), 6, &tcp(34000, 81, TCP_SYN)), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_NET_ISOLATED), 1);
    });
}

#[test]
fn extension_headers_are_walked_to_the_ports() {
    World::with(|w| {
        w.config(|_| {});
        program6(w, true);
        w.link(A_IP, B_IP, IPPROTO_TCP, &[(80, 80)]);
        let send = |first: u8, chain: Vec<u8>| {
            run(
                w,
                w.va,
                &eth6(A_MAC, B_MAC, &ip6(a_g(), b_g(), first, &chain)),
            )
        };
        // hop-by-hop, destination options, routing (type 0 header, 8 bytes), then TCP.
        let chain = |dport| {
            [
                opts_hdr(NH_DSTOPTS),
                opts_hdr(NH_ROUTING),
                vec![6, 0, 4, 0, 0, 0, 0, 0],
                tcp(33000, dport, TCP_SYN),
            ]
            .concat()
        };
        assert_eq!(send(NH_HOP, chain(80)), TC_ACT_OK, "the linked port found");
        assert_eq!(send(NH_HOP, chain(81)), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ICC), 1);
        // A longer chain than the walk's bound is malformed.
        let mut long = Vec::new();
        for _ in 0..6 {
            long.extend_from_slice(&opts_hdr(NH_DSTOPTS));
        }
        let last = long.len() - 8;
        long[last] = 6;
        long.extend_from_slice(&tcp(33000, 80, TCP_SYN));
        assert_eq!(
            send(NH_DSTOPTS, long.clone()),
            TC_ACT_OK,
            "6 headers walked"
        );
        let mut longer = opts_hdr(NH_DSTOPTS);
        longer.extend_from_slice(&long);
        assert_eq!(send(NH_DSTOPTS, longer), TC_ACT_SHOT);
        // A header past the end of the frame.
        assert_eq!(send(NH_HOP, vec![NH_DSTOPTS, 0]), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_MALFORMED), 2);
    });
}

#[test]
fn ipv6_fragments_follow_their_first_fragment() {
    World::with(|w| {
        w.config(|_| {});
        program6(w, true);
        w.link(A_IP, B_IP, IPPROTO_UDP, &[(53, 53)]);
        let dgram = |dport| udp(33000, dport, &[7u8; 40]);
        let send = |hdr: Vec<u8>, data: &[u8]| {
            let p = [hdr, data.to_vec()].concat();
            run(
                w,
                w.va,
                &eth6(A_MAC, B_MAC, &ip6(a_g(), b_g(), NH_FRAGMENT, &p)),
            )
        };
        let d = dgram(53);
        assert_eq!(send(frag_hdr(17, 0, true, 7), &d[..24]), TC_ACT_OK);
        let frags: HashMap<_, Frag6Key, FragPorts> = HashMap::try_from(w.map(MAP_FRAGS6)).unwrap();
        let k = Frag6Key {
            saddr: in6_words(a_g().octets()),
            daddr: in6_words(b_g().octets()),
            id: 7u32.to_be(),
            proto: 17,
            _pad: [0; 3],
        };
        let p = frags
            .get(&k, 0)
            .expect("the first fragment's ports recorded");
        assert_eq!((p.sport, p.dport), (33000u16.to_be(), 53u16.to_be()));
        assert_eq!(
            send(frag_hdr(17, 3, false, 7), &d[24..]),
            TC_ACT_OK,
            "later fragment"
        );
        // A later fragment whose first was not seen: its ports are unknown.
        assert_eq!(send(frag_hdr(17, 3, false, 8), &d[24..]), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_FRAGMENT), 1);
        // Its first fragment to an unlinked port: the later ones follow it.
        let d = dgram(54);
        assert_eq!(send(frag_hdr(17, 0, true, 9), &d[..24]), TC_ACT_SHOT);
        assert_eq!(send(frag_hdr(17, 3, false, 9), &d[24..]), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ICC), 2);
        // --icc true: fragments pass.
        w.config(|c| c.flags |= CFG_F_ICC);
        assert_eq!(send(frag_hdr(17, 3, false, 10), &d[24..]), TC_ACT_OK);
    });
}

#[test]
fn the_ipv6_api_is_whole_or_nothing_and_loads_over_old_pins() {
    let ns = Netns::new("netd-dpath-api6");
    ns.enter(|| {
        let pins = PinDir::new();
        let mut dp = Dataplane::open(&pins.config()).expect("open");
        // An IPv4 endpoint and flow a running host would have.
        let ep = EndpointInfo {
            ip: ip(A_IP),
            ifindex: 7,
            mac: A_MAC,
            net_id: 0,
        };
        dp.upsert_endpoint(&ep).unwrap();
        let mut ct: HashMap<_, CtKey, CtEntry> =
            HashMap::try_from(open_map(&pins.0, MAP_CT)).unwrap();
        let k = ct_key(A_IP, [192, 0, 2, 9], 1000, 53, IPPROTO_UDP);
        ct.insert(k, CtEntry::default(), 0).unwrap();

        dp.set_endpoint_ipv6(7, a_ll(), Some(a_g())).unwrap();
        dp.set_endpoint_ipv6(8, b_ll(), Some(b_g())).unwrap();
        let addrs = |pins: &PinDir| {
            let m: HashMap<_, [u32; 4], u32> =
                HashMap::try_from(open_map(&pins.0, MAP_EP6_ADDRS)).unwrap();
            let mut v: Vec<_> = m.iter().map(|r| r.unwrap()).collect();
            v.sort();
            v
        };
        assert_eq!(addrs(&pins).len(), 4);
        // Taking B's global address is refused and changes nothing.
        let before = addrs(&pins);
        let err = dp.set_endpoint_ipv6(7, a_ll(), Some(b_g())).unwrap_err();
        assert!(
            matches!(err, DataplaneError::Ipv6InUse { owner: 8, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("2001:db8:1::3"), "{err}");
        assert_eq!(addrs(&pins), before);
        assert_eq!(dp.endpoint_ipv6(7).unwrap().unwrap().global, Some(a_g()));
        let err = dp.set_endpoint_ipv6(7, a_g(), None).unwrap_err();
        assert!(err.to_string().contains("fe80::/10"), "{err}");
        // A new global address replaces the old one.
        dp.set_endpoint_ipv6(7, a_ll(), Some(a6("2001:db8:1::22")))
            .unwrap();
        assert_eq!(addrs(&pins).len(), 4);
        assert!(
            !addrs(&pins)
                .iter()
                .any(|(a, _)| *a == in6_words(a_g().octets()))
        );
        dp.clear_endpoint_ipv6(8).unwrap();
        dp.clear_endpoint_ipv6(8).unwrap();
        assert_eq!(dp.endpoint_ipv6(8).unwrap(), None);
        assert_eq!(addrs(&pins).len(), 2);
        drop(dp);

        // Pins left by a netd without the IPv6 maps: the loader creates them; the IPv4
        // state (endpoints, flows) is kept.
        for m in [MAP_EP6, MAP_EP6_ADDRS, MAP_FRAGS6] {
            std::fs::remove_file(pins.0.join("maps").join(m)).unwrap();
        }
        let mut dp = Dataplane::open(&pins.config()).expect("open over old pins");
        for m in [MAP_EP6, MAP_EP6_ADDRS, MAP_FRAGS6] {
            assert!(pins.0.join("maps").join(m).exists(), "{m} created");
        }
        assert_eq!(dp.endpoint_ipv6(7).unwrap(), None);
        let eps: HashMap<_, u32, EndpointInfo> =
            HashMap::try_from(open_map(&pins.0, MAP_ENDPOINTS)).unwrap();
        assert_eq!(eps.get(&7, 0).unwrap(), ep);
        let ct: HashMap<_, CtKey, CtEntry> = HashMap::try_from(open_map(&pins.0, MAP_CT)).unwrap();
        assert!(ct.get(&k, 0).is_ok(), "the IPv4 flow survived");
        // The full-set call.
        dp.set_endpoints_ipv6(&[
            netd::dataplane::EndpointIpv6 {
                ifindex: 7,
                link_local: a_ll(),
                global: None,
            },
            netd::dataplane::EndpointIpv6 {
                ifindex: 8,
                link_local: a_ll(),
                global: None,
            },
        ])
        .unwrap_err();
        assert!(addrs(&pins).is_empty(), "a refused set changes nothing");
        dp.set_endpoints_ipv6(&[netd::dataplane::EndpointIpv6 {
            ifindex: 7,
            link_local: a_ll(),
            global: Some(a_g()),
        }])
        .unwrap();
        assert_eq!(addrs(&pins).len(), 2);
    });
}
