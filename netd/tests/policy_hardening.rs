//! Policy hardening (issue 8), per packet through BPF_PROG_TEST_RUN: spoofed and martian
//! sources from outside, `--icc false` and the destination MAC, VLAN tags against the source
//! lists, a `deny` cutting established flows, ICMP errors the host itself sends about
//! translated packets, and the translations under CHECKSUM_COMPLETE (the kernel then checks
//! that `skb->csum` still matches the packet after the program ran).
//!
//! Same world as `datapath.rs` (its harness in datapath_util): a private namespace with veth
//! interfaces standing in for the uplink, the bridge and two containers, maps filled through
//! their pins.

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use std::os::fd::{AsFd as _, AsRawFd as _};

use datapath_util::*;
use netd_common::*;

const CLIENT: [u8; 4] = [203, 0, 113, 7];
const REMOTE: [u8; 4] = [192, 0, 2, 9];

// ------------------------------------------------------------------------------------------
// Martian and spoofed sources from outside.

/// Sources no outside host may use: loopback, "this network", multicast, reserved, the
/// gateway, a container's address, the host's own address.
const SPOOFED: [[u8; 4]; 7] = [
    [127, 0, 0, 1],
    [0, 0, 0, 5],
    [224, 0, 0, 9],
    [240, 0, 0, 1],
    BRIDGE_IP,
    A_IP,
    UPLINK_IP,
];

#[test]
fn spoofed_sources_from_an_uplink_are_neither_translated_nor_delivered() {
    World::with(|w| {
        w.config(|c| c.flags |= CFG_F_FAST_PATH);
        for (n, src) in SPOOFED.iter().enumerate() {
            let n = n as u64 + 1;
            // To a published port: no DNAT, no flow.
            let syn = Frame::tcp(*src, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
            assert_eq!(
                w.run(PROG_FROM_UPLINK, w.up, &syn.bytes()).0,
                TC_ACT_SHOT,
                "{src:?} -> published port"
            );
            assert!(
                w.ct(&ct_key(*src, UPLINK_IP, 5555, 8080, IPPROTO_TCP))
                    .is_none(),
                "no flow for {src:?}"
            );
            // To a container address.
            let udp = Frame::udp(*src, B_IP, 5555, 53);
            assert_eq!(
                w.run(PROG_FROM_UPLINK, w.up, &udp.bytes()).0,
                TC_ACT_SHOT,
                "{src:?} -> container"
            );
            assert_eq!(w.drop_count(DROP_MARTIAN), 2 * n);
            // To the host itself: the stack decides (and drops martians itself).
            let host = Frame::tcp(*src, UPLINK_IP, 5555, 22).flags(TCP_SYN);
            let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &host.bytes());
            assert_eq!((v, out), (TC_ACT_NEXT, host.bytes()), "{src:?} -> host");
        }
        assert_eq!(w.drop_count(DROP_DIRECT_ACCESS), 0);
        // A valid source still gets in.
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &syn.bytes());
        assert_eq!(v, TC_ACT_REDIRECT);
        assert_eq!(tuple(&out), (CLIENT, A_IP, 5555, 80));
    });
}

