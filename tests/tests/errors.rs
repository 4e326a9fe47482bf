//! Bad input: each mistake gets a one-line `netd: ...` error naming what is wrong, and
//! changes nothing (ls and inspect unchanged, no new interface in the host namespace).

use netd_tests::{BIP, Daemon, Netns, World};

/// Snapshot of everything a failed request must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    ls: String,
    host_links: Vec<String>,
    inspect: Vec<serde_json::Value>,
}

fn snapshot(w: &World, d: &Daemon, names: &[&str]) -> Snapshot {
    let mut host_links = w.host.links();
    host_links.sort();
    Snapshot {
        ls: d.ls(),
        host_links,
        inspect: names.iter().map(|n| d.inspect(n)).collect(),
    }
}

/// Runs `netd args`, expects failure with a one-line `netd: ` message containing every `want`
/// (case-insensitive), and that nothing changed.
fn refused(w: &World, d: &Daemon, existing: &[&str], args: &[&str], want: &[&str]) -> String {
    let before = snapshot(w, d, existing);
    let out = d.netd(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "netd {args:?} succeeded");
    assert_ne!(
        out.status.code(),
        Some(2),
        "netd {args:?}: a value error is not a usage error: {stderr}"
    );
    let msg = stderr.trim_end();
    assert!(
        msg.starts_with("netd: "),
        "netd {args:?}: stderr does not start with `netd: `: {stderr:?}"
    );
    assert_eq!(
        msg.lines().count(),
        1,
        "netd {args:?}: error is not one line: {stderr:?}"
    );
    for w in want {
        assert!(
            msg.to_lowercase().contains(&w.to_lowercase()),
            "netd {args:?}: error does not mention {w:?}: {msg}"
        );
    }
    assert_eq!(
        snapshot(w, d, existing),
        before,
        "netd {args:?} changed state"
    );
    msg.to_string()
}

struct Env {
    // Field order is drop order: containers, daemon, then the world.
    existing: Netns,
    fresh: Netns,
    d: Daemon,
    w: World,
}

fn env(extra: &[&str]) -> Env {
    let w = World::new();
    let mut args = vec!["--bip", BIP];
    args.extend_from_slice(extra);
    let d = w.daemon(&args);
    let existing = Netns::new("netdt-c-");
    d.attach("web", &existing, &["--ip", "172.30.0.10"]);
    let fresh = Netns::new("netdt-c-");
    Env {
        existing,
        fresh,
        d,
        w,
    }
}

#[test]
fn malformed_values_are_refused() {
    let e = env(&[]);
    let (w, d) = (&e.w, &e.d);
    let ns = e.fresh.path_str();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--ip", "172.30.0.300"], &["172.30.0.300"]),
        (&["--ip", "not-an-ip"], &["not-an-ip"]),
        (
            &["--mac-address", "02:42:zz:00:00:01"],
            &["02:42:zz:00:00:01"],
        ),
        (&["--mac-address", "02:42:00:00:01"], &["02:42:00:00:01"]),
        (&["-p", "80:abc"], &["80:abc"]),
        (&["-p", "70000:80"], &["70000"]),
        (&["-p", "8080:80/sctp"], &["sctp"]),
        (&["-p", "1.2.3:8080:80"], &["1.2.3"]),
        (&["--expose", "90-80"], &["90-80"]),
        (&["--link", "web:bad:alias"], &["web:bad:alias"]),
        (&["--link", ":alias"], &[":alias"]),
        (&["--net", "bogus"], &["bogus"]),
        (&["--dns", "192.0.2.300"], &["192.0.2.300"]),
        (&["--hostname", "bad host"], &["bad host"]),
        (&["--ifname", "lo"], &["interface name", "lo"]),
        (
            &["--ifname", "abcdefghijklmnop"],
            &["abcdefghijklmnop", "15"],
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["attach", "new", "--netns", ns];
        args.extend_from_slice(extra);
        refused(w, d, &["web"], &args, want);
    }
    assert!(!d.ls_has("new"));
    assert_eq!(
        e.fresh.links(),
        vec!["lo".to_string()],
        "refused attach touched the netns"
    );
    // IPv6 host addresses for a container without IPv6 (`-p [::1]:8080:80`, `publish web
    // [::]:8081:80`) are no longer refused: the NAT46 relay serves them (ipv6_ports.rs,
    // hostlocal.rs).
    let _ = &e.existing;
}

