//! Conntrack garbage collection on the pinned maps: a flow goes only when both of its
//! directions are idle past their timeout, and both entries go together. Needs root (loads the
//! eBPF object, mounts a private bpffs).

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use netd::dataplane::{CtGc, Dataplane};

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use datapath_util::PinDir;
use netd_common::{CT_TCP_ESTABLISHED, CtEntry, CtKey, DpConfig, IPPROTO_TCP, IPPROTO_UDP, MAP_CT};

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A flow's two entries, each last seen `ages` seconds ago (original, reply).
fn pair(n: u16, proto: u8, ages: (u64, u64), state: u8) -> [(CtKey, CtEntry); 2] {
    let k = CtKey::v4(
        0x0a00_0001u32.to_be(),
        0x0a00_0002u32.to_be(),
        n.to_be(),
        80u16.to_be(),
        proto,
    );
    let r = k.reversed();
    let now = now_ns();
    let e = |peer: CtKey, age: u64| CtEntry {
        last_seen_ns: now - age * 1_000_000_000,
        tcp_state: state,
        peer,
        ..Default::default()
    };
    [(k, e(r, ages.0)), (r, e(k, ages.1))]
}

#[test]
fn gc_removes_only_flows_idle_in_both_directions() {
    let pins = PinDir::new();
    let mut dp = Dataplane::open(&pins.config()).expect("open");
    dp.set_config(&DpConfig {
        ct_tcp_syn_s: 60,
        ct_tcp_established_s: 100,
        ct_tcp_closing_s: 10,
        ct_udp_s: 30,
        ct_icmp_s: 30,
        ..Default::default()
    })
    .expect("config");
    let flows = [
        pair(1, IPPROTO_UDP, (40, 50), 0), // both idle past 30 s: goes
        pair(2, IPPROTO_UDP, (40, 5), 0),  // reply still active: stays
        pair(3, IPPROTO_UDP, (5, 5), 0),   // active: stays
        pair(4, IPPROTO_TCP, (90, 90), CT_TCP_ESTABLISHED), // established, under 100 s: stays
        pair(5, IPPROTO_TCP, (150, 150), CT_TCP_ESTABLISHED), // past 100 s: goes
    ];
    let path = netd::dataplane::pinned_map(&pins.0, MAP_CT);
    let mut ct = Map::from_map_data(MapData::from_pin(&path).expect("pin")).expect("map");
    {
        let mut m: BpfHashMap<&mut MapData, CtKey, CtEntry> =
            BpfHashMap::try_from(&mut ct).expect("hash");
        for f in &flows {
            for (k, e) in f {
                m.insert(k, e, 0).expect("insert");
            }
        }
    }
    let removed = CtGc::open(&pins.0).expect("gc").run().expect("run");
    assert_eq!(removed, 4, "two flows of two entries each");
    let m: BpfHashMap<&MapData, CtKey, CtEntry> = BpfHashMap::try_from(&ct).expect("hash");
    let left: Vec<u16> = m
        .keys()
        .filter_map(Result::ok)
        .map(|k| u16::from_be(k.sport.min(k.dport)))
        .collect();
    for (n, f) in flows.iter().enumerate() {
        let gone = n == 0 || n == 4;
        for (k, _) in f {
            assert_eq!(
                m.get(k, 0).is_err(),
                gone,
                "flow {} entry {k:?} (left: {left:?})",
                n + 1
            );
        }
    }
    drop(dp);
}

/// A published UDP flow from port `n` of the client, through the real from_uplink program.
fn send_udp(w: &datapath_util::World, n: u16) {
    let f = datapath_util::Frame::udp([203, 0, 113, 7], datapath_util::UPLINK_IP, n, 5353);
    let (v, _) = w.run(netd_common::PROG_FROM_UPLINK, w.up, &f.bytes());
    assert_eq!(v, datapath_util::TC_ACT_OK);
}

fn udp_key(n: u16) -> CtKey {
    datapath_util::ct_key(
        [203, 0, 113, 7],
        datapath_util::UPLINK_IP,
        n,
        5353,
        IPPROTO_UDP,
    )
}

