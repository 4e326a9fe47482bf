//! Attach and detach at speed (issue 13): an attach or detach changes only its own endpoint's
//! map entries, a detach frees the interface name and the address at once and leaves the
//! veth's deletion to the background, a failed attach leaves no map entry, container veths
//! get netlink clsact filters while the uplinks keep TCX, and a restart with many endpoints
//! interrupts no flow.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netd_tests::dataplane::tcp_blocked;
use netd_tests::traffic::enter_netns;
use netd_tests::world::HOST_UPLINK_IP;
use netd_tests::{BIP, Daemon, Netns, World, poll_until, tcp_request_until, tcp_server};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// The keys of a pinned map of the daemon's, as bytes (`bpftool -j map dump`).
fn map_keys(d: &Daemon, map: &str) -> Vec<Vec<u8>> {
    netd_tests::bpf::map_keys(&d.map_pin(map))
}

fn ip_bytes(ip: &str) -> Vec<u8> {
    ip.parse::<std::net::Ipv4Addr>()
        .expect("an IPv4 address")
        .octets()
        .to_vec()
}

/// A request on the daemon's API socket ([`Daemon::http`]: no CLI process in between, so a
/// detach and the attach after it are a millisecond apart, well inside the 20-70 ms the
/// veth's deletion takes), expecting a 2xx answer.
fn api_ok(d: &Daemon, method: &str, path: &str, body: Option<serde_json::Value>) -> String {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, b) = d.http(method, path, &[], &body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {b}"
    );
    b
}

/// `netd attach NAME --netns PATH extra...` and nothing after it (no inspect, as
/// [`Daemon::attach`] does), so that a detach can follow at once.
fn attach_now(d: &Daemon, name: &str, ns: &Netns, extra: &[&str]) {
    let mut args = vec!["attach", name, "--netns", ns.path_str()];
    args.extend_from_slice(extra);
    d.netd_ok(&args);
}

/// Detaches `name` and at once (through the API) attaches `name2` into `ns` with `extra`
/// fields: the attach comes long before the detached veth is deleted.
fn detach_then_attach(d: &Daemon, name: &str, name2: &str, ns: &Netns, extra: serde_json::Value) {
    api_ok(d, "DELETE", &format!("/v1/endpoints/{name}"), None);
    let mut body = serde_json::json!({"name": name2, "netns": ns.path_str(), "net": "bridge"});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    api_ok(d, "POST", "/v1/endpoints", Some(body));
}

/// A daemon whose background veth deletions each start 200 ms late (NETD_REAPER_DELAY_MS), as
/// slow as a loaded machine makes them: a test that passes with it waits for none.
fn slow_reaper_daemon(w: &World) -> Daemon {
    w.daemon_with_env(&["--bip", BIP], &[("NETD_REAPER_DELAY_MS", "200")])
}

/// Veths of the host namespace (container ends' host sides).
fn veths(w: &World) -> Vec<String> {
    w.host.links_with_prefix("veth")
}

#[test]
fn detach_then_reattach_at_once_works_and_leaves_no_veth_or_map_entry() {
    let w = World::new();
    let d = slow_reaper_daemon(&w);
    let other = w.container("other");
    let other_ip = s(&d.attach("other", &other, &[])["ip"]).to_string();
    let c = w.container("c");
    // Same name, namespace, address and port each time, with no pause: the detach has
    // renamed the container end and taken its address, so the attach finds eth0 free while
    // the old veth is still being deleted.
    for _ in 0..8 {
        attach_now(&d, "c", &c, &["--ip", "172.30.0.10", "-p", "18080:8080"]);
        d.netd_ok(&["detach", "c"]);
    }
    // And without --ip.
    for _ in 0..4 {
        attach_now(&d, "c", &c, &[]);
        d.netd_ok(&["detach", "c"]);
    }
    // Through the API, a millisecond apart: the attach finds the name and the address free
    // although the old veth cannot be deleted yet.
    attach_now(&d, "c", &c, &["--ip", "172.30.0.10"]);
    for _ in 0..8 {
        detach_then_attach(&d, "c", "c", &c, serde_json::json!({"ip": "172.30.0.10"}));
    }
    d.netd_ok(&["detach", "c"]);
    let info = d.attach("c", &c, &["--ip", "172.30.0.10", "-p", "18080:8080"]);
    assert_eq!(s(&info["ip"]), "172.30.0.10");
    let srv = tcp_server(&c, 8080);
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:18080"), T).unwrap(),
        "ping"
    );
    assert_eq!(srv.peer_ips().len(), 1);
    drop(srv);
    d.netd_ok(&["detach", "c"]);
    // The veths go in the background, all of them.
    poll_until("only other's veth left", T, || {
        let v = veths(&w);
        if v.len() == 1 { Ok(()) } else { Err(v) }
    });
    assert!(c.links().iter().all(|l| l == "lo"), "{:?}", c.links());
    // The maps hold other's entries only: the detaches removed theirs one by one.
    assert_eq!(map_keys(&d, "NETD_ENDPOINTS").len(), 1);
    assert_eq!(map_keys(&d, "NETD_EP_BY_IP"), vec![ip_bytes(&other_ip)]);
    assert!(
        map_keys(&d, "NETD_PORTS").is_empty(),
        "ports left: {:?}",
        map_keys(&d, "NETD_PORTS")
    );
    assert!(
        tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:18080")),
        "the detached port still answers"
    );
}

