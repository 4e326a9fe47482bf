//! The IPv6 fast path: DNAT6 traffic straight into the container, published replies straight
//! out of the uplink.

use super::*;

/// The frame's hop limit.
fn hop(f: &[u8]) -> u8 {
    f[14 + 7]
}

/// The frame with another hop limit (IPv6 has no header checksum to fix).
fn with_hop(f: &[u8], h: u8) -> Vec<u8> {
    let mut f = f.to_vec();
    f[14 + 7] = h;
    f
}

#[test]
fn fast_path_delivers_dnat6_traffic_into_the_container() {
    world(|w| {
        w.config(|c| c.flags |= CFG_F_FAST_PATH);
        let syn = tcp_frame(client(), host(), 40000, 8080, TCP_SYN);
        let (v, out) = from_uplink(w, &syn);
        assert_eq!(v, TC_ACT_REDIRECT, "bpf_redirect_peer to A's veth");
        assert_eq!(addrs(&out), (client(), a_g()));
        assert_eq!((port_at(&out, L4), port_at(&out, L4 + 2)), (40000, 80));
        assert_eq!(&out[0..6], &A_MAC, "to the container's MAC");
        assert_eq!(&out[6..12], &BRIDGE_MAC, "from the bridge's");
        assert_eq!(hop(&out), 63, "routed: hop limit decremented");
        assert_l4_csum(&out, 14, L4, IPPROTO_TCP, "fast DNAT6");
        assert_eq!(&out[out.len() - 5..], b"hello");
        assert_eq!(w.tx_packets(w.va), 1, "counted on A's veth");

        // The flow's next segment, and UDP to another binding.
        let ack = tcp_frame(client(), host(), 40000, 8080, TCP_ACK);
        let (v, out) = from_uplink(w, &ack);
        assert_eq!(
            (v, &out[0..12]),
            (TC_ACT_REDIRECT, &[A_MAC, BRIDGE_MAC].concat()[..])
        );
        let (v, out) = from_uplink(w, &udp_frame(client(), host(), 41000, 5353));
        assert_eq!((v, addrs(&out).1, hop(&out)), (TC_ACT_REDIRECT, a_g(), 63));
        assert_l4_csum(&out, 14, L4, IPPROTO_UDP, "fast UDP DNAT6");
        assert_eq!(w.tx_packets(w.va), 3);

        // Hop limit 1: translated, and the stack answers "time exceeded".
        let (v, out) = from_uplink(w, &with_hop(&ack, 1));
        assert_eq!((v, hop(&out), addrs(&out).1), (TC_ACT_OK, 1, a_g()));
        assert_eq!(&out[0..12], &ack[0..12], "Ethernet untouched");
        // A link-local source: the stack would not forward it; it keeps that verdict.
        let ll = tcp_frame(a6("fe80::9"), host(), 40001, 8080, TCP_SYN);
        let (v, out) = from_uplink(w, &ll);
        assert_eq!((v, hop(&out)), (TC_ACT_OK, 64));
        // A container address no endpoint owns: the stack's path.
        let mut e: HashMap<_, [u32; 4], u32> = HashMap::try_from(w.map(MAP_EP6_ADDRS)).unwrap();
        e.remove(&w6(a_g())).unwrap();
        let (v, out) = from_uplink(w, &ack);
        assert_eq!((v, hop(&out), addrs(&out).1), (TC_ACT_OK, 64, a_g()));
        e.insert(w6(a_g()), w.va, 0).unwrap();
        // No bridge MAC yet, or the flag off: the stack's path.
        w.config(|c| c.bridge_mac = [0; 6]);
        assert_eq!(from_uplink(w, &ack).0, TC_ACT_OK);
        w.config(|c| {
            c.bridge_mac = BRIDGE_MAC;
            c.flags &= !CFG_F_FAST_PATH;
        });
        let (v, out) = from_uplink(w, &ack);
        assert_eq!((v, hop(&out), addrs(&out).1), (TC_ACT_OK, 64, a_g()));
        assert_eq!(
            w.tx_packets(w.va),
            3,
            "the stack's deliveries count at to_container"
        );
        assert_eq!(w.drops(), [0; DROP_REASONS as usize]);
    });
}

