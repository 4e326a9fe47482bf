//! `netd monitor`'s datapath side (root): crafted frames through BPF_PROG_TEST_RUN with the
//! NETD_MONITOR switch on or off, and the NETD_EVENTS ring buffer read back through its pin
//! (as the daemon reads it). Flow events (new, closed by FIN or RST), IPv6 drops with their
//! IPv6 head (and that head as a pcap tcpdump reads), a full ring (events lost and counted,
//! verdicts unchanged), and the cost of the switch (`monitor_cost`, ignored by default:
//! `cargo xtask bench --monitor-cost`).

#[path = "../datapath_util/mod.rs"]
mod datapath_util;

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};
use datapath_util::*;
use netd::dataplane::EBPF_OBJECT;
use netd::ops::monitor::{event, pcap};
use netd_common::*;

const CLIENT: [u8; 4] = [203, 0, 113, 7];
const REMOTE: [u8; 4] = [192, 0, 2, 9];

fn switch(w: &World, on: bool) {
    let mut a: Array<_, u32> = Array::try_from(w.map(MAP_MONITOR)).unwrap();
    a.set(0, u32::from(on), 0).unwrap();
}

fn lost(w: &World) -> u64 {
    let a: PerCpuArray<_, u64> = PerCpuArray::try_from(w.map(MAP_MONITOR_LOST)).unwrap();
    a.get(&0, 0).unwrap().iter().sum()
}

enum Ev {
    Drop(Box<DropEvent>),
    Flow(FlowEvent),
}

/// Everything in the ring now.
fn drain(ring: &mut RingBuf<aya::maps::MapData>) -> Vec<Ev> {
    let mut v = Vec::new();
    while let Some(item) = ring.next() {
        let kind = u16::from_ne_bytes([item[0], item[1]]);
        match kind {
            EV_DROP => v.push(Ev::Drop(Box::new(bytemuck::pod_read_unaligned(
                &item[..size_of::<DropEvent>()],
            )))),
            EV_FLOW_NEW | EV_FLOW_CLOSED => v.push(Ev::Flow(bytemuck::pod_read_unaligned(
                &item[..size_of::<FlowEvent>()],
            ))),
            k => panic!("unknown event kind {k} ({} bytes)", item.len()),
        }
    }
    v
}

fn ring(w: &World) -> RingBuf<aya::maps::MapData> {
    RingBuf::try_from(w.map(MAP_EVENTS)).unwrap()
}

fn flows(evs: &[Ev]) -> Vec<FlowEvent> {
    evs.iter()
        .filter_map(|e| match e {
            Ev::Flow(f) => Some(*f),
            Ev::Drop(_) => None,
        })
        .collect()
}

