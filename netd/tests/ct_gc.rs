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
    let path = pins.0.join("maps").join(MAP_CT);
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
