//! `--ct-per-source-max` (root), through BPF_PROG_TEST_RUN like ct_hardening.rs: one outside
//! source holds at most its budget of unanswered flows to published ports (IPv4 and IPv6),
//! other sources are not affected, an answered flow frees its slot (UDP: a reply; TCP: the
//! client acknowledging the server's SYN-ACK), and the count heals when its window is over; a
//! flow kept alive into a later window is counted there again.

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use std::net::Ipv6Addr;

use aya::maps::HashMap;
use datapath_util::*;
use netd_common::*;

const CLIENT: [u8; 4] = [203, 0, 113, 7];
const OTHER: [u8; 4] = [203, 0, 113, 8];
const BUSY: [u8; 4] = [203, 0, 113, 9];
const UDP_CLIENT: [u8; 4] = [203, 0, 113, 10];
const SECOND: u64 = 1_000_000_000;

fn budget(w: &World, max: u32, unreplied_s: u32) {
    w.config(|c| {
        c.ct_src_max = max;
        c.ct_unreplied_s = unreplied_s;
    });
}

/// A SYN from `src:port` to the published `*:8080/tcp -> A:80`: the verdict.
fn syn(w: &World, src: [u8; 4], port: u16) -> u32 {
    let f = Frame::tcp(src, UPLINK_IP, port, 8080).flags(TCP_SYN);
    w.run(PROG_FROM_UPLINK, w.up, &f.bytes()).0
}

/// A's SYN-ACK to `dst:port` (its first answer on that flow), sequence number 50 000.
fn synack(w: &World, dst: [u8; 4], port: u16) -> u32 {
    let f = Frame::tcp(A_IP, dst, 80, port)
        .macs(A_MAC, BRIDGE_MAC)
        .flags(TCP_SYN | TCP_ACK)
        .seq(50_000);
    w.run(PROG_TO_UPLINK, w.up, &f.bytes()).0
}

/// The client's ACK of `src:port`, acknowledging `ack`.
fn ack(w: &World, src: [u8; 4], port: u16, ack: u32) -> u32 {
    let f = Frame::tcp(src, UPLINK_IP, port, 8080)
        .flags(TCP_ACK)
        .seq(1)
        .ack(ack);
    w.run(PROG_FROM_UPLINK, w.up, &f.bytes()).0
}

/// The handshake's answer and its acknowledgement: the flow is answered.
fn answer(w: &World, src: [u8; 4], port: u16) {
    assert_eq!(synack(w, src, port), TC_ACT_OK);
    assert_eq!(ack(w, src, port, 50_001), TC_ACT_OK);
}

fn key(src: [u8; 4], port: u16) -> CtKey {
    ct_key(src, UPLINK_IP, port, 8080, IPPROTO_TCP)
}

fn src_key(a: [u8; 4]) -> [u32; 4] {
    [ip(a), 0, 0, 0]
}

/// NETD_CT_SRC's entry of `src`.
fn src_entry(w: &World, src: [u32; 4]) -> Option<CtSrc> {
    let m: HashMap<_, [u32; 4], CtSrc> = HashMap::try_from(w.map(MAP_CT_SRC)).unwrap();
    m.get(&src, 0).ok()
}

