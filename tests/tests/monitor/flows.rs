//! Flow events: verdicts that let flows in, and idle flows reported as expired.

use super::*;

#[test]
fn monitor_reports_flows_and_the_verdicts_that_let_them_in() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--icc", "false"]);
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    let ip2 = s(&d.attach("c2", &c2, &["-p", "8080:80"])["ip"]).to_string();
    let ip1 = s(&d.attach("c1", &c1, &["--link", "c2:db"])["ip"]).to_string();
    let _srv = tcp_server(&c2, 80);
    let m = Monitor::start(&d, &["--type", "flow", "--type", "verdict", "--json"]);
    let drops_only = Monitor::start(&d, &["--json"]);

    // c1 -> c2:80, allowed by the link: a verdict naming the link, a new flow, and its close
    // (the exchange ends with FINs both ways).
    netd_tests::tcp_request_until(&c1, &format!("{ip2}:80"), T).unwrap();
    let v = wait_kind(&m, "verdict", "the link verdict", |v| v["rule"] == "link");
    assert_eq!(
        (
            s(&v["verdict"]),
            s(&v["detail"]),
            s(&v["src"]),
            s(&v["dst"])
        ),
        ("allow", "c1 -> c2 80/tcp", ip1.as_str(), ip2.as_str()),
        "{v:#}"
    );
    assert_eq!((s(&v["container"]), s(&v["peer"])), ("c1", "c2"));
    let f = wait_kind(&m, "flow", "the link flow", |v| {
        v["event"] == "new" && v["flow"] == "link"
    });
    assert_eq!(
        (s(&f["src"]), s(&f["dst"]), &f["dport"]),
        (ip1.as_str(), ip2.as_str(), &Value::from(80))
    );
    let sport = f["sport"].clone();
    let closed = wait_kind(&m, "flow", "the link flow's close", |v| {
        v["event"] == "closed" && v["sport"] == sport && v["dport"] == 80
    });
    assert_eq!(s(&closed["cause"]), "fin", "{closed:#}");

    // From outside to the published port: a `published` verdict and a new flow with its
    // translation to c2:80.
    netd_tests::tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap();
    let v = wait_kind(&m, "verdict", "the published-port verdict", |v| {
        v["rule"] == "published"
    });
    assert!(s(&v["detail"]).ends_with(":8080/tcp -> c2:80"), "{v:#}");
    assert_eq!(s(&v["src"]), OUTSIDE_IP);
    let f = wait_kind(&m, "flow", "the published flow", |v| {
        v["event"] == "new" && v["flow"] == "published"
    });
    assert_eq!(
        (
            s(&f["dst"]),
            &f["dport"],
            s(&f["nat"]["dst"]),
            &f["nat"]["dport"]
        ),
        (
            HOST_UPLINK_IP,
            &Value::from(8080),
            ip2.as_str(),
            &Value::from(80)
        ),
        "{f:#}"
    );
    assert_eq!(s(&f["container"]), "c2", "{f:#}");
    // Each close is reported once (the datapath sees a retransmitted FIN again).
    std::thread::sleep(Duration::from_millis(500));
    let closes = kind(&m, "flow")
        .into_iter()
        .filter(|v| v["event"] == "closed" && v["sport"] == sport && v["dport"] == 80)
        .count();
    assert_eq!(closes, 1);
    // A client that asked for drops only got none of this.
    assert!(kind(&drops_only, "flow").is_empty() && kind(&drops_only, "verdict").is_empty());

    // The human lines.
    let human = Monitor::start(&d, &["--type", "all"]);
    netd_tests::tcp_request_until(&c1, &format!("{ip2}:80"), T).unwrap();
    poll_until("the human flow and verdict lines", T, || {
        let l = human.lines();
        let flow = l.iter().any(|l| {
            l.contains(" flow new link (c1 -> c2) tcp ") && l.contains(&format!(" -> {ip2}:80"))
        });
        let verdict = l
            .iter()
            .any(|l| l.contains(" verdict allow link [c1 -> c2 80/tcp] (c1 -> c2) tcp "));
        if flow && verdict {
            Ok(())
        } else {
            Err(format!("{l:#?}"))
        }
    });
    let e = d.netd_err(&["monitor", "--type", "bogus"]);
    assert!(
        e.contains("unknown event type \"bogus\"") && e.contains("verdict"),
        "{e}"
    );
}

