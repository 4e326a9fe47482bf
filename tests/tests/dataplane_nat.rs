//! Address translation end to end ("Communication between containers and the wider world"):
//! masquerade of TCP, UDP and ICMP echo leaving through the uplink, `--ip-masq false`,
//! untranslated traffic between containers and to the bridge, and hairpin access to published
//! ports from containers (a neighbour's and a container's own).

use std::net::Ipv4Addr;
use std::time::Duration;

use netd_tests::dataplane::{IcmpSniffer, ct, ct_has_kind};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{
    BIP, BRIDGE_IP, World, poll_until, tcp_request, tcp_request_until, tcp_server,
    tcp_udp_arrive_from, udp_request, udp_server,
};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Pings `dst` from `c` until an answer comes; asserts the sniffer saw echo requests and all
/// of them from `want`.
fn pings_arrive_from(c: &netd_tests::Netns, dst: &str, sniffer: &IcmpSniffer, want: &str) {
    let src = ping_sources(c, dst, sniffer);
    assert!(
        !src.is_empty() && src.iter().all(|a| a.to_string() == want),
        "echo requests to {dst} arrived from {src:?}, not all from {want}"
    );
}

/// Pings `dst` from `c` until an answer comes; returns the sources the sniffer saw.
fn ping_sources(c: &netd_tests::Netns, dst: &str, sniffer: &IcmpSniffer) -> Vec<Ipv4Addr> {
    sniffer.echo_request_sources(); // forget earlier packets
    assert!(c.ping(dst, T), "no echo reply from {dst}");
    sniffer.echo_request_sources()
}

#[test]
fn masquerade_hides_containers_behind_the_uplink_address() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let ((c1, ip1), (c2, ip2)) = w.two_attached(&d);
    let out_tcp = tcp_server(&w.outside, 7100);
    let out_udp = udp_server(&w.outside, 7101);
    let sniffer = IcmpSniffer::new(&w.outside);

    // Outbound TCP, UDP and ping work and come from the host's uplink address.
    tcp_udp_arrive_from(&c1, OUTSIDE_IP, &out_tcp, &out_udp, HOST_UPLINK_IP);
    pings_arrive_from(&c1, OUTSIDE_IP, &sniffer, HOST_UPLINK_IP);
    // Two containers at once, both masqueraded.
    assert_eq!(
        tcp_request_until(&c2, &format!("{OUTSIDE_IP}:7100"), T).unwrap(),
        "ping"
    );
    assert!(
        out_tcp
            .peer_ips()
            .iter()
            .all(|a| a.to_string() == HOST_UPLINK_IP),
        "{:?}",
        out_tcp.peer_ips()
    );
    // The flows are tracked as masquerade, translated to the uplink address.
    let flows = ct(&d, &["--ip", &ip1, "--proto", "udp"]);
    let orig = flows
        .iter()
        .find(|f| f["direction"] == "original" && ct_has_kind(f, "masquerade"))
        .unwrap_or_else(|| panic!("no masquerade flow for {ip1}: {flows:?}"));
    assert!(s(&orig["src"]).starts_with(&format!("{ip1}:")), "{orig}");
    assert!(
        s(&orig["nat_src"]).starts_with(&format!("{HOST_UPLINK_IP}:")),
        "{orig}"
    );
    assert_eq!(s(&orig["dst"]), format!("{OUTSIDE_IP}:7101"));

    // Container to container and container to the bridge are never translated.
    let peer_tcp = tcp_server(&c2, 7200);
    let peer_udp = udp_server(&c2, 7201);
    tcp_udp_arrive_from(&c1, &ip2, &peer_tcp, &peer_udp, &ip1);
    let sniff_c2 = IcmpSniffer::new(&c2);
    pings_arrive_from(&c1, &ip2, &sniff_c2, &ip1);
    let host_tcp = tcp_server(&w.host, 7300);
    let host_udp = udp_server(&w.host, 7301);
    tcp_udp_arrive_from(&c1, BRIDGE_IP, &host_tcp, &host_udp, &ip1);
    // A container also reaches the host's uplink address untranslated (it is local).
    assert_eq!(
        tcp_request(&c1, &format!("{HOST_UPLINK_IP}:7300")).unwrap(),
        "ping"
    );
    assert_eq!(host_tcp.last_peer_ip(), ip1);
}