fn eth6(src: [u8; 6], dst: [u8; 6], s: Ipv6Addr, d: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    let udp = [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &[0, 9, 0, 0, b'x'],
    ]
    .concat();
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&udp);
    f
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(unique("pcap"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs TC program `prog` `repeat` times on `frame` at `ifindex`: (verdict, time per run).
fn run_repeat(p: &SchedClassifier, ifindex: u32, frame: &[u8], repeat: u32) -> (u32, Duration) {
    let mut skb = [0u8; 192];
    skb[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    let mut out = vec![0u8; frame.len() + 256];
    let res = p
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&skb),
            repeat,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    (res.return_value, res.duration)
}

/// The same object loaded once more onto the World's pinned maps (or another object: the
/// build before the monitor's flow events, `NETD_MONITOR_BASE_OBJ`).
fn load_again(w: &World, obj: Option<&[u8]>) -> Ebpf {
    let mut loader = EbpfLoader::new();
    let maps: Vec<(String, PathBuf)> = ALL_MAPS
        .iter()
        .map(|m| (m.to_string(), netd::dataplane::pinned_map(&w.pins.0, m)))
        .collect();
    for (name, path) in &maps {
        loader.map_pin_path(name.as_str(), path.as_path());
    }
    let mut ebpf = loader
        .load(obj.unwrap_or(EBPF_OBJECT))
        .expect("load the object");
    for p in ALL_TC_PROGRAMS {
        let prog: &mut SchedClassifier = ebpf.program_mut(p).unwrap().try_into().unwrap();
        prog.load().expect("the verifier accepts it");
    }
    ebpf
}

fn verified(e: &Ebpf, name: &str) -> u32 {
    let p: &SchedClassifier = e.program(name).unwrap().try_into().unwrap();
    p.info()
        .ok()
        .and_then(|i| i.verified_instruction_count())
        .unwrap_or(0)
}

/// `cargo xtask bench --monitor-cost`: per TC program, ns per packet (BPF_PROG_TEST_RUN
/// repeat) for a packet each program passes, with the monitor switch off and on, and, given
/// `NETD_MONITOR_BASE_OBJ` (an object built without the flow events), the same for that
/// object on the same maps; printed as ratios, with the programs' `verified_insns`.
#[test]
#[ignore = "a measurement: cargo xtask bench --monitor-cost"]
fn monitor_cost() {
    World::with(|w| {
        w.config(|_| {});
        w.link(A_IP, B_IP, IPPROTO_TCP, &[(80, 80)]);
        let base = std::env::var_os("NETD_MONITOR_BASE_OBJ").map(|p| {
            let b = std::fs::read(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}"));
            load_again(w, Some(&b))
        });
        // NETD_MONITOR_OBJ: measure another build of the object instead of the embedded one.
        let cur_obj = std::env::var_os("NETD_MONITOR_OBJ")
            .map(|p| std::fs::read(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}")));
        let cur = load_again(w, cur_obj.as_deref());
        let repeat: u32 = std::env::var("NETD_MONITOR_REPEAT")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(200_000);
        let rounds = 5;
        // An established flow for each program: masquerade A -> REMOTE, a link A -> B, a
        // published port.
        let masq = Frame::udp(A_IP, REMOTE, 4001, 53).macs(A_MAC, BRIDGE_MAC);
        w.run(PROG_FROM_CONTAINER, w.va, &masq.bytes());
        w.run(PROG_TO_UPLINK, w.up, &masq.bytes());
        let link = Frame::tcp(A_IP, B_IP, 33000, 80)
            .macs(A_MAC, B_MAC)
            .flags(TCP_ACK);
        let publ = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_ACK);
        w.run(PROG_FROM_UPLINK, w.up, &publ.bytes());
        let spoofed = Frame::udp([172, 30, 0, 99], REMOTE, 4000, 53).macs(A_MAC, BRIDGE_MAC);
        let reply_in = Frame::tcp(CLIENT, A_IP, 5555, 80);
        let cases: [(&str, &str, u32, Vec<u8>); 6] = [
            (
                "from_container masq",
                PROG_FROM_CONTAINER,
                w.va,
                masq.bytes(),
            ),
            (
                "from_container link",
                PROG_FROM_CONTAINER,
                w.va,
                link.bytes(),
            ),
            (
                "from_container drop",
                PROG_FROM_CONTAINER,
                w.va,
                spoofed.bytes(),
            ),
            ("to_uplink masq", PROG_TO_UPLINK, w.up, masq.bytes()),
            (
                "from_uplink published",
                PROG_FROM_UPLINK,
                w.up,
                publ.bytes(),
            ),
            ("to_container", PROG_TO_CONTAINER, w.va, reply_in.bytes()),
        ];
        let mut r = ring(w);
        let once = |e: &Ebpf, prog: &str, ifindex: u32, frame: &[u8]| {
            let p: &SchedClassifier = e.program(prog).unwrap().try_into().unwrap();
            run_repeat(p, ifindex, frame, repeat).1.as_nanos() as f64
        };
        println!(
            "monitor cost: ns/packet, best of {rounds} interleaved rounds of {repeat} runs each"
        );
        println!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "case", "base", "off", "on", "off/base", "on/off", "noise"
        );
        for (name, prog, ifindex, frame) in &cases {
            let (mut b, mut off, mut again, mut on) =
                (f64::INFINITY, f64::INFINITY, f64::INFINITY, f64::INFINITY);
            // Rounds interleave the variants, so that the shared machine's load drifts under
            // all of them alike; each keeps its best round.
            for _ in 0..rounds {
                switch(w, false);
                if let Some(e) = &base {
                    b = b.min(once(e, prog, *ifindex, frame));
                }
                off = off.min(once(&cur, prog, *ifindex, frame));
                // The same measurement again: how far two runs of one build lie apart here.
                again = again.min(once(&cur, prog, *ifindex, frame));
                switch(w, true);
                on = on.min(once(&cur, prog, *ifindex, frame));
                switch(w, false);
                drain(&mut r);
            }
            let b = base.as_ref().map(|_| b);
            let noise = (off - again).abs() / off.min(again);
            drain(&mut r);
            println!(
                "{name:<24} {:>9} {off:>9.1} {on:>9.1} {:>9} {:>9.3} {:>8.1}%",
                b.map_or("-".into(), |b| format!("{b:.1}")),
                b.map_or("-".into(), |b| format!("{:.3}", off / b)),
                on / off,
                noise * 100.0
            );
        }
        println!("verified_insns (base -> now):");
        for p in ALL_TC_PROGRAMS {
            let b = base.as_ref().map(|b| verified(b, p));
            let n = verified(&cur, p);
            match b {
                Some(b) => println!(
                    "  {p:<16} {b:>8} -> {n:>8} ({:+.2}%)",
                    (f64::from(n) - f64::from(b)) * 100.0 / f64::from(b)
                ),
                None => println!("  {p:<16} {n:>8}"),
            }
        }
    });
}

mod drops6;
mod flows;
mod ring;
