//! Policy end to end ("Communication between containers"): `--icc false` with `--link`
//! exceptions limited to exposed ports and protocols, `--icc true`, source filters on the
//! uplink (`netd filter`), and anti-spoofing of container source addresses and MACs. Every
//! "blocked" check is preceded by a check that the same path works when allowed, and every
//! drop is expected under its reason in `netd stats`.

use std::time::Duration;

use netd_tests::dataplane::{
    BLOCKED_WAIT, IcmpSniffer, drops, filter_lists, ping_from, tcp_blocked, tcp_try_from,
    tcp_try_from_port, udp_fire_from, udp_try,
};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{
    BIP, Daemon, World, poll_until, tcp_request, tcp_request_until, tcp_server,
    tcp_udp_arrive_from, udp_request, udp_server,
};

const T: Duration = Duration::from_secs(5);
/// A second outside address, routed by the host back via the outside's uplink address.
const OUTSIDE_IP2: &str = "203.0.113.2";

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|x| x.to_string()).collect()
}

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Waits until `reason` has counted more than `before` drops.
fn drops_grow(d: &Daemon, reason: &str, before: u64) {
    poll_until(&format!("{reason} drops above {before}"), T, || {
        let n = drops(d, reason);
        if n > before { Ok(n) } else { Err(n) }
    });
}

