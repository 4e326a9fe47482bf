//! ICMP errors about translated flows and between containers.

use super::*;

#[test]
fn icmp_errors_about_translated_flows() {
    World::with(|w| {
        w.config(|c| {
            c.snat_port_min = 50000;
            c.snat_port_max = 50000;
        });
        // A masqueraded UDP flow whose port was moved (A holds 40000 first).
        for src in [A_IP, B_IP] {
            let f = Frame::udp(src, REMOTE, 40000, 443);
            assert_eq!(w.run(PROG_TO_UPLINK, w.up, &f.bytes()).0, TC_ACT_OK);
        }
        let sent = Frame::udp(UPLINK_IP, REMOTE, 50000, 443).payload(b"quic?");
        let err = Frame::icmp_error(ROUTER, UPLINK_IP, ICMP_DEST_UNREACH, 3, &quote(&sent));
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &err.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(&out[26..34], &[ROUTER, B_IP].concat()[..], "to B");
        assert_eq!(
            quoted_tuple(&out),
            (B_IP, REMOTE, 40000, 443),
            "B's own packet"
        );
        assert_csums(&out);
        assert_quoted_csums(&out);

        // Time exceeded about a masqueraded ping whose id was moved.
        for src in [A_IP, B_IP] {
            let f = Frame::echo(src, REMOTE, ICMP_ECHO_REQUEST, 0x0777);
            assert_eq!(w.run(PROG_TO_UPLINK, w.up, &f.bytes()).0, TC_ACT_OK);
        }
        let sent = Frame::echo(UPLINK_IP, REMOTE, ICMP_ECHO_REQUEST, 50000);
        let err = Frame::icmp_error(ROUTER, UPLINK_IP, ICMP_TIME_EXCEEDED, 0, &quote(&sent));
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &err.bytes());
        assert_eq!(&out[30..34], &B_IP);
        assert_eq!(quoted_tuple(&out), (B_IP, REMOTE, 0x0777, 0x0777));
        assert_csums(&out);
        assert_quoted_csums(&out);
        let inner_icmp = 14 + 20 + 8 + 20;
        assert_eq!(
            &out[inner_icmp..inner_icmp + 8],
            &Frame::echo(B_IP, REMOTE, ICMP_ECHO_REQUEST, 0x0777).bytes()[34..42],
            "the quoted echo header is B's, checksum included"
        );

        // A published flow's reply, expired on the way to the client.
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        w.run(PROG_FROM_UPLINK, w.up, &syn.bytes());
        let reply = Frame::tcp(UPLINK_IP, CLIENT, 8080, 5555).flags(TCP_SYN | TCP_ACK);
        let err = Frame::icmp_error(ROUTER, UPLINK_IP, ICMP_TIME_EXCEEDED, 0, &quote(&reply));
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &err.bytes());
        assert_eq!(&out[30..34], &A_IP);
        assert_eq!(quoted_tuple(&out), (A_IP, CLIENT, 80, 5555));
        assert_csums(&out);
        assert_quoted_csums(&out);

        // A container refuses a published UDP datagram: the error leaves as the host's.
        let dgram = Frame::udp(CLIENT, UPLINK_IP, 3333, 5353);
        let (_, got) = w.run(PROG_FROM_UPLINK, w.up, &dgram.bytes());
        let mut as_received = got[14..].to_vec();
        as_received.truncate(28);
        let err = Frame::icmp_error(B_IP, CLIENT, ICMP_DEST_UNREACH, 3, &as_received);
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &err.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(&out[26..34], &[UPLINK_IP, CLIENT].concat()[..]);
        assert_eq!(quoted_tuple(&out), (CLIENT, UPLINK_IP, 3333, 5353));
        assert_csums(&out);
        assert_quoted_csums(&out);

        // Untracked errors: host traffic passes as is, towards a container it is dropped.
        let other = Frame::udp(UPLINK_IP, REMOTE, 1234, 53);
        let err = Frame::icmp_error(ROUTER, UPLINK_IP, ICMP_DEST_UNREACH, 3, &quote(&other));
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &err.bytes());
        assert_eq!((v, out), (TC_ACT_OK, err.bytes()));
        let to_a = Frame::udp(A_IP, REMOTE, 1234, 53);
        let err = Frame::icmp_error(ROUTER, A_IP, ICMP_DEST_UNREACH, 3, &quote(&to_a));
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &err.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_DIRECT_ACCESS), 1);
        // A quote shorter than the IPv4 header and 8 bytes is malformed.
        let short = &quote(&other)[..24];
        let err = Frame::icmp_error(ROUTER, UPLINK_IP, ICMP_DEST_UNREACH, 3, short);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &err.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_MALFORMED), 1);
    });
}

