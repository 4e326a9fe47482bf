//! A full ring counts lost events and keeps every verdict.

use super::*;

#[test]
fn a_full_ring_counts_lost_events_and_keeps_every_verdict() {
    World::with(|w| {
        w.config(|_| {});
        switch(w, true);
        let spoofed = Frame::udp([172, 30, 0, 99], REMOTE, 4000, 53).macs(A_MAC, BRIDGE_MAC);
        let prog = w.dp.program(PROG_FROM_CONTAINER).unwrap();
        // Nobody reads the ring: 256 KiB hold about 1500 drop events; a flood of 5000
        // fills it and loses the rest.
        let flood = 5000u32;
        let (v, _) = run_repeat(prog, w.va, &spoofed.bytes(), flood);
        assert_eq!(v, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_SPOOFED_IP), u64::from(flood));
        let n_lost = lost(w);
        assert!(n_lost > 0, "a full ring loses events");
        // The datapath keeps forwarding with the ring full: a new masqueraded flow passes
        // and is tracked; its event is lost too.
        let out = Frame::udp(A_IP, REMOTE, 4001, 53).macs(A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &out.bytes()).0, TC_ACT_OK);
        let (v, o) = w.run(PROG_TO_UPLINK, w.up, &out.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&o).0, UPLINK_IP, "masqueraded with the ring full");
        assert!(lost(w) > n_lost, "the new flow's event was lost");
        // Every event is either in the ring or counted lost.
        let mut r = ring(w);
        let evs = drain(&mut r);
        let drops = evs.iter().filter(|e| matches!(e, Ev::Drop(_))).count() as u64;
        assert!(drops > 1000, "the ring held {drops} drops");
        assert_eq!(evs.len() as u64 + lost(w), u64::from(flood) + 1);
        // Read, the ring takes events again.
        let (v, _) = run_repeat(prog, w.va, &spoofed.bytes(), 1);
        assert_eq!(v, TC_ACT_SHOT);
        assert_eq!(drain(&mut r).len(), 1);
    });
}
