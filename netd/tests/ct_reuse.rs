//! Reusing the tuples of finished TCP connections (root), through BPF_PROG_TEST_RUN like
//! datapath.rs: a SYN on a TIME_WAIT tuple opens a fresh flow and the old pair goes both ways;
//! the SNAT port search takes over a reply tuple whose connection is over, and only for a SYN.

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use datapath_util::*;
use netd_common::*;

const SERVER: [u8; 4] = [192, 0, 2, 9];

/// Opens a masqueraded connection `src:sport` -> SERVER:80 (SYN, SYN-ACK, ACK); returns the
/// original key and the masqueraded source port.
fn open(w: &World, src: [u8; 4], sport: u16) -> (CtKey, u16) {
    let syn = Frame::tcp(src, SERVER, sport, 80).flags(TCP_SYN).seq(1000);
    let (v, out) = w.run(PROG_TO_UPLINK, w.up, &syn.bytes());
    assert_eq!(v, TC_ACT_OK);
    let (s, _, mport, _) = tuple(&out);
    assert_eq!(s, UPLINK_IP);
    back(w, src, sport, mport, TCP_SYN | TCP_ACK);
    fwd(w, src, sport, TCP_ACK);
    let k = ct_key(src, SERVER, sport, 80, IPPROTO_TCP);
    assert_eq!(w.ct(&k).unwrap().tcp_state, CT_TCP_ESTABLISHED);
    (k, mport)
}

/// The server closes first (as an HTTP/1.0 server does), then the client: TIME_WAIT.
fn close(w: &World, k: &CtKey, mport: u16) {
    let (src, sport) = (k.saddr[0].to_ne_bytes(), u16::from_be(k.sport));
    back(w, src, sport, mport, TCP_FIN | TCP_ACK);
    fwd(w, src, sport, TCP_FIN | TCP_ACK);
    let e = w.ct(k).expect("original entry");
    assert_eq!(e.tcp_state, CT_TCP_TIME_WAIT);
    assert_eq!(w.ct(&e.peer).unwrap().tcp_state, CT_TCP_TIME_WAIT);
}

/// A segment of the server's towards the masqueraded port; it must reach `src:sport`.
fn back(w: &World, src: [u8; 4], sport: u16, mport: u16, flags: u8) {
    let f = Frame::tcp(SERVER, UPLINK_IP, 80, mport)
        .flags(flags)
        .seq(70_000);
    let (v, out) = w.run(PROG_FROM_UPLINK, w.up, &f.bytes());
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(
        tuple(&out),
        (SERVER, src, 80, sport),
        "reply reaches {src:?}"
    );
}

/// A segment of the client's (in the window: sequence numbers near its SYN's).
fn fwd(w: &World, src: [u8; 4], sport: u16, flags: u8) {
    let f = Frame::tcp(src, SERVER, sport, 80).flags(flags).seq(1001);
    assert_eq!(w.run(PROG_TO_UPLINK, w.up, &f.bytes()).0, TC_ACT_OK);
}

/// A connection opened and finished: its key and masqueraded port.
fn finished(w: &World, src: [u8; 4], sport: u16) -> (CtKey, u16) {
    let (k, mport) = open(w, src, sport);
    close(w, &k, mport);
    (k, mport)
}

