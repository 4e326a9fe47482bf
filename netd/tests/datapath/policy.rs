//! Anti-spoofing, icc=false, hairpin and direct access to containers.

use super::*;

// ------------------------------------------------------------------------------------------
// (h) anti-spoofing.

#[test]
fn anti_spoofing_on_container_veths() {
    World::with(|w| {
        w.config(|_| {});
        let ok = Frame::udp(A_IP, REMOTE, 1000, 53).macs(A_MAC, BRIDGE_MAC);
        let (v, _) = w.run(PROG_FROM_CONTAINER, w.va, &ok.bytes());
        assert_eq!(v, TC_ACT_OK);
        let ip_spoof = Frame::udp(B_IP, REMOTE, 1000, 53).macs(A_MAC, BRIDGE_MAC);
        let (v, _) = w.run(PROG_FROM_CONTAINER, w.va, &ip_spoof.bytes());
        assert_eq!(v, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_SPOOFED_IP), 1);
        let mac_spoof = Frame::udp(A_IP, REMOTE, 1000, 53).macs(B_MAC, BRIDGE_MAC);
        let (v, _) = w.run(PROG_FROM_CONTAINER, w.va, &mac_spoof.bytes());
        assert_eq!(v, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_SPOOFED_MAC), 1);
        // ARP: the sender fields count, and 0.0.0.0 probes are refused.
        let arp = arp_frame(A_MAC, A_IP, BRIDGE_IP);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &arp).0, TC_ACT_OK);
        let arp = arp_frame(A_MAC, B_IP, BRIDGE_IP);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &arp).0, TC_ACT_SHOT);
        let arp = arp_frame(A_MAC, [0; 4], A_IP);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &arp).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_SPOOFED_IP), 3);
        let mut arp = arp_frame(A_MAC, A_IP, BRIDGE_IP);
        arp[22..28].copy_from_slice(&B_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &arp).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_SPOOFED_MAC), 2);
        // IPv6 from another MAC is spoofed (IPv6 itself: `icc_false_covers_...`).
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &ipv6_frame(B_MAC)).0,
            TC_ACT_SHOT
        );
        // An interface that is no endpoint (yet) is not policed.
        let (v, _) = w.run(PROG_FROM_CONTAINER, w.vx, &ip_spoof.bytes());
        assert_eq!(v, TC_ACT_OK);
    });
}

// ------------------------------------------------------------------------------------------
// (i) --icc false and links, hairpin.

#[test]
fn icc_false_drops_unless_linked() {
    World::with(|w| {
        w.config(|_| {});
        let a_to_b = Frame::tcp(A_IP, B_IP, 33000, 80)
            .macs(A_MAC, B_MAC)
            .flags(TCP_SYN);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &a_to_b.bytes()).0,
            TC_ACT_SHOT
        );
        let ping = Frame::echo(A_IP, B_IP, ICMP_ECHO_REQUEST, 7).macs(A_MAC, B_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &ping.bytes()).0,
            TC_ACT_SHOT
        );
        let udp = Frame::udp(A_IP, B_IP, 33000, 80).macs(A_MAC, B_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &udp.bytes()).0,
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_ICC), 3);
        // The gateway (the host) and ARP are always reachable.
        let to_host = Frame::tcp(A_IP, BRIDGE_IP, 33000, 22).macs(A_MAC, BRIDGE_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &to_host.bytes()).0,
            TC_ACT_OK
        );
        let arp = arp_frame(A_MAC, A_IP, B_IP);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &arp).0, TC_ACT_OK);

        // --link: A may reach B on tcp/80 and 8000-8010.
        w.link(A_IP, B_IP, IPPROTO_TCP, &[(80, 80), (8000, 8010)]);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &a_to_b.bytes());
        assert_eq!((v, out), (TC_ACT_OK, a_to_b.bytes()));
        let e = w.ct(&ct_key(A_IP, B_IP, 33000, 80, IPPROTO_TCP)).unwrap();
        assert_eq!(e.flags, CT_F_LINK);
        let a_to_b_8005 = Frame::tcp(A_IP, B_IP, 33001, 8005).macs(A_MAC, B_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &a_to_b_8005.bytes()).0,
            TC_ACT_OK
        );
        // Its reply passes; B opening to A does not; other ports and UDP stay closed.
        let reply = Frame::tcp(B_IP, A_IP, 80, 33000)
            .macs(B_MAC, A_MAC)
            .flags(TCP_SYN | TCP_ACK);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.vb, &reply.bytes()).0,
            TC_ACT_OK
        );
        assert_eq!(
            w.ct(&ct_key(B_IP, A_IP, 80, 33000, IPPROTO_TCP))
                .unwrap()
                .flags
                & !CT_F_TD_SEEN,
            CT_F_LINK | CT_F_REPLY | CT_F_SEEN_REPLY
        );
        let b_to_a = Frame::tcp(B_IP, A_IP, 80, 33999).macs(B_MAC, A_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.vb, &b_to_a.bytes()).0,
            TC_ACT_SHOT
        );
        let other = Frame::tcp(A_IP, B_IP, 33002, 81).macs(A_MAC, B_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &other.bytes()).0,
            TC_ACT_SHOT
        );
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &udp.bytes()).0,
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_ICC), 6);

        // --icc true: everything passes, nothing is tracked.
        w.config(|c| c.flags |= CFG_F_ICC);
        let open = Frame::tcp(A_IP, B_IP, 34000, 81).macs(A_MAC, B_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &open.bytes()).0, TC_ACT_OK);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &ping.bytes()).0, TC_ACT_OK);
        assert!(w.ct(&ct_key(A_IP, B_IP, 34000, 81, IPPROTO_TCP)).is_none());
        assert_eq!(w.drop_count(DROP_ICC), 6);
    });
}

