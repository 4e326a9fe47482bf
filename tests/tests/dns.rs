//! The files netd writes for each container (hostname, hosts, resolv.conf), as in the seed's
//! "Configuring DNS", and how resolv.conf copies follow the host's file.

use std::time::Duration;

use netd_tests::files::{
    hosts_entries, hosts_lookup, meaningful_lines, resolv_nameservers, resolv_options,
    resolv_search,
};
use netd_tests::{BIP, Daemon, TempDir, World, poll_until};

const HOST_RESOLV: &str = "# host resolver\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.test corp.test\noptions ndots:2\n";

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// World + daemon with `--resolv-conf` pointing at a test-owned file.
fn daemon_with_resolv(w: &World, files: &TempDir, host_resolv: &str, extra: &[&str]) -> Daemon {
    let resolv = files.write("resolv.conf", host_resolv);
    let mut args = vec!["--bip", BIP, "--resolv-conf", resolv.to_str().unwrap()];
    args.extend_from_slice(extra);
    w.daemon(&args)
}

#[test]
fn hostname_and_hosts_files() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(&w, &files, HOST_RESOLV, &[]);
    let c = w.container("web");
    let ep = d.attach("web", &c, &["--hostname", "web1"]);
    assert_eq!(s(&ep["hostname"]), "web1");
    let ip = s(&ep["ip"]).to_string();
    assert_eq!(d.etc_file("web", "hostname"), "web1\n");
    let hosts = d.etc_file("web", "hosts");
    assert_eq!(
        hosts_lookup(&hosts, "web1"),
        vec![ip.clone()],
        "hosts:\n{hosts}"
    );
    assert_eq!(
        hosts_lookup(&hosts, "localhost")
            .first()
            .map(String::as_str),
        Some("127.0.0.1"),
        "hosts:\n{hosts}"
    );
    assert!(
        hosts_entries(&hosts)
            .iter()
            .any(|(a, n)| a == "::1" && n.iter().any(|x| x == "localhost")),
        "no ::1 localhost line:\n{hosts}"
    );
    // The hostname is not visible to other containers.
    let c2 = w.container("other");
    d.attach("other", &c2, &[]);
    assert!(hosts_lookup(&d.etc_file("other", "hosts"), "web1").is_empty());
}

#[test]
fn etc_dir_option_places_the_files() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(&w, &files, HOST_RESOLV, &[]);
    let c = w.container("c1");
    let etc = files.path().join("c1-etc");
    std::fs::create_dir(&etc).unwrap();
    let ep = d.attach(
        "c1",
        &c,
        &["--etc-dir", etc.to_str().unwrap(), "--hostname", "box"],
    );
    assert_eq!(s(&ep["etc_dir"]), etc.to_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(etc.join("hostname")).unwrap(),
        "box\n"
    );
    assert!(etc.join("hosts").exists() && etc.join("resolv.conf").exists());
}

#[test]
fn link_alias_points_at_linked_ip_and_follows_reattach() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(&w, &files, HOST_RESOLV, &[]);
    let db = w.container("db");
    let app = w.container("app");
    d.attach("db", &db, &["--ip", "172.30.0.10"]);
    let ep = d.attach("app", &app, &["--link", "db:database"]);
    assert_eq!(
        ep["links"],
        serde_json::json!([{"name": "db", "alias": "database"}])
    );
    let hosts = d.etc_file("app", "hosts");
    assert_eq!(
        hosts_lookup(&hosts, "database"),
        vec!["172.30.0.10"],
        "hosts:\n{hosts}"
    );

    d.netd_ok(&["detach", "db"]);
    d.attach("db", &db, &["--ip", "172.30.0.20"]);
    let hosts = poll_until(
        "app's hosts to follow db's new IP",
        Duration::from_secs(5),
        || {
            let h = d.etc_file("app", "hosts");
            if hosts_lookup(&h, "database") == vec!["172.30.0.20"] {
                Ok(h)
            } else {
                Err(h)
            }
        },
    );
    assert!(!hosts.contains("172.30.0.10"), "stale entry left:\n{hosts}");
    // Linked by name only: the alias defaults to the name.
    let app2 = w.container("app2");
    d.attach("app2", &app2, &["--link", "db"]);
    assert_eq!(
        hosts_lookup(&d.etc_file("app2", "hosts"), "db"),
        vec!["172.30.0.20"]
    );
}

