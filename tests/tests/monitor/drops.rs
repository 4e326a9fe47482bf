//! Drop events: reason, container, tuple, filters, pcap, bad filters.

use super::*;

#[test]
fn monitor_reports_drops_with_reason_container_and_tuple() {
    let st = setup(&["--icc", "false"]);
    let (d, c1, ip1, ip2) = (&st.d, &st.c1, &st.ip1, &st.ip2);
    let _srv = tcp_server(&st.c2, 80);
    let _usrv = udp_server(&st.c2, 5000);
    assert_eq!(switch(d), 0, "events on with nobody listening");
    // Two clients at once: one --json, one human.
    let mut json = Monitor::start(d, &["--json"]);
    let mut human = Monitor::start(d, &[]);
    assert_eq!(switch(d), 1, "events off while monitors listen");

    // --icc false: c1 -> c2:80 is refused.
    let veth = s(&d.inspect("c1")["host_ifname"]).to_string();
    assert!(
        tcp_blocked(c1, &format!("{ip2}:80")),
        "icc false let c1 reach c2"
    );
    // (The containers' own IPv6 chatter may be refused under icc too: the TCP one is ours.)
    let e = json.wait_drop("the icc drop", |v| {
        v["reason"] == "icc-denied" && v["proto"] == "tcp"
    });
    assert_eq!((s(&e["container"]), s(&e["peer"])), ("c1", "c2"), "{e}");
    assert_eq!(
        (s(&e["proto"]), s(&e["src"]), s(&e["dst"])),
        ("tcp", ip1.as_str(), ip2.as_str()),
        "{e}"
    );
    assert_eq!(e["dport"], 80, "{e}");
    assert!(e["sport"].as_u64().is_some_and(|p| p > 0), "{e}");
    // The whole SYN (Ethernet 14 + IP 20 + TCP >= 20) is in the head.
    assert!(e["head"].as_str().unwrap().len() >= 2 * 54, "{e}");

    // A spoofed source (after the icc probe, which resolved c2's MAC with c1's own address:
    // else the ARP request, from the spoofed source too, is what drops).
    udp_fire_from(c1, SPOOFED, &format!("{ip2}:5000"), "spoofed").unwrap();
    let e = json.wait_drop("the spoofed datagram", |v| {
        v["reason"] == "spoofed-source-ip" && v["proto"] == "udp"
    });
    assert_eq!(e["reason_code"], 2, "{e}");
    assert_eq!(e["program"], "from_container", "{e}");
    assert_eq!(e["container"], "c1", "{e}");
    assert_eq!(e["peer"], "c2", "{e}");
    assert_eq!(
        (s(&e["proto"]), s(&e["src"]), s(&e["dst"])),
        ("udp", SPOOFED, ip2.as_str()),
        "{e}"
    );
    assert_eq!(e["dport"], 5000, "{e}");
    assert_eq!(e["ifname"], veth.as_str(), "{e}");

    // A source deny list at XDP on the uplink, towards c2's published port.
    d.netd_ok(&["filter", "deny", &format!("{OUTSIDE_IP}/32")]);
    let denied0 = drops(d, "source-denied");
    assert!(tcp_blocked(
        &st.w.outside,
        &format!("{HOST_UPLINK_IP}:8080")
    ));
    let e = json.wait_drop("the denied source", |v| v["reason"] == "source-denied");
    assert_eq!(e["program"], "xdp_prefilter", "{e}");
    assert_eq!(e["ifname"], "up0", "{e}");
    assert_eq!(
        (s(&e["src"]), s(&e["dst"])),
        (OUTSIDE_IP, HOST_UPLINK_IP),
        "{e}"
    );
    assert_eq!(e["dport"], 8080, "{e}");
    assert_eq!(e["container"], "c2", "the publishing container: {e}");
    // Every counted drop of the reason was reported.
    let denied = drops(d, "source-denied") - denied0;
    let seen = json
        .drops()
        .iter()
        .filter(|v| v["reason"] == "source-denied")
        .count() as u64;
    assert_eq!(seen, denied, "events vs counter");

    // The human monitor saw the same, one line each.
    let want = format!("drop icc-denied from_container {veth} (c1 -> c2) tcp {ip1}:");
    poll_until("the human icc line", T, || {
        human
            .lines()
            .into_iter()
            .find(|l| l.contains(&want) && l.contains(&format!("-> {ip2}:80 len ")))
            .ok_or_else(|| format!("{:#?}", human.lines()))
    });
    assert!(
        human
            .lines()
            .iter()
            .any(|l| l.contains("drop spoofed-source-ip from_container")),
        "{:#?}",
        human.lines()
    );

    // One client leaves: events stay on for the other; the last one turns them off.
    human.kill();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(switch(d), 1, "events off with a client still listening");
    json.kill();
    wait_switch(d, 0);
    // Drops still count with nobody listening.
    let icc0 = drops(d, "icc-denied");
    assert!(tcp_blocked(c1, &format!("{ip2}:80")));
    assert!(drops(d, "icc-denied") > icc0);
}

