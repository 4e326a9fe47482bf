//! Detach and cleanup, also when the netns disappears behind netd's back.

use super::*;

#[test]
fn detach_removes_veth_lease_and_files() {
    let w = World::new();
    // Background deletions 200 ms late (as on a loaded machine): what detach must have done
    // before it returns cannot be the deletion's work.
    let d = w.daemon_with_env(&["--bip", BIP], &[("NETD_REAPER_DELAY_MS", "200")]);
    let c1 = w.container("c1");
    let ep = d.attach("c1", &c1, &["--ip", "172.30.0.9"]);
    let host_if = s(&ep["host_ifname"]).to_string();
    let etc = d.etc_dir("c1");
    assert!(etc.join("hosts").exists());
    d.netd_ok(&["detach", "c1"]);
    // When detach returns, nothing of the endpoint is left that anyone sees: no eth0, no
    // address or route in the container, the host end (deleted in the background) off the
    // bridge.
    assert!(c1.link("eth0").is_none(), "eth0 still in the container");
    let addrs = c1.ip(&["-4", "-o", "addr", "show"]);
    assert!(
        addrs.lines().all(|l| l.contains(" lo ")),
        "addresses left in the container: {addrs}"
    );
    assert!(c1.routes4().is_empty(), "routes left: {:?}", c1.routes4());
    if let Some(l) = w.host.link(&host_if) {
        assert!(l["master"].is_null(), "{host_if} still on the bridge: {l}");
    }
    // The pair itself goes in the background.
    netd_tests::poll_until(
        "the veth pair to go after detach",
        Duration::from_secs(10),
        || match (w.host.link(&host_if).is_none(), c1.links()) {
            (true, l) if l == ["lo"] => Ok(()),
            gone => Err(format!("{host_if} gone, container links: {gone:?}")),
        },
    );
    assert!(!etc.exists(), "{} still exists after detach", etc.display());
    assert!(!d.ls_has("c1"));
    let err = d.netd_err(&["inspect", "c1"]);
    assert!(err.contains("c1"), "inspect error does not name c1: {err}");
    // The lease is free again: same IP for another container, and the name is reusable.
    let _c2 = leased_again(&w, &d, "c2", "172.30.0.9");
    d.attach("c1", &c1, &[]);
    assert!(c1.ping("172.30.0.9", T));
}

/// A new container `name` attached with `--ip ip` gets it: the address was released.
fn leased_again(w: &World, d: &Daemon, name: &str, ip: &str) -> Container {
    let c = w.container(name);
    assert_eq!(
        s(&d.attach(name, &c, &["--ip", ip])["ip"]),
        ip,
        "{ip} was not released"
    );
    c
}

#[test]
fn netns_deleted_behind_netds_back_is_cleaned_on_detach() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c1 = w.container("c1");
    let ep = d.attach("c1", &c1, &["--ip", "172.30.0.7"]);
    let host_if = s(&ep["host_ifname"]).to_string();
    c1.delete();
    d.netd_ok(&["detach", "c1"]);
    assert!(!d.ls_has("c1"));
    assert!(w.host.link(&host_if).is_none());
    let _c2 = leased_again(&w, &d, "c2", "172.30.0.7");
}

#[test]
fn netns_deleted_while_daemon_down_is_cleaned_on_restart() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    d.attach("c1", &c1, &["--ip", "172.30.0.7"]);
    d.attach("c2", &c2, &[]);
    d.stop();
    c1.delete();
    d.restart();
    assert!(
        !d.ls_has("c1"),
        "endpoint of a vanished netns survived restart:\n{}",
        d.ls()
    );
    assert!(d.ls_has("c2"));
    let _c3 = leased_again(&w, &d, "c3", "172.30.0.7");
}