/// Sets the conntrack collector's UDP and unreplied timeouts (seconds) in the daemon's pinned
/// NETD_CONFIG (the daemon has no flag for them; it writes the map again only when its
/// configuration changes).
fn set_udp_timeouts(d: &Daemon, secs: u32) {
    use std::mem::offset_of;

    use netd_common::DpConfig;
    let pin = d.map_pin(netd_common::MAP_CONFIG);
    let mut cfg = bpf::array_value(&pin, 0);
    assert_eq!(cfg.len(), size_of::<DpConfig>(), "NETD_CONFIG's value size");
    for off in [
        offset_of!(DpConfig, ct_udp_s),
        offset_of!(DpConfig, ct_unreplied_s),
    ] {
        cfg[off..off + 4].copy_from_slice(&secs.to_ne_bytes());
    }
    bpf::array_update(&pin, 0, &cfg);
    let back = bpf::array_value(&pin, 0);
    let off = offset_of!(DpConfig, ct_udp_s);
    assert_eq!(
        &back[off..off + 4],
        &secs.to_ne_bytes()[..],
        "ct_udp_s written"
    );
}

/// A UDP flow the conntrack collector removes as idle: a `flow expired` event with the flow's
/// original tuple and its masquerade translation, after the `new` one, on a client filtering
/// `--type flow --port`, and a human line; the flow is gone from `netd ct` by then.
#[test]
fn an_idle_udp_flow_is_reported_as_expired() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c1 = w.container("c1");
    let ip1 = s(&d.attach("c1", &c1, &[])["ip"]).to_string();
    let srv = udp_server(&w.outside, 9053);
    let m = Monitor::start(&d, &["--type", "flow", "--port", "9053", "--json"]);
    let human = Monitor::start(&d, &["--type", "flow"]);
    set_udp_timeouts(&d, 1);

    // c1 -> outside:9053, answered (one exchange, then nothing: idle).
    let got = poll_until("UDP c1 -> outside", T, || {
        netd_tests::udp_send(&c1, &format!("{OUTSIDE_IP}:9053"), "once")
    });
    assert_eq!(got, "once");
    assert_eq!(srv.last_peer_ip(), HOST_UPLINK_IP, "masqueraded");
    let new = wait_kind(&m, "flow", "the new UDP flow", |v| {
        v["event"] == "new" && v["proto"] == "udp"
    });
    assert_eq!(
        (
            s(&new["flow"]),
            s(&new["src"]),
            s(&new["dst"]),
            &new["dport"]
        ),
        ("masquerade", ip1.as_str(), OUTSIDE_IP, &Value::from(9053)),
        "{new:#}"
    );
    let sport = new["sport"].clone();
    assert!(sport.as_u64().is_some_and(|p| p > 0), "{new:#}");

    // The collector runs every 10 s; the flow is idle after 1 s.
    let exp = poll_until("the expired event", Duration::from_secs(30), || {
        kind(&m, "flow")
            .into_iter()
            .find(|v| v["event"] == "expired" && v["sport"] == sport)
            .ok_or_else(|| format!("lines so far: {:#?}", m.lines()))
    });
    assert_eq!(
        (
            s(&exp["flow"]),
            s(&exp["proto"]),
            s(&exp["src"]),
            &exp["sport"],
            s(&exp["dst"]),
            &exp["dport"]
        ),
        (
            "masquerade",
            "udp",
            ip1.as_str(),
            &sport,
            OUTSIDE_IP,
            &Value::from(9053)
        ),
        "the original tuple: {exp:#}"
    );
    assert_eq!(s(&exp["container"]), "c1", "{exp:#}");
    assert_eq!(
        (s(&exp["nat"]["src"]), s(&exp["nat"]["dst"])),
        (HOST_UPLINK_IP, OUTSIDE_IP),
        "the translation: {exp:#}"
    );
    assert!(exp.get("cause").is_none(), "{exp:#}");
    // One event for the flow (its reply direction is not reported on its own).
    std::thread::sleep(Duration::from_millis(300));
    let expired: Vec<Value> = kind(&m, "flow")
        .into_iter()
        .filter(|v| v["event"] == "expired" && v["sport"] == sport)
        .collect();
    assert_eq!(expired.len(), 1, "{expired:#?}");
    let ct = netd_tests::dataplane::ct(&d, &[]);
    assert!(
        !ct.iter().any(|e| e.to_string().contains("9053")),
        "the expired flow is still in netd ct: {ct:#?}"
    );
    let want = format!(" flow expired masquerade (c1) udp {ip1}:{sport} -> {OUTSIDE_IP}:9053 as ");
    poll_until("the human expired line", T, || {
        human
            .lines()
            .into_iter()
            .find(|l| l.contains(&want))
            .ok_or_else(|| format!("{want:?} not in {:#?}", human.lines()))
    });
}

