//! Operating the dataplane: a published-port TCP stream survives `kill -9` and a restart of
//! the daemon, nothing is done with iptables or nftables, and the state is observable with
//! bpftool (BTF-named fields), `netd ct`, `netd stats` and the HTTP API.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use netd_tests::dataplane::{
    EchoServer, ct, ct_has_kind, filter_lists, lines_with, stats, tcp_try,
};
use netd_tests::traffic::enter_netns;
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{
    BIP, Daemon, Netns, World, cmd, in_netns, poll_until, tcp_request_until, tcp_server,
    try_poll_until, udp_request, udp_server,
};

const T: Duration = Duration::from_secs(5);

fn s(v: &serde_json::Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// From inside `ns`, streams a byte pattern to `addr` for `dur` (1 KiB every 2 ms) while
/// reading the echo back and checking it; returns (sent, received). `progress` counts the
/// bytes echoed so far.
fn stream(
    ns: &Netns,
    addr: SocketAddr,
    dur: Duration,
    progress: Arc<AtomicUsize>,
) -> JoinHandle<Result<(usize, usize)>> {
    let path = ns.path().to_path_buf();
    std::thread::spawn(move || {
        enter_netns(&path)?;
        let s = TcpStream::connect_timeout(&addr, T).with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        let r = s.try_clone()?;
        let reader = std::thread::spawn(move || -> Result<usize> {
            let mut buf = [0u8; 16384];
            let mut got = 0usize;
            loop {
                let n = (&r).read(&mut buf).context("read echo")?;
                if n == 0 {
                    return Ok(got);
                }
                for (k, b) in buf[..n].iter().enumerate() {
                    if *b != pattern(got + k) {
                        bail!(
                            "echoed byte {} is {b}, expected {}",
                            got + k,
                            pattern(got + k)
                        );
                    }
                }
                got += n;
                progress.store(got, Ordering::Relaxed);
            }
        });
        let start = Instant::now();
        let mut sent = 0usize;
        let mut chunk = [0u8; 1024];
        while start.elapsed() < dur {
            for (k, b) in chunk.iter_mut().enumerate() {
                *b = pattern(sent + k);
            }
            (&s).write_all(&chunk).context("write")?;
            sent += chunk.len();
            std::thread::sleep(Duration::from_millis(2));
        }
        s.shutdown(Shutdown::Write)?;
        let got = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))??;
        Ok((sent, got))
    })
}

fn wait_progress(p: &AtomicUsize, above: usize, what: &str) -> usize {
    poll_until(what, T, || {
        let n = p.load(Ordering::Relaxed);
        if n > above { Ok(n) } else { Err(n) }
    })
}

/// The published flow's original direction from 198.51.100.2 to 198.51.100.1:8080.
fn published_flow(d: &Daemon, web_ip: &str) -> Result<Vec<serde_json::Value>, String> {
    let f = ct(d, &["--ip", web_ip, "--proto", "tcp", "--port", "8080"]);
    if f.iter().any(|e| {
        e["direction"] == "original"
            && ct_has_kind(e, "published")
            && s(&e["dst"]) == format!("{HOST_UPLINK_IP}:8080")
    }) {
        Ok(f)
    } else {
        Err(format!("{f:?}"))
    }
}

#[test]
fn published_stream_survives_kill9_and_restart() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    let web_ip = s(&d.attach("web", &web, &["-p", "8080:80"])["ip"]).to_string();
    let _echo = EchoServer::start(&web, 80);
    let target = format!("{HOST_UPLINK_IP}:8080");
    try_poll_until(T, || tcp_try(&w.outside, &target, Duration::from_secs(1)))
        .expect("published port never answered");
    let progress = Arc::new(AtomicUsize::new(0));
    let client = stream(
        &w.outside,
        target.parse().unwrap(),
        Duration::from_secs(3),
        progress.clone(),
    );
    let p = wait_progress(&progress, 64 * 1024, "the stream to get going");
    d.kill9();
    // The dataplane keeps forwarding with no daemon at all, new connections included.
    let p = wait_progress(&progress, p + 64 * 1024, "echo while the daemon is dead");
    assert_eq!(
        tcp_try(&w.outside, &target, T).expect("new connection while the daemon is dead"),
        "ping"
    );
    d.restart();
    wait_progress(&progress, p + 64 * 1024, "echo after the restart");
    let flows = poll_until("the stream in netd ct after restart", T, || {
        published_flow(&d, &web_ip)
    });
    let (sent, got) = client
        .join()
        .expect("client thread")
        .unwrap_or_else(|e| panic!("stream broke: {e:#}\nflows: {flows:?}\n{}", d.logs()));
    assert!(sent > 512 * 1024, "only {sent} bytes sent in 3 s");
    assert_eq!(got, sent, "echoed {got} of {sent} bytes");
}

