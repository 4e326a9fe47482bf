//! Flow events for new and closed flows, IPv4 and published IPv6.

use super::*;

#[test]
fn flow_events_for_new_and_closed_flows_only_while_switched_on() {
    World::with(|w| {
        w.config(|_| {});
        w.link(A_IP, B_IP, IPPROTO_TCP, &[(80, 80)]);
        let mut r = ring(w);
        let syn = |sport| {
            Frame::tcp(A_IP, B_IP, sport, 80)
                .macs(A_MAC, B_MAC)
                .flags(TCP_SYN)
        };
        // Switch off: the flow is tracked, nothing is emitted.
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &syn(33000).bytes()).0,
            TC_ACT_OK
        );
        assert!(w.ct(&ct_key(A_IP, B_IP, 33000, 80, IPPROTO_TCP)).is_some());
        assert!(drain(&mut r).is_empty(), "events with the switch off");

        switch(w, true);
        // A --link flow: one new-flow event with its tuple and the LINK flag.
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &syn(33001).bytes()).0,
            TC_ACT_OK
        );
        let f = flows(&drain(&mut r));
        assert_eq!(f.len(), 1, "one new flow");
        assert_eq!(f[0].kind, EV_FLOW_NEW);
        assert_eq!(f[0].key, ct_key(A_IP, B_IP, 33001, 80, IPPROTO_TCP));
        assert_ne!(f[0].flags & CT_F_LINK, 0);
        let t = event::key_tuple(
            f[0].key.saddr,
            f[0].key.daddr,
            f[0].key.sport,
            f[0].key.dport,
            f[0].key.proto,
            f[0].key.family,
        );
        assert_eq!(
            (t.src, t.dst, t.sport, t.dport),
            (
                Some("172.30.0.2".parse().unwrap()),
                Some("172.30.0.3".parse().unwrap()),
                Some(33001),
                Some(80)
            )
        );
        // Packets of a known flow emit nothing.
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &syn(33001).bytes()).0,
            TC_ACT_OK
        );
        assert!(drain(&mut r).is_empty());

        // A published port: DNAT to A:80, the translation in the event.
        let psyn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &psyn.bytes()).0, TC_ACT_OK);
        let f = flows(&drain(&mut r));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].key, ct_key(CLIENT, UPLINK_IP, 5555, 8080, IPPROTO_TCP));
        assert_eq!(
            (f[0].nat_daddr[0], u16::from_be(f[0].nat_dport)),
            (ip(A_IP), 80)
        );
        assert_ne!(f[0].flags & CT_F_PUBLISHED, 0);

        // Close by FINs both ways (the second FIN comes from the reply side): one closed
        // event, cause FIN, keyed by the original tuple.
        let reply = |fl| {
            Frame::tcp(B_IP, A_IP, 80, 33001)
                .macs(B_MAC, A_MAC)
                .flags(fl)
        };
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.vb, &reply(TCP_SYN | TCP_ACK).bytes())
                .0,
            TC_ACT_OK
        );
        let fin = Frame::tcp(A_IP, B_IP, 33001, 80)
            .macs(A_MAC, B_MAC)
            .flags(TCP_FIN | TCP_ACK);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &fin.bytes()).0, TC_ACT_OK);
        assert!(drain(&mut r).is_empty(), "one FIN does not close");
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.vb, &reply(TCP_FIN | TCP_ACK).bytes())
                .0,
            TC_ACT_OK
        );
        let f = flows(&drain(&mut r));
        assert_eq!(f.len(), 1, "one closed flow");
        assert_eq!((f[0].kind, f[0].cause), (EV_FLOW_CLOSED, FLOW_CLOSE_FIN));
        assert_eq!(f[0].key, ct_key(A_IP, B_IP, 33001, 80, IPPROTO_TCP));
        assert_eq!(
            (f[0].nat_daddr[0], u16::from_be(f[0].nat_dport)),
            (ip(B_IP), 80)
        );

        // An RST from the published flow's client: closed, cause RST.
        let ack = Frame::tcp(A_IP, CLIENT, 80, 5555).flags(TCP_SYN | TCP_ACK);
        w.run(PROG_TO_UPLINK, w.up, &ack.bytes());
        drain(&mut r);
        let rst = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_RST);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &rst.bytes()).0, TC_ACT_OK);
        let f = flows(&drain(&mut r));
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].kind, f[0].cause), (EV_FLOW_CLOSED, FLOW_CLOSE_RST));
        assert_eq!(f[0].key, ct_key(CLIENT, UPLINK_IP, 5555, 8080, IPPROTO_TCP));

        // Switched off again: a new flow emits nothing.
        switch(w, false);
        w.run(PROG_FROM_CONTAINER, w.va, &syn(33002).bytes());
        assert!(drain(&mut r).is_empty());
        assert_eq!(lost(w), 0);
    });
}

/// An IPv6 TCP segment from outside the uplink or to it (its checksum is not computed:
/// conntrack and the rewrites never check it).
fn tcp6(s: Ipv6Addr, d: Ipv6Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = UPLINK_MAC.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    let mut tcp = [&sport.to_be_bytes()[..], &dport.to_be_bytes()].concat();
    tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[IPPROTO_TCP, 64]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&tcp);
    f
}

