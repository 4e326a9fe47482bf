//! connect rewrites host-local connections; only in its own netns and cgroup.

use super::*;

// ---------------------------------------------------------------------------------------------

#[test]
fn rewrites_host_local_connections_to_the_container() {
    let s = Setup::new();
    let r = client(
        &s.h,
        Some(&s.cg),
        &[
            "tcp 127.0.0.1:8080",
            "tcp 127.0.0.53:8080",
            "tcp 192.0.2.1:8080",
            "tcp 127.0.0.1:9000",
            "tcp 192.0.2.1:9000",
            "tcp 127.0.0.1:8081",
            "udp 127.0.0.1:8080",
            "udp 192.0.2.1:8080",
            "udpc 127.0.0.1:8080",
            "tcp [::1]:8080",
            "tcp [::ffff:192.0.2.1]:8080",
            "udpc [::1]:8080",
            "udp [::ffff:127.0.0.1]:8080",
        ],
    );
    // TCP to loopback and host addresses; getpeername shows what the client dialled.
    assert_ok(&r, "tcp 127.0.0.1:8080", &["peer=127.0.0.1:8080"]);
    assert_ok(&r, "tcp 127.0.0.53:8080", &["peer=127.0.0.53:8080"]);
    assert_ok(&r, "tcp 192.0.2.1:8080", &["peer=192.0.2.1:8080"]);
    // A loopback-only binding answers on 127.0.0.1 only.
    assert_ok(&r, "tcp 127.0.0.1:9000", &["peer=127.0.0.1:9000"]);
    assert_refused(&r, "tcp 192.0.2.1:9000");
    assert_refused(&r, "tcp 127.0.0.1:8081");
    // UDP replies come from the published address.
    assert_ok(&r, "udp 127.0.0.1:8080", &["from=127.0.0.1:8080"]);
    assert_ok(&r, "udp 192.0.2.1:8080", &["from=192.0.2.1:8080"]);
    assert_ok(
        &r,
        "udpc 127.0.0.1:8080",
        &["from=127.0.0.1:8080", "peer=127.0.0.1:8080"],
    );
    // IPv6 sockets reach the IPv4 container.
    assert_ok(&r, "tcp [::1]:8080", &["peer=[::1]:8080"]);
    assert_ok(
        &r,
        "tcp [::ffff:192.0.2.1]:8080",
        &["peer=[::ffff:192.0.2.1]:8080"],
    );
    assert_ok(
        &r,
        "udpc [::1]:8080",
        &["from=[::1]:8080", "peer=[::1]:8080"],
    );
    assert_ok(
        &r,
        "udp [::ffff:127.0.0.1]:8080",
        &["from=[::ffff:127.0.0.1]:8080"],
    );
    // Every one of them really reached the container (10 successes, each from the host).
    let peers = s.servers.peers();
    assert!(peers.len() >= 10, "{peers:?}");
}

#[test]
fn acts_only_in_its_own_network_namespace_and_cgroup() {
    let s = Setup::new();
    // The same cgroup, another namespace with the same addresses and a server of its own on
    // 127.0.0.1:8080: its connections are not touched.
    let other = netns("o");
    let own = Servers::start(&other, "127.0.0.1:8080");
    let r = client(
        &other,
        Some(&s.cg),
        &["tcp 127.0.0.1:8080", "udp 127.0.0.1:8080"],
    );
    assert_ok(&r, "tcp 127.0.0.1:8080", &["peer=127.0.0.1:8080"]);
    assert_ok(&r, "udp 127.0.0.1:8080", &["from=127.0.0.1:8080"]);
    assert_eq!(own.peers().len(), 2, "served by its own namespace");
    assert!(s.servers.peers().is_empty(), "{:?}", s.servers.peers());

    // The daemon's namespace, but a process outside the cgroup: not touched either.
    let r = client(&s.h, None, &["tcp 127.0.0.1:8080"]);
    assert_refused(&r, "tcp 127.0.0.1:8080");
    assert!(s.servers.peers().is_empty());
}
