//! Published ports (DNAT), UDP ranges, masquerade port choice, ICMP echo masquerade.

use super::*;

// ------------------------------------------------------------------------------------------
// (a) published-port DNAT at from_uplink, (b) its reply.

#[test]
fn published_port_dnat_and_reply() {
    World::with(|w| {
        w.config(|_| {});
        // A TCP SYN with payload from outside to host:8080.
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080)
            .flags(TCP_SYN)
            .payload(b"hello, published port");
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &syn.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (CLIENT, A_IP, 5555, 80), "DNAT to A:80");
        assert_csums(&out);
        assert_eq!(&out[out.len() - 21..], b"hello, published port");

        // Both directions are tracked and linked.
        let k = ct_key(CLIENT, UPLINK_IP, 5555, 8080, IPPROTO_TCP);
        let fwd = w.ct(&k).expect("original entry");
        assert_eq!(fwd.nat_daddr[0], ip(A_IP));
        assert_eq!(fwd.nat_dport, 80u16.to_be());
        assert_eq!(
            fwd.nat_saddr[0],
            ip(CLIENT),
            "the container sees the client"
        );
        assert_eq!(fwd.flags, CT_F_PUBLISHED | CT_F_DNAT);
        assert_eq!(fwd.binding_id, 11);
        assert_eq!(fwd.ifindex, w.va);
        assert_eq!(fwd.tcp_state, CT_TCP_SYN_SENT);
        assert_eq!(fwd.packets, 1);
        let r = ct_key(A_IP, CLIENT, 80, 5555, IPPROTO_TCP);
        assert_eq!(fwd.peer, r);
        let rev = w.ct(&r).expect("reply entry");
        assert_eq!(rev.flags, CT_F_PUBLISHED | CT_F_SNAT | CT_F_REPLY);
        assert_eq!(rev.nat_saddr[0], ip(UPLINK_IP));
        assert_eq!(rev.nat_sport, 8080u16.to_be());
        assert_eq!(rev.peer, k);
        assert_eq!(rev.ifindex, w.up);
        assert_eq!(w.port_stats(11), (1, syn.bytes().len() as u64));

        // (b) The SYN-ACK: the container's veth leaves it alone (the host address must not
        // reach the stack as a source arriving on the bridge); the uplink's egress restores
        // the host address and port.
        let synack = Frame::tcp(A_IP, CLIENT, 80, 5555)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_SYN | TCP_ACK)
            .payload(b"reply");
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &synack.bytes());
        assert_eq!((v, out.as_slice()), (TC_ACT_OK, synack.bytes().as_slice()));
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &synack.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (UPLINK_IP, CLIENT, 8080, 5555), "SNAT back");
        assert_csums(&out);
        let fwd = w.ct(&k).unwrap();
        let rev = w.ct(&r).unwrap();
        assert_eq!(
            fwd.tcp_state, CT_TCP_SYN_RECV,
            "a SYN-ACK alone: not established"
        );
        assert_eq!(rev.tcp_state, CT_TCP_SYN_RECV);
        assert_ne!(fwd.flags & CT_F_SEEN_REPLY, 0);
        assert_ne!(rev.flags & CT_F_SEEN_REPLY, 0);
        assert_eq!(rev.packets, 1);
        assert_eq!(w.port_stats(11).0, 2);

        // The next packet of the flow reuses the entry: same translation, no new entries.
        let ack = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_ACK);
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &ack.bytes());
        assert_eq!(tuple(&out), (CLIENT, A_IP, 5555, 80));
        assert_eq!(w.ct(&k).unwrap().packets, 2);
        // FIN moves both to CLOSING.
        let fin = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_FIN | TCP_ACK);
        w.run(PROG_FROM_UPLINK, w.up, &fin.bytes());
        assert_eq!(w.ct(&r).unwrap().tcp_state, CT_TCP_CLOSING);
        assert_eq!(w.drops(), [0; DROP_REASONS as usize]);
    });
}