#[test]
fn resolv_conf_filters_localhost_nameservers() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(&w, &files, HOST_RESOLV, &[]);
    let c = w.container("c1");
    d.attach("c1", &c, &[]);
    let r = d.etc_file("c1", "resolv.conf");
    assert_eq!(
        meaningful_lines(&r),
        vec![
            "# host resolver",
            "nameserver 192.0.2.53",
            "search example.test corp.test",
            "options ndots:2"
        ],
        "resolv.conf:\n{r}"
    );
}

#[test]
fn resolv_conf_falls_back_to_google_dns() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(
        &w,
        &files,
        "nameserver 127.0.0.1\nnameserver 127.0.1.1\nnameserver ::1\nsearch example.test\n",
        &[],
    );
    let c = w.container("c1");
    d.attach("c1", &c, &[]);
    let r = d.etc_file("c1", "resolv.conf");
    assert_eq!(
        resolv_nameservers(&r),
        vec!["8.8.8.8", "8.8.4.4"],
        "resolv.conf:\n{r}"
    );
    assert_eq!(resolv_search(&r), vec!["example.test"]);
}

#[test]
fn container_dns_options_replace_host_settings() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(&w, &files, HOST_RESOLV, &[]);
    let c = w.container("c1");
    let ep = d.attach(
        "c1",
        &c,
        &[
            "--dns",
            "192.0.2.1",
            "--dns",
            "192.0.2.2",
            "--dns-search",
            "a.test",
            "--dns-search",
            "b.test",
        ],
    );
    assert_eq!(ep["dns"], serde_json::json!(["192.0.2.1", "192.0.2.2"]));
    assert_eq!(ep["dns_search"], serde_json::json!(["a.test", "b.test"]));
    let r = d.etc_file("c1", "resolv.conf");
    assert_eq!(
        resolv_nameservers(&r),
        vec!["192.0.2.1", "192.0.2.2"],
        "resolv.conf:\n{r}"
    );
    assert_eq!(
        resolv_search(&r),
        vec!["a.test", "b.test"],
        "resolv.conf:\n{r}"
    );

    // Only --dns: search comes from the host.
    let c2 = w.container("c2");
    d.attach("c2", &c2, &["--dns", "192.0.2.7"]);
    let r = d.etc_file("c2", "resolv.conf");
    assert_eq!(
        resolv_nameservers(&r),
        vec!["192.0.2.7"],
        "resolv.conf:\n{r}"
    );
    assert_eq!(
        resolv_search(&r),
        vec!["example.test", "corp.test"],
        "resolv.conf:\n{r}"
    );

    // Only --dns-search: nameservers come from the host (filtered).
    let c3 = w.container("c3");
    d.attach("c3", &c3, &["--dns-search", "z.test"]);
    let r = d.etc_file("c3", "resolv.conf");
    assert_eq!(
        resolv_nameservers(&r),
        vec!["192.0.2.53"],
        "resolv.conf:\n{r}"
    );
    assert_eq!(resolv_search(&r), vec!["z.test"], "resolv.conf:\n{r}");
}

#[test]
fn dns_search_dot_removes_search_domains() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(&w, &files, HOST_RESOLV, &[]);
    let c = w.container("c1");
    d.attach("c1", &c, &["--dns-search=."]);
    let r = d.etc_file("c1", "resolv.conf");
    assert!(resolv_search(&r).is_empty(), "search domains left:\n{r}");
    assert!(!r.contains("search"), "a search line is left:\n{r}");
    assert_eq!(resolv_nameservers(&r), vec!["192.0.2.53"]);
}