#[test]
fn icmp_errors_between_containers() {
    World::with(|w| {
        w.config(|_| {});
        // Hairpin A -> host:7001 -> B:8001 (UDP has no binding there; use TCP).
        let f = Frame::tcp(A_IP, UPLINK_IP, 35000, 7001).macs(A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0, TC_ACT_OK);
        let as_received = Frame::tcp(A_IP, B_IP, 35000, 8001);
        let err = Frame::icmp_error(B_IP, A_IP, ICMP_DEST_UNREACH, 3, &quote(&as_received))
            .macs(B_MAC, A_MAC);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.vb, &err.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(&out[26..34], &[UPLINK_IP, A_IP].concat()[..]);
        assert_eq!(quoted_tuple(&out), (A_IP, UPLINK_IP, 35000, 7001));
        assert_csums(&out);
        assert_quoted_csums(&out);
        // Under --icc false an error about no tracked flow is refused; about a link, passes.
        let stray = Frame::udp(A_IP, B_IP, 1, 2);
        let err =
            Frame::icmp_error(B_IP, A_IP, ICMP_DEST_UNREACH, 3, &quote(&stray)).macs(B_MAC, A_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.vb, &err.bytes()).0,
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_ICC), 1);
        w.link(A_IP, B_IP, IPPROTO_UDP, &[(2, 2)]);
        let linked = Frame::udp(A_IP, B_IP, 1, 2).macs(A_MAC, B_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &linked.bytes()).0,
            TC_ACT_OK
        );
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.vb, &err.bytes());
        assert_eq!((v, out), (TC_ACT_OK, err.bytes()));

        // A third container (X, on B's veth for the test's sake: it is B's address that
        // counts) cannot reach A or B by quoting their tracked flows: the quoted packet must
        // have gone from the error's receiver to its sender.
        const X_IP: [u8; 4] = [172, 30, 0, 9];
        let drops = w.drop_count(DROP_ICC);
        // B quoting A -> B (tracked) but sending the error to X: X never sent that packet
        // (and the frame goes to A's MAC with X's address: refused for the MAC first).
        let err =
            Frame::icmp_error(B_IP, X_IP, ICMP_DEST_UNREACH, 3, &quote(&linked)).macs(B_MAC, A_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.vb, &err.bytes()).0,
            TC_ACT_SHOT
        );
        // B sending A an error about a tracked flow between A and someone else: a client
        // reaching A's published port (tracked as it arrived); the quote is the packet as A
        // received it, which B never sent.
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        let (v, _) = w.run(PROG_FROM_UPLINK, w.up, &syn.bytes());
        assert_eq!(v, TC_ACT_OK);
        let as_received = Frame::tcp(CLIENT, A_IP, 5555, 80);
        let err = Frame::icmp_error(B_IP, A_IP, ICMP_DEST_UNREACH, 3, &quote(&as_received))
            .macs(B_MAC, A_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.vb, &err.bytes()).0,
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_ICC), drops + 1);
        assert_eq!(w.drop_count(DROP_ICC_MAC), 1);
    });
}