/// A full pool: the address a detach frees is handed out again at once, to another
/// namespace and back to the first, and carries real traffic.
#[test]
fn a_full_pool_hands_a_detached_address_out_again_at_once() {
    let w = World::new();
    let d = slow_reaper_daemon(&w);
    // .1 is the gateway: five addresses for containers.
    d.netd_ok(&["network", "create", "small", "--subnet", "10.96.0.0/29"]);
    let cs: Vec<_> = (0..5).map(|i| w.container(&format!("f{i}"))).collect();
    let ips: Vec<String> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| s(&d.attach(&format!("f{i}"), c, &["--network", "small"])["ip"]).to_string())
        .collect();
    let extra = w.container("extra");
    let err = d.netd_err(&[
        "attach",
        "extra",
        "--netns",
        extra.path_str(),
        "--network",
        "small",
    ]);
    assert!(err.contains("no free IP address"), "{err}");
    let small = serde_json::json!({"net": "small"});
    for _ in 0..3 {
        detach_then_attach(&d, "f2", "extra", &extra, small.clone());
        assert_eq!(
            s(&d.inspect("extra")["ip"]),
            ips[2],
            "extra got f2's address"
        );
        // Back into f2's own namespace, where its old veth is still being deleted.
        detach_then_attach(&d, "extra", "f2", &cs[2], small.clone());
        assert_eq!(s(&d.inspect("f2")["ip"]), ips[2]);
    }
    let srv = tcp_server(&cs[2], 9100);
    assert_eq!(
        tcp_request_until(&cs[0], &format!("{}:9100", ips[2]), T).unwrap(),
        "ping"
    );
    assert_eq!(srv.last_peer_ip(), ips[0]);
}

/// An attach that fails after its endpoint entries went into the maps (here: its /etc files
/// cannot be written, the last step) takes them out again: all or nothing.
#[test]
fn a_failed_attach_leaves_no_map_entry() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let other = w.container("other");
    let other_ip = s(&d.attach("other", &other, &[])["ip"]).to_string();
    let c = w.container("c");
    let files = netd_tests::TempDir::new();
    let not_a_dir = files.write("file", "");
    let etc = not_a_dir.join("etc");
    let err = d.netd_err(&[
        "attach",
        "c",
        "--netns",
        c.path_str(),
        "--ip",
        "172.30.0.10",
        "--etc-dir",
        etc.to_str().unwrap(),
    ]);
    assert!(err.contains("cannot write"), "{err}");
    assert!(!d.ls_has("c"), "{}", d.ls());
    assert_eq!(
        map_keys(&d, "NETD_EP_BY_IP"),
        vec![ip_bytes(&other_ip)],
        "the failed attach's address is left in NETD_EP_BY_IP"
    );
    assert_eq!(map_keys(&d, "NETD_ENDPOINTS").len(), 1, "NETD_ENDPOINTS");
    assert_eq!(veths(&w).len(), 1, "{:?}", veths(&w));
    assert!(c.links().iter().all(|l| l == "lo"), "{:?}", c.links());
    // The address and the namespace are free for the next attach.
    let info = d.attach("c", &c, &["--ip", "172.30.0.10"]);
    assert_eq!(s(&info["ip"]), "172.30.0.10");
    assert!(c.ping(netd_tests::BRIDGE_IP, T));
}