#[test]
fn daemon_dns_options_are_container_defaults() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(
        &w,
        &files,
        HOST_RESOLV,
        &["--dns", "192.0.2.9", "--dns-search", "daemon.test"],
    );
    let c1 = w.container("c1");
    d.attach("c1", &c1, &[]);
    let r = d.etc_file("c1", "resolv.conf");
    assert_eq!(
        resolv_nameservers(&r),
        vec!["192.0.2.9"],
        "resolv.conf:\n{r}"
    );
    assert_eq!(resolv_search(&r), vec!["daemon.test"], "resolv.conf:\n{r}");
    // The container's own options win.
    let c2 = w.container("c2");
    d.attach(
        "c2",
        &c2,
        &["--dns", "192.0.2.10", "--dns-search", "mine.test"],
    );
    let r = d.etc_file("c2", "resolv.conf");
    assert_eq!(
        resolv_nameservers(&r),
        vec!["192.0.2.10"],
        "resolv.conf:\n{r}"
    );
    assert_eq!(resolv_search(&r), vec!["mine.test"], "resolv.conf:\n{r}");
}

#[test]
fn host_resolv_change_updates_unedited_copies_only() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(&w, &files, HOST_RESOLV, &[]);
    let plain = w.container("plain");
    let edited = w.container("edited");
    let custom = w.container("custom");
    d.attach("plain", &plain, &[]);
    d.attach("edited", &edited, &[]);
    d.attach("custom", &custom, &["--dns", "192.0.2.1"]);
    let edited_path = d.etc_dir("edited").join("resolv.conf");
    let mut edited_text = std::fs::read_to_string(&edited_path).unwrap();
    edited_text.push_str("nameserver 192.0.2.99\n");
    std::fs::write(&edited_path, &edited_text).unwrap();
    let custom_text = d.etc_file("custom", "resolv.conf");

    // The host file changes in place (as an editor or DHCP client writing it would).
    std::fs::write(
        files.path().join("resolv.conf"),
        "nameserver 203.0.113.53\nsearch new.test\n",
    )
    .unwrap();
    let r = poll_until(
        "plain's resolv.conf to follow the host",
        Duration::from_secs(5),
        || {
            let r = d.etc_file("plain", "resolv.conf");
            if resolv_nameservers(&r) == vec!["203.0.113.53"] {
                Ok(r)
            } else {
                Err(r)
            }
        },
    );
    assert_eq!(resolv_search(&r), vec!["new.test"]);
    assert!(resolv_options(&r).is_empty(), "old options left:\n{r}");
    // The update is done (plain changed); the others must not have been touched.
    assert_eq!(
        d.etc_file("edited", "resolv.conf"),
        edited_text,
        "edited copy overwritten"
    );
    assert_eq!(
        d.etc_file("custom", "resolv.conf"),
        custom_text,
        "--dns copy overwritten"
    );
    // A later change still reaches the plain copy (the watch survives a rewrite).
    std::fs::write(
        files.path().join("resolv.conf"),
        "nameserver 203.0.113.54\n",
    )
    .unwrap();
    poll_until("second update", Duration::from_secs(5), || {
        let r = d.etc_file("plain", "resolv.conf");
        if resolv_nameservers(&r) == vec!["203.0.113.54"] {
            Ok(())
        } else {
            Err(r)
        }
    });
}

#[test]
fn host_resolv_replaced_by_rename_is_followed() {
    let w = World::new();
    let files = TempDir::new();
    let d = daemon_with_resolv(&w, &files, HOST_RESOLV, &[]);
    let c = w.container("c1");
    d.attach("c1", &c, &[]);
    // resolvconf and DHCP clients replace the file atomically.
    let tmp = files.write("resolv.conf.new", "nameserver 203.0.113.77\n");
    std::fs::rename(&tmp, files.path().join("resolv.conf")).unwrap();
    poll_until(
        "resolv.conf to follow a renamed host file",
        Duration::from_secs(5),
        || {
            let r = d.etc_file("c1", "resolv.conf");
            if resolv_nameservers(&r) == vec!["203.0.113.77"] {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
}