#[test]
fn icc_false_blocks_containers_except_linked_exposed_ports() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--icc", "false"]);
    let web = w.container("web");
    let cli = w.container("cli");
    let other = w.container("other");
    let web_ip = "172.30.0.10";
    let cli_ip = "172.30.0.11";
    d.attach(
        "web",
        &web,
        &["--ip", web_ip, "--expose", "80", "-p", "8080:80"],
    );
    d.attach("cli", &cli, &["--ip", cli_ip, "--link", "web:db"]);
    let other_ip = s(&d.attach("other", &other, &[])["ip"]).to_string();
    let cli80 = tcp_server(&cli, 80);
    let cli80u = udp_server(&cli, 80);
    // web cannot connect to cli even from its exposed port (Docker's `--sport 80` ACCEPT rule
    // let that through); probed before web listens on 80 so the client can bind port 80.
    let e = tcp_try_from_port(
        &web,
        &format!("{web_ip}:80"),
        &format!("{cli_ip}:80"),
        BLOCKED_WAIT,
    )
    .expect_err("web -> cli:80 from source port 80");
    assert!(
        !format!("{e:#}").contains("bind"),
        "probe did not run: {e:#}"
    );
    let web80 = tcp_server(&web, 80);
    let web81 = tcp_server(&web, 81);
    let web80u = udp_server(&web, 80);
    let icc0 = drops(&d, "icc-denied");

    // The link: cli reaches web's exposed 80/tcp, from its own address.
    assert_eq!(
        tcp_request_until(&cli, &format!("{web_ip}:80"), T).unwrap(),
        "ping"
    );
    assert_eq!(web80.last_peer_ip(), cli_ip);
    // ... and nothing else of web: another port, UDP on the same port, ping.
    assert!(tcp_blocked(&cli, &format!("{web_ip}:81")), "cli -> web:81");
    assert!(
        udp_try(&cli, &format!("{web_ip}:80")).is_err(),
        "cli -> web:80/udp"
    );
    assert!(!ping_from(&cli, None, web_ip), "cli pings web");
    // web cannot open connections to the container that links to it.
    assert!(tcp_blocked(&web, &format!("{cli_ip}:80")), "web -> cli:80");
    assert!(
        udp_try(&web, &format!("{cli_ip}:80")).is_err(),
        "web -> cli:80/udp"
    );
    // A container without a link reaches nobody, and nobody reaches it.
    assert!(
        tcp_blocked(&other, &format!("{web_ip}:80")),
        "other -> web:80"
    );
    assert!(
        tcp_blocked(&other, &format!("{cli_ip}:80")),
        "other -> cli:80"
    );
    assert!(!ping_from(&other, None, cli_ip), "other pings cli");
    assert!(tcp_blocked(&cli, &format!("{other_ip}:80")));
    assert!(web81.peer_ips().is_empty() && web80u.peer_ips().is_empty());
    assert!(cli80.peer_ips().is_empty() && cli80u.peer_ips().is_empty());
    assert_eq!(web80.peer_ips().len(), 1, "{:?}", web80.peer_ips());
    drops_grow(&d, "icc-denied", icc0);

    // --icc false does not touch the outside world: published ports and masquerade work.
    let out = tcp_server(&w.outside, 7100);
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap(),
        "ping"
    );
    assert_eq!(web80.last_peer_ip(), OUTSIDE_IP);
    assert_eq!(
        tcp_request_until(&other, &format!("{OUTSIDE_IP}:7100"), T).unwrap(),
        "ping"
    );
    assert_eq!(out.last_peer_ip(), HOST_UPLINK_IP);

    // Re-attaching the client without the link removes the allowance.
    d.netd_ok(&["detach", "cli"]);
    d.attach("cli", &cli, &["--ip", cli_ip]);
    assert!(
        tcp_blocked(&cli, &format!("{web_ip}:80")),
        "cli still reaches web:80 after re-attaching without --link"
    );
    // Linking again restores it.
    d.netd_ok(&["detach", "cli"]);
    d.attach("cli", &cli, &["--ip", cli_ip, "--link", "web:db"]);
    assert_eq!(
        tcp_request_until(&cli, &format!("{web_ip}:80"), T).unwrap(),
        "ping"
    );
    // Detaching the target removes it too: whoever gets web's address next is not linked.
    d.netd_ok(&["detach", "web"]);
    let imposter = w.container("imposter");
    d.attach("imposter", &imposter, &["--ip", web_ip, "--expose", "80"]);
    let imp80 = tcp_server(&imposter, 80);
    assert!(
        tcp_blocked(&cli, &format!("{web_ip}:80")),
        "cli reaches a new container on the detached web's address"
    );
    assert!(imp80.peer_ips().is_empty());

    // A UDP exposure is linked as UDP only.
    let dns = w.container("dns");
    let dns_ip = "172.30.0.20";
    d.attach("dns", &dns, &["--ip", dns_ip, "--expose", "53/udp"]);
    let res = w.container("res");
    d.attach("res", &res, &["--link", "dns:ns"]);
    let dns53u = udp_server(&dns, 53);
    let dns53 = tcp_server(&dns, 53);
    assert_eq!(
        udp_request(&res, &format!("{dns_ip}:53")).unwrap(),
        "ping",
        "res -> dns:53/udp over the link"
    );
    assert!(
        tcp_blocked(&res, &format!("{dns_ip}:53")),
        "res -> dns:53/tcp although only 53/udp is exposed"
    );
    assert_eq!(dns53u.peer_ips().len(), 1);
    assert!(dns53.peer_ips().is_empty());
}

/// `netd publish` on a container that others link to: with `--icc false` the linked container
/// reaches the container side of the new port at once (publishing implies exposing), not only
/// after some unrelated change rewrote the link allowances.
#[test]
fn a_port_published_after_attach_is_reachable_through_links() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--icc", "false"]);
    let web = w.container("web");
    let cli = w.container("cli");
    let web_ip = "172.30.0.10";
    let cli_ip = "172.30.0.11";
    d.attach("web", &web, &["--ip", web_ip, "--expose", "80"]);
    d.attach("cli", &cli, &["--ip", cli_ip, "--link", "web:db"]);
    let web80 = tcp_server(&web, 80);
    let web90 = tcp_server(&web, 90);
    // The link works for the exposed port, and 90 is not reachable yet.
    assert_eq!(
        tcp_request_until(&cli, &format!("{web_ip}:80"), T).unwrap(),
        "ping"
    );
    assert_eq!(web80.last_peer_ip(), cli_ip);
    assert!(tcp_blocked(&cli, &format!("{web_ip}:90")), "cli -> web:90");
    d.netd_ok(&["publish", "web", "9090:90"]);
    assert_eq!(
        tcp_request_until(&cli, &format!("{web_ip}:90"), T).unwrap(),
        "ping"
    );
    assert_eq!(web90.last_peer_ip(), cli_ip);
    // Still only the link: UDP on the new port stays closed.
    assert!(
        udp_try(&cli, &format!("{web_ip}:90")).is_err(),
        "cli -> web:90/udp"
    );
}