#[test]
fn spoofed_sources_get_no_translation_of_errors_or_replies() {
    World::with(|w| {
        w.config(|_| {});
        // A masqueraded flow A -> REMOTE; an error about it from a spoofed source is not
        // translated towards A (it stays the host's), from REMOTE it is.
        let out = Frame::udp(A_IP, REMOTE, 40000, 53);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &out.bytes()).0, TC_ACT_OK);
        let sent = Frame::udp(UPLINK_IP, REMOTE, 40000, 53);
        let err = Frame::icmp_error(
            [127, 0, 0, 1],
            UPLINK_IP,
            ICMP_DEST_UNREACH,
            3,
            &quote(&sent),
        );
        let (v, got) = w.run(PROG_FROM_UPLINK, w.up, &err.bytes());
        assert_eq!((v, got), (TC_ACT_NEXT, err.bytes()));
        let err = Frame::icmp_error(REMOTE, UPLINK_IP, ICMP_DEST_UNREACH, 3, &quote(&sent));
        let (v, got) = w.run(PROG_FROM_UPLINK, w.up, &err.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(&got[30..34], &A_IP, "REMOTE's error reaches A");
        // A flow of A's to a reserved address: what comes back from there is no reply (the
        // stack gets it untranslated, and discards it).
        let out = Frame::udp(A_IP, [240, 0, 0, 1], 40001, 53);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &out.bytes()).0, TC_ACT_OK);
        let reply = Frame::udp([240, 0, 0, 1], UPLINK_IP, 53, 40001);
        let (v, got) = w.run(PROG_FROM_UPLINK, w.up, &reply.bytes());
        assert_eq!((v, got), (TC_ACT_NEXT, reply.bytes()));
        assert_eq!(w.drops(), [0; DROP_REASONS as usize]);
    });
}

// ------------------------------------------------------------------------------------------
// --icc false and the destination MAC.

#[test]
fn icc_false_checks_the_destination_mac() {
    World::with(|w| {
        w.config(|_| {});
        // Frames A addresses to B's MAC with an address the IP check lets through: the bridge
        // would deliver them to B.
        for d in [REMOTE, UPLINK_IP, BRIDGE_IP, [172, 30, 0, 77]] {
            let f = Frame::udp(A_IP, d, 1000, 53).macs(A_MAC, B_MAC);
            assert_eq!(
                w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0,
                TC_ACT_SHOT,
                "to B's MAC with {d:?}"
            );
        }
        // A broadcast frame with a unicast address floods every container.
        let f = Frame::udp(A_IP, REMOTE, 1000, 53).macs(A_MAC, [0xff; 6]);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0, TC_ACT_SHOT);
        // So does an error quoting a tracked flow of A's, to B's MAC.
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &syn.bytes()).0, TC_ACT_OK);
        let as_received = Frame::tcp(CLIENT, A_IP, 5555, 80);
        let err = Frame::icmp_error(A_IP, CLIENT, ICMP_DEST_UNREACH, 3, &quote(&as_received))
            .macs(A_MAC, B_MAC);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &err.bytes()).0,
            TC_ACT_SHOT
        );
        assert_eq!(w.drop_count(DROP_ICC_MAC), 6);
        assert_eq!(w.drop_count(DROP_ICC), 0);

        // Through the gateway's MAC they pass (routed: the host decides), and so does a
        // linked port at the linked container's own MAC.
        for d in [REMOTE, UPLINK_IP, BRIDGE_IP] {
            let f = Frame::udp(A_IP, d, 1000, 53).macs(A_MAC, BRIDGE_MAC);
            assert_eq!(
                w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0,
                TC_ACT_OK,
                "{d:?}"
            );
        }
        w.link(A_IP, B_IP, IPPROTO_TCP, &[(80, 80)]);
        let f = Frame::tcp(A_IP, B_IP, 1000, 80)
            .flags(TCP_SYN)
            .macs(A_MAC, B_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0, TC_ACT_OK);
        // The link's reply from B, to A's MAC.
        let f = Frame::tcp(B_IP, A_IP, 80, 1000)
            .flags(TCP_SYN | TCP_ACK)
            .macs(B_MAC, A_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.vb, &f.bytes()).0, TC_ACT_OK);
        // ... but not the linked address at a MAC that is not B's (A's own, here).
        let f = Frame::tcp(A_IP, B_IP, 1001, 80)
            .flags(TCP_SYN)
            .macs(A_MAC, A_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ICC_MAC), 7);

        // --icc true: the bridge may deliver anything to anyone.
        w.config(|c| c.flags |= CFG_F_ICC);
        let f = Frame::udp(A_IP, REMOTE, 1000, 53).macs(A_MAC, B_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f.bytes()).0, TC_ACT_OK);
        assert_eq!(w.drop_count(DROP_ICC_MAC), 7);
    });
}

