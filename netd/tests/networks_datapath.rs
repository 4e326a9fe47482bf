//! Datapath tests (root) of networks made with `netd network create`: the programs run on
//! crafted frames through BPF_PROG_TEST_RUN, with a second network (id 1, 172.31.0.0/24,
//! containers C and D) written to NETD_NETWORKS / NETD_NET_SUBNETS beside the default one
//! (DpConfig's 172.30.0.0/24, containers A and B), as the agent writes them.
//!
//! What is checked: isolation between networks (dropped and counted as `other-network`), the
//! published-port hairpin across networks (delivered straight into the other network's
//! container), masquerade per network, `--internal` (nothing out, nothing in) and icc per
//! network.

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use aya::maps::{Array, LpmTrie, lpm_trie::Key};
use datapath_util::*;
use netd_common::*;

const REMOTE: [u8; 4] = [192, 0, 2, 9];
const CLIENT: [u8; 4] = [203, 0, 113, 7];
const NET1_GW: [u8; 4] = [172, 31, 0, 1];
const C_IP: [u8; 4] = [172, 31, 0, 2];
const D_IP: [u8; 4] = [172, 31, 0, 3];
const NET1_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 1, 0x01];
const C_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x1f, 0, 0x02];
const D_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x1f, 0, 0x03];
/// Binding 21: tcp *:6000 -> C:60 (a published port of the second network).
const C_PORT: u16 = 6000;

/// The second network's host-side veths: C on `vx`, D on `vxp` (only ifindexes matter).
struct Net1 {
    vc: u32,
    vd: u32,
}

/// Writes network 1 with `flags` (`NET_F_*`), its containers C and D, and C's published port.
fn net1(w: &World, flags: u32) -> Net1 {
    let n = Net1 {
        vc: w.vx,
        vd: ifindex("vxp"),
    };
    let mut nets: Array<_, NetConfig> = Array::try_from(w.map(MAP_NETWORKS)).unwrap();
    nets.set(
        1,
        NetConfig {
            flags,
            bridge_ifindex: ifindex("vbp"),
            bridge_ip: ip(NET1_GW),
            subnet: ip([172, 31, 0, 0]),
            subnet_mask: ip([255, 255, 255, 0]),
            bridge_mac: NET1_MAC,
            _pad: 0,
        },
        0,
    )
    .unwrap();
    let mut t: LpmTrie<_, u32, u32> = LpmTrie::try_from(w.map(MAP_NET_SUBNETS)).unwrap();
    t.insert(&Key::new(24, ip([172, 31, 0, 0])), 1, 0).unwrap();
    t.insert(&Key::new(24, ip([172, 30, 0, 0])), 0, 0).unwrap();
    for (ifindex, a, mac) in [(n.vc, C_IP, C_MAC), (n.vd, D_IP, D_MAC)] {
        let e = EndpointInfo {
            ip: ip(a),
            ifindex,
            mac,
            net_id: 1,
        };
        put_endpoint(&w.pins.0, &e);
    }
    let mut v = bindings();
    v.push(PortEntry {
        host_ip: 0,
        proto: IPPROTO_TCP,
        host_port_start: C_PORT,
        host_port_end: C_PORT,
        container_port: 60,
        container_ip: ip(C_IP),
        binding_id: 21,
        ..Default::default()
    });
    write_ports(w.map(MAP_PORTS), &v);
    // The base configuration (written on first use): the default network's bridge and
    // ip-masq, which the tests compare network 1 against.
    w.config(|_| {});
    n
}

fn syn(s: [u8; 4], d: [u8; 4], sport: u16, dport: u16, smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
    Frame::tcp(s, d, sport, dport)
        .macs(smac, dmac)
        .flags(TCP_SYN)
        .bytes()
}

#[test]
fn containers_of_two_networks_cannot_reach_each_other_directly() {
    World::with(|w| {
        // icc on everywhere: only the network boundary stands between A and C.
        w.config(|c| c.flags |= CFG_F_ICC);
        let n = net1(w, NET_F_ICC | NET_F_MASQ);
        let before = w.drop_count(DROP_NET_ISOLATED);
        // A (default network) -> C, routed through A's gateway.
        let f = syn(A_IP, C_IP, 40000, 60, A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f).0, TC_ACT_SHOT);
        // C -> A, and UDP and ICMP echo too.
        let f = syn(C_IP, A_IP, 40000, 80, C_MAC, NET1_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, n.vc, &f).0, TC_ACT_SHOT);
        let u = Frame::udp(C_IP, B_IP, 5000, 53).macs(C_MAC, NET1_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, n.vc, &u.bytes()).0, TC_ACT_SHOT);
        let e = Frame::echo(A_IP, D_IP, ICMP_ECHO_REQUEST, 7).macs(A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &e.bytes()).0, TC_ACT_SHOT);
        assert_eq!(
            w.drop_count(DROP_NET_ISOLATED) - before,
            4,
            "counted as other-network"
        );
        assert_eq!(drop_reason_name(DROP_NET_ISOLATED), "other-network");
        // The other network's gateway is a host address: allowed, as Docker allows it.
        let f = syn(A_IP, NET1_GW, 40001, 22, A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f).0, TC_ACT_OK);
        // Within a network: A -> B and C -> D pass.
        let f = syn(A_IP, B_IP, 40002, 53, A_MAC, B_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f).0, TC_ACT_OK);
        let f = syn(C_IP, D_IP, 40003, 80, C_MAC, D_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, n.vc, &f).0, TC_ACT_OK);
        assert_eq!(w.drop_count(DROP_NET_ISOLATED) - before, 4);
    });
}