#[test]
fn ipv6_published_flows_emit_new_and_closed_events() {
    World::with(|w| {
        w.config(|_| {});
        let host: Ipv6Addr = "2001:db8:ff::1".parse().unwrap();
        let client: Ipv6Addr = "2001:db8:ee::9".parse().unwrap();
        let a_g: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let w6 = |a: Ipv6Addr| in6_words(a.octets());
        // What the agent writes for `[::]:8080/tcp -> [A]:80`.
        let mut h: HashMap<_, [u32; 4], u32> = HashMap::try_from(w.map(MAP_HOST_ADDRS6)).unwrap();
        h.insert(w6(host), w.up, 0).unwrap();
        let mut e: HashMap<_, [u32; 4], u32> = HashMap::try_from(w.map(MAP_EP6_ADDRS)).unwrap();
        e.insert(w6(a_g), w.va, 0).unwrap();
        let mut p: HashMap<_, PortKey, PortTarget> = HashMap::try_from(w.map(MAP_PORTS)).unwrap();
        let target = PortTarget {
            container_ip: w6(a_g),
            container_port: 80,
            flags: 0,
            _pad: 0,
            binding_id: 61,
        };
        p.insert(PortKey::v6(IPPROTO_TCP, [0; 4], 8080), target, 0)
            .unwrap();
        switch(w, true);
        let mut r = ring(w);
        let key = |sport: u16| {
            CtKey::v6(
                w6(client),
                w6(host),
                sport.to_be(),
                8080u16.to_be(),
                IPPROTO_TCP,
            )
        };
        let from_client = |sport, fl| tcp6(client, host, sport, 8080, fl);
        let from_a = |sport, fl| tcp6(a_g, client, 80, sport, fl);

        // A new flow: its IPv6 tuple and translation.
        assert_eq!(
            w.run(PROG_FROM_UPLINK, w.up, &from_client(5555, TCP_SYN)).0,
            TC_ACT_OK
        );
        let f = flows(&drain(&mut r));
        assert_eq!(f.len(), 1, "one new flow");
        assert_eq!(f[0].kind, EV_FLOW_NEW);
        assert_eq!(f[0].key, key(5555));
        assert_eq!(
            (f[0].nat_daddr, u16::from_be(f[0].nat_dport)),
            (w6(a_g), 80)
        );
        assert_ne!(f[0].flags & CT_F_PUBLISHED, 0);
        // The answer (to_uplink, on in to_uplink6), then a FIN from the client: nothing yet.
        assert_eq!(
            w.run(PROG_TO_UPLINK, w.up, &from_a(5555, TCP_SYN | TCP_ACK))
                .0,
            TC_ACT_OK
        );
        assert_eq!(
            w.run(
                PROG_FROM_UPLINK,
                w.up,
                &from_client(5555, TCP_FIN | TCP_ACK)
            )
            .0,
            TC_ACT_OK
        );
        assert!(flows(&drain(&mut r)).is_empty(), "one FIN does not close");
        // The container's FIN (the reply direction, in to_uplink6): closed, cause FIN, keyed
        // by the original tuple with its translation.
        assert_eq!(
            w.run(PROG_TO_UPLINK, w.up, &from_a(5555, TCP_FIN | TCP_ACK))
                .0,
            TC_ACT_OK
        );
        assert_eq!(w.ct(&key(5555)).unwrap().tcp_state, CT_TCP_TIME_WAIT);
        let f = flows(&drain(&mut r));
        assert_eq!(f.len(), 1, "one closed flow: {f:?}");
        assert_eq!((f[0].kind, f[0].cause), (EV_FLOW_CLOSED, FLOW_CLOSE_FIN));
        assert_eq!(f[0].key, key(5555));
        assert_eq!(
            (f[0].nat_daddr, u16::from_be(f[0].nat_dport)),
            (w6(a_g), 80)
        );

        // An RST from the client (from_uplink): closed, cause RST.
        w.run(PROG_FROM_UPLINK, w.up, &from_client(5556, TCP_SYN));
        w.run(PROG_TO_UPLINK, w.up, &from_a(5556, TCP_SYN | TCP_ACK));
        drain(&mut r);
        assert_eq!(
            w.run(PROG_FROM_UPLINK, w.up, &from_client(5556, TCP_RST)).0,
            TC_ACT_OK
        );
        let f = flows(&drain(&mut r));
        assert_eq!(f.len(), 1, "one closed flow: {f:?}");
        assert_eq!((f[0].kind, f[0].cause), (EV_FLOW_CLOSED, FLOW_CLOSE_RST));
        assert_eq!(f[0].key, key(5556));

        // Switched off: the close of a third flow emits nothing.
        w.run(PROG_FROM_UPLINK, w.up, &from_client(5557, TCP_SYN));
        drain(&mut r);
        switch(w, false);
        w.run(PROG_FROM_UPLINK, w.up, &from_client(5557, TCP_RST));
        assert_eq!(w.ct(&key(5557)).unwrap().tcp_state, CT_TCP_CLOSED);
        assert!(drain(&mut r).is_empty());
        assert_eq!(lost(w), 0);
    });
}
