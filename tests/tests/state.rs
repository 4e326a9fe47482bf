//! Daemon state and the dataplane across restarts and crashes, and what `status` and bpftool
//! show about attached programs, maps and counters.

use std::collections::BTreeMap;
use std::time::Duration;

use netd_tests::bpf::tcx_programs;
use netd_tests::traffic::tcp_request_until;
use netd_tests::world::HOST_UPLINK_IP;
use netd_tests::{BIP, Daemon, World, cmd, poll_until, tcp_request, tcp_server};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// `bpftool -j net show` in the host namespace: (ifname, hook) -> count of tc (clsact) and
/// xdp attachments. bpftool 7.1 does not list TCX links, so this only catches leftovers of the
/// older hooks; [`tcx_programs`] is the check for TCX.
fn bpftool_net(w: &World) -> BTreeMap<(String, String), usize> {
    let out = w.host.run_ok(&["bpftool", "-j", "net", "show"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let mut m = BTreeMap::new();
    for section in v.as_array().into_iter().flatten() {
        for (kind, list) in section.as_object().into_iter().flatten() {
            for p in list.as_array().into_iter().flatten() {
                let dev = p["devname"].as_str().unwrap_or("?").to_string();
                let key = match p["kind"].as_str() {
                    Some(k) => format!("{kind}/{k}"),
                    None => kind.clone(),
                };
                *m.entry((dev, key)).or_insert(0) += 1;
            }
        }
    }
    m
}

/// Every TC program attached in the host namespace, by (ifname, direction): TCX links (the
/// uplinks') and clsact filters (container veths get netlink filters by default), as the
/// kernel lists them.
fn kernel_programs(w: &World) -> BTreeMap<(String, String), Vec<u32>> {
    let mut m = tcx_programs(&w.host);
    let out = w.host.run_ok(&["bpftool", "-j", "net", "show"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    for section in v.as_array().into_iter().flatten() {
        for p in section["tc"].as_array().into_iter().flatten() {
            let dir = s(&p["kind"]).rsplit('/').next().unwrap_or("?").to_string();
            let id = p["id"].as_u64().expect("tc filter id") as u32;
            m.entry((s(&p["devname"]).to_string(), dir))
                .or_default()
                .push(id);
        }
    }
    m
}

/// Asserts that `status.programs` and the kernel agree exactly: one program per hook that
/// status lists, with the same program id, and nothing else attached in the host namespace.
fn assert_status_matches_kernel(w: &World, d: &Daemon) {
    let kernel = kernel_programs(w);
    let st = d.status();
    let mut from_status: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for p in st["programs"]
        .as_array()
        .expect("status.programs is a list")
    {
        from_status
            .entry((s(&p["ifname"]).to_string(), s(&p["direction"]).to_string()))
            .or_default()
            .push(p["prog_id"].as_u64().expect("prog_id") as u32);
    }
    assert_eq!(
        from_status, kernel,
        "status.programs vs the kernel's TCX hooks and tc filters"
    );
    for (hook, ids) in &kernel {
        assert_eq!(ids.len(), 1, "{hook:?} has {} programs: {ids:?}", ids.len());
    }
    for (hook, n) in bpftool_net(w) {
        assert_eq!(n, 1, "bpftool net show: {hook:?} has {n} programs");
    }
}

fn attach_pair(
    w: &World,
    d: &Daemon,
) -> (netd_tests::Container, netd_tests::Container, String, String) {
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    let ip1 = s(&d.attach("c1", &c1, &[])["ip"]).to_string();
    // c2 also publishes its :8080 on the host's 18080.
    let ip2 = s(&d.attach("c2", &c2, &["-p", "18080:8080"])["ip"]).to_string();
    (c1, c2, ip1, ip2)
}

#[test]
fn restart_keeps_endpoints_and_traffic() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let (c1, c2, ip1, ip2) = attach_pair(&w, &d);
    let ls = d.ls();
    let i1 = d.inspect("c1");
    let i2 = d.inspect("c2");
    d.restart();
    assert_eq!(d.ls(), ls);
    assert_eq!(d.inspect("c1"), i1);
    assert_eq!(d.inspect("c2"), i2);
    let srv = tcp_server(&c2, 8080);
    netd_tests::tcp_arrives_from(&c1, &format!("{ip2}:8080"), &srv, &ip1);
    // New attachments after a restart do not collide with the restored leases.
    let c3 = w.container("c3");
    let ip3 = s(&d.attach("c3", &c3, &[])["ip"]).to_string();
    assert!(ip3 != ip1 && ip3 != ip2, "restored leases reused: {ip3}");
}

#[test]
fn kill9_keeps_traffic_and_restart_adopts_the_dataplane() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP, "--ip-masq", "false"]);
    let (c1, c2, ip1, ip2) = attach_pair(&w, &d);
    let before = kernel_programs(&w);
    let host_if1 = s(&d.inspect("c1")["host_ifname"]).to_string();
    for (ifname, dir) in [
        ("up0", "ingress"),
        ("up0", "egress"),
        (host_if1.as_str(), "ingress"),
        (host_if1.as_str(), "egress"),
    ] {
        assert!(
            before.contains_key(&(ifname.to_string(), dir.to_string())),
            "nothing attached at {ifname} {dir}: {before:?}"
        );
    }
    assert_status_matches_kernel(&w, &d);
    let srv = tcp_server(&c2, 8080);
    d.kill9();
    // The dataplane outlives the daemon: traffic still flows.
    assert_eq!(tcp_request(&c1, &format!("{ip2}:8080")).unwrap(), "ping");
    assert_eq!(srv.last_peer_ip(), ip1);
    // The outside reaches c2 through its published port: DNAT keeps working too.
    assert_eq!(
        tcp_request(&w.outside, &format!("{HOST_UPLINK_IP}:18080")).unwrap(),
        "ping"
    );
    d.restart();
    // Adopted, not attached a second time next to the old ones: exactly one program per
    // hook, on the same hooks as before.
    assert_status_matches_kernel(&w, &d);
    let after = kernel_programs(&w);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "hooks differ after restart"
    );
    assert_eq!(
        tcp_request_until(&c1, &format!("{ip2}:8080"), T).unwrap(),
        "ping"
    );
    assert_eq!(d.inspect("c1")["ip"], ip1.as_str());
}

