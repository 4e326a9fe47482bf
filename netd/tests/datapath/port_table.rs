//! The port table writes only changes and takes 65000 ports.

use super::*;

// ------------------------------------------------------------------------------------------
// The port table: the agent's writer (diffs, one batch each way), exact-address bindings over
// wildcard ones, ranges, misses, and 65 000 single-port bindings on one address.

#[test]
fn port_table_writes_only_changes_and_takes_65000_ports() {
    World::with(|w| {
        w.config(|_| {});
        // A second handle on the pinned maps, as a restarted agent: its first write adopts
        // the entries World::program wrote.
        let mut dp = Dataplane::open(&DataplaneConfig {
            pin_dir: w.pins.0.clone(),
            ct_max: CT_MAX_DEFAULT,
        })
        .expect("open the dataplane again");
        let binding = |host: [u8; 4], port: u16, cip, cport, id| PortEntry {
            host_ip: ip(host),
            proto: IPPROTO_TCP,
            host_port_start: port,
            host_port_end: port,
            container_port: cport,
            container_ip: ip(cip),
            binding_id: id,
            ..Default::default()
        };
        let mut want = bindings();
        // UPLINK_IP:8080 goes to B:81, while *:8080 (binding 11) goes to A:80.
        want.push(binding(UPLINK_IP, 8080, B_IP, 81, 15));
        dp.set_ports(want.clone()).expect("set ports");

        let syn = |port: u16| {
            Frame::tcp(CLIENT, UPLINK_IP, 5000 + port % 1000, port)
                .flags(TCP_SYN)
                .bytes()
        };
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &syn(8080));
        assert_eq!(
            (v, tuple(&out)),
            (TC_ACT_OK, (CLIENT, B_IP, 5080, 81)),
            "exact address first"
        );
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &syn(7005));
        assert_eq!(
            tuple(&out),
            (CLIENT, B_IP, 5005, 8005),
            "inside the wildcard range"
        );
        // 7010 is just past the range: nothing publishes it, the packet is not translated.
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &syn(7010));
        assert_eq!(tuple(&out), (CLIENT, UPLINK_IP, 5010, 7010), "a miss");
        // Unpublishing the exact binding uncovers the wildcard one.
        want.pop();
        let c = dp.set_ports(want.clone()).unwrap();
        assert_eq!((c.written, c.deleted), (0, 1), "only UPLINK_IP:8080 goes");
        let (_, out) = w.run(
            PROG_FROM_UPLINK,
            w.up,
            &Frame::tcp(CLIENT, UPLINK_IP, 6080, 8080)
                .flags(TCP_SYN)
                .bytes(),
        );
        assert_eq!(tuple(&out), (CLIENT, A_IP, 6080, 80));

        // 65 000 single-port bindings on one address.
        let n: u16 = 65_000;
        want.extend((1..=n).map(|p| binding(UPLINK_IP, p, A_IP, p, 1000 + u32::from(p))));
        let t0 = std::time::Instant::now();
        let c = dp.set_ports(want.clone()).expect("65 000 ports");
        let all = t0.elapsed();
        assert_eq!(c.deleted, 0);
        assert!(c.written >= usize::from(n), "{c:?}");
        // One more, on another address: one port entry and its bind-hook marker, whatever is
        // already published; then gone again: the same two entries. Through the full set
        // (a diff) and through the incremental call `netd publish` uses.
        let extra = binding([127, 0, 0, 1], 65_001, B_IP, 80, 900);
        want.push(extra);
        let t0 = std::time::Instant::now();
        let c = dp.set_ports(want.clone()).unwrap();
        let one_diff = t0.elapsed();
        assert_eq!((c.written, c.deleted), (2, 0));
        want.pop();
        let c = dp.set_ports(want.clone()).unwrap();
        assert_eq!((c.written, c.deleted), (0, 2));
        let t0 = std::time::Instant::now();
        let c = dp
            .update_ports(&[], &[extra])
            .unwrap()
            .expect("known table");
        let one = t0.elapsed();
        assert_eq!((c.written, c.deleted), (2, 0));
        let (_, out) = w.run(
            PROG_FROM_UPLINK,
            w.up,
            &Frame::tcp(CLIENT, [127, 0, 0, 1], 7001, 65_001)
                .flags(TCP_SYN)
                .bytes(),
        );
        assert_ne!(tuple(&out).1, [127, 0, 0, 1], "one more is live");
        let c = dp.update_ports(&[extra], &[]).unwrap().unwrap();
        assert_eq!((c.written, c.deleted), (0, 2));
        eprintln!("port table: one more through the full-set diff in {one_diff:?}");
        eprintln!("port table: {n} ports written in {all:?}, one more in {one:?}");
        for port in [1, 33_333, n] {
            let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &syn(port));
            assert_eq!(
                tuple(&out),
                (CLIENT, A_IP, 5000 + port % 1000, port),
                "port {port}"
            );
        }
        assert_eq!(
            w.drops()[DROP_CT_FULL as usize],
            0,
            "the flows above fit in the table"
        );
    });
}
