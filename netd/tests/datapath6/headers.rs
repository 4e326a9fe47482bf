//! Extension headers are walked to the ports; IPv6 fragments.

use super::*;

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
