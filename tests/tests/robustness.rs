//! Failure paths and races: attaches that fail half-way roll back, concurrent attaches get
//! distinct addresses, p2p links go away with their endpoints, and the resolv.conf watcher
//! keeps its memory across a daemon restart.

use std::time::Duration;

use netd_tests::files::resolv_nameservers;
use netd_tests::{BIP, Daemon, TempDir, World, poll_until, tcp_request_until, tcp_server};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Expects `attach` to fail and leave no trace: same ls, same host interfaces, and the
/// requested address still free afterwards.
fn attach_fails_cleanly(w: &World, d: &Daemon, args: &[&str], want: &str) {
    let ls = d.ls();
    let mut links = w.host.links();
    links.sort();
    let err = d.netd_err(args);
    assert!(err.starts_with("netd: "), "{args:?}: {err}");
    assert!(
        err.contains(want),
        "{args:?}: error does not mention {want:?}: {err}"
    );
    assert_eq!(d.ls(), ls, "{args:?} changed ls");
    let mut after = w.host.links();
    after.sort();
    assert_eq!(
        after, links,
        "{args:?} left interfaces in the host namespace"
    );
}

#[test]
fn failed_attaches_roll_back() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    // The kernel refuses a multicast MAC, after the veth exists.
    let c1 = w.container("c1");
    attach_fails_cleanly(
        &w,
        &d,
        &[
            "attach",
            "c1",
            "--netns",
            c1.path_str(),
            "--ip",
            "172.30.0.5",
            "--mac-address",
            "01:00:5e:00:00:01",
        ],
        "01:00:5e:00:00:01",
    );
    assert_eq!(c1.links(), vec!["lo".to_string()], "half-wired container");
    // A path that exists but is not a network namespace.
    let files = TempDir::new();
    let not_ns = files.write("not-a-netns", "");
    attach_fails_cleanly(
        &w,
        &d,
        &["attach", "c2", "--netns", not_ns.to_str().unwrap()],
        not_ns.to_str().unwrap(),
    );
    // A namespace that already has an eth0.
    let busy = w.container("busy");
    busy.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    attach_fails_cleanly(
        &w,
        &d,
        &["attach", "busy", "--netns", busy.path_str()],
        "eth0",
    );
    // None of the failures kept a lease: the address is still free.
    let ep = d.attach("c1", &c1, &["--ip", "172.30.0.5"]);
    assert_eq!(s(&ep["ip"]), "172.30.0.5");
    assert!(c1.ping(netd_tests::BRIDGE_IP, T));
}

#[test]
fn concurrent_attaches_get_distinct_addresses() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let containers: Vec<_> = (0..8).map(|i| w.container(&format!("p{i}"))).collect();
    std::thread::scope(|scope| {
        for c in &containers {
            let d = &d;
            scope.spawn(move || {
                d.netd_ok(&["attach", &c.name, "--netns", c.path_str()]);
            });
        }
    });
    let mut ips: Vec<String> = containers
        .iter()
        .map(|c| s(&d.inspect(&c.name)["ip"]).to_string())
        .collect();
    for (c, ip) in containers.iter().zip(&ips) {
        assert_eq!(
            c.addrs4("eth0"),
            vec![format!("{ip}/24")],
            "{} is wired with another IP",
            c.name
        );
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), containers.len(), "duplicate leases: {ips:?}");
    let host_veths = w.host.links_with_prefix("veth");
    assert_eq!(
        host_veths.len(),
        containers.len(),
        "host veths: {host_veths:?}"
    );
}

#[test]
fn p2p_link_goes_away_with_an_endpoint_and_is_not_doubled() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let ((_c1, _), (c2, _)) = w.two_attached(&d);
    d.netd_ok(&["p2p", "c1", "c2"]);
    let err = d.netd_err(&["p2p", "c2", "c1"]);
    assert!(
        err.contains("already"),
        "second p2p of the same pair: {err}"
    );
    let err = d.netd_err(&["p2p", "c1", "c1"]);
    assert!(
        err.contains("c1") || err.contains("different"),
        "p2p with itself: {err}"
    );
    assert_eq!(c2.links().len(), 3, "c2 links: {:?}", c2.links());
    d.netd_ok(&["detach", "c1"]);
    let mut links = c2.links();
    links.sort();
    assert_eq!(
        links,
        vec!["eth0".to_string(), "lo".to_string()],
        "p2p link left in c2"
    );
    assert_eq!(d.inspect("c2")["p2p"], serde_json::json!([]));
    assert!(
        !c2.routes4().iter().any(|r| r.starts_with("172.30.0.2 ")),
        "stale /32 route in c2: {:?}",
        c2.routes4()
    );
}