#[test]
fn a_source_holds_at_most_its_budget_of_unreplied_flows() {
    World::with(|w| {
        budget(w, 3, 30);
        for port in [6001, 6002, 6003] {
            assert_eq!(syn(w, CLIENT, port), TC_ACT_OK, "flow {port} within budget");
            let e = w.ct(&key(CLIENT, port)).unwrap();
            assert_ne!(e.flags & CT_F_SRC_COUNTED, 0, "counted");
            assert_ne!(e.src_window, 0);
        }
        assert_eq!(src_entry(w, src_key(CLIENT)).unwrap().count, 3);
        // The fourth is refused, counted, and leaves no entry.
        assert_eq!(syn(w, CLIENT, 6004), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_CT_SOURCE_BUDGET), 1);
        assert!(w.ct(&key(CLIENT, 6004)).is_none(), "nothing tracked");
        assert_eq!(
            drop_reason_name(DROP_CT_SOURCE_BUDGET),
            "conntrack-source-budget"
        );
        // Its flows already tracked still pass (a retransmitted SYN).
        assert_eq!(syn(w, CLIENT, 6002), TC_ACT_OK);
        // Another source is not affected.
        assert_eq!(syn(w, OTHER, 6004), TC_ACT_OK);

        // A TCP flow is answered once the client acknowledges the server's SYN-ACK (a server
        // answers spoofed SYNs too): the SYN-ACK alone, a SYN sent again or an ACK sent blind
        // (not acknowledging the server's sequence number) do not free its slot.
        assert_eq!(synack(w, CLIENT, 6001), TC_ACT_OK);
        // Until then it keeps the unreplied timeout and may be evicted.
        let cfg = w.base_config();
        let e = w.ct(&key(CLIENT, 6001)).unwrap();
        assert_eq!(e.tcp_state, CT_TCP_SYN_RECV);
        assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), 30 * SECOND);
        assert!(ct_evictable(&e, IPPROTO_TCP));
        assert_eq!(syn(w, CLIENT, 6001), TC_ACT_OK);
        assert_eq!(ack(w, CLIENT, 6001, 0x5eed_0000), TC_ACT_OK);
        assert_eq!(src_entry(w, src_key(CLIENT)).unwrap().count, 3);
        assert_eq!(syn(w, CLIENT, 6004), TC_ACT_SHOT, "still at its budget");
        // The acknowledgement frees the slot: uncounted on both entries.
        assert_eq!(ack(w, CLIENT, 6001, 50_001), TC_ACT_OK);
        let e = w.ct(&key(CLIENT, 6001)).unwrap();
        assert_eq!(e.tcp_state, CT_TCP_ESTABLISHED);
        assert_eq!(e.flags & CT_F_SRC_COUNTED, 0);
        assert_eq!(w.ct(&e.peer).unwrap().flags & CT_F_SRC_COUNTED, 0);
        assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), 3600 * SECOND);
        assert!(!ct_evictable(&e, IPPROTO_TCP));
        assert_eq!(src_entry(w, src_key(CLIENT)).unwrap().count, 2);
        assert_eq!(syn(w, CLIENT, 6004), TC_ACT_OK, "the slot is free again");
        assert_eq!(syn(w, CLIENT, 6005), TC_ACT_SHOT, "and taken");
        // The answered flow goes on, whatever the budget.
        assert_eq!(ack(w, CLIENT, 6001, 50_001), TC_ACT_OK);
        assert_eq!(w.drop_count(DROP_CT_SOURCE_BUDGET), 3);

        // A UDP flow is answered by its first reply.
        let q = Frame::udp(UDP_CLIENT, UPLINK_IP, 7001, 5353).payload(b"q");
        for _ in 0..2 {
            for port in [7001, 7002, 7003] {
                let q = Frame::udp(UDP_CLIENT, UPLINK_IP, port, 5353).payload(b"q");
                assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &q.bytes()).0, TC_ACT_OK);
            }
        }
        let q4 = Frame::udp(UDP_CLIENT, UPLINK_IP, 7004, 5353).payload(b"q");
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &q4.bytes()).0, TC_ACT_SHOT);
        let r = Frame::udp(B_IP, UDP_CLIENT, 53, 7001)
            .macs(B_MAC, BRIDGE_MAC)
            .payload(b"r");
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &r.bytes()).0, TC_ACT_OK);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &q4.bytes()).0, TC_ACT_OK);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &q.bytes()).0, TC_ACT_OK);
        assert_eq!(w.drop_count(DROP_CT_SOURCE_BUDGET), 4);

        // A busy client whose connections are all answered is never refused.
        for port in 20_000..20_200 {
            assert_eq!(
                syn(w, BUSY, port),
                TC_ACT_OK,
                "answered client, port {port}"
            );
            answer(w, BUSY, port);
        }
        assert_eq!(src_entry(w, src_key(BUSY)).unwrap().count, 0);
        assert_eq!(w.drop_count(DROP_CT_SOURCE_BUDGET), 4);

        // Without a budget nothing is counted or refused, and a flow counted before is
        // counted no more once its source sends again (both entries: the normal timeouts).
        budget(w, 0, 30);
        assert_eq!(syn(w, CLIENT, 6003), TC_ACT_OK);
        let e = w.ct(&key(CLIENT, 6003)).unwrap();
        assert_eq!(e.flags & CT_F_SRC_COUNTED, 0);
        assert_eq!(w.ct(&e.peer).unwrap().flags & CT_F_SRC_COUNTED, 0);
        for port in 6100..6110 {
            assert_eq!(syn(w, CLIENT, port), TC_ACT_OK);
            assert_eq!(
                w.ct(&key(CLIENT, port)).unwrap().flags & CT_F_SRC_COUNTED,
                0
            );
        }
        assert_eq!(w.drop_count(DROP_CT_SOURCE_BUDGET), 4);
    });
}