#[test]
fn a_syn_on_a_time_wait_tuple_opens_a_fresh_flow_and_the_old_pair_goes() {
    World::with(|w| {
        w.config(|c| c.flags |= CFG_F_SNAT_IN_RANGE);
        let (k, old_port) = finished(w, A_IP, 40000);
        assert!((50000..=50999).contains(&old_port), "{old_port}");
        let old = w.ct(&k).unwrap();
        let old_reply = old.peer;
        // Another range now (a daemon restarted with another --masq-ports): the fresh flow
        // gets a port of it, so the old reply tuple must go by itself.
        w.config(|c| {
            c.snat_port_min = 52000;
            c.snat_port_max = 52999;
        });
        let syn = Frame::tcp(A_IP, SERVER, 40000, 80)
            .flags(TCP_SYN)
            .seq(900_000);
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &syn.bytes());
        assert_eq!(v, TC_ACT_OK);
        let (s, d, port, dp) = tuple(&out);
        assert_eq!((s, d, dp), (UPLINK_IP, SERVER, 80));
        assert!(
            (52000..=52999).contains(&port),
            "a fresh translation, not the TIME_WAIT flow's port {old_port}: {port}"
        );
        let e = w.ct(&k).expect("the new original entry");
        assert_eq!(e.tcp_state, CT_TCP_SYN_SENT);
        assert_eq!(
            e.flags & (CT_F_SEEN_REPLY | CT_F_FIN),
            0,
            "nothing of the old flow"
        );
        assert!(e.created_ns > old.created_ns, "created afresh");
        assert_eq!(e.packets, 1);
        assert_ne!(e.peer, old_reply);
        let r = w.ct(&e.peer).expect("the new reply entry");
        assert_eq!(r.peer, k);
        assert_eq!(r.tcp_state, CT_TCP_SYN_SENT);
        assert_eq!(r.flags & CT_F_SEEN_REPLY, 0);
        assert!(
            w.ct(&old_reply).is_none(),
            "the old reply entry went with it"
        );
        // The old port no longer leads anywhere; the new one leads to A.
        let stray = Frame::tcp(SERVER, UPLINK_IP, 80, old_port).flags(TCP_ACK);
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &stray.bytes());
        assert_eq!(
            tuple(&out),
            (SERVER, UPLINK_IP, 80, old_port),
            "untranslated"
        );
        let synack = Frame::tcp(SERVER, UPLINK_IP, 80, port)
            .flags(TCP_SYN | TCP_ACK)
            .seq(5);
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &synack.bytes());
        assert_eq!(tuple(&out), (SERVER, A_IP, 80, 40000));
        assert_eq!(w.ct(&k).unwrap().tcp_state, CT_TCP_SYN_RECV);
        let ack = Frame::tcp(A_IP, SERVER, 40000, 80)
            .macs(A_MAC, BRIDGE_MAC)
            .flags(TCP_ACK)
            .ack(6);
        w.run(PROG_TO_UPLINK, w.up, &ack.bytes());
        assert_eq!(w.ct(&k).unwrap().tcp_state, CT_TCP_ESTABLISHED);

        // A SYN on a live (established) flow's tuple is no new connection: it keeps the flow.
        let again = Frame::tcp(A_IP, SERVER, 40000, 80)
            .flags(TCP_SYN)
            .seq(900_000);
        let (_, out) = w.run(PROG_TO_UPLINK, w.up, &again.bytes());
        assert_eq!(tuple(&out), (UPLINK_IP, SERVER, port, 80));
        assert_eq!(w.ct(&k).unwrap().created_ns, e.created_ns);
    });
}

#[test]
fn the_snat_search_reclaims_a_finished_connections_reply_tuple_for_a_syn_only() {
    World::with(|w| {
        // One masquerade port: every flow to SERVER:80 needs 50000.
        w.config(|c| {
            c.flags |= CFG_F_SNAT_IN_RANGE;
            c.snat_port_min = 50000;
            c.snat_port_max = 50000;
        });
        // B holds the port with a live connection: A gets none.
        let (kb, port) = open(w, B_IP, 41000);
        assert_eq!(port, 50000);
        let syn_a = Frame::tcp(A_IP, SERVER, 40000, 80).flags(TCP_SYN).seq(7);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &syn_a.bytes()).0, TC_ACT_SHOT);
        assert_eq!(
            w.drop_count(DROP_NO_SNAT_PORT),
            1,
            "a live flow's tuple is not taken"
        );
        // B's connection ends (FINs both ways): TIME_WAIT, 120 s to go.
        close(w, &kb, port);
        let b_reply = w.ct(&kb).unwrap().peer;
        // A segment that opens no connection (a stray ACK) does not take it either.
        let ack_a = Frame::tcp(A_IP, SERVER, 40000, 80).flags(TCP_ACK).seq(7);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &ack_a.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_NO_SNAT_PORT), 2);
        assert_eq!(w.ct(&b_reply).unwrap().peer, kb, "still B's");
        // A's SYN does: the port is A's now, and B's flow is gone both ways.
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &syn_a.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (UPLINK_IP, SERVER, 50000, 80));
        assert_eq!(w.drop_count(DROP_NO_SNAT_PORT), 2);
        let ka = ct_key(A_IP, SERVER, 40000, 80, IPPROTO_TCP);
        let r = w.ct(&b_reply).expect("the reply tuple, now A's");
        assert_eq!(r.peer, ka);
        assert_eq!(r.tcp_state, CT_TCP_SYN_SENT);
        assert_eq!(r.flags & CT_F_SEEN_REPLY, 0);
        assert!(
            w.ct(&kb).is_none(),
            "B's original entry went with its reply tuple"
        );
        assert_eq!(w.ct(&ka).unwrap().peer, b_reply);
        let synack = Frame::tcp(SERVER, UPLINK_IP, 80, 50000).flags(TCP_SYN | TCP_ACK);
        let (_, out) = w.run(PROG_FROM_UPLINK, w.up, &synack.bytes());
        assert_eq!(tuple(&out), (SERVER, A_IP, 80, 40000), "replies reach A");
        // B's late segment finds no flow of its own: a new one, which finds no port (A's
        // connection is live).
        let late_b = Frame::tcp(B_IP, SERVER, 41000, 80).flags(TCP_ACK).seq(1002);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &late_b.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.ct(&b_reply).unwrap().peer, ka, "A keeps the port");

        // After an RST (CLOSED) the same: a SYN takes the tuple over.
        let rst = Frame::tcp(A_IP, SERVER, 40000, 80).flags(TCP_RST).seq(8);
        w.run(PROG_TO_UPLINK, w.up, &rst.bytes());
        assert_eq!(w.ct(&ka).unwrap().tcp_state, CT_TCP_CLOSED);
        let syn_b2 = Frame::tcp(B_IP, SERVER, 41001, 80).flags(TCP_SYN);
        let (v, out) = w.run(PROG_TO_UPLINK, w.up, &syn_b2.bytes());
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(tuple(&out), (UPLINK_IP, SERVER, 50000, 80));
        assert!(w.ct(&ka).is_none(), "A's closed flow went both ways");
        assert_eq!(
            w.ct(&b_reply).unwrap().peer,
            ct_key(B_IP, SERVER, 41001, 80, IPPROTO_TCP)
        );
    });
}