#[test]
fn a_published_port_of_another_network_is_reachable_through_a_host_address() {
    World::with(|w| {
        w.config(|c| c.flags |= CFG_F_ICC);
        let n = net1(w, NET_F_ICC | NET_F_MASQ);
        // A -> uplink address:6000 (C's published port): DNAT to C:60, and delivered straight
        // into C (the host does not route between networks).
        let f = Frame::tcp(A_IP, UPLINK_IP, 35000, C_PORT)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_SYN)
            .payload(b"across");
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &f.bytes());
        assert_eq!(v, TC_ACT_REDIRECT, "bpf_redirect_peer into C");
        assert_eq!(tuple(&out), (A_IP, C_IP, 35000, 60));
        assert_eq!(
            &out[0..12],
            &[C_MAC, NET1_MAC].concat()[..],
            "from C's bridge"
        );
        assert_eq!(out[22], 63, "routed: TTL decremented");
        assert_csums(&out);
        let k = ct_key(A_IP, UPLINK_IP, 35000, C_PORT, IPPROTO_TCP);
        assert_ne!(w.ct(&k).unwrap().flags & CT_F_HAIRPIN, 0);
        // C's reply: source restored to the host address, delivered straight into A.
        let r = Frame::tcp(C_IP, A_IP, 60, 35000)
            .macs(C_MAC, NET1_MAC)
            .flags(TCP_SYN | TCP_ACK);
        let (v, out) = w.run(PROG_FROM_CONTAINER, n.vc, &r.bytes());
        assert_eq!(v, TC_ACT_REDIRECT, "into A");
        assert_eq!(tuple(&out), (UPLINK_IP, A_IP, C_PORT, 35000));
        assert_eq!(&out[0..12], &[A_MAC, BRIDGE_MAC].concat()[..]);
        assert_csums(&out);
        // The flow's next packet from A takes the same way.
        let ack = Frame::tcp(A_IP, UPLINK_IP, 35000, C_PORT)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_ACK);
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &ack.bytes());
        assert_eq!(v, TC_ACT_REDIRECT);
        assert_eq!(tuple(&out), (A_IP, C_IP, 35000, 60));
        assert_eq!(w.port_stats(21).0, 3);
        assert_eq!(w.drop_count(DROP_NET_ISOLATED), 0);
        // Same network: the hairpin stays on the stack's path (the bridge carries it).
        let f = Frame::tcp(D_IP, UPLINK_IP, 35001, C_PORT)
            .macs(D_MAC, NET1_MAC)
            .flags(TCP_SYN);
        let (v, out) = w.run(PROG_FROM_CONTAINER, n.vd, &f.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (D_IP, C_IP, 35001, 60));
    });
}

#[test]
fn masquerade_follows_the_source_network() {
    World::with(|w| {
        // The default network masquerades (base config); network 1 first does not.
        let _n = net1(w, NET_F_ICC);
        let f = syn(C_IP, REMOTE, 41000, 443, C_MAC, NET1_MAC);
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &f);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(
            tuple(&out).0,
            C_IP,
            "enable_ip_masquerade=false: the source is kept"
        );
        let k = ct_key(C_IP, REMOTE, 41000, 443, IPPROTO_TCP);
        assert_eq!(
            w.ct(&k).unwrap().flags & CT_F_SNAT,
            0,
            "tracked, not translated"
        );

        net1(w, NET_F_ICC | NET_F_MASQ);
        let f = syn(C_IP, REMOTE, 41001, 443, C_MAC, NET1_MAC);
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &f);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (UPLINK_IP, REMOTE, 41001, 443), "masqueraded");
        assert_csums(&out);
        // The reply comes back to C.
        let r = Frame::tcp(REMOTE, UPLINK_IP, 443, 41001).flags(TCP_SYN | TCP_ACK);
        let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &r.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (REMOTE, C_IP, 443, 41001));
        // The default network is unchanged: A is masqueraded, its ip-masq from DpConfig.
        let f = syn(A_IP, REMOTE, 41002, 443, A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &f).1[26..30], UPLINK_IP);
        w.config(|c| c.flags &= !CFG_F_MASQ);
        let f = syn(A_IP, REMOTE, 41003, 443, A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &f).1[26..30], A_IP);
        // And the direct-access check covers network 1's addresses.
        let f = syn(CLIENT, C_IP, 41004, 60, CLIENT_MAC, UPLINK_MAC);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &f).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_DIRECT_ACCESS), 1);
    });
}