/// Attaches `names` one after another from a background thread (errors ignored: the daemon
/// gets killed under it).
fn attach_burst(d: &Daemon, batch: &[netd_tests::Container]) -> std::thread::JoinHandle<()> {
    let jobs: Vec<(String, String)> = batch
        .iter()
        .map(|c| (c.name.clone(), c.path_str().to_string()))
        .collect();
    let host = d.host_arg();
    let bin = netd_tests::daemon::netd_bin();
    std::thread::spawn(move || {
        for (name, path) in jobs {
            let mut c = std::process::Command::new(&bin);
            c.args(["-H", &host, "attach", &name, "--netns", &path]);
            let _ = netd_tests::output_with_timeout(c, Duration::from_secs(30));
        }
    })
}

#[test]
fn kill9_during_attach_burst_leaves_loadable_state() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let mut all = vec![];
    // Kill at a different point of each burst.
    for (round, kill_after) in [(0, 1usize), (1, 3), (2, 5)] {
        let batch: Vec<_> = (0..8)
            .map(|i| w.container(&format!("r{round}b{i}")))
            .collect();
        let burst = attach_burst(&d, &batch);
        poll_until("some attaches to land", T, || {
            let ls = d.ls();
            let n = batch
                .iter()
                .filter(|c| {
                    ls.lines()
                        .any(|l| l.split_whitespace().next() == Some(&c.name))
                })
                .count();
            if n >= kill_after { Ok(()) } else { Err(ls) }
        });
        d.kill9();
        burst.join().unwrap();
        d.restart(); // panics, with the daemon's log, if the state does not load
        all.extend(batch);
        // Whatever the restarted daemon lists is really wired, with unique addresses.
        let mut ips = vec![];
        for c in all.iter().filter(|c| d.ls_has(&c.name)) {
            let ep = d.inspect(&c.name);
            assert_eq!(s(&ep["netns"]), c.path_str());
            let ip = s(&ep["ip"]).to_string();
            assert_eq!(
                c.addrs4("eth0"),
                vec![format!("{ip}/24")],
                "{} listed after restart but not wired with {ip}",
                c.name
            );
            let host_if = s(&ep["host_ifname"]).to_string();
            assert_eq!(
                w.host.master(&host_if).as_deref(),
                Some("netd0"),
                "{host_if}"
            );
            ips.push(ip);
        }
        assert!(
            ips.len() >= kill_after,
            "restart lost attachments made before the kill:\n{}",
            d.ls()
        );
        let n = ips.len();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), n, "duplicate addresses after restart: {ips:?}");
    }
    // Attaching continues to work after all that.
    let extra = w.container("after");
    let ep = d.attach("after", &extra, &[]);
    assert!(
        extra.ping(netd_tests::BRIDGE_IP, T),
        "new container after crashes: {ep}"
    );
    let orphans: Vec<String> = w
        .host
        .links_with_prefix("veth")
        .into_iter()
        .filter(|v| {
            !all.iter()
                .chain([&extra])
                .filter(|c| d.ls_has(&c.name))
                .any(|c| d.inspect(&c.name)["host_ifname"] == v.as_str())
        })
        .collect();
    if !orphans.is_empty() {
        // Not part of the contract; reported so leaks are visible.
        eprintln!("note: veths in the host ns that belong to no endpoint: {orphans:?}");
    }
}

