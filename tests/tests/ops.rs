//! Operating netd as a host daemon: the config file (`--config-file`), SIGHUP reload, and
//! service-manager readiness through a `NOTIFY_SOCKET` of the test's own.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use netd_tests::dataplane::{filter_lists, tcp_blocked};
use netd_tests::files::resolv_nameservers;
use netd_tests::world::HOST_UPLINK_IP;
use netd_tests::{BIP, Daemon, TempDir, World, poll_until, tcp_request_until, tcp_server};

const T: Duration = Duration::from_secs(5);

fn hup(d: &Daemon) {
    let pid = d.pid().expect("daemon running") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
}

/// Waits until the daemon's stderr contains `want` (all starts).
fn wait_log(d: &Daemon, want: &str) {
    poll_until(want, T, || {
        if d.logs().contains(want) {
            Ok(())
        } else {
            Err(format!("no {want:?} in the daemon's log"))
        }
    });
}

#[test]
fn config_file_sets_the_daemon_and_sighup_reloads_it() {
    let w = World::new();
    let files = TempDir::new();
    let conf = files.write(
        "daemon.json",
        &format!(
            r#"{{"bip": "{BIP}", "dns": ["192.0.2.53"], "dns-search": ["one.test"],
                 "filter-deny": ["203.0.113.0/24"], "log-level": "info"}}"#
        ),
    );
    let d = w.daemon(&["--config-file", conf.to_str().unwrap()]);
    // The file's settings took effect: bridge address, container DNS, source filters.
    let status = d.status();
    assert!(
        status.to_string().contains("172.30.0.1"),
        "bip from the file not used: {status}"
    );
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80"]);
    let _srv = tcp_server(&web, 80);
    assert_eq!(
        resolv_nameservers(&d.etc_file("web", "resolv.conf")),
        ["192.0.2.53"]
    );
    assert_eq!(filter_lists(&d).1, ["203.0.113.0/24"]);
    tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T)
        .expect("the outside reaches the published port before the reload");
    // An operator adds a filter by hand; the file's list is then replaced.
    d.netd_ok(&["filter", "deny", "192.0.2.7"]);
    std::fs::write(
        &conf,
        format!(
            r#"{{"bip": "{BIP}", "dns": ["192.0.2.54"], "dns-search": ["two.test"],
                 "filter-deny": ["198.51.100.0/24"], "log-level": "debug", "mtu": 1400}}"#
        ),
    )
    .unwrap();
    hup(&d);
    poll_until("resolv.conf to follow the reload", T, || {
        let ns = resolv_nameservers(&d.etc_file("web", "resolv.conf"));
        if ns == ["192.0.2.54"] {
            Ok(())
        } else {
            Err(format!("resolv.conf nameservers {ns:?}"))
        }
    });
    assert!(d.etc_file("web", "resolv.conf").contains("two.test"));
    let deny = filter_lists(&d).1;
    assert_eq!(
        deny,
        ["192.0.2.7/32", "198.51.100.0/24"],
        "the file's old prefix must go, the hand-added one stay"
    );
    // The new deny list covers the outside (198.51.100.2): real packets are now refused.
    assert!(
        tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:8080")),
        "the reloaded deny filter does not stop the outside"
    );
    wait_log(&d, "mtu changed in");
    assert!(
        d.logs().contains("restart netd to apply it"),
        "{}",
        d.logs()
    );
    wait_log(&d, "SIGHUP: reloaded");
    let logs = d.logs();
    let applied = logs
        .lines()
        .find(|l| l.contains("SIGHUP: reloaded"))
        .unwrap_or_default();
    for k in ["log-level", "dns", "dns-search", "filter-deny"] {
        assert!(applied.contains(k), "{k} not applied: {applied}");
    }
    assert!(!applied.contains("mtu"), "{applied}");
    // The debug level is live: a debug line is written after the reload.
    assert!(
        logs.lines()
            .any(|l| l.contains("DEBUG") && l.contains("log level is now debug")),
        "{logs}"
    );
    // A broken file is refused and changes nothing.
    std::fs::write(&conf, r#"{"dns": ["not-an-ip"], "filter-deny": []}"#).unwrap();
    hup(&d);
    wait_log(&d, "configuration not reloaded");
    assert_eq!(filter_lists(&d).1, ["192.0.2.7/32", "198.51.100.0/24"]);
    // An empty list lifts the file's filters; the hand-added one stays.
    std::fs::write(&conf, format!(r#"{{"bip": "{BIP}", "filter-deny": []}}"#)).unwrap();
    hup(&d);
    poll_until("the file's filters to go", T, || {
        let deny = filter_lists(&d).1;
        if deny == ["192.0.2.7/32"] {
            Ok(())
        } else {
            Err(format!("deny {deny:?}"))
        }
    });
    tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T)
        .expect("the outside reaches the port again once the file's filter is gone");
}

#[test]
fn a_restart_drops_filters_the_file_no_longer_names() {
    let w = World::new();
    let files = TempDir::new();
    let conf = files.write(
        "daemon.json",
        &format!(r#"{{"bip": "{BIP}", "filter-allow": ["192.0.2.0/24", "198.51.100.0/24"]}}"#),
    );
    let mut d = w.daemon(&["--config-file", conf.to_str().unwrap()]);
    assert_eq!(filter_lists(&d).0, ["192.0.2.0/24", "198.51.100.0/24"]);
    d.netd_ok(&["filter", "allow", "203.0.113.0/24"]);
    std::fs::write(
        &conf,
        format!(r#"{{"bip": "{BIP}", "filter-allow": ["198.51.100.0/24"]}}"#),
    )
    .unwrap();
    d.restart();
    assert_eq!(
        filter_lists(&d).0,
        ["198.51.100.0/24", "203.0.113.0/24"],
        "{}",
        d.logs()
    );
}

#[test]
fn config_file_errors_are_refused_at_start() {
    let w = World::new();
    let files = TempDir::new();
    // (file, flags, what the error says, whether it names the file)
    let cases: &[(&str, &[&str], &[&str], bool)] = &[
        (
            r#"{"mtu": 1400}"#,
            &["--mtu", "1500"],
            &[
                "both as a flag and in the config file",
                "mtu (from flag: 1500, from file: 1400)",
            ],
            true,
        ),
        (
            r#"{"bridge-ip": "172.30.0.1/24"}"#,
            &[],
            &["unknown keys", "bridge-ip"],
            true,
        ),
        (
            r#"{"mtu": 70000}"#,
            &[],
            &["invalid value for \"mtu\"", "70000"],
            true,
        ),
        ("{\"mtu\": ", &[], &["not valid JSON"], true),
        // Values that clap accepts and the daemon's own checks refuse name the flag.
        (r#"{"dns": ["nope"]}"#, &[], &["dns", "nope"], false),
        (
            r#"{"filter-deny": ["10.0.0.300/8"]}"#,
            &[],
            &["--filter-deny", "10.0.0.300/8"],
            false,
        ),
        (
            r#"{"bip": "172.30.0.1/24", "bridge": "br0"}"#,
            &[],
            &["mutually exclusive"],
            false,
        ),
    ];
    for (i, (json, flags, want, names_file)) in cases.iter().enumerate() {
        let conf = files.write(&format!("c{i}.json"), json);
        let mut args = vec!["--config-file", conf.to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = w.daemon_exit(&args);
        assert!(!out.status.success(), "{json}: daemon started");
        for w in *want {
            assert!(out.stderr.contains(w), "{json}: no {w:?} in {}", out.stderr);
        }
        if *names_file {
            assert!(
                out.stderr.contains(conf.to_str().unwrap()),
                "{json}: the error does not name the file: {}",
                out.stderr
            );
        }
    }
    let out = w.daemon_exit(&["--config-file", "/nonexistent/netd/daemon.json"]);
    assert!(
        out.stderr
            .contains("cannot read config file /nonexistent/netd/daemon.json"),
        "{}",
        out.stderr
    );
}

/// READY=1 arrives on the test's NOTIFY_SOCKET only once the API answers and the dataplane is
/// attached; SIGHUP sends RELOADING=1 then READY=1; SIGTERM sends STOPPING=1.
#[test]
fn readiness_reaches_a_notify_socket() {
    let w = World::new();
    let files = TempDir::new();
    let sock_path = files.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    rx.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut d = Daemon::spawn_with_env(
        &w.host,
        &["--bip", BIP],
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 512];
    let started = Instant::now();
    let n = rx.recv(&mut buf).expect("no notification within 15 s");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(
        msg.contains(&format!("MAINPID={}", d.pid().unwrap())),
        "{msg}"
    );
    // At READY the API answers on the first try, with the uplink's programs attached.
    let out = d.netd(&["status"]);
    assert!(
        out.status.success(),
        "status failed right after READY=1 ({:?} after start): {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        status.contains("up0"),
        "uplink not in status at READY: {status}"
    );
    hup(&d);
    let n = rx.recv(&mut buf).expect("no RELOADING=1");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
    let n = rx.recv(&mut buf).expect("no READY=1 after the reload");
    assert_eq!(&buf[..n], b"READY=1");
    d.wait_until_ready();
    d.stop();
    let n = rx.recv(&mut buf).expect("no STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// `netd install-unit --dest DIR` writes a Type=notify unit for the given binary that
/// `systemd-analyze verify` accepts without a warning, and does not overwrite it unasked.
#[test]
fn install_unit_writes_a_verified_unit() {
    use std::os::unix::fs::PermissionsExt;
    let files = TempDir::new();
    let dest = files.path().join("system");
    let bin = netd_tests::daemon::netd_bin();
    let run = |extra: &[&str]| {
        let mut c = std::process::Command::new(&bin);
        c.args(["install-unit", "--dest", dest.to_str().unwrap()])
            .args(["--bin", bin.to_str().unwrap()])
            .args(extra);
        netd_tests::output_with_timeout(c, T)
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = dest.join("netd.service");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        unit.to_str().unwrap()
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify".to_string(),
        format!("ExecStart={} daemon", bin.display()),
        "Restart=on-failure".to_string(),
        "ExecReload=/bin/kill -HUP $MAINPID".to_string(),
        "RequiresMountsFor=/sys/fs/bpf /sys/fs/cgroup".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    let mode = std::fs::metadata(&unit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    // Not replaced without --force.
    std::fs::write(&unit, "# mine\n").unwrap();
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), "# mine\n");
    assert!(run(&["--force"]).status.success());
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), text);
    // systemd-analyze (offline: it reads the unit, it does not talk to PID 1).
    if !std::path::Path::new("/usr/bin/systemd-analyze").exists() {
        eprintln!("systemd-analyze not installed: unit not verified");
        return;
    }
    let mut c = std::process::Command::new("systemd-analyze");
    c.arg("verify").arg(&unit);
    let out = netd_tests::output_with_timeout(c, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("netd.service"))
        .collect();
    assert!(about_unit.is_empty(), "systemd-analyze warns: {stderr}");
}

fn stat(p: &std::path::Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn gid_of(group: &str) -> u32 {
    nix::unistd::Group::from_name(group)
        .unwrap()
        .unwrap_or_else(|| panic!("group {group} missing on this machine"))
        .gid
        .as_raw()
}

/// `netd status` as another user: uid nobody with only `gid` as its groups.
fn status_as_nobody(d: &Daemon, gid: u32) -> std::process::Output {
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", &format!("--regid={gid}"), "--clear-groups"])
        .arg(netd_tests::daemon::netd_bin())
        .args(["-H", &d.host_arg(), "status"]);
    netd_tests::output_with_timeout(c, T)
}

/// The socket is root:GROUP 0660 (default root when no `netd` group exists), the state and pin
/// dirs are 0700, a user in the group can use the API and a user outside it cannot.
#[test]
fn api_socket_belongs_to_the_group() {
    let w = World::new();
    // `adm` exists on Debian; the test creates no group.
    let adm = gid_of("adm");
    let d = w.daemon(&["--bip", BIP, "-G", "adm"]);
    assert_eq!(stat(&d.sock()), (0, adm, 0o660));
    assert_eq!(stat(&d.state_dir()).2, 0o700);
    assert_eq!(stat(&d.bpffs()).2, 0o700);
    // The test dir must be traversable for the other user to reach the socket.
    std::fs::set_permissions(d.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ok = status_as_nobody(&d, adm);
    assert!(
        ok.status.success(),
        "a member of adm cannot use the API: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = status_as_nobody(&d, 65534);
    assert!(!refused.status.success(), "a user outside adm used the API");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    drop(d);
    let nogroup = nix::unistd::Group::from_name("netd").unwrap().is_none();
    let d = w.daemon(&["--bip", BIP]);
    if nogroup {
        assert_eq!(stat(&d.sock()), (0, 0, 0o660));
    }
    drop(d);
    let out = w.daemon_exit(&["--bip", BIP, "-G", "no-such-group-netd-test"]);
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("group \"no-such-group-netd-test\" (-G/--group) does not exist"),
        "{}",
        out.stderr
    );
}

/// Sends raw bytes on the API socket and returns the answer (status line and body).
/// True if the daemon has neither answered nor closed `s` yet: a stalled client that has not
/// reached its 10 s read timeout. Calls served while it still waits did not queue behind it
/// (a bound on their time would also count what a loaded machine adds).
fn still_waiting(mut s: &std::os::unix::net::UnixStream) -> bool {
    use std::io::Read as _;
    s.set_nonblocking(true).unwrap();
    let r = s.read(&mut [0u8; 1]);
    s.set_nonblocking(false).unwrap();
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn raw(d: &Daemon, bytes: &[u8]) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(d.sock()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    (status, body.to_string())
}

/// Oversized and malformed requests get a clear error status and message; slow clients that
/// hold connections open do not delay anyone else.
#[test]
fn api_refuses_bad_requests_and_slow_clients_block_nobody() {
    use std::io::Write;
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            b"POST /v1/filters HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n".to_vec(),
            "413",
            "HTTP body larger than",
        ),
        (
            format!("GET /v1/status HTTP/1.1\r\nX: {}\r\n", "a".repeat(70 << 10)).into_bytes(),
            "431",
            "head larger than",
        ),
        (
            b"GARBAGE\x01\x02 / HTTP/1.1\r\n\r\n".to_vec(),
            "400",
            "malformed HTTP message",
        ),
        (
            b"POST /v1/filters HTTP/1.1\r\nContent-Length: abc\r\n\r\n".to_vec(),
            "400",
            "bad Content-Length",
        ),
        (
            b"POST /v1/filters HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            "501",
            "Transfer-Encoding is not supported",
        ),
        (
            b"POST /v1/filters HTTP/1.1\r\nContent-Length: 5\r\n\r\n{\"a\":".to_vec(),
            "400",
            "invalid request body",
        ),
        (
            b"POST /v1/filters HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}".to_vec(),
            "400",
            "connection closed before a complete HTTP message",
        ),
    ];
    for (req, code, msg) in &cases {
        let (status, body) = raw(&d, req);
        assert!(
            status.contains(code),
            "{:?}: {status} {body}",
            String::from_utf8_lossy(&req[..req.len().min(60)])
        );
        assert!(body.contains(msg), "{status}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"));
        assert!(v["message"].is_string(), "{body}");
    }
    // Slow clients: 40 connections that send half a request and stall.
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut s = std::os::unix::net::UnixStream::connect(d.sock()).unwrap();
        s.write_all(b"POST /v1/filters HTTP/1.1\r\nContent-Le")
            .unwrap();
        slow.push(s);
    }
    // and one that sends a body byte by byte.
    let mut dribble = std::os::unix::net::UnixStream::connect(d.sock()).unwrap();
    dribble
        .write_all(b"POST /v1/filters HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{")
        .unwrap();
    let t = Instant::now();
    for _ in 0..5 {
        d.netd_ok(&["status"]);
        d.netd_ok(&["filter", "deny", "192.0.2.9"]);
        d.netd_ok(&["filter", "rm", "192.0.2.9"]);
        let _ = dribble.write_all(b" ");
    }
    assert!(
        still_waiting(&slow[0]),
        "15 API calls took {:?}: the slow clients timed out before they were done",
        t.elapsed()
    );
    // A stalled client is cut off (408) after the read timeout, not kept forever.
    let t = Instant::now();
    let mut buf = Vec::new();
    slow[0]
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    use std::io::Read;
    let _ = slow[0].read_to_end(&mut buf);
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

#[test]
fn sighup_during_startup_does_not_kill_the_daemon() {
    let w = World::new();
    let mut d = Daemon::spawn_with_env(&w.host, &[], &[]);
    // The socket is bound before the engine starts, which loads the programs (seconds).
    poll_until("the API socket", Duration::from_secs(30), || {
        if d.sock().exists() {
            Ok(())
        } else {
            Err("not bound yet")
        }
    });
    assert!(
        !d.logs().contains("netd daemon ready"),
        "the daemon was ready before the SIGHUP: nothing tested"
    );
    hup(&d);
    d.wait_until_ready();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        d.netd(&["status"]).status.success(),
        "daemon gone after a SIGHUP during startup: {}",
        d.logs()
    );
}

#[test]
fn stalled_api_clients_beyond_the_limit_do_not_lock_others_out() {
    let w = World::new();
    let d = w.daemon(&[]);
    // 200 connections that never send a request: more than the daemon's 128 slots.
    let stalled: Vec<std::os::unix::net::UnixStream> = (0..200)
        .map(|_| std::os::unix::net::UnixStream::connect(d.sock()).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A real client is served at once, not after a stalled one's 10 s deadline.
    let t = Instant::now();
    let out = d.netd(&["status"]);
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        still_waiting(stalled.last().unwrap()),
        "status took {:?}, past the stalled clients' read timeout",
        t.elapsed()
    );
    // The oldest stalled connections were closed with a 408 to make room.
    let mut first = &stalled[0];
    first.set_read_timeout(Some(T)).unwrap();
    let mut buf = String::new();
    use std::io::Read as _;
    let _ = first.read_to_string(&mut buf);
    assert!(
        buf.starts_with("HTTP/1.1 408"),
        "oldest stalled connection got {buf:?}"
    );
    drop(stalled);
}
