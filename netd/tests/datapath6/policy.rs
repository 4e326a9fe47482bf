//! icc=false and links apply to IPv6.

use super::*;

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