#[test]
fn status_reports_programs_maps_and_growing_counters() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let (c1, c2, _ip1, ip2) = attach_pair(&w, &d);
    let st = d.status();
    let progs = st["programs"].as_array().unwrap();
    for p in progs {
        assert!(
            p["prog_id"].as_u64().unwrap_or(0) > 0,
            "program without id: {p}"
        );
        assert!(
            ["ingress", "egress"].contains(&s(&p["direction"])),
            "direction: {p}"
        );
    }
    let hooked: Vec<&str> = progs.iter().map(|p| s(&p["ifname"])).collect();
    assert!(hooked.contains(&"up0"), "uplink not hooked: {hooked:?}");
    let host_if2 = s(&d.inspect("c2")["host_ifname"]).to_string();
    assert!(
        hooked.contains(&host_if2.as_str()),
        "container veth not hooked: {hooked:?}"
    );
    assert_status_matches_kernel(&w, &d);
    let maps = st["maps"].as_array().unwrap();
    let stats = maps
        .iter()
        .find(|m| m["name"] == "NETD_IF_STATS")
        .unwrap_or_else(|| panic!("no NETD_IF_STATS in {maps:?}"));
    assert!(s(&stats["pin_path"]).starts_with(d.bpffs().to_str().unwrap()));

    let counters = |ifname: &str| -> (u64, u64) {
        let st = d.status();
        let i = st["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["ifname"] == ifname)
            .cloned()
            .unwrap_or_default();
        (
            i["rx_packets"].as_u64().unwrap_or(0),
            i["tx_packets"].as_u64().unwrap_or(0),
        )
    };
    let (rx0, tx0) = counters(&host_if2);
    let _srv = tcp_server(&c2, 8080);
    for _ in 0..5 {
        assert_eq!(tcp_request(&c1, &format!("{ip2}:8080")).unwrap(), "ping");
    }
    poll_until("counters of c2's veth to grow", T, || {
        let (rx, tx) = counters(&host_if2);
        if rx >= rx0 + 5 && tx >= tx0 + 5 {
            Ok(())
        } else {
            Err((rx0, tx0, rx, tx))
        }
    });
}

#[test]
fn bpftool_dumps_if_stats_with_named_fields() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let (c1, _c2, _ip1, ip2) = attach_pair(&w, &d);
    assert!(c1.ping(&ip2, T));
    let pin = d.bpffs().join("maps/NETD_IF_STATS");
    assert!(pin.exists(), "{} is not pinned", pin.display());
    let out = cmd(&[
        "bpftool",
        "-j",
        "map",
        "dump",
        "pinned",
        pin.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bpftool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for field in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] {
        assert!(
            text.contains(field),
            "bpftool dump lacks field {field}:\n{text}"
        );
    }
}