const SECOND: u64 = 1_000_000_000;

/// Past the 30 s cap on a flow whose other side never answered (all the aged flows here are
/// a lone SYN). Timestamps count from boot: a larger age underflowed on a machine up for less
/// than it (CI's is fresh).
const UNREPLIED_STALE: u64 = 60;

/// Makes both entries of a flow look idle for `secs` seconds.
fn age(w: &World, k: &CtKey, secs: u64) {
    let mut e = w.ct(k).expect("original entry");
    let mut r = w.ct(&e.peer).expect("reply entry");
    e.last_seen_ns = e.last_seen_ns.saturating_sub(secs * SECOND);
    r.last_seen_ns = r.last_seen_ns.saturating_sub(secs * SECOND);
    w.set_ct(k, &e);
    w.set_ct(&e.peer, &r);
}

/// The masquerade port a SYN from `src:sport` to SERVER:80 gets (TC_ACT_OK expected).
fn syn_port(w: &World, src: [u8; 4], sport: u16) -> u16 {
    let syn = Frame::tcp(src, SERVER, sport, 80).flags(TCP_SYN).seq(1000);
    let (v, out) = w.run(PROG_TO_UPLINK, w.up, &syn.bytes());
    assert_eq!(v, TC_ACT_OK, "SYN from {src:?}:{sport}");
    let (s, d, mport, dp) = tuple(&out);
    assert_eq!((s, d, dp), (UPLINK_IP, SERVER, 80));
    mport
}

#[test]
fn a_reconnecting_tuple_gets_the_port_it_held_last() {
    World::with(|w| {
        // Two masquerade ports; the container's own port 40000 lies outside them.
        w.config(|c| {
            c.flags |= CFG_F_SNAT_IN_RANGE;
            c.snat_port_min = 50000;
            c.snat_port_max = 50001;
        });
        // Where A:40000's search starts: the port it gets from an empty table.
        let k = ct_key(A_IP, SERVER, 40000, 80, IPPROTO_TCP);
        let start = syn_port(w, A_IP, 40000);
        age(w, &k, UNREPLIED_STALE);
        // C holds that port with a live flow (its own in-range port is kept): A's connection
        // gets the other one, and finishes (the server closes first: its end is in TIME_WAIT).
        let c_ip = [172, 30, 0, 4];
        let kc = ct_key(c_ip, SERVER, start, 80, IPPROTO_TCP);
        assert_eq!(syn_port(w, c_ip, start), start);
        let (_, held) = finished(w, A_IP, 40000);
        assert_ne!(held, start);
        // C's flow is gone since: A's start is free again.
        age(w, &kc, UNREPLIED_STALE);
        // A reconnects from the same port: the remote must see the same tuple again (its
        // TIME_WAIT accepts the higher sequence number), not a fresh port.
        assert_eq!(
            syn_port(w, A_IP, 40000),
            held,
            "the port A:40000 held last, not its search start {start}"
        );
        let e = w.ct(&k).unwrap();
        assert_eq!(e.tcp_state, CT_TCP_SYN_SENT, "a fresh flow");
        assert_eq!(w.ct(&e.peer).unwrap().peer, k);
        back(w, A_IP, 40000, held, TCP_SYN | TCP_ACK);
    });
}