// ------------------------------------------------------------------------------------------
// VLAN tags against the source lists; a deny cutting established flows.

#[test]
fn no_vlan_tag_gets_past_the_source_lists() {
    World::with(|w| {
        w.config(|_| {});
        let xdp = w.xdp();
        w.filter(MAP_FILTER_ALLOW, [192, 0, 2, 0], 24);
        w.config(|c| c.flags |= CFG_F_ALLOWLIST);
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5000, 8080)
            .flags(TCP_SYN)
            .bytes();
        let direct = Frame::udp(CLIENT, A_IP, 5000, 53).bytes();
        let mut n = 0;
        for f in [&syn, &direct] {
            for tagged in [
                f.clone(),
                vlan_tagged(f, 0x8100),
                vlan_tagged(f, 0x88a8),
                vlan_tagged(&vlan_tagged(f, 0x8100), 0x88a8),
            ] {
                assert_eq!(xdp.run(&tagged), XDP_DROP, "{tagged:02x?}");
                n += 1;
                assert_eq!(w.drop_count(DROP_FILTER_NOT_ALLOWED), n);
            }
        }
        // Allowed sources and host traffic pass, tagged or not.
        let ok = Frame::tcp(REMOTE, UPLINK_IP, 5000, 8080)
            .flags(TCP_SYN)
            .bytes();
        let host = Frame::tcp(CLIENT, UPLINK_IP, 5000, 22)
            .flags(TCP_SYN)
            .bytes();
        for f in [&ok, &host] {
            assert_eq!(xdp.run(f), XDP_PASS);
            assert_eq!(xdp.run(&vlan_tagged(f, 0x8100)), XDP_PASS);
        }
        // The deny list too.
        w.filter(MAP_FILTER_DENY, REMOTE, 32);
        w.config(|c| c.flags |= CFG_F_DENYLIST);
        assert_eq!(xdp.run(&vlan_tagged(&ok, 0x8100)), XDP_DROP);
        assert_eq!(w.drop_count(DROP_FILTER_DENY), 1);
    });
}

#[test]
fn a_deny_added_later_cuts_established_flows() {
    World::with(|w| {
        w.config(|_| {});
        let xdp = w.xdp();
        // An established published flow from CLIENT, and an outbound flow of A's to CLIENT.
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &syn.bytes()).0, TC_ACT_OK);
        let synack = Frame::tcp(A_IP, CLIENT, 80, 5555).flags(TCP_SYN | TCP_ACK);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &synack.bytes()).0, TC_ACT_OK);
        let out = Frame::tcp(A_IP, CLIENT, 40000, 443).flags(TCP_SYN);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &out.bytes()).0, TC_ACT_OK);
        let data = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).payload(b"more");
        assert_eq!(xdp.run(&data.bytes()), XDP_PASS);

        w.filter(MAP_FILTER_DENY, CLIENT, 32);
        w.config(|c| c.flags |= CFG_F_DENYLIST);
        assert_eq!(
            xdp.run(&data.bytes()),
            XDP_DROP,
            "the published flow is cut"
        );
        assert_eq!(w.drop_count(DROP_FILTER_DENY), 1);
        // A's own outbound flow to the denied host keeps its replies.
        let reply = Frame::tcp(CLIENT, UPLINK_IP, 443, 40000).flags(TCP_SYN | TCP_ACK);
        assert_eq!(xdp.run(&reply.bytes()), XDP_PASS);

        // Without masquerade, the replies of A's tracked outbound flows (to A's own address)
        // pass as well.
        w.config(|c| c.flags &= !CFG_F_MASQ);
        let out = Frame::tcp(A_IP, CLIENT, 40001, 444).flags(TCP_SYN);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &out.bytes()).0, TC_ACT_OK);
        let reply_a = Frame::tcp(CLIENT, A_IP, 444, 40001).flags(TCP_SYN | TCP_ACK);
        assert_eq!(xdp.run(&reply_a.bytes()), XDP_PASS);
        let direct = Frame::tcp(CLIENT, A_IP, 444, 40002).flags(TCP_SYN);
        assert_eq!(xdp.run(&direct.bytes()), XDP_DROP);
        assert_eq!(w.drop_count(DROP_FILTER_DENY), 2);

        // An allow list that leaves CLIENT out cuts it the same way.
        w.config(|c| c.flags = (c.flags & !CFG_F_DENYLIST) | CFG_F_ALLOWLIST);
        w.filter(MAP_FILTER_ALLOW, REMOTE, 32);
        assert_eq!(xdp.run(&data.bytes()), XDP_DROP);
        assert_eq!(w.drop_count(DROP_FILTER_NOT_ALLOWED), 1);
        assert_eq!(xdp.run(&reply.bytes()), XDP_PASS);
    });
}