#[test]
fn icc_true_allows_everything_between_containers() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--icc", "true"]);
    let ((c1, ip1), (c2, ip2)) = w.two_attached(&d);
    let servers: Vec<_> = [&c1, &c2]
        .iter()
        .map(|c| (tcp_server(c, 81), udp_server(c, 81)))
        .collect();
    for (from, to, to_ip, from_ip) in [(&c1, 1, &ip2, &ip1), (&c2, 0, &ip1, &ip2)] {
        assert_eq!(
            tcp_request_until(from, &format!("{to_ip}:81"), T).unwrap(),
            "ping"
        );
        assert_eq!(servers[to].0.last_peer_ip(), *from_ip);
        assert_eq!(udp_request(from, &format!("{to_ip}:81")).unwrap(), "ping");
        assert_eq!(servers[to].1.last_peer_ip(), *from_ip);
        assert!(from.ping(to_ip, T), "{from_ip} cannot ping {to_ip}");
    }
    assert_eq!(drops(&d, "icc-denied"), 0);
}

#[test]
fn source_filters_guard_published_ports() {
    let w = World::new();
    w.outside
        .ip(&["addr", "add", &format!("{OUTSIDE_IP2}/32"), "dev", "eth0"]);
    w.host
        .ip(&["route", "add", "203.0.113.0/24", "via", OUTSIDE_IP]);
    let mut d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80"]);
    let srv = tcp_server(&web, 80);
    let out_tcp = tcp_server(&w.outside, 7100);
    let out_udp = udp_server(&w.outside, 7101);
    let target = format!("{HOST_UPLINK_IP}:8080");
    assert_eq!(tcp_request_until(&w.outside, &target, T).unwrap(), "ping");
    assert_eq!(
        tcp_try_from(&w.outside, OUTSIDE_IP2, &target, T).unwrap(),
        "ping"
    );
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP2);
    assert_eq!(
        filter_lists(&d),
        (v(&[]), v(&[])),
        "fresh daemon has filters"
    );

    // An allow list lets only its sources in.
    let na0 = drops(&d, "source-not-allowed");
    d.netd_ok(&["filter", "allow", "203.0.113.0/24"]);
    assert!(
        tcp_blocked(&w.outside, &target),
        "{OUTSIDE_IP} not in the allow list but got in"
    );
    assert_eq!(
        tcp_try_from(&w.outside, OUTSIDE_IP2, &target, T).unwrap(),
        "ping"
    );
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP2);
    drops_grow(&d, "source-not-allowed", na0);
    assert_eq!(filter_lists(&d), (v(&["203.0.113.0/24"]), v(&[])));
    // Replies to connections the container opened are never filtered.
    tcp_udp_arrive_from(&web, OUTSIDE_IP, &out_tcp, &out_udp, HOST_UPLINK_IP);
    d.netd_ok(&["filter", "rm", "203.0.113.0/24"]);
    assert_eq!(tcp_request_until(&w.outside, &target, T).unwrap(), "ping");
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP);

    // A deny list keeps its sources out.
    let dn0 = drops(&d, "source-denied");
    d.netd_ok(&["filter", "deny", &format!("{OUTSIDE_IP}/32")]);
    assert!(tcp_blocked(&w.outside, &target), "denied source got in");
    assert_eq!(
        tcp_try_from(&w.outside, OUTSIDE_IP2, &target, T).unwrap(),
        "ping"
    );
    drops_grow(&d, "source-denied", dn0);
    assert_eq!(
        tcp_request(&web, &format!("{OUTSIDE_IP}:7100")).unwrap(),
        "ping",
        "a reply from a denied source was filtered"
    );
    assert_eq!(
        udp_request(&web, &format!("{OUTSIDE_IP}:7101")).unwrap(),
        "ping"
    );
    assert_eq!(out_udp.last_peer_ip(), HOST_UPLINK_IP);

    // Both lists survive a restart, and still apply.
    d.netd_ok(&["filter", "allow", "203.0.113.0/24", "198.51.100.0/24"]);
    let lists = filter_lists(&d);
    assert_eq!(lists.1, v(&["198.51.100.2/32"]));
    let mut allow = lists.0.clone();
    allow.sort();
    assert_eq!(allow, v(&["198.51.100.0/24", "203.0.113.0/24"]));
    let ls = d.netd_ok(&["filter", "ls"]);
    d.restart();
    assert_eq!(
        d.netd_ok(&["filter", "ls"]),
        ls,
        "filters changed across a restart"
    );
    assert!(tcp_blocked(&w.outside, &target), "deny lost on restart");
    assert_eq!(
        tcp_try_from(&w.outside, OUTSIDE_IP2, &target, T).unwrap(),
        "ping"
    );
    d.netd_ok(&["filter", "rm", &format!("{OUTSIDE_IP}/32")]);
    assert_eq!(
        tcp_request_until(&w.outside, &target, T).unwrap(),
        "ping",
        "allowed by 198.51.100.0/24 once the deny is gone"
    );
    d.netd_ok(&["filter", "rm", "203.0.113.0/24", "198.51.100.0/24"]);
    assert_eq!(filter_lists(&d), (v(&[]), v(&[])));
    assert_eq!(tcp_request_until(&w.outside, &target, T).unwrap(), "ping");
}