#[test]
fn ip_masq_false_keeps_container_addresses() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--ip-masq", "false"]);
    w.route_outside_to("172.30.0.0/24");
    let c1 = w.container("c1");
    let ip1 = s(&d.attach("c1", &c1, &[])["ip"]).to_string();
    let out_tcp = tcp_server(&w.outside, 7100);
    let out_udp = udp_server(&w.outside, 7101);
    let sniffer = IcmpSniffer::new(&w.outside);
    tcp_udp_arrive_from(&c1, OUTSIDE_IP, &out_tcp, &out_udp, &ip1);
    pings_arrive_from(&c1, OUTSIDE_IP, &sniffer, &ip1);
    // Tracked, but never translated.
    let flows = ct(&d, &["--ip", &ip1]);
    assert!(!flows.is_empty(), "no flows tracked for {ip1}");
    let translated: Vec<_> = flows
        .iter()
        .filter(|f| f["src"] != f["nat_src"] || f["dst"] != f["nat_dst"])
        .collect();
    assert!(
        translated.is_empty(),
        "flows translated with --ip-masq false: {translated:?}"
    );
}

#[test]
fn hairpin_reaches_published_ports_from_containers() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    let cli = w.container("cli");
    let web_ip =
        s(&d.attach("web", &web, &["-p", "8080:80", "-p", "8080:80/udp"])["ip"]).to_string();
    let cli_ip = s(&d.attach("cli", &cli, &["-p", "8090:90"])["ip"]).to_string();
    let web_tcp = tcp_server(&web, 80);
    let web_udp = udp_server(&web, 80);
    let cli_tcp = tcp_server(&cli, 90);
    // The source a hairpinned container sees may be the client itself (DNAT only) or a host
    // address (DNAT + SNAT); never anything else.
    let allowed = |client: &str| [client.to_string(), BRIDGE_IP.into(), HOST_UPLINK_IP.into()];

    // A neighbour's published port, through the uplink address and the bridge address.
    for via in [HOST_UPLINK_IP, BRIDGE_IP] {
        assert_eq!(
            tcp_request_until(&cli, &format!("{via}:8080"), T).unwrap(),
            "ping",
            "cli -> {via}:8080"
        );
        let peer = web_tcp.last_peer_ip();
        assert!(
            allowed(&cli_ip).contains(&peer),
            "web saw {peer} for cli -> {via}:8080"
        );
    }
    assert_eq!(
        udp_request(&cli, &format!("{HOST_UPLINK_IP}:8080")).unwrap(),
        "ping"
    );
    assert!(allowed(&cli_ip).contains(&web_udp.last_peer_ip()));

    // A container's own published port, through the uplink address (needs SNAT: a packet
    // from its own address would be a martian to it).
    for _ in 0..2 {
        assert_eq!(
            tcp_request_until(&cli, &format!("{HOST_UPLINK_IP}:8090"), T).unwrap(),
            "ping",
            "cli -> its own {HOST_UPLINK_IP}:8090"
        );
    }
    let peer = cli_tcp.last_peer_ip();
    assert!(
        peer != cli_ip && allowed(&cli_ip).contains(&peer),
        "cli saw {peer} for its own published port"
    );
    assert_eq!(
        tcp_request(&web, &format!("{HOST_UPLINK_IP}:8090")).unwrap(),
        "ping"
    );
    assert!(allowed(&web_ip).contains(&cli_tcp.last_peer_ip()));
    // The outside still gets the real answer after all that.
    assert_eq!(
        tcp_request(&w.outside, &format!("{HOST_UPLINK_IP}:8080")).unwrap(),
        "ping"
    );
    assert_eq!(web_tcp.last_peer_ip(), OUTSIDE_IP);
    poll_until("hairpin flows in ct", T, || {
        let f = ct(&d, &["--ip", &web_ip, "--port", "8080"]);
        if f.iter().any(|e| ct_has_kind(e, "published")) {
            Ok(())
        } else {
            Err(f)
        }
    });
}
