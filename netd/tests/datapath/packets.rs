//! Malformed packets, IPv4 options and fragments.

use super::*;

// ------------------------------------------------------------------------------------------
// (e) malformed packets and IPv4 options.

#[test]
fn malformed_packets_are_dropped_and_counted() {
    World::with(|w| {
        w.config(|_| {});
        let good = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).bytes();
        // BPF_PROG_TEST_RUN itself refuses IPv4 frames shorter than Ethernet + 20 bytes
        // (EINVAL on 6.18), so a cut fixed header cannot be fed here; the parser reads it
        // through bpf_skb_load_bytes, which fails the same way for every cut below.
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut bad_ihl = good.clone();
        bad_ihl[14] = 0x44;
        cases.push(("IHL 4", bad_ihl));
        let mut bad_ver = good.clone();
        bad_ver[14] = 0x65;
        cases.push(("version 6 in an IPv4 frame", bad_ver));
        let mut long = good.clone();
        long[16..18].copy_from_slice(&200u16.to_be_bytes());
        cases.push(("total length past the frame", long));
        let mut ihl_past = good[..14 + 24].to_vec();
        ihl_past[14] = 0x4f;
        cases.push(("options past the frame", ihl_past));
        let tcp_short = Frame::tcp(CLIENT, UPLINK_IP, 1, 8080).bytes();
        let mut tcp_short = tcp_short[..14 + 20 + 12].to_vec();
        tcp_short[16..18].copy_from_slice(&32u16.to_be_bytes());
        cases.push(("TCP header cut at 12 bytes", tcp_short));
        let udp_short = Frame::udp(CLIENT, UPLINK_IP, 1, 53).bytes();
        let mut udp_short = udp_short[..14 + 20 + 4].to_vec();
        udp_short[16..18].copy_from_slice(&24u16.to_be_bytes());
        cases.push(("UDP header cut at 4 bytes", udp_short));
        let mut doff = good.clone();
        doff[14 + 20 + 12] = 0x40;
        cases.push(("TCP data offset 4", doff));
        for (n, (what, frame)) in cases.iter().enumerate() {
            for prog in [PROG_FROM_UPLINK, PROG_TO_UPLINK] {
                let (v, _) = w.run(prog, w.up, frame);
                assert_eq!(v, TC_ACT_SHOT, "{what} at {prog}");
            }
            let (v, _) = w.run(PROG_FROM_CONTAINER, w.va, &with_macs(frame, A_MAC));
            assert_eq!(v, TC_ACT_SHOT, "{what} at from_container");
            assert_eq!(w.drop_count(DROP_MALFORMED), 3 * (n as u64 + 1), "{what}");
        }
        // Ethernet padding after a complete packet is fine.
        let mut padded = Frame::udp(CLIENT, UPLINK_IP, 1, 5353).bytes();
        padded.extend_from_slice(&[0; 12]);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &padded);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (CLIENT, B_IP, 1, 53));
        assert_eq!(w.drop_count(DROP_MALFORMED), 3 * cases.len() as u64);
    });
}

#[test]
fn ipv4_options_are_honoured() {
    World::with(|w| {
        w.config(|_| {});
        for words in 1..=10u8 {
            // NOPs, ending with End of Options: the options must be carried untouched.
            let mut opts = vec![1u8; 4 * words as usize];
            *opts.last_mut().unwrap() = 0;
            let sport = 6000 + u16::from(words);
            let f = Frame::tcp(CLIENT, UPLINK_IP, sport, 8080)
                .options(&opts)
                .payload(b"with options");
            let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
            assert_eq!(v, TC_ACT_OK, "IHL {}", 5 + words);
            assert_eq!(out[14], 0x45 + words);
            assert_eq!(&out[34..34 + opts.len()], opts.as_slice());
            assert_eq!(tuple(&out), (CLIENT, A_IP, sport, 80), "IHL {}", 5 + words);
            assert_csums(&out);
            let r = Frame::udp(A_IP, REMOTE, sport, 53).options(&opts);
            let (_, out) = w.run(PROG_TO_UPLINK, w.up, &r.bytes());
            assert_eq!(tuple(&out), (UPLINK_IP, REMOTE, sport, 53));
            assert_csums(&out);
        }
    });
}

// ------------------------------------------------------------------------------------------
// (f) fragments.

#[test]
fn fragments_follow_their_first_fragment() {
    World::with(|w| {
        w.config(|_| {});
        let payload: Vec<u8> = (0..200u8).collect();
        let f = Frame::udp(CLIENT, UPLINK_IP, 4444, 5353)
            .payload(&payload)
            .ip_id(0x4242);
        let (first, later) = f.fragments(64);
        let (v, out1) = w.run(PROG_FROM_UPLINK, w.up, &first);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out1), (CLIENT, B_IP, 4444, 53));
        assert_ip_csum(&out1);
        let (v, out2) = w.run(PROG_FROM_UPLINK, w.up, &later);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(
            &out2[26..34],
            &[CLIENT, B_IP].concat()[..],
            "later fragment DNAT'd"
        );
        assert_ip_csum(&out2);
        assert_eq!(&out2[34..], &later[34..], "no L4 header to touch");
        assert_reassembled_udp_csum(&out1, &out2);
        assert_eq!(w.port_stats(12).0, 2);

        // Masquerade: a later fragment whose first fragment was never seen cannot be
        // translated and must not leak the container address.
        let f = Frame::udp(A_IP, REMOTE, 4445, 53)
            .payload(&payload)
            .ip_id(0x5151);
        let (first, later) = f.fragments(64);
        let (v, _) = w.run(PROG_TO_UPLINK, w.up, &later);
        assert_eq!(v, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_FRAGMENT), 1);
        let (_, out1) = w.run(PROG_TO_UPLINK, w.up, &first);
        let (v, out2) = w.run(PROG_TO_UPLINK, w.up, &later);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out1), (UPLINK_IP, REMOTE, 4445, 53));
        assert_eq!(&out2[26..30], &UPLINK_IP);
        assert_reassembled_udp_csum(&out1, &out2);

        // Later fragments of host traffic pass untouched; towards a container they are
        // direct access.
        let f = Frame::udp(CLIENT, UPLINK_IP, 4446, 999).payload(&payload);
        let (_, later) = f.fragments(64);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &later);
        assert_eq!((v, out), (TC_ACT_NEXT, later.clone()));
        let f = Frame::udp(CLIENT, A_IP, 4446, 999).payload(&payload);
        let (_, later) = f.fragments(64);
        let (v, _) = w.run(PROG_FROM_UPLINK, w.up, &later);
        assert_eq!(v, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_DIRECT_ACCESS), 1);
    });
}