#[test]
fn conflicts_are_refused() {
    let e = env(&["--fixed-cidr", "172.30.0.0/25"]);
    let (w, d) = (&e.w, &e.d);
    let ns = e.fresh.path_str();
    // Duplicate name.
    refused(
        w,
        d,
        &["web"],
        &["attach", "web", "--netns", ns],
        &["web", "already"],
    );
    // Address already leased (names the owner).
    refused(
        w,
        d,
        &["web"],
        &["attach", "new", "--netns", ns, "--ip", "172.30.0.10"],
        &["172.30.0.10", "already", "web"],
    );
    // Outside the pool / subnet.
    refused(
        w,
        d,
        &["web"],
        &["attach", "new", "--netns", ns, "--ip", "172.30.0.200"],
        &["172.30.0.200"],
    );
    refused(
        w,
        d,
        &["web"],
        &["attach", "new", "--netns", ns, "--ip", "10.1.2.3"],
        &["10.1.2.3"],
    );
    // The bridge's own address.
    refused(
        w,
        d,
        &["web"],
        &["attach", "new", "--netns", ns, "--ip", "172.30.0.1"],
        &["172.30.0.1"],
    );
    // A netns path that does not exist.
    refused(
        w,
        d,
        &["web"],
        &[
            "attach",
            "new",
            "--netns",
            "/var/run/netns/netdt-does-not-exist",
        ],
        &["/var/run/netns/netdt-does-not-exist"],
    );
    // Unknown container in container: and --link.
    refused(
        w,
        d,
        &["web"],
        &["attach", "new", "--netns", ns, "--net", "container:ghost"],
        &["ghost"],
    );
    refused(
        w,
        d,
        &["web"],
        &["attach", "new", "--netns", ns, "--link", "ghost:db"],
        &["ghost"],
    );
    // --link makes no sense with --net host.
    refused(
        w,
        d,
        &["web"],
        &[
            "attach", "new", "--netns", ns, "--net", "host", "--link", "web:db",
        ],
        &["link", "host"],
    );
    // Unknown names elsewhere.
    refused(w, d, &["web"], &["detach", "ghost"], &["ghost"]);
    refused(w, d, &["web"], &["inspect", "ghost"], &["ghost"]);
    refused(w, d, &["web"], &["p2p", "web", "ghost"], &["ghost"]);
    refused(w, d, &["web"], &["port", "ghost"], &["ghost"]);
}

#[test]
fn exhausted_pool_is_refused() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--fixed-cidr", "172.30.0.4/30"]);
    let nss: Vec<Netns> = (0..5).map(|_| Netns::new("netdt-c-")).collect();
    let mut ips = vec![];
    for (i, ns) in nss.iter().take(4).enumerate() {
        ips.push(
            d.attach(&format!("c{i}"), ns, &[])["ip"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ips.sort();
    assert_eq!(
        ips,
        vec!["172.30.0.4", "172.30.0.5", "172.30.0.6", "172.30.0.7"]
    );
    let names = ["c0", "c1", "c2", "c3"];
    refused(
        &w,
        &d,
        &names,
        &["attach", "c4", "--netns", nss[4].path_str()],
        &["172.30.0.4/30"],
    );
    // Freeing one address makes room again.
    d.netd_ok(&["detach", "c2"]);
    d.attach("c4", &nss[4], &[]);
}

#[test]
fn usage_errors_exit_2() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    for args in [
        vec!["frobnicate"],
        vec!["attach", "x", "--netns", "/tmp", "--bogus"],
        vec!["ls", "--bogus"],
        vec!["attach", "x"],
    ] {
        let out = d.netd(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "netd {args:?}: exit {}; stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Inside the test's host netns with the harness's private dirs, should it ever start.
    let out = w.daemon_exit(&["--bogus"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "netd daemon --bogus: {}",
        out.stderr
    );
}

#[test]
fn bad_daemon_options_are_refused_at_startup() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bip", "172.30.0.1/33"], "172.30.0.1/33"),
        (&["--bip", "banana"], "banana"),
        (
            &["--bip", BIP, "--fixed-cidr", "172.30.0.0/33"],
            "172.30.0.0/33",
        ),
        (
            &["--bip", BIP, "--default-gateway", "10.0.0.300"],
            "10.0.0.300",
        ),
        (&["--bip", BIP, "--uplink", "nosuch0"], "nosuch0"),
        (&["-b", "nosuchbr"], "nosuchbr"),
        (&["--bip", BIP, "--dns", "1.2.3.x"], "1.2.3.x"),
    ];
    for (args, want) in cases {
        let w = World::new();
        let out = w.daemon_exit(args);
        assert!(!out.status.success(), "daemon {args:?} started");
        assert!(
            out.stderr.contains(want),
            "daemon {args:?}: error does not name {want}: {}",
            out.stderr
        );
        assert!(
            w.host.link("netd0").is_none(),
            "daemon {args:?} left netd0 behind"
        );
    }
}