// ------------------------------------------------------------------------------------------
// ICMP errors the host itself sends about translated packets.

#[test]
fn host_errors_about_translated_packets_quote_the_outside_view() {
    World::with(|w| {
        w.config(|_| {});
        // A published flow: the client's 1500-byte segment, DNAT'd, is too big for the
        // bridge; the host answers "fragmentation needed" about the packet as it saw it.
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &syn.bytes()).0, TC_ACT_OK);
        let seen = Frame::tcp(CLIENT, A_IP, 5555, 80).payload(&[7; 64]);
        let err = Frame::icmp_error(UPLINK_IP, CLIENT, ICMP_DEST_UNREACH, 4, &quote(&seen));
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &err.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(&out[26..34], &[UPLINK_IP, CLIENT].concat()[..]);
        assert_eq!(
            quoted_tuple(&out),
            (CLIENT, UPLINK_IP, 5555, 8080),
            "the client's own packet"
        );
        assert_csums(&out);
        assert_quoted_csums(&out);

        // A masqueraded flow's reply with TTL 1: time exceeded, sent by another host
        // address, quotes the reply as DNAT'd to A.
        let q = Frame::udp(A_IP, REMOTE, 40000, 53);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &q.bytes()).0, TC_ACT_OK);
        let seen = Frame::udp(REMOTE, A_IP, 53, 40000);
        let err = Frame::icmp_error(BRIDGE_IP, REMOTE, ICMP_TIME_EXCEEDED, 0, &quote(&seen));
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &err.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(&out[26..34], &[UPLINK_IP, REMOTE].concat()[..]);
        assert_eq!(quoted_tuple(&out), (REMOTE, UPLINK_IP, 53, 40000));
        assert_csums(&out);
        assert_quoted_csums(&out);

        // Errors about untracked packets, or about a packet the error's receiver did not
        // send, leave as they are.
        for quoted in [
            Frame::udp(REMOTE, B_IP, 53, 1),
            Frame::tcp(REMOTE, A_IP, 5555, 80),
        ] {
            let err = Frame::icmp_error(UPLINK_IP, CLIENT, ICMP_DEST_UNREACH, 4, &quote(&quoted));
            let (v, out) = w.run(PROG_TO_UPLINK, w.up, &err.bytes());
            assert_eq!((v, out), (TC_ACT_OK, err.bytes()));
        }
        // The host's own errors with a quote too short to read pass as they are (only a
        // container's are dropped as malformed).
        let short = &quote(&Frame::udp(CLIENT, A_IP, 5555, 80))[..24];
        let err = Frame::icmp_error(UPLINK_IP, CLIENT, ICMP_DEST_UNREACH, 4, short);
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &err.bytes());
        assert_eq!((v, out), (TC_ACT_OK, err.bytes()));
        assert_eq!(w.drops(), [0; DROP_REASONS as usize]);
        let err = Frame::icmp_error(A_IP, CLIENT, ICMP_DEST_UNREACH, 4, short);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &err.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_MALFORMED), 1);
    });
}

// ------------------------------------------------------------------------------------------
// CHECKSUM_COMPLETE.