#[test]
fn gc_keeps_a_flow_seen_between_its_scan_and_its_sweep() {
    datapath_util::World::with(|w| {
        w.config(|c| c.ct_udp_s = 30);
        send_udp(w, 4000);
        let k = udp_key(4000);
        let mut e = w.ct(&k).unwrap();
        let mut r = w.ct(&e.peer).unwrap();
        e.last_seen_ns -= 60_000_000_000;
        r.last_seen_ns -= 60_000_000_000;
        w.set_ct(&k, &e);
        w.set_ct(&e.peer, &r);
        let mut gc = CtGc::open(&w.pins.0).expect("gc");
        let doomed = gc.scan().expect("scan");
        assert!(doomed.contains(&k), "idle in the walk");
        // The datapath sees the flow again before the sweep gets to it.
        send_udp(w, 4000);
        assert_eq!(
            gc.sweep(&doomed).expect("sweep"),
            0,
            "the flow is alive again"
        );
        assert!(w.ct(&k).is_some(), "the refreshed entry stays");
        assert!(
            w.ct(&w.ct(&k).unwrap().peer).is_some(),
            "and its idle reply entry"
        );
        // Once both directions are idle, both go.
        let mut e = w.ct(&k).unwrap();
        let mut r = w.ct(&e.peer).unwrap();
        e.last_seen_ns -= 60_000_000_000;
        r.last_seen_ns -= 60_000_000_000;
        w.set_ct(&k, &e);
        w.set_ct(&e.peer, &r);
        send_udp(w, 4001);
        assert_eq!(gc.run().expect("run"), 2);
        assert!(w.ct(&k).is_none());
        assert!(w.ct(&udp_key(4001)).is_some());
    });
}

#[test]
fn gc_with_traffic_running_never_removes_a_flow_in_use() {
    datapath_util::World::with(|w| {
        // Flows expire after 1 s of silence; the traffic below pauses past that, then
        // resumes, while the GC walks a big table over and over.
        w.config(|c| {
            c.ct_udp_s = 1;
            c.ct_unreplied_s = 1;
        });
        let path = netd::dataplane::pinned_map(&w.pins.0, MAP_CT);
        let mut ct = Map::from_map_data(MapData::from_pin(&path).expect("pin")).expect("map");
        {
            let mut m: BpfHashMap<&mut MapData, CtKey, CtEntry> =
                BpfHashMap::try_from(&mut ct).expect("hash");
            for n in 0..20_000u16 {
                for (k, mut e) in pair(n, IPPROTO_TCP, (0, 0), CT_TCP_ESTABLISHED) {
                    e.flags |= netd_common::CT_F_SEEN_REPLY;
                    m.insert(k, e, 0).expect("insert");
                }
            }
        }
        const FLOWS: u16 = 100;
        const BURSTS: usize = 15;
        // The flows' timeout (ct_udp_s and ct_unreplied_s above).
        const TIMEOUT_NS: u64 = 1_000_000_000;
        let stop = std::sync::atomic::AtomicBool::new(false);
        let passes = std::sync::atomic::AtomicUsize::new(0);
        let pins = w.pins.0.clone();
        std::thread::scope(|s| {
            let gc = s.spawn(|| {
                let mut gc = CtGc::open(&pins).expect("gc");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    gc.run().expect("gc run");
                    passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let mut broken = Vec::new();
            // Rounds in which a flow went quiet past its timeout between two of its packets
            // (this thread was starved of CPU): the GC may remove it then, so they prove
            // nothing and are not counted.
            let (mut round, mut clean, mut stalled) = (0, 0, 0);
            while clean < 6 || passes.load(std::sync::atomic::Ordering::Relaxed) < 4 {
                assert!(
                    round < 60,
                    "{stalled} of {round} rounds stalled past the timeout, {clean} clean"
                );
                round += 1;
                // Just past the timeout: the GC's walk may see the flows idle right before
                // they come back.
                std::thread::sleep(std::time::Duration::from_millis(1080));
                // Per flow: when its last packet's run began, and the longest span from one
                // packet's start to the end of the next (an upper bound on its idle time).
                let mut last_start = vec![0u64; FLOWS as usize];
                let mut longest = vec![0u64; FLOWS as usize];
                for burst in 0..BURSTS {
                    for n in 0..FLOWS {
                        let start = now_ns();
                        send_udp(w, 5000 + n);
                        if burst > 0 {
                            let span = now_ns() - last_start[n as usize];
                            longest[n as usize] = longest[n as usize].max(span);
                        }
                        last_start[n as usize] = start;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                // A burst after a pause opens the flow anew and then counts 15 packets,
                // unless the GC removed it in between.
                let seen: Vec<_> = (0..FLOWS)
                    .map(|n| {
                        let e = w.ct(&udp_key(5000 + n));
                        let i = n as usize;
                        longest[i] = longest[i].max(now_ns() - last_start[i]);
                        e
                    })
                    .collect();
                if longest.iter().any(|&l| l > TIMEOUT_NS) {
                    stalled += 1;
                    continue;
                }
                clean += 1;
                for (n, e) in seen.into_iter().enumerate() {
                    match e {
                        Some(e) if e.packets == BURSTS as u64 => {}
                        other => broken.push((round, n, other.map(|e| e.packets))),
                    }
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            gc.join().expect("gc thread");
            let passes = passes.load(std::sync::atomic::Ordering::Relaxed);
            eprintln!("{round} rounds ({stalled} stalled), {passes} GC passes");
            assert!(broken.is_empty(), "flows removed while in use: {broken:?}");
        });
    });
}
