//! The XDP fast path: published traffic in, replies and masquerade out.

use super::*;

#[test]
fn fast_path_delivers_published_traffic_into_the_container() {
    World::with(|w| {
        w.config(|c| c.flags |= CFG_F_FAST_PATH);
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080)
            .flags(TCP_SYN)
            .payload(b"fast");
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &syn.bytes());
        assert_eq!(v, TC_ACT_REDIRECT, "bpf_redirect_peer to A's veth");
        assert_eq!(tuple(&out), (CLIENT, A_IP, 5555, 80));
        assert_eq!(&out[0..6], &A_MAC, "to the container's MAC");
        assert_eq!(&out[6..12], &BRIDGE_MAC, "from the bridge's");
        assert_eq!(ttl(&out), 63, "routed: TTL decremented");
        assert_csums(&out);
        assert_eq!(&out[out.len() - 4..], b"fast");
        assert_eq!(w.tx_packets(w.va), 1, "counted on A's veth");
        let fwd = w
            .ct(&ct_key(CLIENT, UPLINK_IP, 5555, 8080, IPPROTO_TCP))
            .unwrap();
        assert_eq!(fwd.packets, 1);
        assert_eq!(w.port_stats(11).0, 1);

        // The flow's next packets too.
        let ack = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_ACK);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &ack.bytes());
        assert_eq!(v, TC_ACT_REDIRECT);
        assert_eq!(tuple(&out), (CLIENT, A_IP, 5555, 80));
        assert_eq!(&out[0..12], &[A_MAC, BRIDGE_MAC].concat()[..]);
        assert_csums(&out);
        assert_eq!(w.tx_packets(w.va), 2);

        // TTL 1: the stack's path (it answers "time exceeded"); translated, not routed here.
        let last_hop = with_ttl(&ack.bytes(), 1);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &last_hop);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (CLIENT, A_IP, 5555, 80));
        assert_eq!((ttl(&out), &out[0..12]), (1, &last_hop[0..12]));
        assert_csums(&out);

        // UDP, to B.
        let u = Frame::udp(CLIENT, UPLINK_IP, 3333, 5353).payload(b"dns!");
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &u.bytes());
        assert_eq!(v, TC_ACT_REDIRECT);
        assert_eq!(tuple(&out), (CLIENT, B_IP, 3333, 53));
        assert_eq!(&out[0..12], &[B_MAC, BRIDGE_MAC].concat()[..]);
        assert_csums(&out);

        // A masqueraded flow's reply goes straight back to its container as well.
        let o = Frame::tcp(A_IP, REMOTE, 40000, 443).flags(TCP_SYN);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &o.bytes()).0, TC_ACT_OK);
        let r = Frame::tcp(REMOTE, UPLINK_IP, 443, 40000).flags(TCP_SYN | TCP_ACK);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &r.bytes());
        assert_eq!(v, TC_ACT_REDIRECT);
        assert_eq!(tuple(&out), (REMOTE, A_IP, 443, 40000));
        assert_eq!(&out[0..12], &[A_MAC, BRIDGE_MAC].concat()[..]);
        assert_csums(&out);

        // Without the bridge's MAC (not known yet), or with the flag off: the stack's path.
        w.config(|c| c.bridge_mac = [0; 6]);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &ack.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!((ttl(&out), &out[0..12]), (64, &ack.bytes()[0..12]));
        w.config(|c| {
            c.bridge_mac = BRIDGE_MAC;
            c.flags &= !CFG_F_FAST_PATH;
        });
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &ack.bytes());
        assert_eq!((v, ttl(&out)), (TC_ACT_OK, 64));
        assert_eq!(tuple(&out), (CLIENT, A_IP, 5555, 80));
        assert_eq!(w.drops(), [0; DROP_REASONS as usize]);
    });
}

#[test]
fn fast_path_sends_replies_and_masquerade_out_of_the_uplink() {
    World::with(|w| {
        routes_for_fast_path(w);
        w.config(|c| c.flags |= CFG_F_FAST_PATH);
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        assert_eq!(
            w.run(PROG_FROM_UPLINK, w.up, &syn.bytes()).0,
            TC_ACT_REDIRECT
        );

        // The reply is routed (gateway resolved), translated and redirected from A's veth.
        let synack = Frame::tcp(A_IP, CLIENT, 80, 5555)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_SYN | TCP_ACK)
            .payload(b"reply");
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &synack.bytes());
        assert_eq!(v, TC_ACT_REDIRECT, "bpf_redirect to the uplink");
        assert_eq!(
            tuple(&out),
            (UPLINK_IP, CLIENT, 8080, 5555),
            "host address back"
        );
        assert_eq!(&out[0..6], &GW_MAC, "to the gateway");
        assert_eq!(&out[6..12], &UPLINK_MAC, "from the uplink");
        assert_eq!(ttl(&out), 63);
        assert_csums(&out);
        let rev = w.ct(&ct_key(A_IP, CLIENT, 80, 5555, IPPROTO_TCP)).unwrap();
        assert_eq!(rev.packets, 1);
        assert_eq!(
            rev.tcp_state, CT_TCP_SYN_RECV,
            "answered, not acknowledged yet"
        );
        assert_eq!(w.port_stats(11).0, 2);
        // The uplink's egress lets the translated packet pass as it is.
        let (v, again) = w.run(PROG_TO_UPLINK, w.up, &out);
        assert_eq!((v, &again), (TC_ACT_NEXT, &out));
        assert_eq!(
            w.ct(&ct_key(A_IP, CLIENT, 80, 5555, IPPROTO_TCP))
                .unwrap()
                .packets,
            1
        );

        // An established masqueraded flow towards an unresolved gateway: translated here and
        // handed to bpf_redirect_neigh (the Ethernet header is the kernel's to fill).
        let o = Frame::tcp(A_IP, REMOTE, 40000, 443)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_SYN);
        let (v, _) = w.run(PROG_FROM_CONTAINER, w.va, &o.bytes());
        assert_eq!(
            v, TC_ACT_OK,
            "a new flow is masqueraded by the stack's path"
        );
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &o.bytes()).0, TC_ACT_OK);
        let o2 = Frame::tcp(A_IP, REMOTE, 40000, 443)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_ACK)
            .payload(b"more");
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &o2.bytes());
        assert_eq!(v, TC_ACT_REDIRECT, "bpf_redirect_neigh");
        assert_eq!(tuple(&out), (UPLINK_IP, REMOTE, 40000, 443));
        assert_eq!(ttl(&out), 63);
        assert_csums(&out);

        // TTL 1 or no route: untouched, for the stack (and to_uplink) to handle.
        let last_hop = with_ttl(&synack.bytes(), 1);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &last_hop);
        assert_eq!((v, out), (TC_ACT_OK, last_hop));
        let nowhere = Frame::udp(A_IP, [10, 9, 9, 9], 1000, 53).macs(A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &nowhere.bytes()).0, TC_ACT_OK);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &nowhere.bytes());
        assert_eq!((v, out), (TC_ACT_OK, nowhere.bytes()), "no route: stack");
        // Flag off: the stack's path, translated at the uplink's egress.
        w.config(|c| c.flags &= !CFG_F_FAST_PATH);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &synack.bytes());
        assert_eq!((v, out), (TC_ACT_OK, synack.bytes()));
        assert_eq!(w.drops(), [0; DROP_REASONS as usize]);
    });
}