#[test]
fn one_containers_source_ports_map_one_to_one_onto_the_range() {
    World::with(|w| {
        // 512 ports, 512 connections from one container to one server: each gets a port on
        // its first probe (consecutive source ports, consecutive masquerade ports), none is
        // refused (with a search start hashed from the whole tuple, 16 probes per flow run
        // out of free ports well before the range is full).
        w.config(|c| {
            c.flags |= CFG_F_SNAT_IN_RANGE;
            c.snat_port_min = 50000;
            c.snat_port_max = 50511;
        });
        let first = syn_port(w, A_IP, 40000);
        let mut seen = std::collections::HashSet::from([first]);
        for i in 1..512u16 {
            let p = syn_port(w, A_IP, 40000 + i);
            let want = 50000 + (first - 50000 + i) % 512;
            assert_eq!(p, want, "A:{} masqueraded to {p}", 40000 + i);
            assert!(seen.insert(p));
        }
        assert_eq!(w.drop_count(DROP_NO_SNAT_PORT), 0);
        // The same tuple again (retransmitted SYN): the same flow and port.
        assert_eq!(syn_port(w, A_IP, 40007), 50000 + (first - 50000 + 7) % 512);
    });
}

/// The bench's P5 clients use source ports 15000-65000, across the masquerade range: a
/// container port inside the range was kept even when another of the container's tuples had
/// just finished on that port (hashed there from outside the range), so the remote, still in
/// TIME_WAIT for it, refused about half of those SYNs and the clients retried 10 ms later.
#[test]
fn a_container_port_in_the_range_is_not_kept_when_a_finished_connection_holds_it() {
    World::with(|w| {
        w.config(|c| {
            c.flags |= CFG_F_SNAT_IN_RANGE;
            c.snat_port_min = 50000;
            c.snat_port_max = 50511;
        });
        // A:40000 (outside the range) is hashed to some port P of the range and finishes
        // there (the server closes first: the remote holds P in TIME_WAIT).
        let (ka, p) = finished(w, A_IP, 40000);
        // A:P, the container's own port P: the tuple on the wire would be the one A:40000
        // just finished with, so it gets a free port instead.
        let kp = ct_key(A_IP, SERVER, p, 80, IPPROTO_TCP);
        let q = syn_port(w, A_IP, p);
        assert_ne!(
            q, p,
            "A:{p} kept its port over A:40000's finished connection"
        );
        assert!((50000..=50511).contains(&q), "{q}");
        assert_eq!(
            w.ct(&ka).unwrap().tcp_state,
            CT_TCP_TIME_WAIT,
            "A:40000's flow stays"
        );
        age(w, &kp, UNREPLIED_STALE);
        // A:40000 comes back to the port it held.
        assert_eq!(syn_port(w, A_IP, 40000), p);
        // A port in the range that nobody holds is kept, as before.
        let free = if p == 50511 { 50000 } else { p + 1 };
        if free != q {
            assert_eq!(syn_port(w, A_IP, free), free);
        }
    });
}

#[test]
fn the_snat_search_skips_published_host_ports() {
    World::with(|w| {
        // The range overlaps the published tcp *:8080 (datapath_util::bindings).
        w.config(|c| {
            c.flags |= CFG_F_SNAT_IN_RANGE;
            c.snat_port_min = 8080;
            c.snat_port_max = 8081;
        });
        // A's own port 8080 lies in the range but is published: not kept.
        assert_eq!(syn_port(w, A_IP, 8080), 8081);
        // The only port left is the published one: refused, not taken.
        let syn = Frame::tcp(A_IP, SERVER, 40000, 80).flags(TCP_SYN);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &syn.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_NO_SNAT_PORT), 1);
        // Publishing is per protocol: udp *:5353 is published, tcp 5353 is not.
        w.config(|c| {
            c.snat_port_min = 5353;
            c.snat_port_max = 5353;
        });
        assert_eq!(syn_port(w, B_IP, 41000), 5353);
        let dns = Frame::udp(B_IP, SERVER, 41000, 53);
        assert_eq!(w.run(PROG_TO_UPLINK, w.up, &dns.bytes()).0, TC_ACT_SHOT);
        assert_eq!(w.drop_count(DROP_NO_SNAT_PORT), 2);
    });
}