#[test]
fn icc_false_covers_ipv6_other_ethertypes_and_broadcast() {
    World::with(|w| {
        w.config(|_| {});
        // IPv6 from an endpoint without IPv6 configuration, here UDP from fe80::2 (not its
        // MAC-derived address), is refused whatever --icc says (the IPv6 policy: datapath6.rs).
        let v6 = ipv6_frame(A_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &v6).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_SPOOFED_IP), 1);
        // VLAN-tagged frames and unknown ethertypes are refused whatever --icc says.
        let udp = Frame::udp(A_IP, B_IP, 1000, 53).macs(A_MAC, B_MAC).bytes();
        let mut other = udp.clone();
        other[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        for f in [vlan_tagged(&udp, 0x8100), vlan_tagged(&udp, 0x88a8), other] {
            assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f).0, TC_ACT_SHOT);
        }
        assert_eq!(w.drop_count(DROP_ETHERTYPE), 3);
        // The limited broadcast, the subnet's directed broadcast and multicast reach every
        // container: refused under --icc false.
        for d in [
            [255, 255, 255, 255],
            [172, 30, 0, 255],
            [224, 0, 0, 1],
            [239, 1, 2, 3],
        ] {
            let f = Frame::udp(A_IP, d, 1000, 9999).macs(A_MAC, [0xff; 6]);
            assert_eq!(
                w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0,
                TC_ACT_SHOT,
                "{d:?}"
            );
        }
        assert_eq!(w.drop_count(DROP_ICC), 4);
        // Unicast to the outside still passes.
        let out = Frame::udp(A_IP, [240, 0, 0, 1], 1000, 53).macs(A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &out.bytes()).0, TC_ACT_OK);

        // --icc true: broadcast passes; VLAN tags and that IPv6 frame still do not.
        w.config(|c| c.flags |= CFG_F_ICC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &v6).0, TC_ACT_SHOT);
        let f = Frame::udp(A_IP, [255; 4], 1000, 9999).macs(A_MAC, [0xff; 6]);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0, TC_ACT_OK);
        let f = vlan_tagged(&udp, 0x8100);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ETHERTYPE), 4);
        assert_eq!(w.drop_count(DROP_ICC), 4);
        assert_eq!(w.drop_count(DROP_SPOOFED_IP), 2);
    });
}

#[test]
fn hairpin_to_a_published_port() {
    World::with(|w| {
        w.config(|_| {});
        // A reaches B's published range through the uplink address: DNAT, source kept.
        let f = Frame::tcp(A_IP, UPLINK_IP, 35000, 7001)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_SYN)
            .payload(b"hairpin");
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &f.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (A_IP, B_IP, 35000, 8001));
        assert_csums(&out);
        let k = ct_key(A_IP, UPLINK_IP, 35000, 7001, IPPROTO_TCP);
        assert_eq!(
            w.ct(&k).unwrap().flags,
            CT_F_PUBLISHED | CT_F_HAIRPIN | CT_F_DNAT
        );
        // B's reply goes straight to A over the bridge: translated at B's veth.
        let r = Frame::tcp(B_IP, A_IP, 8001, 35000)
            .macs(B_MAC, A_MAC)
            .flags(TCP_SYN | TCP_ACK);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.vb, &r.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (UPLINK_IP, A_IP, 7001, 35000));
        assert_csums(&out);
        assert_eq!(w.port_stats(14).0, 2);

        // A reaches its own published port: DNAT to itself, SNAT to the gateway, and the
        // packet goes straight back into A (the stack would call it a martian).
        let f = Frame::tcp(A_IP, BRIDGE_IP, 36000, 8080)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_SYN);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &f.bytes());
        assert_eq!(v, TC_ACT_REDIRECT);
        assert_eq!(tuple(&out), (BRIDGE_IP, A_IP, 36000, 80));
        assert_eq!(
            &out[0..12],
            &[A_MAC, BRIDGE_MAC].concat()[..],
            "MACs swapped"
        );
        assert_csums(&out);
        let e = w
            .ct(&ct_key(A_IP, BRIDGE_IP, 36000, 8080, IPPROTO_TCP))
            .unwrap();
        assert_eq!(
            e.flags,
            CT_F_PUBLISHED | CT_F_HAIRPIN | CT_F_DNAT | CT_F_SNAT
        );
        let r = Frame::tcp(A_IP, BRIDGE_IP, 80, 36000)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_SYN | TCP_ACK);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &r.bytes());
        assert_eq!(v, TC_ACT_REDIRECT);
        assert_eq!(tuple(&out), (BRIDGE_IP, A_IP, 8080, 36000));
        assert_csums(&out);

        // Loopback-only bindings are not reachable from containers either.
        let f = Frame::tcp(A_IP, [127, 0, 0, 1], 36001, 9000).macs(A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_LOOPBACK_ONLY), 1);
    });
}

