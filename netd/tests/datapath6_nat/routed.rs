//! The IPv6 fast path for routed traffic (no NAT, `--ipv6 --fixed-cidr-v6`): the outside to a
//! container's own global address straight into it, the container's own traffic straight
//! out of the uplink; everything the fast path does not take keeps the stack's path, the
//! frame unchanged. netd tracks no routed flow (neither path makes an entry).

use aya::maps::Array;

use super::fast_path::uplink_routes;
use super::*;

fn hop(f: &[u8]) -> u8 {
    f[14 + 7]
}

fn with_hop(f: &[u8], h: u8) -> Vec<u8> {
    let mut f = f.to_vec();
    f[14 + 7] = h;
    f
}

/// The frame as A sends it: Ethernet from A to `dst_mac`.
fn from_a(mut f: Vec<u8>, dst_mac: [u8; 6]) -> Vec<u8> {
    f[0..12].copy_from_slice(&[dst_mac, A_MAC].concat());
    f
}

/// An ICMPv6 echo request from `s` to `d`.
fn echo6(s: Ipv6Addr, d: Ipv6Addr) -> Vec<u8> {
    let m = with_csum(s, d, NH_ICMPV6, vec![128, 0, 0, 0, 0, 1, 0, 1], 2);
    eth6(&ip6(s, d, NH_ICMPV6, &m))
}

/// A UDP frame with `n` bytes of data.
fn big_udp(s: Ipv6Addr, d: Ipv6Addr, n: usize) -> Vec<u8> {
    eth6(&ip6(
        s,
        d,
        IPPROTO_UDP,
        &udp(s, d, 41000, 53, &vec![7u8; n]),
    ))
}

/// Container C on `vx`, on network 1, `--internal`: its global address in NETD_EP6_ADDRS.
fn internal_c(w: &World) -> Ipv6Addr {
    let mut nets: Array<_, NetConfig> = Array::try_from(w.map(MAP_NETWORKS)).unwrap();
    let n = NetConfig {
        flags: NET_F_ICC | NET_F_INTERNAL,
        bridge_ifindex: w.br,
        bridge_ip: ip([172, 31, 0, 1]),
        subnet: ip([172, 31, 0, 0]),
        subnet_mask: ip([255, 255, 255, 0]),
        bridge_mac: BRIDGE_MAC,
        _pad: 0,
    };
    nets.set(1, n, 0).unwrap();
    let c_mac = [0x02, 0x42, 0xac, 0x1f, 0, 0x02];
    let e = EndpointInfo {
        ip: ip([172, 31, 0, 2]),
        ifindex: w.vx,
        mac: c_mac,
        net_id: 1,
    };
    put_endpoint(&w.pins.0, &e);
    let c_g = a6("2001:db8:31::2");
    let mut m: HashMap<_, [u32; 4], u32> = HashMap::try_from(w.map(MAP_EP6_ADDRS)).unwrap();
    m.insert(w6(c_g), w.vx, 0).unwrap();
    c_g
}

/// No entry for the flow of `s:sp -> d:dp` in NETD_CT.
fn untracked(w: &World, s: Ipv6Addr, d: Ipv6Addr, sp: u16, dp: u16, proto: u8) -> bool {
    w.ct(&CtKey::v6(w6(s), w6(d), sp.to_be(), dp.to_be(), proto))
        .is_none()
}

#[test]
fn fast_path_delivers_routed_ipv6_into_the_container() {
    world(|w| {
        w.config(|c| c.flags |= CFG_F_FAST_PATH);
        // TCP to A's global address (no binding there: routed, not translated).
        let syn = tcp_frame(client(), a_g(), 40000, 80, TCP_SYN);
        let (v, out) = from_uplink(w, &syn);
        assert_eq!(v, TC_ACT_REDIRECT, "bpf_redirect_peer to A's veth");
        assert_eq!(addrs(&out), (client(), a_g()), "not translated");
        assert_eq!((port_at(&out, L4), port_at(&out, L4 + 2)), (40000, 80));
        assert_eq!(&out[0..12], &[A_MAC, BRIDGE_MAC].concat()[..]);
        assert_eq!(hop(&out), 63, "routed: hop limit decremented");
        assert_eq!(
            &out[14 + 8..],
            &syn[14 + 8..],
            "the packet itself untouched"
        );
        assert_eq!(w.tx_packets(w.va), 1, "counted on A's veth");
        assert!(untracked(w, client(), a_g(), 40000, 80, IPPROTO_TCP));
        // UDP, to B.
        let (v, out) = from_uplink(w, &udp_frame(client(), b_g(), 41000, 53));
        assert_eq!(
            (v, &out[0..6], hop(&out)),
            (TC_ACT_REDIRECT, &B_MAC[..], 63)
        );
        assert_l4_csum(&out, 14, L4, IPPROTO_UDP, "routed UDP");
        assert!(untracked(w, client(), b_g(), 41000, 53, IPPROTO_UDP));

        // The stack's path, unchanged: hop limit 1 (time exceeded), a source the host would
        // not forward, A's link-local address, no endpoint's address, not TCP/UDP.
        let stack = |f: &[u8], what: &str| {
            assert_eq!(from_uplink(w, f), (TC_ACT_NEXT, f.to_vec()), "{what}");
        };
        stack(&with_hop(&syn, 1), "hop limit 1");
        for src in ["fe80::9", "::1", "::ffff:198.51.100.9", "::"] {
            stack(&tcp_frame(a6(src), a_g(), 40001, 80, TCP_SYN), src);
        }
        let mut e: HashMap<_, [u32; 4], u32> = HashMap::try_from(w.map(MAP_EP6_ADDRS)).unwrap();
        let a_ll = a6("fe80::42:acff:fe1e:2");
        e.insert(w6(a_ll), w.va, 0).unwrap();
        stack(&tcp_frame(client(), a_ll, 40002, 80, TCP_SYN), "link-local");
        stack(
            &tcp_frame(client(), a6("2001:db8:1::77"), 40003, 80, TCP_SYN),
            "no endpoint",
        );
        stack(&echo6(client(), a_g()), "ICMPv6");
        // Too big for A's veth (MTU 1500): the stack answers "packet too big".
        stack(&big_udp(client(), a_g(), 1600), "oversized");
        // An --internal network.
        let c_g = internal_c(w);
        stack(&tcp_frame(client(), c_g, 40004, 80, TCP_SYN), "--internal");
        // No bridge MAC yet, or the flag off.
        w.config(|c| {
            c.flags |= CFG_F_FAST_PATH;
            c.bridge_mac = [0; 6];
        });
        stack(&syn, "no bridge MAC");
        w.config(|c| c.flags &= !CFG_F_FAST_PATH);
        stack(&syn, "--fast-path false");
        assert_eq!(w.tx_packets(w.va), 1);
        assert_eq!(w.drops(), [0; DROP_REASONS as usize]);
    });
}