#[test]
fn an_internal_network_has_no_way_out_and_nothing_comes_in() {
    World::with(|w| {
        let n = net1(w, NET_F_ICC | NET_F_INTERNAL);
        // Out: refused at the uplink (the routing has no way either; this holds if it had).
        let f = syn(C_IP, REMOTE, 42000, 443, C_MAC, NET1_MAC);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &f).0, TC_ACT_SHOT);
        let u = Frame::udp(C_IP, REMOTE, 42001, 53).bytes();
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &u).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_NET_INTERNAL), 2);
        assert_eq!(drop_reason_name(DROP_NET_INTERNAL), "internal-network");
        // In: C's published port is not reachable from outside; nor is C's address.
        let f = syn(CLIENT, UPLINK_IP, 42002, C_PORT, CLIENT_MAC, UPLINK_MAC);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &f).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_NET_INTERNAL), 3);
        let f = syn(CLIENT, C_IP, 42003, 60, CLIENT_MAC, UPLINK_MAC);
        assert_eq!(w.run(PROG_FROM_UPLINK, w.up, &f).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_DIRECT_ACCESS), 1);
        // Inside, C still reaches D and its gateway.
        let f = syn(C_IP, D_IP, 42004, 80, C_MAC, D_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, n.vc, &f).0, TC_ACT_OK);
        let f = syn(C_IP, NET1_GW, 42005, 53, C_MAC, NET1_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, n.vc, &f).0, TC_ACT_OK);
        // A non-internal network's traffic still leaves.
        let f = syn(A_IP, REMOTE, 42006, 443, A_MAC, BRIDGE_MAC);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &f).0, TC_ACT_OK);
    });
}

#[test]
fn icc_is_decided_per_network() {
    World::with(|w| {
        // Default network: icc on; network 1: enable_icc=false.
        w.config(|c| c.flags |= CFG_F_ICC);
        let n = net1(w, NET_F_MASQ);
        let f = syn(C_IP, D_IP, 43000, 80, C_MAC, D_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, n.vc, &f).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ICC), 1);
        // The MAC check uses network 1's bridge: D's MAC with the gateway's address.
        let f = syn(C_IP, NET1_GW, 43001, 80, C_MAC, D_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, n.vc, &f).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ICC_MAC), 1);
        // To its own gateway (the host) by the gateway's MAC: allowed.
        let f = syn(C_IP, NET1_GW, 43002, 80, C_MAC, NET1_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, n.vc, &f).0, TC_ACT_OK);
        let f = syn(A_IP, B_IP, 43003, 80, A_MAC, B_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f).0, TC_ACT_OK, "icc on");

        // The other way round.
        w.config(|c| c.flags &= !CFG_F_ICC);
        net1(w, NET_F_ICC | NET_F_MASQ);
        let f = syn(C_IP, D_IP, 43004, 80, C_MAC, D_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, n.vc, &f).0, TC_ACT_OK);
        let f = syn(A_IP, B_IP, 43005, 80, A_MAC, B_MAC);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &f).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_ICC), 2);
    });
}

#[test]
fn a_container_reaching_its_own_published_port_sees_its_own_gateway() {
    World::with(|w| {
        let n = net1(w, NET_F_ICC | NET_F_MASQ);
        let f = Frame::tcp(C_IP, UPLINK_IP, 36000, C_PORT)
            .macs(C_MAC, NET1_MAC)
            .flags(TCP_SYN);
        let (v, out) = w.run(PROG_FROM_CONTAINER, n.vc, &f.bytes());
        assert_eq!(v, TC_ACT_REDIRECT, "straight back into C");
        let (s, d, _, dport) = tuple(&out);
        assert_eq!(
            (s, d, dport),
            (NET1_GW, C_IP, 60),
            "SNAT to network 1's gateway"
        );
        assert_csums(&out);
    });
}

#[test]
fn to_container_takes_what_comes_over_the_containers_own_bridge() {
    World::with(|w| {
        let n = net1(w, NET_F_ICC | NET_F_MASQ);
        let f = syn(D_IP, C_IP, 37000, 60, NET1_MAC, C_MAC);
        // Routed by the host over network 1's bridge: passes.
        let net1_bridge = ifindex("vbp");
        assert_eq!(
            w.run_from(PROG_TO_CONTAINER, n.vc, net1_bridge, &f).0,
            TC_ACT_OK
        );
        // The same from the default network's bridge: not C's bridge, a network source.
        assert_eq!(w.run_from(PROG_TO_CONTAINER, n.vc, w.br, &f).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_MARTIAN), 1);
        // A's veth still takes the default network's bridge.
        let f = syn(B_IP, A_IP, 37001, 80, BRIDGE_MAC, A_MAC);
        assert_eq!(w.run_from(PROG_TO_CONTAINER, w.va, w.br, &f).0, TC_ACT_OK);
    });
}