#[test]
fn published_udp_ranges_and_zero_checksum() {
    World::with(|w| {
        w.config(|_| {});
        // A port range maps 1:1 (tcp 7005 -> B:8005).
        let f = Frame::tcp(CLIENT, UPLINK_IP, 3333, 7005).payload(b"range");
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (CLIENT, B_IP, 3333, 8005));
        assert_csums(&out);
        assert_eq!(w.port_stats(14).0, 1);
        // UDP with a checksum.
        let f = Frame::udp(CLIENT, UPLINK_IP, 3333, 5353).payload(b"dns!");
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
        assert_eq!(tuple(&out), (CLIENT, B_IP, 3333, 53));
        assert_csums(&out);
        assert_ne!(&out[34 + 6..34 + 8], &[0, 0]);
        // UDP without a checksum keeps none.
        let f = Frame::udp(CLIENT, UPLINK_IP, 3334, 5353)
            .no_udp_csum()
            .payload(b"dns?");
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
        assert_eq!(tuple(&out), (CLIENT, B_IP, 3334, 53));
        let l4 = 14 + 20;
        assert_eq!(&out[l4 + 6..l4 + 8], &[0, 0], "zero UDP checksum kept");
        assert_csums(&out);
        // The bridge address is a host address too; unpublished ports are host traffic.
        let f = Frame::udp(CLIENT, BRIDGE_IP, 3335, 5353);
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
        assert_eq!(tuple(&out), (CLIENT, B_IP, 3335, 53));
        let f = Frame::tcp(CLIENT, UPLINK_IP, 3336, 22);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
        assert_eq!((v, out), (TC_ACT_NEXT, f.bytes()));
        // Wrong protocol: 5353 is published for UDP only.
        let f = Frame::tcp(CLIENT, UPLINK_IP, 3337, 5353);
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
        assert_eq!(out, f.bytes());
        // A loopback-only binding is not reachable from outside.
        let f = Frame::tcp(CLIENT, [127, 0, 0, 1], 3338, 9000);
        let (v, _) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
        assert_eq!(v, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_LOOPBACK_ONLY), 1);
        // Non-IPv4 passes untouched, on to the next program.
        let arp = arp_frame(CLIENT_MAC, [1; 4], [2; 4]);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &arp);
        assert_eq!((v, out), (TC_ACT_NEXT, arp));
    });
}

// ------------------------------------------------------------------------------------------
// (c) masquerade, (d) ICMP echo masquerade.

#[test]
fn masquerade_keeps_free_ports_and_moves_clashing_ones() {
    World::with(|w| {
        w.config(|c| {
            c.snat_port_min = 50000;
            c.snat_port_max = 50000;
        });
        let a = Frame::tcp(A_IP, REMOTE, 40000, 443)
            .flags(TCP_SYN)
            .payload(b"a");
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &a.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (UPLINK_IP, REMOTE, 40000, 443), "port kept");
        assert_csums(&out);
        let fwd = w
            .ct(&ct_key(A_IP, REMOTE, 40000, 443, IPPROTO_TCP))
            .unwrap();
        assert_eq!(fwd.flags, CT_F_MASQ | CT_F_SNAT);
        assert_eq!(fwd.ifindex, w.up);

        // Same remote, same source port from B: the reply tuple is taken.
        let b = Frame::tcp(B_IP, REMOTE, 40000, 443).flags(TCP_SYN);
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &b.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (UPLINK_IP, REMOTE, 50000, 443), "moved");
        assert_csums(&out);

        // A third: the only free port is gone.
        let c = Frame::tcp([172, 30, 0, 4], REMOTE, 40000, 443).flags(TCP_SYN);
        let (v, _) = w.run(PROG_TO_UPLINK, w.up, &c.bytes());
        assert_eq!(v, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_NO_SNAT_PORT), 1);

        // Replies go back to their containers.
        let ra = Frame::tcp(REMOTE, UPLINK_IP, 443, 40000)
            .flags(TCP_SYN | TCP_ACK)
            .payload(b"to a");
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &ra.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (REMOTE, A_IP, 443, 40000));
        assert_csums(&out);
        let rb = Frame::tcp(REMOTE, UPLINK_IP, 443, 50000).flags(TCP_SYN | TCP_ACK);
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &rb.bytes());
        assert_eq!(tuple(&out), (REMOTE, B_IP, 443, 40000));
        assert_csums(&out);
        let rev = w
            .ct(&ct_key(REMOTE, UPLINK_IP, 443, 50000, IPPROTO_TCP))
            .unwrap();
        assert_eq!(
            rev.flags & !CT_F_TD_SEEN,
            CT_F_MASQ | CT_F_DNAT | CT_F_REPLY | CT_F_SEEN_REPLY
        );
        assert_eq!(rev.ifindex, w.vb);
        assert_eq!(rev.tcp_state, CT_TCP_SYN_RECV);
        // B's ACK of the SYN-ACK (sequence 0x01020304) establishes it; a blind one would not.
        let blind = Frame::tcp(B_IP, REMOTE, 40000, 443)
            .macs(B_MAC, BRIDGE_MAC)
            .flags(TCP_ACK)
            .ack(0x7000_0000);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &blind.bytes()).0, TC_ACT_OK);
        let k = ct_key(REMOTE, UPLINK_IP, 443, 50000, IPPROTO_TCP);
        assert_eq!(w.ct(&k).unwrap().tcp_state, CT_TCP_SYN_RECV, "a blind ACK");
        let ack = blind.ack(0x0102_0305);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &ack.bytes()).0, TC_ACT_OK);
        assert_eq!(w.ct(&k).unwrap().tcp_state, CT_TCP_ESTABLISHED);

        // Traffic between containers and the bridge is never translated.
        let local = Frame::tcp(A_IP, B_IP, 1, 2);
        let (_, out) = w.run(PROG_TO_UPLINK, w.up, &local.bytes());
        assert_eq!(out, local.bytes());
        // Nor is host traffic.
        let host = Frame::tcp(UPLINK_IP, REMOTE, 1, 2);
        let (_, out) = w.run(PROG_TO_UPLINK, w.up, &host.bytes());
        assert_eq!(out, host.bytes());
    });
}