/// BPF_F_TEST_SKB_CHECKSUM_COMPLETE (Linux 6.11, 7a2b4d5e): the test skb is CHECKSUM_COMPLETE
/// with the packet's sum in `skb->csum`, and the kernel fails the run with EBADMSG when the
/// program left `skb->csum` out of step with the bytes. aya 0.14's TestRunOptions cannot set
/// flags, so this calls BPF_PROG_TEST_RUN itself.
const BPF_F_TEST_SKB_CHECKSUM_COMPLETE: u32 = 1 << 2;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// Runs TC program `prog` on `frame` at `ifindex` as a CHECKSUM_COMPLETE skb.
fn run_complete(w: &World, prog: &str, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
    let p = w.dp.program(prog).unwrap();
    let fd = p.fd().unwrap().as_fd().as_raw_fd();
    let mut skb = [0u8; 192];
    skb[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ctx_size_in: skb.len() as u32,
        ctx_in: skb.as_ptr() as u64,
        flags: BPF_F_TEST_SKB_CHECKSUM_COMPLETE,
        ..Default::default()
    };
    // SAFETY: attr points at live buffers of the sizes it states, for the call's duration.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "{prog} on a CHECKSUM_COMPLETE {frame:02x?}: {} (EBADMSG: skb->csum no longer matches)",
        std::io::Error::last_os_error()
    );
    out.truncate(attr.data_size_out as usize);
    (attr.retval, out)
}

#[test]
fn checksum_complete_packets_stay_consistent() {
    World::with(|w| {
        w.config(|c| {
            c.snat_port_min = 50000;
            c.snat_port_max = 50000;
        });
        // Each run is checked by the kernel after the program (skb->csum) and here from
        // scratch (the checksum fields).
        // Published TCP with payload, and its reply.
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 5555, 8080)
            .flags(TCP_SYN)
            .payload(b"complete");
        let (v, out) = run_complete(w, PROG_FROM_UPLINK, w.up, &syn.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (CLIENT, A_IP, 5555, 80));
        assert_csums(&out);
        let reply = Frame::tcp(A_IP, CLIENT, 80, 5555).flags(TCP_SYN | TCP_ACK);
        let (_, out) = run_complete(w, PROG_TO_UPLINK, w.up, &reply.bytes());
        assert_eq!(tuple(&out), (UPLINK_IP, CLIENT, 8080, 5555));
        assert_csums(&out);
        // Published UDP, with and without a checksum.
        for f in [
            Frame::udp(CLIENT, UPLINK_IP, 3333, 5353).payload(b"dns?"),
            Frame::udp(CLIENT, UPLINK_IP, 3334, 5353)
                .payload(b"dns?")
                .no_udp_csum(),
        ] {
            let (v, out) = run_complete(w, PROG_FROM_UPLINK, w.up, &f.bytes());
            assert_eq!(v, TC_ACT_OK);
            assert_eq!(&out[30..34], &B_IP);
            assert_csums(&out);
        }
        // Masquerade, the port kept and then moved (B clashes with A's 40000 -> 50000).
        for src in [A_IP, B_IP] {
            let f = Frame::udp(src, REMOTE, 40000, 443).payload(b"quic");
            let (v, out) = run_complete(w, PROG_TO_UPLINK, w.up, &f.bytes());
            assert_eq!(v, TC_ACT_OK);
            assert_eq!(&out[26..30], &UPLINK_IP);
            assert_csums(&out);
        }
        // A masqueraded ping and its reply.
        let ping = Frame::echo(A_IP, REMOTE, ICMP_ECHO_REQUEST, 0x0777);
        let (_, out) = run_complete(w, PROG_TO_UPLINK, w.up, &ping.bytes());
        assert_csums(&out);
        let pong = Frame::echo(REMOTE, UPLINK_IP, ICMP_ECHO_REPLY, 0x0777);
        let (_, out) = run_complete(w, PROG_FROM_UPLINK, w.up, &pong.bytes());
        assert_eq!(&out[30..34], &A_IP);
        assert_csums(&out);
        // An error about B's moved flow, translated back to B.
        let sent = Frame::udp(UPLINK_IP, REMOTE, 50000, 443);
        let err = Frame::icmp_error(REMOTE, UPLINK_IP, ICMP_DEST_UNREACH, 3, &quote(&sent));
        let (_, out) = run_complete(w, PROG_FROM_UPLINK, w.up, &err.bytes());
        assert_eq!(quoted_tuple(&out), (B_IP, REMOTE, 40000, 443));
        assert_csums(&out);
        assert_quoted_csums(&out);
        // The host's own error about a published packet.
        let seen = Frame::tcp(CLIENT, A_IP, 5555, 80);
        let err = Frame::icmp_error(UPLINK_IP, CLIENT, ICMP_DEST_UNREACH, 4, &quote(&seen));
        let (_, out) = run_complete(w, PROG_TO_UPLINK, w.up, &err.bytes());
        assert_eq!(quoted_tuple(&out), (CLIENT, UPLINK_IP, 5555, 8080));
        assert_csums(&out);
        assert_quoted_csums(&out);
        // Hairpin from A to B through the host address.
        let f = Frame::tcp(A_IP, UPLINK_IP, 35000, 7001).macs(A_MAC, BRIDGE_MAC);
        let (v, out) = run_complete(w, PROG_FROM_CONTAINER, w.va, &f.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (A_IP, B_IP, 35000, 8001));
        assert_csums(&out);
        // Fast path into a container: the TTL decrement too.
        w.config(|c| c.flags |= CFG_F_FAST_PATH);
        let syn = Frame::tcp(CLIENT, UPLINK_IP, 6666, 8080).flags(TCP_SYN);
        let (v, out) = run_complete(w, PROG_FROM_UPLINK, w.up, &syn.bytes());
        assert_eq!(v, TC_ACT_REDIRECT);
        assert_eq!(out[22], 63, "TTL decremented");
        assert_csums(&out);
    });
}