#[test]
fn masquerade_stream_survives_a_restart() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let c1 = w.container("c1");
    let ip1 = s(&d.attach("c1", &c1, &[])["ip"]).to_string();
    let echo = EchoServer::start(&w.outside, 7100);
    let target = format!("{OUTSIDE_IP}:7100");
    try_poll_until(T, || tcp_try(&c1, &target, Duration::from_secs(1)))
        .expect("outside never answered");
    let progress = Arc::new(AtomicUsize::new(0));
    let client = stream(
        &c1,
        target.parse().unwrap(),
        Duration::from_secs(3),
        progress.clone(),
    );
    let p = wait_progress(&progress, 64 * 1024, "the stream to get going");
    d.restart(); // SIGTERM, then start again
    wait_progress(&progress, p + 64 * 1024, "echo after the restart");
    let flows = poll_until("the masqueraded stream in netd ct", T, || {
        let f = ct(&d, &["--ip", &ip1, "--proto", "tcp", "--port", "7100"]);
        if f.iter().any(|e| ct_has_kind(e, "masquerade")) {
            Ok(f)
        } else {
            Err(f)
        }
    });
    let (sent, got) = client
        .join()
        .expect("client thread")
        .unwrap_or_else(|e| panic!("stream broke: {e:#}\nflows: {flows:?}\n{}", d.logs()));
    assert_eq!(got, sent, "echoed {got} of {sent} bytes");
    assert!(
        echo.peers()
            .iter()
            .all(|p| p.ip().to_string() == HOST_UPLINK_IP),
        "{:?}",
        echo.peers()
    );
}

