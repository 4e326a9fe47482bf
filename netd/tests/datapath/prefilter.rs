//! An unconfigured dataplane passes everything; the XDP prefilter.

use super::*;

#[test]
fn unconfigured_dataplane_passes_everything() {
    World::with(|w| {
        // The uplink programs hand what they do not own on to the next program on the hook.
        for (prog, ifindex, f, verdict) in [
            (
                PROG_FROM_UPLINK,
                w.up,
                Frame::tcp(CLIENT, A_IP, 1, 80),
                TC_ACT_NEXT,
            ),
            (
                PROG_TO_UPLINK,
                w.up,
                Frame::tcp(A_IP, REMOTE, 1, 80),
                TC_ACT_NEXT,
            ),
            (
                PROG_FROM_CONTAINER,
                w.vx,
                Frame::tcp(A_IP, B_IP, 1, 80),
                TC_ACT_OK,
            ),
            (
                PROG_TO_CONTAINER,
                w.va,
                Frame::tcp(B_IP, A_IP, 1, 80),
                TC_ACT_OK,
            ),
        ] {
            let (v, out) = w.run(prog, ifindex, &f.bytes());
            assert_eq!((v, out), (verdict, f.bytes()), "{prog}");
        }
    });
}

// ------------------------------------------------------------------------------------------
// (k) XDP source filters.

#[test]
fn xdp_prefilter_allow_and_deny() {
    World::with(|w| {
        w.config(|_| {});
        let xdp = w.xdp();
        let from = |src: [u8; 4], port: u16| Frame::tcp(src, UPLINK_IP, 5000, port).flags(TCP_SYN);
        // No list configured: everything passes.
        assert_eq!(xdp.run(&from(CLIENT, 8080).bytes()), XDP_PASS);

        w.filter(MAP_FILTER_DENY, [203, 0, 113, 0], 24);
        w.config(|c| c.flags |= CFG_F_DENYLIST);
        assert_eq!(xdp.run(&from(CLIENT, 8080).bytes()), XDP_DROP);
        assert_eq!(w.drop_count(DROP_FILTER_DENY), 1);
        // Only connections to containers are filtered: host ports, unpublished ports pass.
        assert_eq!(xdp.run(&from(CLIENT, 22).bytes()), XDP_PASS);
        assert_eq!(xdp.run(&from([192, 0, 2, 1], 8080).bytes()), XDP_PASS);
        // Direct access to a container address is a connection to a container too.
        let direct = Frame::udp(CLIENT, A_IP, 1, 53);
        assert_eq!(xdp.run(&direct.bytes()), XDP_DROP);
        assert_eq!(w.drop_count(DROP_FILTER_DENY), 2);

        // Allow list: only 192.0.2.0/25 may connect.
        w.filter(MAP_FILTER_ALLOW, [192, 0, 2, 0], 25);
        w.config(|c| c.flags = (c.flags & !CFG_F_DENYLIST) | CFG_F_ALLOWLIST);
        assert_eq!(xdp.run(&from([192, 0, 2, 1], 8080).bytes()), XDP_PASS);
        assert_eq!(xdp.run(&from([192, 0, 2, 200], 8080).bytes()), XDP_DROP);
        assert_eq!(
            xdp.run(&from([198, 18, 0, 1], 5353).bytes()),
            XDP_PASS,
            "tcp/5353 unpublished"
        );
        let udp = Frame::udp([198, 18, 0, 1], UPLINK_IP, 5000, 5353);
        assert_eq!(xdp.run(&udp.bytes()), XDP_DROP);
        assert_eq!(w.drop_count(DROP_FILTER_NOT_ALLOWED), 2);

        // Both: the deny list wins inside the allowed range.
        w.filter(MAP_FILTER_DENY, [192, 0, 2, 1], 32);
        w.config(|c| c.flags |= CFG_F_DENYLIST);
        assert_eq!(xdp.run(&from([192, 0, 2, 1], 8080).bytes()), XDP_DROP);
        assert_eq!(xdp.run(&from([192, 0, 2, 2], 8080).bytes()), XDP_PASS);
        assert_eq!(w.drop_count(DROP_FILTER_DENY), 3);

        // Replies of the containers' own outbound flows always pass.
        let out = Frame::tcp(A_IP, [198, 18, 0, 1], 40000, 443).flags(TCP_SYN);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &out.bytes()).0, TC_ACT_OK);
        let reply = Frame::tcp([198, 18, 0, 1], UPLINK_IP, 443, 40000).flags(TCP_SYN | TCP_ACK);
        assert_eq!(xdp.run(&reply.bytes()), XDP_PASS);
        // Malformed frames are left to TC (and not counted twice).
        let short = from(CLIENT, 8080).bytes()[..20].to_vec();
        assert_eq!(xdp.run(&short), XDP_PASS);
        assert_eq!(w.drop_count(DROP_MALFORMED), 0);
    });
}