/// The host's routing for the replies: the uplink up0 (UPLINK_MAC, 2001:db8:ff::1/64,
/// forwarding on), the client's prefix via a resolved gateway (GW_MAC) on it, and A's IPv6
/// lease (link-local and global) in the IPv6 policy. Returns the dataplane that wrote it.
pub(super) fn uplink_routes(w: &World) -> netd::dataplane::Dataplane {
    let mac = UPLINK_MAC.map(|b| format!("{b:02x}")).join(":");
    let gw_mac = GW_MAC.map(|b| format!("{b:02x}")).join(":");
    in_world(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    in_world(&["ip", "link", "set", "up0", "address", &mac]);
    for dev in ["up0", "up0p", "va", "vap"] {
        in_world(&["ip", "link", "set", dev, "up"]);
    }
    in_world(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:ff::1/64",
        "dev",
        "up0",
        "nodad",
    ]);
    in_world(&[
        "ip",
        "-6",
        "route",
        "add",
        "2001:db8:ee::/64",
        "via",
        "2001:db8:ff::fe",
    ]);
    in_world(&[
        "ip",
        "-6",
        "neigh",
        "replace",
        "2001:db8:ff::fe",
        "lladdr",
        &gw_mac,
        "dev",
        "up0",
        "nud",
        "permanent",
    ]);
    let mut dp = netd::dataplane::Dataplane::open(&netd::dataplane::DataplaneConfig {
        pin_dir: w.pins.0.clone(),
        ct_max: CT_MAX_DEFAULT,
    })
    .unwrap();
    dp.set_endpoint_ipv6(w.va, a6("fe80::42:acff:fe1e:2"), Some(a_g()))
        .unwrap();
    dp
}

/// A published flow's reply: routed (`bpf_fib_lookup`, the client's prefix via a resolved
/// gateway on the uplink), translated back and redirected to the uplink by from_container6.
#[test]
fn fast_path_sends_published_ipv6_replies_out_of_the_uplink() {
    world(|w| {
        let _dp = uplink_routes(w);
        w.config(|c| c.flags |= CFG_F_FAST_PATH);
        let syn = tcp_frame(client(), host(), 40000, 8080, TCP_SYN);
        assert_eq!(from_uplink(w, &syn).0, TC_ACT_REDIRECT);
        let mut synack = tcp_frame(a_g(), client(), 80, 40000, TCP_SYN | TCP_ACK);
        synack[0..12].copy_from_slice(&[BRIDGE_MAC, A_MAC].concat());
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &synack);
        assert_eq!(v, TC_ACT_REDIRECT, "bpf_redirect to the uplink");
        assert_eq!(
            addrs(&out),
            (host(), client()),
            "the published address back"
        );
        assert_eq!((port_at(&out, L4), port_at(&out, L4 + 2)), (8080, 40000));
        assert_eq!(
            &out[0..12],
            &[GW_MAC, UPLINK_MAC].concat()[..],
            "to the gateway"
        );
        assert_eq!(hop(&out), 63);
        assert_l4_csum(&out, 14, L4, IPPROTO_TCP, "fast reverse NAT6");
        let k = CtKey::v6(
            w6(client()),
            w6(host()),
            40000u16.to_be(),
            8080u16.to_be(),
            6,
        );
        assert_eq!(w.ct(&k).unwrap().tcp_state, CT_TCP_SYN_RECV);
        // The uplink's egress lets it pass as it is (from a host address: not netd's).
        let (v, again) = to_uplink(w, &out);
        assert_eq!((v, &again), (TC_ACT_NEXT, &out));
        // Not a published reply (no flow): A's own routed traffic, redirected as it is
        // (`routed.rs`).
        let mut other = tcp_frame(a_g(), client(), 80, 40001, TCP_SYN | TCP_ACK);
        other[0..12].copy_from_slice(&[BRIDGE_MAC, A_MAC].concat());
        let (v, out) = w.run(PROG_FROM_CONTAINER, w.va, &other);
        assert_eq!((v, addrs(&out)), (TC_ACT_REDIRECT, (a_g(), client())));
        // Hop limit 1, or the flag off: the stack's path, the frame unchanged.
        let last = with_hop(&synack, 1);
        assert_eq!(w.run(PROG_FROM_CONTAINER, w.va, &last), (TC_ACT_OK, last));
        w.config(|c| c.flags &= !CFG_F_FAST_PATH);
        assert_eq!(
            w.run(PROG_FROM_CONTAINER, w.va, &synack),
            (TC_ACT_OK, synack)
        );
        assert_eq!(w.drops(), [0; DROP_REASONS as usize]);
    });
}