#[test]
fn no_iptables_or_nftables_rules() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP, "--icc", "false"]);
    let web = w.container("web");
    let cli = w.container("cli");
    let web_ip = s(&d.attach("web", &web, &["-p", "8080:80", "--expose", "80"])["ip"]).to_string();
    d.attach("cli", &cli, &["--link", "web:web"]);
    d.netd_ok(&["filter", "deny", "192.0.2.0/24"]);
    let _srv = tcp_server(&web, 80);
    let out = udp_server(&w.outside, 7101);
    // Published port, masquerade and link traffic all in use.
    tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap();
    udp_request(&cli, &format!("{OUTSIDE_IP}:7101")).unwrap();
    assert_eq!(out.last_peer_ip(), HOST_UPLINK_IP);
    tcp_request_until(&cli, &format!("{web_ip}:80"), T).unwrap();
    let mut tools = vec![
        vec!["iptables-save"],
        vec!["iptables-legacy-save"],
        vec!["iptables-nft-save"],
    ];
    tools.retain(|t| {
        cmd(&["sh", "-c", &format!("command -v {}", t[0])])
            .status
            .success()
    });
    assert!(!tools.is_empty(), "no iptables-save on this machine");
    for t in tools {
        let o = w.host.run(&t);
        let text = String::from_utf8_lossy(&o.stdout);
        let rules = lines_with(&text, &["DNAT", "SNAT", "MASQUERADE", "DOCKER", "netd"]);
        let any: Vec<_> = text.lines().filter(|l| l.starts_with("-A")).collect();
        assert!(
            rules.is_empty() && any.is_empty(),
            "{t:?} in the host netns shows rules:\n{text}"
        );
    }
    let o = w.host.run(&["nft", "list", "ruleset"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ruleset = String::from_utf8_lossy(&o.stdout);
    assert!(
        ruleset.trim().is_empty(),
        "nft ruleset in the host netns is not empty:\n{ruleset}"
    );
}

fn curl(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let sock = d.sock();
    let mut argv = vec![
        "curl",
        "-sS",
        "--fail-with-body",
        "--max-time",
        "10",
        "--unix-socket",
        sock.to_str().unwrap(),
    ];
    argv.extend_from_slice(args);
    let o = cmd(&argv);
    let body = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{argv:?}: {body}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{argv:?}: bad JSON {e}: {body}"))
}

#[test]
fn conntrack_is_observable_with_bpftool_cli_and_api() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    let web_ip = s(&d.attach("web", &web, &["-p", "8080:80"])["ip"]).to_string();
    let _echo = EchoServer::start(&web, 80);
    let target: SocketAddr = format!("{HOST_UPLINK_IP}:8080").parse().unwrap();
    // An open connection, so its flow stays established while we look.
    let conn = try_poll_until(T, || {
        in_netns(&w.outside, move || {
            let s = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            (&s).write_all(b"hello\n")?;
            let mut buf = [0u8; 6];
            (&s).read_exact(&mut buf)?;
            Ok(s)
        })
    })
    .expect("published port never answered");
    let lport = conn.local_addr().unwrap().port();
    let client = format!("{OUTSIDE_IP}:{lport}");

    // bpftool reads the pinned map with its BTF field names.
    // NETD_CT is at layout version 2 (netd-common's CT_LAYOUT_VERSION).
    let pin = d.bpffs().join("maps").join("NETD_CT@v2");
    let o = cmd(&["bpftool", "map", "dump", "pinned", pin.to_str().unwrap()]);
    let dump = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for field in ["nat_daddr", "flags", "saddr", "dport"] {
        assert!(dump.contains(field), "bpftool dump lacks {field}:\n{dump}");
    }

    // Both directions of the published flow, with their translations.
    let flows = poll_until("both directions in netd ct", T, || {
        let f = ct(&d, &["--ip", &web_ip]);
        let orig = f
            .iter()
            .find(|e| e["direction"] == "original" && e["src"] == client.as_str());
        let reply = f
            .iter()
            .find(|e| e["direction"] == "reply" && e["dst"] == client.as_str());
        match (orig, reply) {
            (Some(o), Some(r)) => Ok((o.clone(), r.clone())),
            _ => Err(f),
        }
    });
    let (orig, reply) = flows;
    assert_eq!(s(&orig["proto"]), "tcp", "{orig}");
    assert_eq!(s(&orig["dst"]), format!("{HOST_UPLINK_IP}:8080"), "{orig}");
    assert_eq!(s(&orig["nat_dst"]), format!("{web_ip}:80"), "{orig}");
    assert_eq!(
        s(&orig["nat_src"]),
        client,
        "client address rewritten: {orig}"
    );
    assert!(ct_has_kind(&orig, "published"), "{orig}");
    assert_eq!(s(&reply["src"]), format!("{web_ip}:80"), "{reply}");
    assert_eq!(
        s(&reply["nat_src"]),
        format!("{HOST_UPLINK_IP}:8080"),
        "{reply}"
    );
    assert!(ct_has_kind(&reply, "published"), "{reply}");
    assert!(orig["packets"].as_u64().unwrap() >= 3, "{orig}");
    assert!(reply["packets"].as_u64().unwrap() >= 2, "{reply}");
    // Filters of `netd ct`.
    assert!(
        ct(&d, &["--ip", &web_ip, "--proto", "udp"]).is_empty(),
        "udp filter shows tcp flows"
    );
    assert!(
        ct(&d, &["--port", "8080"])
            .iter()
            .any(|e| e["src"] == client.as_str())
    );
    assert!(ct(&d, &["--ip", "192.0.2.1"]).is_empty());

    // The HTTP API says the same.
    let sock_url = |p: &str| format!("http://netd{p}");
    let api = curl(
        &d,
        &[&sock_url(&format!(
            "/v1/ct?ip={web_ip}&proto=tcp&port=8080"
        ))],
    );
    assert!(
        api.as_array()
            .is_some_and(|a| a.iter().any(|e| e["src"] == client.as_str())),
        "{api}"
    );
    let st = curl(&d, &[&sock_url("/v1/stats")]);
    assert_eq!(
        st["bindings"].as_array().map(Vec::len),
        stats(&d)["bindings"].as_array().map(Vec::len),
        "{st}"
    );
    assert!(st["drops"].is_array() && st["bindings"].is_array(), "{st}");
    curl(
        &d,
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"action":"deny","cidrs":["192.0.2.0/24"]}"#,
            &sock_url("/v1/filters"),
        ],
    );
    let f = curl(&d, &[&sock_url("/v1/filters")]);
    assert!(f.to_string().contains("192.0.2.0/24"), "{f}");
    assert_eq!(filter_lists(&d).1, vec!["192.0.2.0/24".to_string()]);
    drop(conn);
}