#[test]
fn fast_path_sends_routed_ipv6_out_of_the_uplink() {
    world(|w| {
        let mut dp = uplink_routes(w);
        w.config(|c| c.flags |= CFG_F_FAST_PATH);
        // A opens a flow to the outside from its global address.
        let syn = from_a(tcp_frame(a_g(), client(), 40000, 9000, TCP_SYN), BRIDGE_MAC);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &syn);
        assert_eq!(v, TC_ACT_REDIRECT, "bpf_redirect to the uplink");
        assert_eq!(
            &out[0..12],
            &[GW_MAC, UPLINK_MAC].concat()[..],
            "to the gateway"
        );
        assert_eq!(hop(&out), 63);
        assert_eq!(
            &out[14 + 8..],
            &syn[14 + 8..],
            "its own address, untranslated"
        );
        assert!(untracked(w, a_g(), client(), 40000, 9000, IPPROTO_TCP));
        // The uplink's egress lets it pass as it is (no published flow).
        let (v, again) = to_uplink(w, &out);
        assert_eq!((v, &again), (TC_ACT_NEXT, &out));
        let u = from_a(udp_frame(a_g(), client(), 41000, 53), BRIDGE_MAC);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &u);
        assert_eq!((v, hop(&out)), (TC_ACT_REDIRECT, 63));
        assert_l4_csum(&out, 14, L4, IPPROTO_UDP, "routed UDP out");

        // The stack's path, the frame unchanged.
        let stack = |f: &[u8], what: &str| {
            let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, f);
            assert_eq!((v, &out[..]), (TC_ACT_OK, f), "{what}");
        };
        stack(&with_hop(&syn, 1), "hop limit 1");
        let a_ll = a6("fe80::42:acff:fe1e:2");
        let f = tcp_frame(a_ll, client(), 40001, 9000, TCP_SYN);
        stack(&from_a(f, BRIDGE_MAC), "from A's link-local address");
        let f = tcp_frame(a_g(), host(), 40001, 22, TCP_SYN);
        stack(&from_a(f, BRIDGE_MAC), "to the host");
        let f = tcp_frame(a_g(), a6("2001:db8:dd::9"), 40001, 9000, TCP_SYN);
        stack(&from_a(f, BRIDGE_MAC), "no route");
        stack(&from_a(echo6(a_g(), client()), BRIDGE_MAC), "ICMPv6");
        stack(
            &from_a(big_udp(a_g(), client(), 1600), BRIDGE_MAC),
            "oversized",
        );
        // Not sent to the bridge, or to a group (with --icc true, which allows them).
        w.config(|c| c.flags |= CFG_F_ICC);
        let f = tcp_frame(a_g(), a6("ff0e::9"), 40001, 9000, TCP_SYN);
        stack(&from_a(f, BRIDGE_MAC), "to a group");
        stack(
            &from_a(tcp_frame(a_g(), client(), 40001, 9000, TCP_SYN), B_MAC),
            "to B's MAC",
        );
        // To B (another container: the bridge's).
        dp.set_endpoint_ipv6(w.vb, a6("fe80::42:acff:fe1e:3"), Some(b_g()))
            .unwrap();
        stack(
            &from_a(tcp_frame(a_g(), b_g(), 40001, 80, TCP_SYN), BRIDGE_MAC),
            "to B",
        );
        // A on an --internal network.
        let mut nets: Array<_, NetConfig> = Array::try_from(w.map(MAP_NETWORKS)).unwrap();
        let n = NetConfig {
            flags: NET_F_INTERNAL,
            bridge_ifindex: w.br,
            bridge_ip: ip(BRIDGE_IP),
            subnet: ip([172, 30, 0, 0]),
            subnet_mask: ip([255, 255, 255, 0]),
            bridge_mac: BRIDGE_MAC,
            _pad: 0,
        };
        nets.set(1, n, 0).unwrap();
        let a = EndpointInfo {
            ip: ip(A_IP),
            ifindex: w.va,
            mac: A_MAC,
            net_id: 1,
        };
        put_endpoint(&w.pins.0, &a);
        stack(&syn, "--internal");
        put_endpoint(&w.pins.0, &EndpointInfo { net_id: 0, ..a });
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &syn).0, TC_ACT_REDIRECT);
        w.config(|c| c.flags &= !CFG_F_FAST_PATH);
        stack(&syn, "--fast-path false");
        assert_eq!(w.drops(), [0; DROP_REASONS as usize]);
    });
}
