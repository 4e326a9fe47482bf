//! 65 000 published ports on one address (issue 13): the port table takes them with no
//! socket per port (this machine's hard `nofile` limit is 20 000), traffic reaches the first,
//! a middle and the last port from outside, host processes cannot bind them, one more port
//! publishes quickly on top, and detach releases them all.

use std::time::{Duration, Instant};

use netd_tests::dataplane::{daemon_cgroup, socat_in_cgroup};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, World, in_netns, tcp_arrives_from, tcp_server, try_poll_until};

const T: Duration = Duration::from_secs(5);
const FIRST: u16 = 1;
const N: u16 = 65_000;
const LAST: u16 = FIRST + N - 1;

#[test]
fn sixty_five_thousand_ports_on_one_address() {
    let w = World::new();
    // 65 000 published ports leave autobind (connect without bind) only what is not
    // published: the host namespace's ephemeral range moves there, or host clients could not
    // connect at all (ip_local_reserved_ports holds the published ports).
    in_netns(&w.host, || {
        Ok(std::fs::write(
            "/proc/sys/net/ipv4/ip_local_port_range",
            "65500 65535",
        )?)
    })
    .unwrap();
    // Masquerade ports above the published block; the default (61000-65535) lies inside it.
    let d = w.daemon(&["--bip", BIP, "--masq-ports", "65001-65499"]);
    let web = w.container("web");
    let spec = format!("{FIRST}-{LAST}:{FIRST}-{LAST}");
    let t0 = Instant::now();
    d.attach("web", &web, &["-p", &spec]);
    eprintln!("published {N} ports in {:?}", t0.elapsed());
    // Every port is in the port table.
    let table = netd_tests::bpf::port_table_v4(&d.map_pin(netd_common::MAP_PORTS));
    let want: Vec<(u8, u16)> = (FIRST..=LAST)
        .map(|p| (netd_common::IPPROTO_TCP, p))
        .collect();
    assert!(
        table == want,
        "the port table holds {} IPv4 bindings, not {FIRST}-{LAST}/tcp",
        table.len()
    );

    let servers: Vec<_> = [FIRST, 33_000, LAST]
        .iter()
        .map(|p| tcp_server(&web, *p))
        .collect();
    for srv in &servers {
        let addr = format!("{HOST_UPLINK_IP}:{}", srv.port);
        tcp_arrives_from(&w.outside, &addr, srv, OUTSIDE_IP);
    }

    // One more port, on another container, on top of 65 000.
    let c2 = w.container("c2");
    d.attach("c2", &c2, &[]);
    let t0 = Instant::now();
    d.netd_ok(&["publish", "c2", "65534:80"]);
    eprintln!(
        "one more port at N={N}: {:?} (CLI start included)",
        t0.elapsed()
    );
    let s2 = tcp_server(&c2, 80);
    tcp_arrives_from(
        &w.outside,
        &format!("{HOST_UPLINK_IP}:65534"),
        &s2,
        OUTSIDE_IP,
    );

    // Host processes are refused the published ports; the daemon holds no socket for them.
    let cg = daemon_cgroup(&d).expect("the test daemon runs with --cgroup");
    let fds = d.fd_count();
    assert!(fds < 1_000, "the daemon holds {fds} descriptors");
    let bind = |port: u16| {
        let py = format!(
            "import socket\ns=socket.socket()\ntry:\n s.bind(('0.0.0.0', {port})); print('ok')\nexcept OSError as e:\n print('err', e.errno)"
        );
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "echo $$ > {}/cgroup.procs && exec nsenter --net={} python3 -c \"$0\"",
                    cg.display(),
                    w.host.path_str()
                ),
                &py,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(bind(33_001), format!("err {}", libc::EADDRINUSE));
    assert_eq!(bind(65_534), format!("err {}", libc::EADDRINUSE));
    assert_eq!(bind(65_535), "ok");
    // A host process still reaches a published port through the socket hooks.
    let reply = try_poll_until(T, || {
        socat_in_cgroup(&cg, &w.host, "tcp", "127.0.0.1:33000")
    })
    .expect("host-local connection");
    assert_eq!(reply, "ping");

    let t0 = Instant::now();
    d.netd_ok(&["detach", "web"]);
    eprintln!("unpublished {N} ports in {:?}", t0.elapsed());
    assert_eq!(bind(33_001), "ok");
    assert_eq!(bind(65_534), format!("err {}", libc::EADDRINUSE));
}