/// A container linking to another keeps reaching it after the target is detached and
/// attached again at another address: the target's attach writes the links that name it,
/// not only its own.
#[test]
fn a_link_follows_its_target_to_a_new_address() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--icc", "false"]);
    let web = w.container("web");
    let cli = w.container("cli");
    d.attach("web", &web, &["--ip", "172.30.0.10", "--expose", "80"]);
    d.attach("cli", &cli, &["--ip", "172.30.0.11", "--link", "web:db"]);
    let srv = tcp_server(&web, 80);
    assert_eq!(
        tcp_request_until(&cli, "172.30.0.10:80", T).unwrap(),
        "ping"
    );
    d.netd_ok(&["detach", "web"]);
    // Gone with web: no allowance to its old address is left.
    assert!(
        map_keys(&d, "NETD_LINKS").is_empty(),
        "{:?}",
        map_keys(&d, "NETD_LINKS")
    );
    drop(srv);
    d.attach("web", &web, &["--ip", "172.30.0.20", "--expose", "80"]);
    let srv = tcp_server(&web, 80);
    assert_eq!(
        tcp_request_until(&cli, "172.30.0.20:80", T).unwrap(),
        "ping"
    );
    assert_eq!(srv.last_peer_ip(), "172.30.0.11");
    // One allowance (cli -> web, TCP), to the new address; web:81 stays closed.
    let links = map_keys(&d, "NETD_LINKS");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(
        links[0][..8],
        [ip_bytes("172.30.0.11"), ip_bytes("172.30.0.20")].concat()
    );
    let _srv81 = tcp_server(&web, 81);
    assert!(tcp_blocked(&cli, "172.30.0.20:81"), "cli -> web:81");
}

/// Container veths: netlink clsact filters by default (a TCX attach waits for RCU grace
/// periods under RTNL), TCX with NETD_ENDPOINT_TC_ATTACH=tcx; the uplink keeps TCX.
#[test]
fn container_veths_get_netlink_filters_and_the_uplink_keeps_tcx() {
    let w = World::new();
    for (env, want) in [(None, "netlink"), (Some("tcx"), "tcx")] {
        let mut d = match env {
            None => w.daemon(&["--bip", BIP]),
            Some(v) => w.daemon_with_env(&["--bip", BIP], &[("NETD_ENDPOINT_TC_ATTACH", v)]),
        };
        let c = w.container("c");
        let veth = s(&d.attach("c", &c, &[])["host_ifname"]).to_string();
        let st = d.status();
        let progs = st["programs"].as_array().expect("programs");
        let on = |ifname: &str| -> Vec<String> {
            progs
                .iter()
                .filter(|p| p["ifname"] == ifname)
                .map(|p| s(&p["attach"]).to_string())
                .collect()
        };
        assert_eq!(on(&veth), vec![want, want], "{progs:#?}");
        assert_eq!(on("up0"), vec!["tcx", "tcx"], "{progs:#?}");
        let filters = w
            .host
            .run_ok(&["tc", "filter", "show", "dev", &veth, "ingress"]);
        assert_eq!(
            filters.contains("from_container"),
            want == "netlink",
            "{filters}"
        );
        // Policed either way: the container reaches the host's uplink address.
        let srv = tcp_server(&w.host, 9000);
        assert_eq!(
            tcp_request_until(&c, &format!("{HOST_UPLINK_IP}:9000"), T).unwrap(),
            "ping"
        );
        drop(srv);
        d.netd_ok(&["detach", "c"]);
        d.stop();
        assert!(
            veths(&w).is_empty(),
            "a veth outlived a stopped daemon: {:?}",
            veths(&w)
        );
    }
}

/// An echo server on `port` in `ns` that copies back everything it reads, until `stop`.
fn echo_server(ns: &Netns, port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let path = ns.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        enter_netns(&path).expect("enter netns");
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
        tx.send(()).expect("ready");
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_millis(200))).ok();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    });
    rx.recv_timeout(T).expect("echo server ready");
    h
}