#[test]
fn spoofed_container_sources_are_dropped() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let ((c1, ip1), (c2, ip2)) = w.two_attached(&d);
    let srv = udp_server(&c2, 5000);
    let sniff = IcmpSniffer::new(&c2);
    let target = format!("{ip2}:5000");
    assert_eq!(udp_request(&c1, &target).unwrap(), "ping");
    assert_eq!(srv.last_peer_ip(), ip1);

    // A second address inside the container: its packets never reach the neighbour.
    let spoofed = "172.30.0.99";
    c1.ip(&["addr", "add", &format!("{spoofed}/24"), "dev", "eth0"]);
    let ip0 = drops(&d, "spoofed-source-ip");
    sniff.echo_request_sources();
    for _ in 0..3 {
        udp_fire_from(&c1, spoofed, &target, "spoofed").unwrap();
    }
    assert!(
        !ping_from(&c1, Some(spoofed), &ip2),
        "spoofed ping answered"
    );
    drops_grow(&d, "spoofed-source-ip", ip0);
    assert!(
        !srv.peer_ips().iter().any(|a| a.to_string() == spoofed),
        "c2 received datagrams from {spoofed}: {:?}",
        srv.peers()
    );
    let icmp = sniff.echo_request_sources();
    assert!(
        !icmp.iter().any(|a| a.to_string() == spoofed),
        "c2 received echo requests from {spoofed}"
    );
    // The real address still works.
    assert_eq!(udp_request(&c1, &target).unwrap(), "ping");
    c1.ip(&["addr", "del", &format!("{spoofed}/24"), "dev", "eth0"]);

    // A changed MAC: dropped too, and fine again once restored.
    let mac = c1.mac("eth0");
    let mac0 = drops(&d, "spoofed-source-mac");
    let seen = srv.peers().len();
    c1.ip(&["link", "set", "eth0", "address", "02:42:de:ad:be:ef"]);
    assert!(
        udp_try(&c1, &target).is_err(),
        "traffic from a changed MAC got an answer"
    );
    drops_grow(&d, "spoofed-source-mac", mac0);
    assert_eq!(
        srv.peers().len(),
        seen,
        "c2 received frames from a spoofed MAC"
    );
    c1.ip(&["link", "set", "eth0", "address", &mac]);
    assert_eq!(
        netd_tests::try_poll_until(T, || udp_try(&c1, &target)).unwrap(),
        "ping"
    );
    // Spoofing towards the outside is dropped as well (it would otherwise be masqueraded).
    let out = udp_server(&w.outside, 7101);
    c1.ip(&["addr", "add", &format!("{spoofed}/24"), "dev", "eth0"]);
    let ip0 = drops(&d, "spoofed-source-ip");
    for _ in 0..3 {
        udp_fire_from(&c1, spoofed, &format!("{OUTSIDE_IP}:7101"), "spoofed").unwrap();
    }
    drops_grow(&d, "spoofed-source-ip", ip0);
    assert!(out.peers().is_empty(), "outside got {:?}", out.peers());
}

