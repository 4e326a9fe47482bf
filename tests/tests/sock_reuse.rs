//! Issue 13: a restart of the same netd verifies nothing. The TC and XDP programs were already
//! reused from `progs/`; the cgroup socket hooks are now reused from `sock_progs/` the same
//! way: same object → same program ids on the cgroup and no `verified_insns` line in the
//! second start's log; another object's pins → the hooks are loaded again, swapped in on the
//! same links, and the foreign pins removed.
//!
//! Prints each start's `open timing` and `start timing` lines (NETD_TRACE_TIMING=1) with
//! `--nocapture`: the start cost before and after.

use std::collections::BTreeMap;

use netd_tests::{Daemon, World, cmd_ok};

/// The socket hooks every daemon attaches (the bind hooks depend on the kernel).
const SOCK_PROGRAMS: &[&str] = &[
    "sock_connect4",
    "sock_connect6",
    "sock_sendmsg4",
    "sock_recvmsg4",
    "sock_recvmsg6",
    "sock_getpeername4",
    "sock_getpeername6",
];

/// Another object's digest, as a different netd build leaves its pins.
const OTHER: &str = "0123456789abcdef";

/// Both logs of the n-th start.
fn start_log(d: &Daemon, n: u32) -> String {
    format!("{}{}", d.log(n, "out"), d.log(n, "err"))
}

/// The programs the verifier accepted in a log (`program=NAME verified_insns=N` lines).
fn verified(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("verified_insns="))
        .filter_map(|l| {
            let p = l.split("program=").nth(1)?;
            Some(p.split_whitespace().next()?.trim_matches('"').to_string())
        })
        .collect()
}

fn print_timing(log: &str, n: u32) {
    for l in log.lines().filter(|l| l.contains(" timing: ")) {
        eprintln!("start #{n}: {l}");
    }
    for l in log
        .lines()
        .filter(|l| l.contains("attached the socket hooks") || l.contains("programs are ready"))
    {
        eprintln!("start #{n}: {l}");
    }
}

/// Program name -> program id of every program on the daemon's cgroup (`bpftool cgroup show`).
fn cgroup_prog_ids(d: &Daemon) -> BTreeMap<String, u64> {
    let cg = d
        .cgroup()
        .expect("the harness gives each daemon a --cgroup");
    let out = cmd_ok(&["bpftool", "-j", "cgroup", "show", &cg.display().to_string()]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("bpftool json");
    let mut ids = BTreeMap::new();
    for p in v.as_array().expect("a list") {
        let name = p["name"].as_str().expect("name").to_string();
        let id = p["id"].as_u64().expect("id");
        assert!(
            ids.insert(name.clone(), id).is_none(),
            "{name} attached twice: {out}"
        );
    }
    ids
}

#[test]
fn a_restart_of_the_same_netd_verifies_no_socket_hook() {
    let w = World::new();
    let mut d = w.daemon_with_env(&[], &[("NETD_TRACE_TIMING", "1")]);
    let log = start_log(&d, 1);
    print_timing(&log, 1);
    let first = verified(&log);
    for p in SOCK_PROGRAMS {
        assert!(
            first.iter().any(|v| v == p),
            "{p} not verified by a fresh start:\n{log}"
        );
    }
    let ids = cgroup_prog_ids(&d);
    for p in SOCK_PROGRAMS {
        assert!(ids.contains_key(*p), "{p} not on the cgroup: {ids:?}");
    }

    // The same binary again: nothing is verified, the cgroup runs the very same programs.
    d.restart();
    let log = start_log(&d, 2);
    print_timing(&log, 2);
    let second = verified(&log);
    assert!(
        second.is_empty(),
        "a restart of the same netd verified {second:?}:\n{log}"
    );
    assert_eq!(cgroup_prog_ids(&d), ids, "a reused hook was replaced");

    // Another object's socket-hook pins: loaded and verified again (the TC programs' pins are
    // untouched, so those are still reused), swapped in on the same hooks, foreign pins gone.
    d.stop();
    let dir = d.bpffs().join("sock_progs");
    let pins = d.pins_in("sock_progs");
    for p in &pins {
        let (name, _) = p.split_once('@').expect("NAME@HASH");
        std::fs::rename(dir.join(p), dir.join(format!("{name}@{OTHER}"))).expect("rename a pin");
    }
    d.restart();
    let log = start_log(&d, 3);
    print_timing(&log, 3);
    let third = verified(&log);
    for p in SOCK_PROGRAMS {
        assert!(
            third.iter().any(|v| v == p),
            "{p} not verified with another object's pins:\n{log}"
        );
    }
    assert!(
        !third.iter().any(|v| v == "to_uplink"),
        "the TC programs were verified again: {third:?}"
    );
    let after = cgroup_prog_ids(&d);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ids.keys().collect::<Vec<_>>()
    );
    for (p, id) in &after {
        assert_ne!(*id, ids[p], "{p} still runs the old program");
    }
    assert_eq!(
        d.pins_in("sock_progs"),
        pins,
        "the foreign pins are removed"
    );
}