#[test]
fn monitor_filters_and_writes_pcap() {
    let st = setup(&["--icc", "false"]);
    let (d, c1, ip2) = (&st.d, &st.c1, &st.ip2);
    let files = TempDir::new();
    let pcap = files.path().join("drops.pcap");
    let only80 = Monitor::start(
        d,
        &[
            "--json",
            "--reason",
            "icc-denied",
            "--container",
            "c1",
            "--port",
            "80",
        ],
    );
    let other = Monitor::start(d, &["--json", "--container", "c2-nope"]);
    let mut cap = Monitor::start(
        d,
        &[
            "--reason",
            "spoofed-source-ip",
            "--pcap",
            pcap.to_str().unwrap(),
            "--count",
            "1",
        ],
    );
    // Not matching the first filter: another port, another reason (c2's MAC is resolved by
    // then, so the spoofed datagram is what drops, not an ARP request).
    assert!(tcp_blocked(c1, &format!("{ip2}:81")));
    assert!(tcp_blocked(c1, &format!("{ip2}:80")));
    udp_fire_from(c1, SPOOFED, &format!("{ip2}:5000"), "pcap-payload-1234").unwrap();
    only80.wait_drop("the icc drop to port 80", |v| v["dport"] == 80);
    for e in only80.drops() {
        assert_eq!(
            (s(&e["reason"]), &e["dport"]),
            ("icc-denied", &Value::from(80)),
            "{e}"
        );
    }
    assert!(other.drops().is_empty(), "{:#?}", other.drops());

    // --count 1: the pcap monitor stops after the spoofed datagram.
    assert!(cap.wait_exit().success(), "{}", cap.err.lock().unwrap());
    let bytes = std::fs::read(&pcap).unwrap();
    assert!(bytes.len() > 24 + 16, "pcap too short: {}", bytes.len());
    assert_eq!(
        u32::from_ne_bytes(bytes[0..4].try_into().unwrap()),
        0xa1b2_c3d4
    );
    assert_eq!(
        u32::from_ne_bytes(bytes[20..24].try_into().unwrap()),
        1,
        "LINKTYPE_ETHERNET"
    );
    let rec = &bytes[24..];
    let incl = u32::from_ne_bytes(rec[8..12].try_into().unwrap()) as usize;
    let orig = u32::from_ne_bytes(rec[12..16].try_into().unwrap()) as usize;
    let pkt = &rec[16..16 + incl];
    assert_eq!(rec.len(), 16 + incl, "one record");
    // Ethernet + IPv4 (20) + UDP (8) + the 17-byte payload, all captured.
    assert_eq!((incl, orig), (14 + 20 + 8 + 17, 14 + 20 + 8 + 17));
    assert_eq!(&pkt[12..14], &[0x08, 0x00]);
    let sp: std::net::Ipv4Addr = SPOOFED.parse().unwrap();
    let dp: std::net::Ipv4Addr = ip2.parse().unwrap();
    assert_eq!(&pkt[26..30], &sp.octets());
    assert_eq!(&pkt[30..34], &dp.octets());
    assert_eq!(&pkt[36..38], &5000u16.to_be_bytes());
    assert_eq!(&pkt[42..], b"pcap-payload-1234");
    // tcpdump reads it.
    let o = cmd(&["tcpdump", "-n", "-r", pcap.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains(&format!("{SPOOFED}."))
            && text.contains(&format!("> {ip2}.5000: UDP, length 17")),
        "tcpdump: {text}"
    );
}

#[test]
fn monitor_is_quiet_without_drops_and_refuses_bad_filters() {
    let st = setup(&[]);
    let (d, c1, ip2) = (&st.d, &st.c1, &st.ip2);
    let _srv = tcp_server(&st.c2, 80);
    let m = Monitor::start(d, &["--json"]);
    // --icc true: traffic between the containers and from outside passes; nothing drops.
    let total = |d: &Daemon| -> u64 {
        let v = netd_tests::dataplane::stats(d);
        v["drops"]
            .as_array()
            .map_or(0, |a| a.iter().filter_map(|x| x["packets"].as_u64()).sum())
    };
    let before = total(d);
    netd_tests::tcp_request_until(c1, &format!("{ip2}:80"), T).unwrap();
    netd_tests::tcp_request_until(&st.w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let dropped = total(d) - before;
    assert_eq!(
        m.drops().len() as u64,
        dropped,
        "events {:#?} vs {dropped} counted drops",
        m.drops()
    );
    assert_eq!(dropped, 0, "something dropped: {:#?}", m.drops());

    // Bad filters are refused with the daemon's reason; nothing stays subscribed.
    let e = d.netd_err(&["monitor", "--reason", "no-such-reason"]);
    assert!(
        e.contains("unknown drop reason \"no-such-reason\"") && e.contains("icc-denied"),
        "{e}"
    );
    drop(m);
    wait_switch(d, 0);
}