#[test]
fn dataplane_none_attaches_nothing_but_wires_containers() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--dataplane", "none"]);
    let st = d.status();
    assert_eq!(s(&st["dataplane"]), "none");
    assert!(
        st["programs"].as_array().is_none_or(|p| p.is_empty()),
        "programs with --dataplane none: {}",
        st["programs"]
    );
    let (c1, c2, ip1, ip2) = attach_pair(&w, &d);
    let kernel = kernel_programs(&w);
    assert!(
        kernel.is_empty(),
        "programs attached with --dataplane none: {kernel:?}"
    );
    assert!(
        !d.bpffs().join("maps/NETD_IF_STATS").exists(),
        "maps pinned with --dataplane none"
    );
    assert!(
        bpftool_net(&w).is_empty(),
        "bpftool shows programs: {:?}",
        bpftool_net(&w)
    );
    let srv = tcp_server(&c2, 8080);
    assert_eq!(tcp_request(&c1, &format!("{ip2}:8080")).unwrap(), "ping");
    assert_eq!(srv.last_peer_ip(), ip1);
}

/// The journal of `d` (`state.journal` in its state dir).
fn journal(d: &Daemon) -> std::path::PathBuf {
    d.state_dir().join("state.journal")
}

/// kill -9 in the middle of a journal append leaves a torn record after the acknowledged
/// ones: the restart drops it (and says so), keeps every acknowledged change, and the kept
/// endpoints still carry traffic.
#[test]
fn restart_after_a_torn_journal_append_keeps_every_acknowledged_change() {
    use std::io::Write as _;
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let (c1, c2, ip1, ip2) = attach_pair(&w, &d);
    // Changes of every kind in the journal: an attach and its detach, a publish.
    let c3 = w.container("c3");
    d.attach("c3", &c3, &[]);
    d.netd_ok(&["detach", "c3"]);
    d.netd_ok(&["publish", "c2", "18081:8081"]);
    let ls = d.ls();
    let i2 = d.inspect("c2");
    d.kill9();
    // What an append cut short leaves: a frame header promising 4000 bytes, 100 of them.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(journal(&d))
        .unwrap();
    f.write_all(&4000u32.to_le_bytes()).unwrap();
    f.write_all(&[0xab; 4]).unwrap();
    f.write_all(&[b'{'; 100]).unwrap();
    drop(f);
    d.restart();
    assert_eq!(d.ls(), ls);
    assert_eq!(d.inspect("c2"), i2);
    assert!(!d.ls_has("c3"), "{}", d.ls());
    assert!(d.logs().contains("torn record"), "{}", d.logs());
    let srv = tcp_server(&c2, 8080);
    netd_tests::tcp_arrives_from(&c1, &format!("{ip2}:8080"), &srv, &ip1);
    // And the journal goes on after the dropped tail.
    let c4 = w.container("c4");
    d.attach("c4", &c4, &[]);
    d.kill9();
    d.restart();
    assert!(d.ls_has("c4"), "{}", d.ls());
}

/// A damaged record with valid ones after it is not a torn tail: the daemon refuses to start
/// and names the journal and the record's offset.
#[test]
fn a_damaged_journal_record_stops_the_start_naming_file_and_offset() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    attach_pair(&w, &d);
    d.kill9();
    let path = journal(&d);
    let mut data = std::fs::read(&path).unwrap();
    // The header record first, then c1's: flip a byte of c1's payload.
    let header = 8 + u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
    assert!(
        data.len() > header + 20,
        "journal too short: {}",
        data.len()
    );
    data[header + 8 + 2] ^= 0x20;
    std::fs::write(&path, &data).unwrap();
    let exit = d.restart_to_exit();
    assert!(!exit.status.success(), "started on a damaged journal");
    let msg = format!("{}{}", exit.stderr, exit.stdout);
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("offset {header}")), "{msg}");
}