#[test]
fn the_count_heals_when_its_window_is_over() {
    World::with(|w| {
        // A window (the unreplied timeout) of 1 s.
        budget(w, 3, 1);
        for port in [6001, 6002, 6003] {
            assert_eq!(syn(w, CLIENT, port), TC_ACT_OK);
        }
        assert_eq!(syn(w, CLIENT, 6004), TC_ACT_SHOT);
        // The flows go unanswered and are never collected (no agent here): their counts are
        // never decremented, yet one window later the source may open flows again.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        for port in [6004, 6005, 6006] {
            assert_eq!(syn(w, CLIENT, port), TC_ACT_OK, "flow {port}, next window");
        }
        assert_eq!(
            syn(w, CLIENT, 6007),
            TC_ACT_SHOT,
            "the new window's budget holds"
        );
        assert_eq!(w.drop_count(DROP_CT_SOURCE_BUDGET), 2);
    });
}

#[test]
fn a_flow_kept_alive_into_the_next_window_is_counted_there_again() {
    World::with(|w| {
        // Windows (and the unreplied timeout) of 2 s.
        budget(w, 3, 2);
        for port in [6001, 6002, 6003] {
            assert_eq!(syn(w, CLIENT, port), TC_ACT_OK);
        }
        // The source keeps its flows alive (a packet each within the unreplied timeout),
        // first within the window (nothing changes), then in the next one: there they count
        // again, up to the budget.
        std::thread::sleep(std::time::Duration::from_millis(1000));
        for port in [6001, 6002, 6003] {
            assert_eq!(syn(w, CLIENT, port), TC_ACT_OK, "same window");
        }
        assert_eq!(syn(w, CLIENT, 6004), TC_ACT_SHOT);
        std::thread::sleep(std::time::Duration::from_millis(1200));
        assert_eq!(syn(w, CLIENT, 6004), TC_ACT_OK, "a new flow, new window");
        assert_eq!(syn(w, CLIENT, 6001), TC_ACT_OK, "kept alive: counted again");
        assert_eq!(syn(w, CLIENT, 6002), TC_ACT_OK, "kept alive: counted again");
        let before = w.ct(&key(CLIENT, 6003)).unwrap();
        assert_eq!(
            syn(w, CLIENT, 6003),
            TC_ACT_SHOT,
            "over budget: not kept alive"
        );
        assert_eq!(
            w.ct(&key(CLIENT, 6003)).unwrap().last_seen_ns,
            before.last_seen_ns,
            "the refused packet did not refresh its flow"
        );
        assert_eq!(
            syn(w, CLIENT, 6001),
            TC_ACT_OK,
            "counted in this window already"
        );
        assert_eq!(src_entry(w, src_key(CLIENT)).unwrap().count, 3);
        // An answer to a flow counted in the old window only does not take a slot of the new
        // one back.
        answer(w, CLIENT, 6003);
        assert_eq!(src_entry(w, src_key(CLIENT)).unwrap().count, 3);
        // One counted in this window does.
        answer(w, CLIENT, 6001);
        assert_eq!(src_entry(w, src_key(CLIENT)).unwrap().count, 2);
        assert_eq!(w.drop_count(DROP_CT_SOURCE_BUDGET), 2);
    });
}

