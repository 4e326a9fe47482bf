//! `netd monitor`: drop events from the datapath's ring buffer, through the daemon's
//! `GET /v1/monitor` stream, caused by real traffic (spoofed sources, `--icc false`, a source
//! deny list), with their reason, container and 5-tuple; filters; `--pcap` read back byte by
//! byte and with tcpdump; the emission switch (NETD_MONITOR) on only while a client listens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netd_tests::bpf;
use netd_tests::daemon::netd_bin;
use netd_tests::dataplane::{drops, tcp_blocked, udp_fire_from};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, Daemon, TempDir, World, cmd, poll_until, tcp_server, udp_server};
use serde_json::Value;

const T: Duration = Duration::from_secs(10);
const SPOOFED: &str = "172.30.0.99";

/// A running `netd monitor`, killed (by its pid) on drop.
struct Monitor {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

impl Monitor {
    /// Starts `netd monitor ARGS` and waits until its subscription is live.
    fn start(d: &Daemon, args: &[&str]) -> Monitor {
        let mut child = Command::new(netd_bin())
            .arg("-H")
            .arg(d.host_arg())
            .arg("monitor")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netd monitor");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (o, e) = (out.clone(), err.clone());
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                o.lock().unwrap().push(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut e = e.lock().unwrap();
                e.push_str(&l);
                e.push('\n');
            }
        });
        let m = Monitor { child, out, err };
        let json = args.contains(&"--json");
        poll_until("the monitor to subscribe", T, || {
            let live = if json {
                m.lines()
                    .first()
                    .is_some_and(|l| l.contains(r#""kind":"start""#))
            } else {
                m.err
                    .lock()
                    .unwrap()
                    .contains("listening for datapath events")
            };
            if live {
                Ok(())
            } else {
                Err(format!(
                    "stdout {:?} stderr {:?}",
                    m.lines(),
                    m.err.lock().unwrap()
                ))
            }
        });
        m
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// The `--json` drop events so far.
    fn drops(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v| v["kind"] == "drop")
            .collect()
    }

    /// Waits for a `--json` drop event that `pred` accepts.
    fn wait_drop(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        poll_until(what, T, || {
            self.drops()
                .into_iter()
                .find(|v| pred(v))
                .ok_or_else(|| format!("events so far: {:#?}", self.drops()))
        })
    }

    /// Waits for the process to exit by itself (`--count`).
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        poll_until("the monitor to exit", T, || {
            self.child
                .try_wait()
                .unwrap()
                .ok_or("still running".to_string())
        })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.kill();
    }
}

/// NETD_MONITOR[0], read by bpftool from the daemon's pin.
fn switch(d: &Daemon) -> u64 {
    bpf::array_u64(&d.map_pin("NETD_MONITOR"), 0)
}

fn wait_switch(d: &Daemon, want: u64) {
    poll_until(&format!("NETD_MONITOR to be {want}"), T, || {
        let v = switch(d);
        if v == want {
            Ok(())
        } else {
            Err(format!("it is {v}"))
        }
    });
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// A world with `--icc false`: c1 and c2 on the bridge, c2 serving 80/tcp and 5000/udp.
struct Setup {
    w: World,
    d: Daemon,
    c1: netd_tests::Container,
    c2: netd_tests::Container,
    ip1: String,
    ip2: String,
}

fn setup(extra: &[&str]) -> Setup {
    let w = World::new();
    let mut args = vec!["--bip", BIP];
    args.extend_from_slice(extra);
    let d = w.daemon(&args);
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    let ip1 = s(&d.attach("c1", &c1, &[])["ip"]).to_string();
    let ip2 = s(&d.attach("c2", &c2, &["-p", "8080:80"])["ip"]).to_string();
    c1.ip(&["addr", "add", &format!("{SPOOFED}/24"), "dev", "eth0"]);
    Setup {
        w,
        d,
        c1,
        c2,
        ip1,
        ip2,
    }
}

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

/// The `--json` lines of one kind so far.
fn kind(m: &Monitor, k: &str) -> Vec<Value> {
    m.lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == k)
        .collect()
}

