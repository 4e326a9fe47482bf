//! `netd doctor` in a test's host namespace: a clean world passes, a foreign TC program on the
//! uplink fails with the fix, and netd's own programs are recognised as netd's.

use netd_tests::daemon::netd_bin;
use netd_tests::{BIP, Netns, World, cmd, cmd_ok};

fn doctor(host: &Netns) -> (bool, serde_json::Value, String) {
    let net = format!("--net={}", host.path().display());
    let bin = netd_bin();
    let out = cmd(&[
        "nsenter",
        &net,
        bin.to_str().unwrap(),
        "doctor",
        "--uplink",
        "up0",
        "--json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("doctor --json ({e}): {text}"));
    let plain = cmd(&[
        "nsenter",
        &net,
        bin.to_str().unwrap(),
        "doctor",
        "--uplink",
        "up0",
    ]);
    assert_eq!(plain.status.success(), out.status.success());
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&plain.stdout).to_string(),
    )
}

fn finding<'a>(v: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    v.as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding: {v}"))
}

#[test]
fn doctor_flags_a_foreign_tc_program_and_accepts_netds_own() {
    let w = World::new();
    let (passed, v, text) = doctor(&w.host);
    assert!(passed, "a clean world fails:\n{text}");
    for check in [
        "tcx",
        "redirect_peer",
        "cgroup_sock_hooks",
        "btf",
        "cgroup2",
    ] {
        assert_eq!(finding(&v, check)["level"], "ok", "{check}: {v}");
    }
    assert_eq!(finding(&v, "tc_programs")["level"], "ok");
    assert_eq!(finding(&v, "firewall")["level"], "ok");
    // A foreign TC program (classic BPF through cls_bpf) on the uplink.
    let net = format!("--net={}", w.host.path().display());
    cmd_ok(&[
        "nsenter", &net, "tc", "qdisc", "add", "dev", "up0", "clsact",
    ]);
    cmd_ok(&[
        "nsenter",
        &net,
        "tc",
        "filter",
        "add",
        "dev",
        "up0",
        "ingress",
        "bpf",
        "bytecode",
        "1,6 0 0 4294967295,",
    ]);
    let (passed, v, text) = doctor(&w.host);
    assert!(!passed, "doctor passes with a foreign TC program:\n{text}");
    let f = finding(&v, "tc_programs");
    assert_eq!(f["level"], "fail", "{f}");
    assert!(f["detail"].as_str().unwrap().contains("up0"), "{f}");
    assert!(f["detail"].as_str().unwrap().contains("bpf"), "{f}");
    assert!(
        f["fix"]
            .as_str()
            .unwrap()
            .contains("tc filter del dev up0 ingress"),
        "{f}"
    );
    assert!(
        text.contains("[FAIL] tc_programs") && text.contains("fix: "),
        "{text}"
    );
    cmd_ok(&[
        "nsenter", &net, "tc", "qdisc", "del", "dev", "up0", "clsact",
    ]);
    // netd's own TCX and XDP programs are not foreign.
    let d = w.daemon(&["--bip", BIP]);
    // A source filter makes netd attach its XDP pre-filter to the uplink too.
    d.netd_ok(&["filter", "deny", "203.0.113.0/24"]);
    let (passed, v, text) = doctor(&w.host);
    assert!(passed, "doctor fails on netd's own programs:\n{text}");
    let f = finding(&v, "tc_programs");
    let detail = f["detail"].as_str().unwrap();
    assert!(
        detail.contains("only netd's") && detail.contains("from_uplink") && detail.contains("xdp"),
        "{f}"
    );
}
