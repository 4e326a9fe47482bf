//! IPv6 source checks, neighbour discovery, RA/redirects, endpoints without IPv6.

use super::*;

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