/// An IPv6 flow the collector removes as idle (a UDP exchange from the outside through a
/// published port, DNAT6 to the container's IPv6 address): one `flow expired` event with the
/// IPv6 tuple, the container and the translation, and the flow gone from `netd ct`.
#[test]
fn an_idle_ipv6_flow_is_reported_as_expired() {
    use netd_tests::ipv6::{HOST6, OUTSIDE6, v6_uplink};
    let w = World::new();
    v6_uplink(&w);
    let d = w.daemon(&["--bip", BIP, "--ipv6", "--fixed-cidr-v6", "2001:db8:1::/64"]);
    let web = w.container("web");
    let ip6 = s(&d.attach("web", &web, &["-p", "5353:53/udp"])["global_ipv6"]).to_string();
    let _srv = netd_tests::udp6_server(&web, 53);
    let m = Monitor::start(&d, &["--type", "flow", "--port", "5353", "--json"]);
    set_udp_timeouts(&d, 1);
    let got = poll_until("UDP outside -> [HOST6]:5353", T, || {
        netd_tests::udp_send(&w.outside, &format!("[{HOST6}]:5353"), "q6")
    });
    assert_eq!(got, "q6");
    // The collector runs every 10 s; the flow is idle after 1 s.
    let exp = poll_until("the IPv6 expired event", Duration::from_secs(30), || {
        kind(&m, "flow")
            .into_iter()
            .find(|v| v["event"] == "expired" && v["src"] == OUTSIDE6)
            .ok_or_else(|| format!("lines so far: {:#?}", m.lines()))
    });
    assert_eq!(
        (
            s(&exp["flow"]),
            s(&exp["proto"]),
            s(&exp["dst"]),
            &exp["dport"],
            s(&exp["container"]),
        ),
        ("published", "udp", HOST6, &Value::from(5353), "web"),
        "the original tuple: {exp:#}"
    );
    assert!(exp["sport"].as_u64().is_some_and(|p| p > 0), "{exp:#}");
    assert_eq!(
        (
            s(&exp["nat"]["src"]),
            s(&exp["nat"]["dst"]),
            &exp["nat"]["dport"]
        ),
        (OUTSIDE6, ip6.as_str(), &Value::from(53)),
        "the translation: {exp:#}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let expired = kind(&m, "flow")
        .into_iter()
        .filter(|v| v["event"] == "expired")
        .count();
    assert_eq!(expired, 1, "{:#?}", m.lines());
    let ct = netd_tests::dataplane::ct(&d, &[]);
    assert!(
        !ct.iter().any(|e| e.to_string().contains("5353")),
        "the expired flow is still in netd ct: {ct:#?}"
    );
}