#[test]
fn masquerade_with_a_wide_range_probes_a_free_port() {
    World::with(|w| {
        w.config(|c| {
            c.snat_port_min = 50000;
            c.snat_port_max = 50999;
        });
        let mut seen = std::collections::HashSet::new();
        for n in 0..20u8 {
            let f = Frame::udp([172, 30, 0, 10 + n], REMOTE, 40000, 53);
            let (v, out) = w.run(PROG_TO_UPLINK, w.up, &f.bytes());
            assert_eq!(v, TC_ACT_OK);
            let (s, d, sp, dp) = tuple(&out);
            assert_eq!((s, d, dp), (UPLINK_IP, REMOTE, 53));
            assert!(
                n == 0 && sp == 40000 || (50000..=50999).contains(&sp),
                "{sp}"
            );
            assert!(seen.insert(sp), "port {sp} handed out twice");
            assert_csums(&out);
        }
        // Masquerade off: nothing translated, but tracked so replies are not "direct access".
        w.config(|c| c.flags &= !CFG_F_MASQ);
        let f = Frame::udp(A_IP, REMOTE, 41000, 53);
        let (_, out) = w.run(PROG_TO_UPLINK, w.up, &f.bytes());
        assert_eq!(out, f.bytes());
        let reply = Frame::udp(REMOTE, A_IP, 53, 41000);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &reply.bytes());
        assert_eq!((v, out), (TC_ACT_OK, reply.bytes()));
        let stranger = Frame::udp(REMOTE, A_IP, 53, 41001);
        let (v, _) = w.run(PROG_FROM_UPLINK, w.up, &stranger.bytes());
        assert_eq!(v, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_DIRECT_ACCESS), 1);
    });
}

#[test]
fn icmp_echo_masquerade() {
    World::with(|w| {
        w.config(|c| {
            c.snat_port_min = 60000;
            c.snat_port_max = 60000;
        });
        let pa = Frame::echo(A_IP, REMOTE, ICMP_ECHO_REQUEST, 0x1234).payload(b"ping a");
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &pa.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (UPLINK_IP, REMOTE, 0x1234, 0x1234));
        assert_csums(&out);
        let pb = Frame::echo(B_IP, REMOTE, ICMP_ECHO_REQUEST, 0x1234).payload(b"ping b");
        let (_, out) = w.run(PROG_TO_UPLINK, w.up, &pb.bytes());
        assert_eq!(
            tuple(&out),
            (UPLINK_IP, REMOTE, 60000, 60000),
            "echo id moved"
        );
        assert_csums(&out);
        let e = w
            .ct(&ct_key(B_IP, REMOTE, 0x1234, 0x1234, IPPROTO_ICMP))
            .unwrap();
        assert_eq!(
            e.flags,
            CT_F_MASQ | CT_F_SNAT,
            "an echo id change is a source translation"
        );

        let rb = Frame::echo(REMOTE, UPLINK_IP, ICMP_ECHO_REPLY, 60000).payload(b"pong b");
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &rb.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (REMOTE, B_IP, 0x1234, 0x1234));
        assert_csums(&out);
        let ra = Frame::echo(REMOTE, UPLINK_IP, ICMP_ECHO_REPLY, 0x1234);
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &ra.bytes());
        assert_eq!(tuple(&out), (REMOTE, A_IP, 0x1234, 0x1234));
        assert_csums(&out);
        // An echo *request* from outside matching a reply tuple is the host's to answer.
        let req = Frame::echo(REMOTE, UPLINK_IP, ICMP_ECHO_REQUEST, 0x1234);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &req.bytes());
        assert_eq!((v, out), (TC_ACT_NEXT, req.bytes()));
    });
}
