//! Conntrack: flow lifetime and a full table's eviction.

use super::*;

#[test]
fn a_flow_lives_while_either_direction_is_seen() {
    World::with(|w| {
        w.config(|_| {});
        // A published UDP flow whose client keeps sending while the container stays silent
        // for longer than the UDP timeout (60 s).
        let f = Frame::udp(CLIENT, UPLINK_IP, 4444, 5353).payload(b"q");
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
        assert_eq!(tuple(&out), (CLIENT, B_IP, 4444, 53));
        let k = ct_key(CLIENT, UPLINK_IP, 4444, 5353, IPPROTO_UDP);
        let r = ct_key(B_IP, CLIENT, 53, 4444, IPPROTO_UDP);
        let mut rev = w.ct(&r).unwrap();
        let fresh = rev.last_seen_ns;
        rev.last_seen_ns = fresh - 120_000_000_000;
        w.set_ct(&r, &rev);
        // The late answer is the published flow's reply, not a new masqueraded flow.
        let late = Frame::udp(B_IP, CLIENT, 53, 4444).macs(B_MAC, BRIDGE_MAC);
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &late.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(
            tuple(&out),
            (UPLINK_IP, CLIENT, 5353, 4444),
            "published reply"
        );
        let fwd = w.ct(&k).expect("the published entry is kept");
        assert_eq!(fwd.flags & !CT_F_SEEN_REPLY, CT_F_PUBLISHED | CT_F_DNAT);
        assert_eq!(fwd.peer, r);
        assert_ne!(w.ct(&r).unwrap().flags & CT_F_PUBLISHED, 0);

        // Both directions idle: the flow is over and the tuple opens a new one.
        let mut fwd = w.ct(&k).unwrap();
        fwd.last_seen_ns = fresh - 120_000_000_000;
        w.set_ct(&k, &fwd);
        let mut rev = w.ct(&r).unwrap();
        rev.last_seen_ns = fresh - 120_000_000_000;
        w.set_ct(&r, &rev);
        let (_, out) = w.run(PROG_TO_UPLINK, w.up, &late.bytes());
        assert_eq!(tuple(&out), (UPLINK_IP, CLIENT, 53, 4444), "masqueraded");
        assert_eq!(w.ct(&r).unwrap().flags & CT_F_PUBLISHED, 0);
    });
}

#[test]
fn a_full_conntrack_table_evicts_unreplied_flows_and_refuses_only_when_all_are_replied() {
    // Room for two flows (two entries each).
    World::with_ct_max(4, |w| {
        w.config(|_| {});
        let open = |port: u16| {
            let syn = Frame::tcp(CLIENT, UPLINK_IP, port, 8080).flags(TCP_SYN);
            w.run(PROG_FROM_UPLINK, w.up, &syn.bytes())
        };
        let answer = |port: u16| {
            let reply = Frame::tcp(A_IP, CLIENT, 80, port)
                .macs(A_MAC, BRIDGE_MAC)
                .flags(TCP_SYN | TCP_ACK);
            let (v, out) = w.run(PROG_TO_UPLINK, w.up, &reply.bytes());
            assert_eq!(v, TC_ACT_OK);
            assert_eq!(tuple(&out), (UPLINK_IP, CLIENT, 8080, port));
            // The client's ACK of the SYN-ACK completes the handshake: established, answered
            // (before it the flow is SYN_RECV, which a spoofed SYN also gets: evictable).
            let ack = Frame::tcp(CLIENT, UPLINK_IP, port, 8080)
                .flags(TCP_ACK)
                .ack(0x0102_0305);
            assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &ack.bytes()).0, TC_ACT_OK);
            let k = ct_key(CLIENT, UPLINK_IP, port, 8080, IPPROTO_TCP);
            assert_eq!(w.ct(&k).unwrap().tcp_state, CT_TCP_ESTABLISHED);
        };
        // One established flow.
        assert_eq!(open(6001).0, TC_ACT_OK);
        answer(6001);
        // A flood of new, unanswered flows: each evicts the oldest unreplied one; none is
        // refused, and the established flow stays.
        for port in 7000..7016 {
            let (v, out) = open(port);
            assert_eq!(v, TC_ACT_OK, "flow {port}");
            assert_eq!(tuple(&out), (CLIENT, A_IP, port, 80));
        }
        assert_eq!(w.drop_count(DROP_CT_FULL), 0);
        assert_eq!(w.drop_count(DROP_CT_EVICTED), 15);
        assert!(
            w.ct(&ct_key(CLIENT, UPLINK_IP, 6001, 8080, IPPROTO_TCP))
                .is_some()
        );
        assert!(
            w.ct(&ct_key(CLIENT, UPLINK_IP, 7014, 8080, IPPROTO_TCP))
                .is_none()
        );
        // The last one is answered: now every entry is replied, and new flows are refused and
        // counted, from outside and from containers.
        answer(7015);
        assert_eq!(open(7100).0, TC_ACT_SHOT);
        let out = Frame::tcp(B_IP, REMOTE, 40000, 443).flags(TCP_SYN);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &out.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_CT_FULL), 2);
        assert_eq!(w.drop_count(DROP_CT_EVICTED), 15);
        // The established flows keep working both ways.
        for port in [6001, 7015] {
            let ack = Frame::tcp(CLIENT, UPLINK_IP, port, 8080).flags(TCP_ACK);
            let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &ack.bytes());
            assert_eq!(v, TC_ACT_OK);
            assert_eq!(tuple(&out), (CLIENT, A_IP, port, 80));
        }
        assert_eq!(w.drop_count(DROP_CT_FULL), 2);
    });
}