// ------------------------------------------------------------------------------------------
// Cost (not a check: run with `--ignored --nocapture`).

/// Mean time per packet of xdp_prefilter with both lists on (the kernel's BPF_PROG_TEST_RUN
/// timing over 1M runs): a new connection, a packet of an established published flow (now
/// judged too: conntrack lookup + LPM lookups), and the same behind two VLAN tags.
#[test]
#[ignore = "a measurement: prints ns per packet"]
fn measure_xdp_prefilter_cost() {
    World::with(|w| {
        w.config(|_| {});
        let xdp = w.xdp();
        let syn = Frame::tcp(REMOTE, UPLINK_IP, 5555, 8080).flags(TCP_SYN);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &syn.bytes()).0, TC_ACT_OK);
        w.filter(MAP_FILTER_ALLOW, [192, 0, 2, 0], 24);
        w.filter(MAP_FILTER_DENY, [198, 18, 0, 0], 15);
        w.config(|c| c.flags |= CFG_F_ALLOWLIST | CFG_F_DENYLIST);
        let new = Frame::tcp(REMOTE, UPLINK_IP, 6666, 8080)
            .flags(TCP_SYN)
            .bytes();
        let est = Frame::tcp(REMOTE, UPLINK_IP, 5555, 8080).bytes();
        let tagged = vlan_tagged(&vlan_tagged(&est, 0x8100), 0x88a8);
        let host = Frame::tcp(CLIENT, UPLINK_IP, 5555, 22).bytes();
        for (name, f) in [
            ("new connection", &new),
            ("established flow", &est),
            ("established, two tags", &tagged),
            ("host traffic", &host),
        ] {
            let (v, d) = xdp.run_repeat(f, 1_000_000);
            assert_eq!(v, XDP_PASS, "{name}");
            println!("xdp_prefilter {name}: {} ns/packet", d.as_nanos());
        }
    });
}
