//! CNI errors leave nothing behind; STATUS and GC.

use super::*;

#[test]
fn errors_are_cni_errors_and_leave_nothing_behind() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    let c = w.container("c");
    let sock = d.sock();
    let good = conf("1.0.0", &sock, Some("blue"), json!({}));
    let e = env("feedfeedfeedfeed", c.path_str(), "eth0", "K8S_POD_NAME=c");
    let before = host_veths(&w);

    let m = err(&plugin("ADD", "{not json", &e), 6, "malformed config");
    assert!(m.contains("not valid"), "{m}");
    err(
        &plugin("ADD", &conf("0.3.1", &sock, Some("blue"), json!({})), &e),
        1,
        "old version",
    );
    let m = err(
        &plugin("ADD", &good, &env("feedfeedfeedfeed", "", "eth0", "")),
        4,
        "missing CNI_NETNS",
    );
    assert!(m.contains("CNI_NETNS"), "{m}");
    err(&plugin("ADD", &good, &[]), 4, "missing CNI_CONTAINERID");
    err(
        &plugin(
            "ADD",
            &good,
            &env("feedfeedfeedfeed", c.path_str(), "eth0", "FOO=1"),
        ),
        4,
        "unknown CNI_ARGS key",
    );
    let r = run_argv(&[plugin_bin().to_str().unwrap()], &good, &e);
    err(&r, 4, "missing CNI_COMMAND");
    let m = err(
        &plugin("ADD", &conf("1.0.0", &sock, Some("nosuch"), json!({})), &e),
        7,
        "unknown network",
    );
    assert!(m.contains("nosuch"), "{m}");
    let m = err(
        &plugin(
            "ADD",
            &conf(
                "1.0.0",
                &sock,
                Some("blue"),
                json!({"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "sctp"}]}}),
            ),
            &e,
        ),
        7,
        "bad protocol",
    );
    assert!(m.contains("sctp"), "{m}");
    let m = err(
        &plugin(
            "ADD",
            &good,
            &env("feedfeedfeedfeed", "/nonexistent/ns", "eth0", ""),
        ),
        5,
        "netns that does not exist",
    );
    assert!(m.contains("/nonexistent/ns"), "{m}");

    // Daemon down (no socket) and a daemon that accepts but never answers: code 11, quickly.
    let down = conf(
        "1.0.0",
        Path::new("/nonexistent/netd.sock"),
        Some("blue"),
        json!({}),
    );
    for cmd in ["ADD", "DEL"] {
        let r = plugin(cmd, &down, &e);
        err(&r, 11, &format!("{cmd} with the daemon down"));
        assert!(r.took < Duration::from_secs(5), "{cmd} took {:?}", r.took);
    }
    let tmp = TempDir::new();
    let stall_path = tmp.path().join("stall.sock");
    let stall = std::os::unix::net::UnixListener::bind(&stall_path).unwrap();
    let silent = conf("1.0.0", &stall_path, Some("blue"), json!({"timeout": 2}));
    for cmd in ["ADD", "DEL"] {
        let r = plugin(cmd, &silent, &e);
        let m = err(&r, 11, &format!("{cmd} with a silent daemon"));
        assert!(m.contains("within 2 s"), "{m}");
        assert!(r.took < Duration::from_secs(6), "{cmd} took {:?}", r.took);
    }
    drop(stall);

    // Nothing was attached anywhere.
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
    assert_eq!(host_veths(&w), before);
    assert_eq!(c.links(), vec!["lo".to_string()]);
}

#[test]
fn status_and_gc() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    let sock = d.sock();
    let data = TempDir::new();
    let data_s = data.path().to_str().unwrap().to_string();
    let c10 = conf("1.0.0", &sock, Some("blue"), json!({"dataDir": data_s}));
    let a = w.container("a");
    let b = w.container("b");
    ok(
        &plugin(
            "ADD",
            &c10,
            &env("aaaa00000000aaaa", a.path_str(), "eth0", "K8S_POD_NAME=a"),
        ),
        "ADD a",
    );
    ok(
        &plugin(
            "ADD",
            &c10,
            &env("bbbb00000000bbbb", b.path_str(), "eth0", "K8S_POD_NAME=b"),
        ),
        "ADD b",
    );

    ok(
        &plugin(
            "STATUS",
            &conf("1.1.0", &sock, Some("blue"), json!({})),
            &[],
        ),
        "STATUS",
    );
    err(
        &plugin(
            "STATUS",
            &conf("1.1.0", &sock, Some("nosuch"), json!({})),
            &[],
        ),
        50,
        "STATUS of an unknown network",
    );
    err(
        &plugin(
            "STATUS",
            &conf("1.1.0", Path::new("/nonexistent/s"), None, json!({})),
            &[],
        ),
        50,
        "STATUS with the daemon down",
    );
    err(&plugin("STATUS", &c10, &[]), 1, "STATUS before 1.1.0");

    // GC keeps the valid attachment (a) and removes the other (b).
    let gc = conf(
        "1.1.0",
        &sock,
        Some("blue"),
        json!({"dataDir": data_s, "cni.dev/valid-attachments": [{"containerID": "aaaa00000000aaaa", "ifname": "eth0"}]}),
    );
    ok(&plugin("GC", &gc, &[]), "GC");
    assert!(d.ls_has("a"));
    assert!(!d.ls_has("b"), "{}", d.ls());
    // The veth is deleted in the background.
    netd_tests::poll_until("b's veth to go after GC", Duration::from_secs(10), || {
        let l = b.links();
        if l == vec!["lo".to_string()] {
            Ok(())
        } else {
            Err(l)
        }
    });
    // A second GC has nothing left to do.
    ok(&plugin("GC", &gc, &[]), "second GC");
    assert!(d.ls_has("a"));
}
