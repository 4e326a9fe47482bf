//! Bind hooks refuse published ports with EADDRINUSE in their namespace only.

use super::*;

#[test]
fn bind_hooks_refuse_published_ports_with_eaddrinuse_in_their_namespace_only() {
    let s = Setup::new();
    let cookie = s.h.enter(|| netns_cookie().unwrap());
    let bound = s
        .hooks()
        .attach_with(&s.cg.0, cookie, BindHooks::Required)
        .expect("attach with the bind hooks");
    assert!(bound);
    let progs: Vec<String> = s
        .hooks()
        .list()
        .unwrap()
        .into_iter()
        .map(|h| h.program)
        .collect();
    for p in BIND_SOCK_PROGRAMS {
        assert!(progs.iter().any(|x| x == p), "{p} missing from {progs:?}");
    }
    let in_use = format!("err {}", libc::EADDRINUSE);
    let want: &[(&str, &str)] = &[
        // *:8080 tcp+udp: every address, and the wildcard, of either family.
        ("bindtcp 127.0.0.1:8080", &in_use),
        ("bindtcp 192.0.2.1:8080", &in_use),
        ("bindtcp 0.0.0.0:8080", &in_use),
        ("bindtcp [::]:8080", &in_use),
        ("bindtcp [::ffff:127.0.0.1]:8080", &in_use),
        ("bindudp 0.0.0.0:8080", &in_use),
        // 127.0.0.1:9000 tcp: that address and the wildcard; not another address, not UDP.
        ("bindtcp 127.0.0.1:9000", &in_use),
        ("bindtcp 0.0.0.0:9000", &in_use),
        ("bindtcp 192.0.2.1:9000", "ok"),
        ("bindudp 0.0.0.0:9000", "ok"),
        // Not published; published by a runtime that holds it itself; autobind.
        ("bindtcp 0.0.0.0:8081", "ok"),
        ("bindtcp 0.0.0.0:8443", "ok"),
        ("bindtcp 0.0.0.0:0", "ok"),
        ("bindtcp [::1]:8080", "ok"),
    ];
    let ops: Vec<&str> = want.iter().map(|(op, _)| *op).collect();
    let r = client(&s.h, Some(&s.cg), &ops);
    for (op, result) in want {
        assert_eq!(
            r.get(*op).map(String::as_str),
            Some(*result),
            "{op}: {r:#?}"
        );
    }

    // Another namespace in the same cgroup binds the port freely.
    let other = netns("o");
    let r = client(&other, Some(&s.cg), &["bindtcp 0.0.0.0:8080"]);
    assert_eq!(r["bindtcp 0.0.0.0:8080"], "ok");

    // Re-attached without them (the socket fallback): the bind hooks are gone.
    let bound = s
        .hooks()
        .attach_with(&s.cg.0, cookie, BindHooks::Off)
        .expect("re-attach without the bind hooks");
    assert!(!bound);
    let progs: Vec<String> = s
        .hooks()
        .list()
        .unwrap()
        .into_iter()
        .map(|h| h.program)
        .collect();
    assert!(
        !progs
            .iter()
            .any(|p| BIND_SOCK_PROGRAMS.contains(&p.as_str())),
        "{progs:?}"
    );
    let r = client(&s.h, Some(&s.cg), &["bindtcp 0.0.0.0:8080"]);
    assert_eq!(r["bindtcp 0.0.0.0:8080"], "ok");
}