#[test]
fn p2p_survives_a_restart() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let ((c1, ip1), (c2, ip2)) = w.two_attached(&d);
    d.netd_ok(&["p2p", "c1", "c2"]);
    let before = (d.inspect("c1"), d.inspect("c2"), c1.links(), c2.links());
    d.restart();
    let after = (d.inspect("c1"), d.inspect("c2"), c1.links(), c2.links());
    assert_eq!(after, before, "restart changed p2p state");
    c1.ip(&["link", "set", "eth0", "down"]);
    c2.ip(&["link", "set", "eth0", "down"]);
    let srv = tcp_server(&c2, 9100);
    netd_tests::tcp_arrives_from(&c1, &format!("{ip2}:9100"), &srv, &ip1);
}

#[test]
fn resolv_watch_remembers_edits_across_restart() {
    let w = World::new();
    let files = TempDir::new();
    let resolv = files.write("resolv.conf", "nameserver 192.0.2.53\n");
    let mut d = w.daemon(&["--bip", BIP, "--resolv-conf", resolv.to_str().unwrap()]);
    let plain = w.container("plain");
    let edited = w.container("edited");
    d.attach("plain", &plain, &[]);
    d.attach("edited", &edited, &[]);
    let edited_path = d.etc_dir("edited").join("resolv.conf");
    std::fs::write(&edited_path, "nameserver 192.0.2.99\n").unwrap();
    d.restart();
    std::fs::write(&resolv, "nameserver 203.0.113.53\n").unwrap();
    poll_until("plain to follow the host after a restart", T, || {
        let r = d.etc_file("plain", "resolv.conf");
        if resolv_nameservers(&r) == vec!["203.0.113.53"] {
            Ok(())
        } else {
            Err(r)
        }
    });
    assert_eq!(
        std::fs::read_to_string(&edited_path).unwrap(),
        "nameserver 192.0.2.99\n",
        "an edited copy was overwritten after a restart"
    );
}

#[test]
fn ip_forward_false_leaves_forwarding_alone() {
    let w = World::new();
    // A fresh namespace starts with forwarding off; --ip-forward false must not turn it on.
    assert_eq!(w.host.read("/proc/sys/net/ipv4/ip_forward").trim(), "0");
    let _d = w.daemon(&["--bip", BIP, "--ip-forward", "false"]);
    assert_eq!(w.host.read("/proc/sys/net/ipv4/ip_forward").trim(), "0");
}

/// The same for IPv6 (issue 12): `--ipv6 --fixed-cidr-v6` turns IPv6 forwarding on in the
/// daemon's namespace unless `--ip-forward false`; the subnet's route is there either way.
#[test]
fn ip_forward_false_leaves_ipv6_forwarding_alone() {
    for (forward, want) in [("false", "0"), ("true", "1")] {
        let w = World::new();
        let fwd = "/proc/sys/net/ipv6/conf/all/forwarding";
        assert_eq!(w.host.read(fwd).trim(), "0");
        let _d = w.daemon(&[
            "--bip",
            BIP,
            "--ipv6",
            "--fixed-cidr-v6",
            "2001:db8:1::/64",
            "--ip-forward",
            forward,
        ]);
        assert_eq!(w.host.read(fwd).trim(), want, "--ip-forward {forward}");
        let routes = w.host.ip(&["-6", "route", "show", "2001:db8:1::/64"]);
        assert!(routes.contains("2001:db8:1::/64"), "{routes}");
    }
}

