//! Self-tests of the harness (no netd needed): topology, traffic helpers, cleanup.

use std::time::Duration;

use netd_tests::netns::netns_listed;
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{Netns, World, tcp_request, tcp_server, udp_request, udp_server};

#[test]
fn world_links_host_and_outside() {
    let w = World::new();
    assert_eq!(w.host.addrs4("up0"), vec![format!("{HOST_UPLINK_IP}/24")]);
    assert_eq!(w.outside.addrs4("eth0"), vec![format!("{OUTSIDE_IP}/24")]);
    assert!(
        w.outside.ping(HOST_UPLINK_IP, Duration::from_secs(5)),
        "outside cannot ping host"
    );
    assert!(
        w.host.ping(OUTSIDE_IP, Duration::from_secs(5)),
        "host cannot ping outside"
    );
    // lo is up in host and outside, so local traffic works there.
    assert!(w.host.ping_once("127.0.0.1"));
    assert!(w.outside.ping_once("127.0.0.1"));
}

#[test]
fn container_namespace_is_unconfigured() {
    let w = World::new();
    let c = w.container("c1");
    assert_eq!(c.name, "c1");
    assert_eq!(c.links(), vec!["lo".to_string()]);
    let lo = c.link("lo").unwrap();
    assert!(
        !lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "lo must stay down until netd configures it: {lo}"
    );
    assert!(c.link("eth0").is_none());
}

#[test]
fn tcp_and_udp_servers_record_source_addresses() {
    let w = World::new();
    let tcp = tcp_server(&w.outside, 7001);
    let reply = tcp_request(&w.host, &format!("{OUTSIDE_IP}:7001")).unwrap();
    assert_eq!(reply, "ping");
    assert_eq!(tcp.last_peer_ip(), HOST_UPLINK_IP);

    let udp = udp_server(&w.host, 7002);
    let reply = udp_request(&w.outside, &format!("{HOST_UPLINK_IP}:7002")).unwrap();
    assert_eq!(reply, "ping");
    assert_eq!(udp.last_peer_ip(), OUTSIDE_IP);

    // Nothing listens on this port: the client fails within its timeout instead of hanging.
    assert!(tcp_request(&w.host, &format!("{OUTSIDE_IP}:7999")).is_err());
    // An address nobody owns: UDP gives up after its retries.
    assert!(udp_request(&w.host, "198.51.100.77:7002").is_err());
}

#[test]
fn servers_bind_inside_their_namespace() {
    let w = World::new();
    let _s = tcp_server(&w.outside, 7003);
    // The server listens in outside, not in host: host's own 127.0.0.1:7003 has no listener.
    assert!(tcp_request(&w.host, "127.0.0.1:7003").is_err());
    assert_eq!(tcp_request(&w.outside, "127.0.0.1:7003").unwrap(), "ping");
}

#[test]
fn guards_remove_namespaces_and_processes() {
    let (names, pid) = {
        let w = World::new();
        let c = w.container("x");
        let pid = c.spawn(&["sleep", "1000"]);
        let names = vec![
            w.host.name().to_string(),
            w.outside.name().to_string(),
            c.name().to_string(),
        ];
        for n in &names {
            assert!(netns_listed(n), "{n} not listed while alive");
        }
        (names, pid)
    };
    for n in &names {
        assert!(!netns_listed(n), "{n} still listed after drop");
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} started in the container survived the guard"
    );
}

#[test]
fn guard_cleans_up_on_panic() {
    let name = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let n2 = name.clone();
    let r = std::thread::spawn(move || {
        let ns = Netns::new("netdt-p-");
        *n2.lock().unwrap() = ns.name().to_string();
        panic!("deliberate panic inside a test body");
    })
    .join();
    assert!(r.is_err());
    let name = name.lock().unwrap().clone();
    assert!(!name.is_empty());
    assert!(!netns_listed(&name), "{name} leaked after a panic");
}

#[test]
fn explicit_delete_is_idempotent() {
    let ns = Netns::new("netdt-d-");
    let name = ns.name().to_string();
    ns.delete();
    assert!(!netns_listed(&name));
    drop(ns);
}