// ------------------------------------------------------------------------------------------
// (j) direct access.

#[test]
fn direct_access_to_containers_is_dropped() {
    World::with(|w| {
        w.config(|_| {});
        for f in [
            Frame::tcp(CLIENT, A_IP, 5555, 80).flags(TCP_SYN),
            Frame::udp(CLIENT, B_IP, 5555, 53),
            Frame::echo(CLIENT, A_IP, ICMP_ECHO_REQUEST, 1),
        ] {
            assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &f.bytes()).0, TC_ACT_SHOT);
        }
        assert_eq!(w.drop_count(DROP_DIRECT_ACCESS), 3);
        // Host traffic and traffic to other networks pass.
        let f = Frame::tcp(CLIENT, UPLINK_IP, 5555, 22);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &f.bytes()).0, TC_ACT_NEXT);
        let f = Frame::tcp(CLIENT, [10, 1, 2, 3], 5555, 22);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &f.bytes()).0, TC_ACT_NEXT);
    });
}

#[test]
fn direct_access_from_other_host_interfaces_is_dropped() {
    World::with(|w| {
        w.config(|_| {});
        // vx stands for a second NIC or a VPN that is no uplink, routed to the container subnet.
        for f in [
            Frame::tcp(CLIENT, A_IP, 5555, 80).flags(TCP_SYN),
            Frame::udp(CLIENT, A_IP, 5555, 53),
            Frame::echo(CLIENT, A_IP, ICMP_ECHO_REQUEST, 1),
        ] {
            let (v, _) = w.run_from(PROG_TO_CONTAINER, w.va, w.vx, &f.bytes());
            assert_eq!(v, TC_ACT_SHOT);
        }
        assert_eq!(w.drop_count(DROP_DIRECT_ACCESS), 3);
        // The host itself, the bridge, another container and uplinks (policed by from_uplink)
        // pass.
        let f = Frame::tcp(CLIENT, A_IP, 5555, 80);
        for iif in [0, w.br, w.vb, w.up] {
            assert_eq!(
                w.run_from(PROG_TO_CONTAINER, w.va, iif, &f.bytes()).0,
                TC_ACT_OK,
                "from {iif}"
            );
        }
        // A bridge-subnet source arriving by another interface is spoofed: it lives behind
        // the bridge.
        let f = Frame::tcp(B_IP, A_IP, 5555, 80);
        assert_eq!(
            w.run_from(PROG_TO_CONTAINER, w.va, w.vx, &f.bytes()).0,
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_MARTIAN), 1);
        // A tracked flow passes whatever the interface: a published flow, as translated.
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &syn.bytes()).0, TC_ACT_OK);
        let f = Frame::tcp(CLIENT, A_IP, 5555, 80).flags(TCP_ACK);
        assert_eq!(
            w.run_from(PROG_TO_CONTAINER, w.va, w.vx, &f.bytes()).0,
            TC_ACT_OK
        );
        // ... and an outbound one's reply.
        let out = Frame::udp(A_IP, REMOTE, 1000, 53);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &out.bytes()).0, TC_ACT_OK);
        let reply = Frame::udp(REMOTE, A_IP, 53, 1000);
        assert_eq!(
            w.run_from(PROG_TO_CONTAINER, w.va, w.vx, &reply.bytes()).0,
            TC_ACT_OK
        );
        assert_eq!(w.drop_count(DROP_DIRECT_ACCESS), 3);
    });
}