fn wait_kind(m: &Monitor, k: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    poll_until(what, T, || {
        kind(m, k)
            .into_iter()
            .find(|v| pred(v))
            .ok_or_else(|| format!("lines so far: {:#?}", m.lines()))
    })
}

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

/// Entry `index` of the per-CPU array `map`, summed over CPUs, read by bpftool from the
/// daemon's pin (the daemon may be stopped).
fn percpu(d: &Daemon, map: &str, index: usize) -> u64 {
    bpf::percpu_sum(&d.map_pin(map), index)
}

fn ring_lost(d: &Daemon) -> u64 {
    percpu(d, "NETD_MONITOR_LOST", 0)
}

#[test]
fn a_full_ring_is_reported_as_lost_events_and_forwarding_goes_on() {
    let st = setup(&[]);
    let (d, c1, ip2) = (&st.d, &st.c1, &st.ip2);
    let _srv = tcp_server(&st.c2, 80);
    netd_tests::tcp_request_until(c1, &format!("{ip2}:80"), T).unwrap();
    let m = Monitor::start(d, &["--json"]);
    let human = Monitor::start(d, &[]);
    assert_eq!(ring_lost(d), 0);
    // The daemon's reader stops reading: the daemon is stopped (SIGSTOP, by its pid).
    let pid = nix::unistd::Pid::from_raw(d.pid().expect("daemon pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    struct Cont(nix::unistd::Pid);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
        }
    }
    let cont = Cont(pid);
    // A flood of spoofed datagrams: 256 KiB of ring hold about 1500 drop events. (c1 knows
    // c2's MAC from the exchange above; bursts of 100 keep within the veth's backlog.)
    let n: u64 = 4000;
    let dst: std::net::SocketAddr = format!("{ip2}:5000").parse().unwrap();
    netd_tests::in_netns(c1, move || {
        let s = std::net::UdpSocket::bind((SPOOFED, 0))?;
        for i in 0..n {
            s.send_to(b"flood", dst)?;
            if i % 100 == 99 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    })
    .unwrap();
    let dropped = poll_until("the spoofed drops counted", T, || {
        let c = percpu(d, "NETD_DROPS", 2);
        if c >= n * 9 / 10 {
            Ok(c)
        } else {
            Err(format!("{c} of {n}"))
        }
    });
    let lost = ring_lost(d);
    assert!(lost > 0, "the full ring lost nothing");
    // The datapath forwards with the daemon stopped and the ring full.
    netd_tests::tcp_request_until(&st.w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap();
    drop(cont);
    // The reader catches up and says how many events the ring lost.
    let l = wait_kind(&m, "lost", "the lost line", |v| v["cause"] == "ring");
    let reported: u64 = kind(&m, "lost")
        .iter()
        .filter(|v| v["cause"] == "ring")
        .filter_map(|v| v["count"].as_u64())
        .sum();
    assert_eq!(reported, ring_lost(d), "{l:#}");
    assert!(reported >= lost);
    // Every drop reaches the client or is counted lost (the lost line comes first, the
    // ring's events after it).
    poll_until("the ring's events", T, || {
        let got = m.drops().len() as u64;
        if got > 1000 && got + reported >= dropped {
            Ok(())
        } else {
            Err(format!("{got} drops + {reported} lost of {dropped}"))
        }
    });
    poll_until("the human lost line", T, || {
        human
            .lines()
            .iter()
            .find(|l| l.starts_with("lost ") && l.ends_with(" events (ring)"))
            .cloned()
            .ok_or_else(|| format!("{:#?}", human.lines().last()))
    });
    let _ = c1;
}

/// Progress output is for terminals: a bulk publish with stderr redirected (as here) writes
/// only its result, and `--quiet` is accepted everywhere.
#[test]
fn bulk_publish_prints_no_progress_off_a_terminal() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c");
    d.attach("c", &c, &[]);
    let o = d.netd(&["publish", "c", "9000-9499:9000-9499"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "stderr: {:?}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 500, "{out}");
    assert!(!out.contains('\r'));
    let o = d.netd(&["--quiet", "publish", "c", "9500:9500"]);
    assert!(o.status.success() && o.stderr.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "9500/tcp -> 0.0.0.0:9500"
    );
}