#[test]
fn http_api_delete_detaches() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c1");
    let ep = d.attach("c1", &c, &[]);
    let host_if = s(&ep["host_ifname"]).to_string();
    let (code, _) = d.http("DELETE", "/v1/endpoints/c1", &[], "");
    assert!((200..300).contains(&code), "DELETE answered {code}");
    assert!(!d.ls_has("c1"));
    assert!(w.host.link(&host_if).is_none());
    // POST creates one, with the same validation as the CLI.
    let body = format!(
        r#"{{"name":"c2","netns":"{}","ip":"172.30.0.77"}}"#,
        c.path_str()
    );
    let (code, answer) = d.http("POST", "/v1/endpoints", &[], &body);
    assert!((200..300).contains(&code), "POST answered {code}: {answer}");
    assert_eq!(d.inspect("c2")["ip"], "172.30.0.77");
    assert_eq!(c.addrs4("eth0"), vec!["172.30.0.77/24".to_string()]);
}

/// p2p interface names are reused only when free: after A-B and A-C, detaching B frees A's
/// `p2p0`, and A-D must not collide with the `p2p1` still held by A-C.
#[test]
fn p2p_names_are_not_reused_while_in_use() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let cs: Vec<_> = ["a", "b", "c", "dd"]
        .iter()
        .map(|n| w.container(n))
        .collect();
    for (n, c) in ["a", "b", "c", "dd"].iter().zip(&cs) {
        d.attach(n, c, &[]);
    }
    d.netd_ok(&["p2p", "a", "b"]);
    d.netd_ok(&["p2p", "a", "c"]);
    d.netd_ok(&["detach", "b"]);
    d.netd_ok(&["p2p", "a", "dd"]);
    let mut links = cs[0].links();
    links.sort();
    assert_eq!(links, vec!["eth0", "lo", "p2p0", "p2p1"], "a's links");
    let ip_dd = s(&d.inspect("dd")["ip"]).to_string();
    let srv = tcp_server(&cs[3], 7000);
    assert_eq!(
        tcp_request_until(&cs[0], &format!("{ip_dd}:7000"), T).unwrap(),
        "ping"
    );
    drop(srv);
}

/// A container joined by another (--net container:X) whose namespace vanished while the
/// daemon was down: the restart cleans both up instead of refusing to start.
#[test]
fn restart_cleans_a_vanished_namespace_with_a_joiner() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let c = w.container("base");
    d.attach("base", &c, &[]);
    d.netd_ok(&[
        "attach",
        "side",
        "--netns",
        c.path_str(),
        "--net",
        "container:base",
    ]);
    d.stop();
    c.delete();
    d.restart();
    assert!(!d.ls_has("base") && !d.ls_has("side"), "ls: {}", d.ls());
}

/// Two containers cannot share an --etc-dir: detaching one would delete the other's files.
#[test]
fn etc_dir_cannot_be_shared() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let dir = TempDir::new();
    let etc = dir.path().join("etc");
    let etc = etc.to_str().unwrap();
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    d.attach("c1", &c1, &["--etc-dir", etc]);
    attach_fails_cleanly(
        &w,
        &d,
        &["attach", "c2", "--netns", c2.path_str(), "--etc-dir", etc],
        "already used by \"c1\"",
    );
}

/// A detach whose teardown half fails and whose state cannot be written reports both: the
/// persisting error does not hide the teardown errors (it used to return alone).
#[test]
fn detach_reports_teardown_errors_even_when_persisting_fails() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c1 = w.container("c1");
    d.attach("c1", &c1, &[]);
    // Teardown error: the hosts file is now a directory with a file in it, so removing it fails.
    let etc = d.etc_dir("c1");
    let hosts = etc.join("hosts");
    std::fs::remove_file(&hosts).unwrap();
    std::fs::create_dir(&hosts).unwrap();
    std::fs::write(hosts.join("keep"), "x").unwrap();
    // Persist error: the state journal is a non-empty directory the change cannot be
    // appended to.
    let state = d.state_dir().join("state.journal");
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("keep"), "x").unwrap();
    let err = d.netd_err(&["detach", "c1"]);
    assert!(err.contains("detached c1, with errors"), "{err}");
    assert!(
        err.contains(&format!("removing {}", etc.display())),
        "{err}"
    );
    assert!(err.contains("cannot write state file"), "{err}");
    // The endpoint is gone all the same: its veth and its listing.
    assert!(!d.ls_has("c1"), "{}", d.ls());
    assert!(!c1.links().iter().any(|l| l == "eth0"), "{:?}", c1.links());
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::remove_dir_all(&hosts).unwrap();
}