/// The XDP pre-filter is attached to the uplink only while a filter list is non-empty (XDP on
/// a veth turns off the peer's segmentation offload, so an idle one would cost throughput).
#[test]
fn xdp_prefilter_is_attached_only_while_filtering() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let xdp_on = |d: &Daemon| {
        d.status()["xdp"]
            .as_array()
            .map(|a| a.iter().filter(|p| p["ifname"] == "up0").count())
            .unwrap_or(0)
    };
    let kernel_xdp = || w.host.ip(&["-d", "link", "show", "up0"]).contains("xdp");
    assert_eq!(xdp_on(&d), 0, "no filters, no XDP");
    assert!(!kernel_xdp(), "no filters, no XDP on up0");
    d.netd_ok(&["filter", "deny", "192.0.2.0/24"]);
    assert_eq!(xdp_on(&d), 1, "a deny list attaches the pre-filter");
    assert!(kernel_xdp(), "the kernel shows XDP on up0");
    d.netd_ok(&["filter", "rm", "192.0.2.0/24"]);
    assert_eq!(xdp_on(&d), 0, "empty lists detach it");
    assert!(!kernel_xdp(), "XDP gone from up0");
}

/// The link-local IPv6 address of `eth0` in `ns` once DAD is over.
fn link_local(ns: &netd_tests::Netns) -> String {
    poll_until("a link-local IPv6 address on eth0", T, || {
        let out = ns.run(&[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("tentative") {
            return Err(text);
        }
        text.split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .map(str::to_string)
            .ok_or(text)
    })
}

/// With `--icc ICC`: does a TCP connection over IPv6 link-local from one container to another
/// get through, does an IPv4 limited (and directed) broadcast reach the other container, and
/// how many icc-denied drops did that count?
fn icc_v6_and_broadcast(icc: &str) -> (bool, bool, u64) {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--icc", icc]);
    let a = w.container("a");
    let b = w.container("b");
    d.attach("a", &a, &[]);
    d.attach("b", &b, &[]);
    let icc0 = drops(&d, "icc-denied");
    let b_ll = link_local(&b);
    // The client's own link-local address must be out of DAD too, or it cannot send from it.
    link_local(&a);
    let _srv = b.spawn(&[
        "socat",
        "TCP6-LISTEN:9090,reuseaddr,fork",
        "SYSTEM:echo pong",
    ]);
    b.wait_tcp_listening(9090);
    let target = format!("TCP6:[{b_ll}%eth0]:9090,connect-timeout=2");
    let out = a.run(&["timeout", "5", "socat", "-T", "3", "-", &target]);
    let v6 = String::from_utf8_lossy(&out.stdout).contains("pong");

    let rx = udp_server(&b, 9999);
    let sent = netd_tests::traffic::in_netns(&a, || {
        let s = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
        s.set_broadcast(true)?;
        for _ in 0..5 {
            s.send_to(b"all", ("255.255.255.255", 9999))?;
            s.send_to(b"subnet", ("172.30.0.255", 9999))?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    });
    sent.expect("send broadcasts");
    // Arrival is waited for (under --icc true it must come, however loaded the machine);
    // under --icc false the whole wait is the grace period of the "never".
    let bcast = netd_tests::try_poll_until(Duration::from_secs(3), || {
        if rx.peer_ips().is_empty() {
            Err(())
        } else {
            Ok(())
        }
    })
    .is_ok();
    (v6, bcast, drops(&d, "icc-denied") - icc0)
}

#[test]
fn icc_false_blocks_ipv6_link_local_and_broadcast() {
    let (v6, bcast, _) = icc_v6_and_broadcast("true");
    assert!(
        v6,
        "--icc true: TCP over IPv6 link-local between containers"
    );
    assert!(bcast, "--icc true: broadcast reaches the other container");
    let (v6, bcast, denied) = icc_v6_and_broadcast("false");
    assert!(!v6, "--icc false: TCP over IPv6 link-local got through");
    assert!(!bcast, "--icc false: broadcast reached the other container");
    assert!(denied > 0, "icc-denied drops counted");
}

#[test]
fn a_full_conntrack_table_refuses_new_flows_and_keeps_established_ones() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    let w = World::new();
    // Room for one flow (two entries).
    let d = w.daemon(&["--bip", BIP, "--ct-max", "2"]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80"]);
    let _srv = web.spawn(&["socat", "TCP-LISTEN:80,reuseaddr,fork", "EXEC:cat"]);
    web.wait_tcp_listening(80);
    let full0 = drops(&d, "conntrack-full");
    let addr: std::net::SocketAddr = format!("{HOST_UPLINK_IP}:8080").parse().unwrap();
    let (first, second, again) = netd_tests::traffic::in_netns(&w.outside, move || {
        let line = |s: &mut TcpStream, msg: &str| -> anyhow::Result<String> {
            s.write_all(format!("{msg}\n").as_bytes())?;
            let mut r = BufReader::new(s.try_clone()?);
            let mut out = String::new();
            r.read_line(&mut out)?;
            Ok(out.trim().to_string())
        };
        let mut s = TcpStream::connect_timeout(&addr, T)?;
        s.set_read_timeout(Some(T))?;
        let first = line(&mut s, "one")?;
        let second = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
        let again = line(&mut s, "two")?;
        Ok((first, second, again))
    })
    .expect("the established connection");
    assert_eq!(first, "one");
    assert!(!second, "a new connection got in with a full table");
    assert_eq!(again, "two", "the established connection keeps working");
    drops_grow(&d, "conntrack-full", full0);
}

#[test]
fn direct_access_from_a_host_interface_that_is_no_uplink_is_dropped() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    let ip = s(&d.attach("web", &web, &["-p", "8080:80"])["ip"]).to_string();
    let web80 = tcp_server(&web, 80);
    let web81 = tcp_server(&web, 81);
    // A VPN-like peer behind a second host interface (vpn0, not an --uplink) that routes the
    // container subnet via the host.
    let vpn = netd_tests::Netns::new("netdt-v-");
    vpn.ip(&["link", "set", "lo", "up"]);
    w.host.ip(&[
        "link",
        "add",
        "vpn0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        vpn.name(),
    ]);
    w.host.ip(&["addr", "add", "192.0.2.1/24", "dev", "vpn0"]);
    w.host.ip(&["link", "set", "vpn0", "up"]);
    vpn.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    vpn.ip(&["link", "set", "eth0", "up"]);
    vpn.ip(&["route", "add", "172.30.0.0/24", "via", "192.0.2.1"]);
    vpn.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.1"]);
    let direct0 = drops(&d, "direct-access-to-container");

    // What must keep working: the host reaches the container, the outside its published port.
    assert_eq!(tcp_request(&w.host, &format!("{ip}:80")).unwrap(), "ping");
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap(),
        "ping"
    );
    // The peer behind vpn0 reaches the host, but not the container's address.
    assert!(w.host.ping("192.0.2.2", T), "vpn0 is up");
    assert!(
        tcp_blocked(&vpn, &format!("{ip}:81")),
        "vpn -> container:81"
    );
    assert!(
        udp_try(&vpn, &format!("{ip}:81")).is_err(),
        "vpn -> container:81/udp"
    );
    assert!(!ping_from(&vpn, None, &ip), "vpn pings the container");
    assert!(web81.peer_ips().is_empty(), "{:?}", web81.peer_ips());
    assert!(
        !web80
            .peer_ips()
            .iter()
            .any(|p| p.to_string() == "192.0.2.2"),
        "{:?}",
        web80.peer_ips()
    );
    drops_grow(&d, "direct-access-to-container", direct0);
}
