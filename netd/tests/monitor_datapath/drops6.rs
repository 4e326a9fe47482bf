//! IPv6 drops carry their IPv6 tuple and pcap head.

use super::*;

#[test]
fn ipv6_drops_carry_their_ipv6_tuple_and_pcap_head() {
    World::with(|w| {
        w.config(|c| c.flags |= CFG_F_ICC);
        let a_ll: Ipv6Addr = "fe80::42:acff:fe1e:2".parse().unwrap();
        let a_g: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let spoofed: Ipv6Addr = "2001:db8:1::3".parse().unwrap();
        let outside: Ipv6Addr = "2001:db8:ff::9".parse().unwrap();
        {
            let mut dp = netd::dataplane::Dataplane::open(&netd::dataplane::DataplaneConfig {
                pin_dir: w.pins.0.clone(),
                ct_max: CT_MAX_DEFAULT,
            })
            .expect("a second handle on the pinned maps");
            dp.set_endpoint_ipv6(w.va, a_ll, Some(a_g)).unwrap();
        }
        switch(w, true);
        let mut r = ring(w);
        let frame = eth6(A_MAC, BRIDGE_MAC, spoofed, outside, 4000, 5000);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &frame).0, TC_ACT_SHOT);
        let evs = drain(&mut r);
        assert_eq!(evs.len(), 1);
        let Ev::Drop(d) = &evs[0] else {
            panic!("a drop event")
        };
        assert_eq!(d.reason, DROP_SPOOFED_IP);
        assert_eq!(d.pkt_len as usize, frame.len());
        let head = &d.head[..d.cap_len as usize];
        assert_eq!(head, &frame[..], "the whole (short) frame is the head");
        let t = event::tuple(head);
        assert_eq!(t.proto, "udp");
        assert_eq!(
            (t.src, t.dst, t.sport, t.dport),
            (
                Some(spoofed.into()),
                Some(outside.into()),
                Some(4000),
                Some(5000)
            )
        );
        // The head as a pcap record, read back by tcpdump.
        let dir = tempfile_dir();
        let path = dir.join("drops6.pcap");
        {
            let f = std::fs::File::create(&path).unwrap();
            let mut wr = pcap::Writer::new(f).unwrap();
            wr.packet(1_700_000_000_000_000_000, head, d.pkt_len)
                .unwrap();
        }
        let out = std::process::Command::new("tcpdump")
            .args(["-nr"])
            .arg(&path)
            .output()
            .expect("run tcpdump");
        let text = String::from_utf8_lossy(&out.stdout);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            text.contains("IP6 2001:db8:1::3.4000 > 2001:db8:ff::9.5000: UDP, length 1"),
            "tcpdump read: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
