//! The restart reconcile (issue 13) changes only what differs from the saved state: a veth
//! whose filters are in place and run the reused programs is left alone, one whose filter was
//! removed while the daemon was down gets it back; map entries deleted meanwhile are written
//! again, wrong ones corrected and foreign ones removed, and nothing else is rewritten; a
//! restart that changed nothing writes no state snapshot.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use netd_common::{MAP_ENDPOINTS, MAP_EP_BY_IP, MAP_PORTS};
use netd_tests::world::HOST_UPLINK_IP;
use netd_tests::{BIP, Daemon, Netns, World, bpf, tcp_request_until, tcp_server};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// A daemon that logs its phase timings (the maps line says how many ports it wrote).
fn timing_daemon(w: &World) -> Daemon {
    let mut d = Daemon::spawn_with_env(&w.host, &["--bip", BIP], &[("NETD_TRACE_TIMING", "1")]);
    d.wait_until_ready();
    d
}

/// The keys of one of the daemon's pinned maps.
fn map_keys(d: &Daemon, map: &str) -> BTreeSet<Vec<u8>> {
    bpf::map_keys(&d.map_pin(map)).into_iter().collect()
}

/// netd's filter on `ifname`'s `dir` hook: (program name, prog id), from `tc filter show`.
fn netd_filters(host: &Netns, ifname: &str, dir: &str) -> Vec<(String, String)> {
    bpf::tc_filters(host, ifname, dir)
        .into_iter()
        .filter(|f| f.handle == "0x4e44")
        .map(|f| (f.name, f.id))
        .collect()
}

/// The `maps timing` line of the daemon's `start`-th start.
fn maps_line(d: &Daemon, start: u32) -> String {
    d.log(start, "err")
        .lines()
        .find(|l| l.contains("maps timing"))
        .unwrap_or_else(|| panic!("no maps timing line in start {start}:\n{}", d.logs()))
        .to_string()
}

#[test]
fn a_restart_puts_back_what_went_missing_while_the_daemon_was_down() {
    let w = World::new();
    let mut d = timing_daemon(&w);
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    let v1 = s(&d.attach("c1", &c1, &["-p", "18080:8080"])["host_ifname"]).to_string();
    let c2_view = d.attach("c2", &c2, &[]);
    let v2 = s(&c2_view["host_ifname"]).to_string();
    let c2_ip: std::net::Ipv4Addr = s(&c2_view["ip"]).parse().expect("ip");
    let _srv = tcp_server(&c1, 8080);
    let url = format!("{HOST_UPLINK_IP}:18080");
    assert_eq!(tcp_request_until(&w.outside, &url, T).unwrap(), "ping");
    let endpoints = map_keys(&d, MAP_ENDPOINTS);
    let by_ip = map_keys(&d, MAP_EP_BY_IP);
    let ports = map_keys(&d, MAP_PORTS);
    assert_eq!(endpoints.len(), 2, "{endpoints:?}");
    let ingress = netd_filters(&w.host, &v2, "ingress");
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!(netd_filters(&w.host, &v1, "ingress"), ingress);

    d.stop();
    // While it is down: c1's veth loses its ingress filter, c2 its endpoint entries, the
    // published port its entries, and a foreign port entry appears (port 9/tcp).
    w.host.run_ok(&[
        "tc", "filter", "del", "dev", &v1, "ingress", "pref", "1", "handle", "0x4e44", "bpf",
    ]);
    assert!(netd_filters(&w.host, &v1, "ingress").is_empty());
    let c2_ifindex = w.host.link(&v2).expect("c2's veth")["ifindex"]
        .as_u64()
        .expect("ifindex") as u32;
    bpf::map_delete(&d.map_pin(MAP_ENDPOINTS), &c2_ifindex.to_le_bytes());
    bpf::map_delete(&d.map_pin(MAP_EP_BY_IP), &c2_ip.octets());
    for k in &ports {
        bpf::map_delete(&d.map_pin(MAP_PORTS), k);
    }
    let mut foreign = vec![0u8; 16];
    foreign.extend([9, 0, 6, 2]);
    bpf::map_update(&d.map_pin(MAP_PORTS), &foreign, &[0; 24]);
    assert_eq!(map_keys(&d, MAP_PORTS).len(), 1);

    d.restart();
    assert_eq!(d.status()["program_origin"], "reused");
    assert_eq!(
        netd_filters(&w.host, &v1, "ingress"),
        ingress,
        "c1's ingress filter was not put back with the reused program"
    );
    assert_eq!(map_keys(&d, MAP_ENDPOINTS), endpoints);
    assert_eq!(map_keys(&d, MAP_EP_BY_IP), by_ip);
    assert_eq!(
        map_keys(&d, MAP_PORTS),
        ports,
        "the foreign entry stayed or ours are missing"
    );
    let line = maps_line(&d, 2);
    assert!(
        line.contains(&format!("{} ports written, 1 deleted", ports.len())),
        "{line}"
    );
    assert!(
        d.log(2, "err").contains("attached again") && d.log(2, "err").contains("count=1"),
        "{}",
        d.logs()
    );
    assert_eq!(tcp_request_until(&w.outside, &url, T).unwrap(), "ping");
}

#[test]
fn a_restart_that_changes_nothing_rewrites_nothing() {
    let w = World::new();
    let mut d = timing_daemon(&w);
    let c = w.container("c");
    let veth = s(&d.attach(
        "c",
        &c,
        &["-p", "18080:8080", "-p", "19000-19999:9000-9999/udp"],
    )["host_ifname"])
    .to_string();
    let filters = (
        netd_filters(&w.host, &veth, "ingress"),
        netd_filters(&w.host, &veth, "egress"),
    );
    let snapshot = d.state_dir().join("state.json");
    let inode = std::fs::metadata(&snapshot).expect("state.json").ino();
    d.restart();
    assert_eq!(
        std::fs::metadata(&snapshot).expect("state.json").ino(),
        inode,
        "the restart wrote a new snapshot"
    );
    let line = maps_line(&d, 2);
    assert!(line.contains(" 0 ports written, 0 deleted"), "{line}");
    assert!(!d.log(2, "err").contains("attached again"), "{}", d.logs());
    assert_eq!(
        (
            netd_filters(&w.host, &veth, "ingress"),
            netd_filters(&w.host, &veth, "egress"),
        ),
        filters
    );
    // What the start recorded is still what the next one loads.
    d.restart();
    assert_eq!(d.inspect("c")["host_ifname"], veth.as_str());
    let _srv = tcp_server(&c, 8080);
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:18080"), T).unwrap(),
        "ping"
    );
}