// IPv6: `[::]:8080/tcp -> A's global address :80`.

fn host6() -> Ipv6Addr {
    "2001:db8:ff::1".parse().unwrap()
}
fn a6() -> Ipv6Addr {
    "2001:db8:1::2".parse().unwrap()
}
fn client6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xee, 0, 0, 0, 0, n)
}

fn program6(w: &World) {
    let mut h: HashMap<_, [u32; 4], u32> = HashMap::try_from(w.map(MAP_HOST_ADDRS6)).unwrap();
    h.insert(in6_words(host6().octets()), w.up, 0).unwrap();
    let mut e: HashMap<_, [u32; 4], u32> = HashMap::try_from(w.map(MAP_EP6_ADDRS)).unwrap();
    e.insert(in6_words(a6().octets()), w.va, 0).unwrap();
    let mut p: HashMap<_, PortKey, PortTarget> = HashMap::try_from(w.map(MAP_PORTS)).unwrap();
    let t = PortTarget {
        container_ip: in6_words(a6().octets()),
        container_port: 80,
        flags: 0,
        _pad: 0,
        binding_id: 61,
    };
    p.insert(PortKey::v6(IPPROTO_TCP, [0; 4], 8080), t, 0)
        .unwrap();
}

/// An Ethernet frame with an IPv6 TCP segment (checksum right) from `s` to `d`.
/// Sequence number 1, acknowledging `ack`.
fn tcp6(s: Ipv6Addr, d: Ipv6Addr, sport: u16, dport: u16, flags: u8, ack: u32) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    let sum = sum16(&s.octets()) + sum16(&d.octets()) + t.len() as u32 + 6 + sum16(&t);
    t[16..18].copy_from_slice(&(!fold(sum)).to_be_bytes());
    let mut f = UPLINK_MAC.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(t.len() as u16).to_be_bytes());
    f.extend_from_slice(&[IPPROTO_TCP, 64]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&t);
    f
}

#[test]
fn ipv6_sources_have_budgets_too() {
    World::with(|w| {
        budget(w, 3, 30);
        program6(w);
        let syn6 = |src: Ipv6Addr, port| {
            let f = tcp6(src, host6(), port, 8080, TCP_SYN, 0);
            w.run(PROG_FROM_UPLINK, w.up, &f).0
        };
        let c = client6(9);
        for port in [6001, 6002, 6003] {
            assert_eq!(syn6(c, port), TC_ACT_OK, "flow {port} within budget");
        }
        assert_eq!(syn6(c, 6004), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_CT_SOURCE_BUDGET), 1);
        let k4 = CtKey::v6(
            in6_words(c.octets()),
            in6_words(host6().octets()),
            6004u16.to_be(),
            8080u16.to_be(),
            IPPROTO_TCP,
        );
        assert!(w.ct(&k4).is_none(), "nothing tracked");
        let c6 = src_entry(w, in6_words(c.octets())).expect("the IPv6 source's budget");
        assert_eq!(c6.count, 3);
        // Another source (the next address) is not affected.
        assert_eq!(syn6(client6(10), 6004), TC_ACT_OK);
        // An answer, acknowledged, frees a slot.
        let synack = tcp6(a6(), c, 80, 6001, TCP_SYN | TCP_ACK, 2);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &synack).0, TC_ACT_OK);
        assert_eq!(syn6(c, 6004), TC_ACT_SHOT, "not acknowledged yet");
        let ack = tcp6(c, host6(), 6001, 8080, TCP_ACK, 2);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &ack).0, TC_ACT_OK);
        assert_eq!(syn6(c, 6004), TC_ACT_OK, "the slot is free again");
        assert_eq!(syn6(c, 6005), TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_CT_SOURCE_BUDGET), 3);
    });
}
