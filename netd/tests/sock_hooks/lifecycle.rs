//! Links pinned, adopted on restart and detached; a non-cgroup directory is refused.

use super::*;

#[test]
fn links_are_pinned_adopted_on_restart_and_detached() {
    let mut s = Setup::new();
    let before = s.hooks().list().expect("list");
    assert_eq!(before.len(), ALL_SOCK_PROGRAMS.len(), "{before:#?}");
    assert!(before.iter().all(|h| h.cgroup_id == s.cg.id()));
    let shown = s.cg.bpftool();
    for p in ALL_SOCK_PROGRAMS {
        assert!(shown.contains(p), "bpftool cgroup show lacks {p}: {shown}");
    }

    // The agent goes away: its pinned links keep host-local access working.
    drop(s.hooks.take());
    let r = client(&s.h, Some(&s.cg), &["tcp 127.0.0.1:8080"]);
    assert_ok(&r, "tcp 127.0.0.1:8080", &[]);

    // A new agent adopts the links: same links, no second copy, and the same programs (reused
    // from their pins: the verifier runs once per object, issue 13).
    let cookie = s.h.enter(|| netns_cookie().unwrap());
    let hooks = SockHooks::open(&s.pins.config()).expect("re-open");
    hooks.attach(&s.cg.0, cookie).expect("re-attach");
    let after = hooks.list().unwrap();
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a.program, b.program);
        assert_eq!(
            a.link_id, b.link_id,
            "{} adopted, not re-attached",
            a.program
        );
        assert_eq!(
            a.prog_id, b.prog_id,
            "{} reused, not loaded again",
            a.program
        );
    }
    assert_eq!(
        s.cg.bpftool()
            .lines()
            .filter(|l| l.contains("sock_connect4"))
            .count(),
        1
    );
    s.hooks = Some(hooks);
    let r = client(
        &s.h,
        Some(&s.cg),
        &["tcp 127.0.0.1:8080", "udp 127.0.0.1:8080"],
    );
    assert_ok(&r, "tcp 127.0.0.1:8080", &["peer=127.0.0.1:8080"]);
    assert_ok(&r, "udp 127.0.0.1:8080", &["from=127.0.0.1:8080"]);

    // Detached: nothing left on the cgroup, and connections are no longer redirected.
    s.hooks().detach().expect("detach");
    assert!(s.hooks().list().unwrap().is_empty());
    let shown = s.cg.bpftool();
    assert!(!shown.contains("sock_"), "{shown}");
    let r = client(&s.h, Some(&s.cg), &["tcp 127.0.0.1:8080"]);
    assert_refused(&r, "tcp 127.0.0.1:8080");
}

#[test]
fn refuses_a_directory_that_is_not_a_cgroup() {
    let pins = PinDir::new();
    let hooks = SockHooks::open(&pins.config()).expect("open");
    let err = hooks
        .attach(&pins.0, 1)
        .expect_err("a bpffs directory is not a cgroup");
    assert!(format!("{err}").contains("attach socket hooks"), "{err}");
    assert!(hooks.list().unwrap().is_empty());
}