/// A TCP stream through a published port (DNAT, conntrack) keeps flowing while the daemon,
/// holding 240 endpoints on five networks, is stopped and started again: every byte comes back,
/// in order, no segment is sent twice (nothing was dropped), and it flows on after the restart.
#[test]
fn a_tcp_stream_survives_a_restart_with_many_endpoints() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let mut keep = Vec::new();
    for n in 0..4 {
        d.netd_ok(&[
            "network",
            "create",
            &format!("n{n}"),
            "--subnet",
            &format!("10.{}.0.0/24", 90 + n),
        ]);
    }
    for i in 0..240 {
        let c = w.container(&format!("e{i}"));
        let mut args = vec![
            "attach".to_string(),
            format!("e{i}"),
            "--netns".into(),
            c.path_str().into(),
        ];
        if i % 5 != 0 {
            args.extend(["--network".into(), format!("n{}", i % 5 - 1)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        d.netd_ok(&args);
        keep.push(c);
    }
    let c = w.container("stream");
    d.attach("stream", &c, &["-p", "18081:8081"]);
    let stop = Arc::new(AtomicBool::new(false));
    let server = echo_server(&c, 8081, stop.clone());
    let outside = w.outside.path().to_path_buf();
    let client_stop = stop.clone();
    let progress = Arc::new(AtomicU64::new(0));
    let client_progress = progress.clone();
    let client = std::thread::spawn(move || -> Result<(u64, Duration, u32), String> {
        enter_netns(&outside).map_err(|e| e.to_string())?;
        let mut s = TcpStream::connect_timeout(
            &format!("{HOST_UPLINK_IP}:18081").parse().expect("addr"),
            T,
        )
        .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(T)).ok();
        let (mut n, mut worst) = (0u64, Duration::ZERO);
        while !client_stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            s.write_all(&n.to_be_bytes())
                .map_err(|e| format!("write {n}: {e}"))?;
            let mut b = [0u8; 8];
            s.read_exact(&mut b).map_err(|e| format!("read {n}: {e}"))?;
            if u64::from_be_bytes(b) != n {
                return Err(format!("sent {n}, got back {}", u64::from_be_bytes(b)));
            }
            worst = worst.max(t.elapsed());
            n += 1;
            client_progress.store(n, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok((n, worst, netd_tests::netstat::retransmits(&s)))
    });
    // Round trips counted by the client; waits until they pass `above`.
    let flowing = |above: u64, what: &str| {
        poll_until(what, T, || {
            let n = progress.load(Ordering::Relaxed);
            if n > above { Ok(n) } else { Err(n) }
        })
    };
    flowing(20, "the stream's first 20 round trips");
    let t = Instant::now();
    let at_stop = progress.load(Ordering::Relaxed);
    d.restart();
    let restart = t.elapsed();
    let at_start = progress.load(Ordering::Relaxed);
    // The restarted daemon serves the endpoints it adopted.
    assert_eq!(d.inspect("e7")["network"], "n1");
    flowing(at_start + 20, "20 round trips after the restart");
    stop.store(true, Ordering::Relaxed);
    let (echoed, worst, retransmits) = client.join().expect("client").expect("the stream broke");
    server.join().expect("server");
    eprintln!(
        "stream: {echoed} round trips ({} during the restart), slowest {worst:?}, \
         {retransmits} segments retransmitted; restart took {restart:?}",
        at_start - at_stop
    );
    // A lost segment is sent again; a stall of the loaded machine is not a loss. The read
    // timeout (T) bounds how long one round trip may take.
    assert_eq!(retransmits, 0, "the stream lost packets across the restart");
}

/// A container veth that no endpoint owns after a restart (its daemon died with the deletion
/// still queued; here: the state that knew it is gone) is deleted, not left on the bridge
/// with its filters removed.
#[test]
fn a_restart_deletes_container_veths_no_endpoint_owns() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let c = w.container("c");
    let veth = s(&d.attach("c", &c, &[])["host_ifname"]).to_string();
    d.kill9();
    // The state forgets c (as if its detach was journalled and its veth not yet deleted).
    let st = d.state_dir();
    std::fs::remove_dir_all(&st).expect("remove state dir");
    d.restart();
    poll_until("the orphaned veth deleted", T, || {
        let v = veths(&w);
        if v.contains(&veth) { Err(v) } else { Ok(()) }
    });
    assert!(c.links().iter().all(|l| l == "lo"), "{:?}", c.links());
    // The restarted daemon still attaches into that namespace.
    d.attach("c", &c, &[]);
}

/// Every program netd has attached, (where, program, prog id), sorted: the TC programs of
/// `netd status` and its XDP pre-filters.
fn attached_prog_ids(d: &Daemon) -> Vec<(String, String, u64)> {
    let st = d.status();
    let mut out: Vec<(String, String, u64)> = ["programs", "xdp"]
        .iter()
        .flat_map(|k| st[*k].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                format!("{} {}", s(&p["ifname"]), p["direction"]),
                s(&p["program"]).to_string(),
                p["prog_id"].as_u64().expect("prog_id"),
            )
        })
        .collect();
    out.sort();
    out
}

/// The daemon's open BTF objects (`anon_inode:btf` descriptors): a loaded eBPF object holds
/// its BTF; maps and programs opened from their pins hold none.
fn btf_fds(d: &Daemon) -> usize {
    let pid = d.pid().expect("the daemon runs");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy() == "anon_inode:btf")
        .count()
}

/// A restart of the same netd opens the programs it pinned instead of loading them again
/// (the verifier's seconds), and does not load the eBPF object either (its maps are opened
/// from their pins: no BTF held): `netd status` says `reused` and every hook still runs the
/// very same program (same prog ids, nothing re-attached). Pins of another object (here: the
/// same pins renamed to another digest, as a different netd leaves them) are not used: the
/// programs are loaded, swapped in on every hook, and the foreign pins removed. Traffic
/// through a published port and the XDP pre-filter works after each.
#[test]
fn a_restart_reuses_the_pinned_programs_of_the_same_object_only() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let c = w.container("c");
    d.attach("c", &c, &["-p", "18080:8080"]);
    // An XDP pre-filter on the uplink too.
    d.netd_ok(&["filter", "deny", "192.0.2.0/24"]);
    let _srv = tcp_server(&c, 8080);
    let reach = || {
        assert_eq!(
            tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:18080"), T).unwrap(),
            "ping"
        );
    };
    reach();
    let st = d.status();
    assert_eq!(st["program_origin"], "loaded", "a fresh pin dir: {st:#}");
    let object = s(&st["object"]).to_string();
    assert_eq!(object.len(), 16, "{object}");
    let pins = d.pins_in("progs");
    for p in [
        "from_uplink",
        "to_uplink",
        "from_container",
        "to_container",
        "to_uplink6",
        "xdp_prefilter",
    ] {
        assert!(
            pins.contains(&format!("{p}@{object}")),
            "{p}@{object} not in {pins:?}"
        );
    }
    let before = attached_prog_ids(&d);
    // uplink in/out, veth in/out, XDP.
    assert_eq!(before.len(), 5, "{before:#?}");

    d.restart();
    let st = d.status();
    assert_eq!(st["program_origin"], "reused", "{st:#}");
    assert_eq!(
        btf_fds(&d),
        0,
        "a start that reuses every program holds a loaded object"
    );
    assert_eq!(st["object"], object.as_str());
    assert_eq!(
        attached_prog_ids(&d),
        before,
        "a reused program was replaced"
    );
    assert_eq!(d.pins_in("progs"), pins);
    reach();

    // Another object's pins: what a different netd build leaves behind.
    d.stop();
    let dir = d.bpffs().join("progs");
    let other = "0123456789abcdef";
    for p in &pins {
        let (name, _) = p.split_once('@').expect("NAME@HASH");
        std::fs::rename(dir.join(p), dir.join(format!("{name}@{other}"))).expect("rename a pin");
    }
    d.restart();
    let st = d.status();
    assert_eq!(st["program_origin"], "loaded", "{st:#}");
    let after = attached_prog_ids(&d);
    assert_eq!(after.len(), before.len(), "{after:#?}");
    for (a, b) in after.iter().zip(&before) {
        assert_eq!((&a.0, &a.1), (&b.0, &b.1));
        assert_ne!(
            a.2, b.2,
            "{} on {} still runs the other object's program",
            a.1, a.0
        );
    }
    assert_eq!(
        d.pins_in("progs"),
        pins,
        "the other object's pins were not removed"
    );
    reach();
}
