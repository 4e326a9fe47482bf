//! The `netd-cni` plugin, run directly with crafted stdin and environment against a test
//! daemon (as libcni runs it): VERSION; ADD into a namespace the test made, then real TCP from
//! the outside to the published port with the client's real address; CHECK; DEL twice, DEL
//! after the namespace is gone and after a daemon restart; both CNI versions; a CNI_NETNS that
//! only the plugin's mount namespace can see; STATUS and GC (1.1); errors (malformed config,
//! missing environment, unknown network, daemon down or silent) as CNI error JSON that leave
//! nothing behind; and `netd cni install`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netd_tests::daemon::netd_bin;
use netd_tests::podman::{CniDirs, Podman, SERVE, peer_of, podman_installed, tcp_exchange};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, Daemon, TempDir, World, cmd_ok, tcp_request_until, tcp_server};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(5);
/// No plugin run may take longer (the plugin's own deadlines are shorter).
const PLUGIN_LIMIT: Duration = Duration::from_secs(40);

fn plugin_bin() -> PathBuf {
    let p = netd_bin().with_file_name("netd-cni");
    assert!(p.exists(), "build netd-cni first: cargo build -p netd");
    p
}

/// What one plugin run printed and how it ended.
struct Run {
    code: i32,
    out: Value,
    took: Duration,
}

/// Runs `argv` (the plugin, or a wrapper that execs it) with only `env` (plus PATH) and
/// `stdin`; panics if it runs longer than [`PLUGIN_LIMIT`].
fn run_argv(argv: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = c.spawn().expect("spawn netd-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t.elapsed() > PLUGIN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netd-cni {env:?} hung for {PLUGIN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t.elapsed();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let out = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "netd-cni printed no JSON ({e}): {text:?}, stderr {:?}",
                String::from_utf8_lossy(&o.stderr)
            )
        })
    };
    Run {
        code: o.status.code().unwrap_or(-1),
        out,
        took,
    }
}

fn plugin(cmd: &str, stdin: &str, env: &[(&str, &str)]) -> Run {
    let bin = plugin_bin();
    let mut all = vec![("CNI_COMMAND", cmd), ("CNI_PATH", "/nonexistent")];
    all.extend_from_slice(env);
    run_argv(&[bin.to_str().unwrap()], stdin, &all)
}

/// The plugin's config as libcni passes it (conflist entry with name and cniVersion).
fn conf(version: &str, sock: &Path, network: Option<&str>, extra: Value) -> String {
    // GC records go next to the daemon's socket (its temporary directory), never to the
    // machine's /var/lib/cni.
    let data = sock
        .parent()
        .unwrap_or(Path::new("/nonexistent"))
        .join("cni-data");
    let mut c = json!({
        "cniVersion": version, "name": "netdnet", "type": "netd-cni",
        "socket": format!("unix://{}", sock.display()),
        "dataDir": data,
    });
    if let Some(n) = network {
        c["network"] = json!(n);
    }
    if let Value::Object(m) = extra {
        for (k, v) in m {
            c[k] = v;
        }
    }
    c.to_string()
}

/// The environment of a per-container command.
fn env<'a>(id: &'a str, netns: &'a str, ifname: &'a str, args: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", ifname),
        ("CNI_ARGS", args),
    ]
}

fn ok(r: &Run, what: &str) {
    assert_eq!(r.code, 0, "{what}: expected success, got {}", r.out);
}

fn err(r: &Run, code: u64, what: &str) -> String {
    assert_ne!(r.code, 0, "{what}: expected a failure, got {}", r.out);
    assert_eq!(r.out["code"], json!(code), "{what}: {}", r.out);
    assert!(r.out["cniVersion"].is_string(), "{what}: {}", r.out);
    r.out["msg"].as_str().unwrap_or_default().to_string()
}

fn blue(d: &Daemon) {
    d.netd_ok(&["network", "create", "blue", "--subnet", "10.77.0.0/24"]);
}

fn host_veths(w: &World) -> Vec<String> {
    w.host
        .links()
        .into_iter()
        .filter(|l| l.starts_with("veth") || l.starts_with("vtmp"))
        .collect()
}

#[test]
fn version_answers_every_supported_version() {
    for stdin in [r#"{"cniVersion":"1.0.0"}"#, ""] {
        let r = plugin("VERSION", stdin, &[]);
        ok(&r, "VERSION");
        assert_eq!(
            r.out["supportedVersions"],
            json!(["0.4.0", "1.0.0", "1.1.0"]),
            "{}",
            r.out
        );
    }
    let r = plugin("VERSION", r#"{"cniVersion":"0.4.0"}"#, &[]);
    assert_eq!(r.out["cniVersion"], "0.4.0");
}

#[test]
fn add_publishes_a_port_and_del_is_idempotent_in_both_versions() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    blue(&d);
    let sock = d.sock();

    // 1.0.0, a named interface that is not eth0, address and MAC from runtimeConfig.
    let web = w.container("web");
    let c1 = conf(
        "1.0.0",
        &sock,
        Some("blue"),
        json!({"runtimeConfig": {
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}],
            "ips": ["10.77.0.50/24"], "mac": "02:00:00:aa:bb:cc"}}),
    );
    let e1 = env(
        "c0ffee0123456789",
        web.path_str(),
        "net1",
        "IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=x",
    );
    let r = plugin("ADD", &c1, &e1);
    ok(&r, "ADD 1.0.0");
    let res = r.out.clone();
    assert_eq!(res["cniVersion"], "1.0.0");
    assert_eq!(res["interfaces"][0]["name"], "net1");
    assert_eq!(res["interfaces"][0]["mac"], "02:00:00:aa:bb:cc");
    assert_eq!(res["interfaces"][0]["sandbox"], web.path_str());
    assert_eq!(res["ips"][0]["address"], "10.77.0.50/24");
    assert_eq!(res["ips"][0]["gateway"], "10.77.0.1");
    assert_eq!(res["ips"][0]["interface"], 0);
    assert!(res["ips"][0].get("version").is_none(), "{res}");
    assert_eq!(
        res["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "10.77.0.1"})
    );
    assert_eq!(web.addrs4("net1"), vec!["10.77.0.50/24".to_string()]);
    assert_eq!(web.mac("net1"), "02:00:00:aa:bb:cc");
    let v = d.inspect("web");
    assert_eq!(v["network"], "blue");

    // Real TCP from the outside to the published port; the container sees the client.
    let srv = tcp_server(&web, 80);
    let got = tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T);
    assert_eq!(got.unwrap(), "ping");
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP);

    // CHECK against the ADD result.
    let mut with_prev: Value = serde_json::from_str(&c1).unwrap();
    with_prev["prevResult"] = res.clone();
    ok(&plugin("CHECK", &with_prev.to_string(), &e1), "CHECK");

    // 0.4.0 with the address from CNI_ARGS IP= and no K8S_POD_NAME: the name is the ID prefix.
    let db = w.container("db");
    let c2 = conf("0.4.0", &sock, Some("blue"), json!({}));
    let e2 = env(
        "d00d0123456789ab",
        db.path_str(),
        "eth0",
        "IP=10.77.0.60;MAC=02:00:00:00:00:60",
    );
    let r = plugin("ADD", &c2, &e2);
    ok(&r, "ADD 0.4.0");
    assert_eq!(r.out["cniVersion"], "0.4.0");
    assert_eq!(r.out["ips"][0]["version"], "4");
    assert_eq!(r.out["ips"][0]["address"], "10.77.0.60/24");
    assert_eq!(r.out["interfaces"][0]["mac"], "02:00:00:00:00:60");
    assert!(d.ls_has("d00d01234567"), "{}", d.ls());

    // DEL twice: the second finds nothing and still succeeds.
    ok(&plugin("DEL", &with_prev.to_string(), &e1), "DEL");
    assert!(!d.ls_has("web"));
    assert!(web.link("net1").is_none(), "net1 left in the container");
    ok(&plugin("DEL", &with_prev.to_string(), &e1), "second DEL");

    // DEL after a daemon restart, then DEL after the namespace is gone.
    d.restart();
    assert!(d.ls_has("d00d01234567"));
    db.delete();
    ok(&plugin("DEL", &c2, &e2), "DEL after the netns is gone");
    ok(
        &plugin("DEL", &c2, &e2),
        "second DEL after the netns is gone",
    );
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
    no_host_veths_left(&w);
}

/// DEL of the interface that holds the IPv4 default route moves the route to the namespace's
/// other netd interface before DEL returns: the daemon's detach took the departing
/// interface's addresses and routes at once (its veth is deleted in the background).
#[test]
fn del_moves_the_default_route_to_the_remaining_interface() {
    let w = World::new();
    // Background deletions 200 ms late (as on a loaded machine): DEL must not need them.
    let d = w.daemon_with_env(&["--bip", BIP], &[("NETD_REAPER_DELAY_MS", "200")]);
    blue(&d);
    let sock = d.sock();
    let m = w.container("m");
    let on_default = conf("1.0.0", &sock, None, json!({}));
    let on_blue = conf("1.0.0", &sock, Some("blue"), json!({}));
    let e0 = env("feed00000000feed", m.path_str(), "eth0", "K8S_POD_NAME=m");
    let e1 = env("feed00000000feed", m.path_str(), "net1", "K8S_POD_NAME=m");
    ok(&plugin("ADD", &on_default, &e0), "ADD eth0");
    ok(&plugin("ADD", &on_blue, &e1), "ADD net1");
    let default_via = |ns: &netd_tests::Netns| -> Vec<String> {
        ns.routes4()
            .into_iter()
            .filter(|r| r.starts_with("default "))
            .collect()
    };
    let routes = default_via(&m);
    assert!(
        routes.len() == 1 && routes[0].starts_with("default via 172.30.0.1 dev eth0"),
        "{routes:?}"
    );
    ok(&plugin("DEL", &on_default, &e0), "DEL eth0");
    assert!(m.link("eth0").is_none(), "{:?}", m.links());
    let routes = default_via(&m);
    assert!(
        routes.len() == 1 && routes[0].starts_with("default via 10.77.0.1 dev net1"),
        "default route not moved to net1: {routes:?}"
    );
    // The way out works through it (masqueraded to the host's uplink address).
    let srv = tcp_server(&w.outside, 9997);
    netd_tests::tcp_arrives_from(&m, &format!("{OUTSIDE_IP}:9997"), &srv, HOST_UPLINK_IP);
    ok(&plugin("DEL", &on_blue, &e1), "DEL net1");
    no_host_veths_left(&w);
}

/// CNI_NETNS as podman passes it: a bind mount that exists only in the runtime's mount
/// namespace (here the plugin's own); in the daemon's view the path is an empty file.
#[test]
fn netns_bind_mount_the_daemon_cannot_see() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let app = w.container("app");
    let tmp = TempDir::new();
    let private = tmp.path().join("netns");
    std::fs::write(&private, b"").unwrap();
    let c = conf(
        "1.0.0",
        &d.sock(),
        None,
        json!({"runtimeConfig": {"portMappings": [{"hostPort": 8081, "containerPort": 81, "protocol": "tcp"}]}}),
    );
    let private_s = private.to_str().unwrap();
    let e = env("abc123abc123abc1", private_s, "eth0", "K8S_POD_NAME=app");
    let script = r#"mount --bind "$1" "$2" && exec "$3""#;
    let plugin = plugin_bin();
    let mut all = vec![("CNI_COMMAND", "ADD")];
    all.extend_from_slice(&e);
    let argv = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        app.path_str(),
        private_s,
        plugin.to_str().unwrap(),
    ];
    let r = run_argv(&argv, &c, &all);
    ok(&r, "ADD through a private bind mount");
    assert_eq!(r.out["interfaces"][0]["sandbox"], private_s);
    assert_eq!(app.addrs4("eth0").len(), 1);
    let srv = tcp_server(&app, 81);
    tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8081"), T).unwrap();
    assert_eq!(srv.last_peer_ip(), OUTSIDE_IP);
    // The daemon cannot open the stored path, yet a restart keeps the endpoint: its veth lives.
    d.restart();
    assert!(d.ls_has("app"), "endpoint reaped on restart: {}", d.ls());
    tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8081"), T).unwrap();
    // DEL from the runtime's side needs no namespace at all.
    let mut del = vec![("CNI_COMMAND", "DEL")];
    del.extend_from_slice(&e);
    ok(&run_argv(&[plugin.to_str().unwrap()], &c, &del), "DEL");
    assert!(!d.ls_has("app"));
}

#[test]
fn errors_are_cni_errors_and_leave_nothing_behind() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    let c = w.container("c");
    let sock = d.sock();
    let good = conf("1.0.0", &sock, Some("blue"), json!({}));
    let e = env("feedfeedfeedfeed", c.path_str(), "eth0", "K8S_POD_NAME=c");
    let before = host_veths(&w);

    let m = err(&plugin("ADD", "{not json", &e), 6, "malformed config");
    assert!(m.contains("not valid"), "{m}");
    err(
        &plugin("ADD", &conf("0.3.1", &sock, Some("blue"), json!({})), &e),
        1,
        "old version",
    );
    let m = err(
        &plugin("ADD", &good, &env("feedfeedfeedfeed", "", "eth0", "")),
        4,
        "missing CNI_NETNS",
    );
    assert!(m.contains("CNI_NETNS"), "{m}");
    err(&plugin("ADD", &good, &[]), 4, "missing CNI_CONTAINERID");
    err(
        &plugin(
            "ADD",
            &good,
            &env("feedfeedfeedfeed", c.path_str(), "eth0", "FOO=1"),
        ),
        4,
        "unknown CNI_ARGS key",
    );
    let r = run_argv(&[plugin_bin().to_str().unwrap()], &good, &e);
    err(&r, 4, "missing CNI_COMMAND");
    let m = err(
        &plugin("ADD", &conf("1.0.0", &sock, Some("nosuch"), json!({})), &e),
        7,
        "unknown network",
    );
    assert!(m.contains("nosuch"), "{m}");
    let m = err(
        &plugin(
            "ADD",
            &conf(
                "1.0.0",
                &sock,
                Some("blue"),
                json!({"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "sctp"}]}}),
            ),
            &e,
        ),
        7,
        "bad protocol",
    );
    assert!(m.contains("sctp"), "{m}");
    let m = err(
        &plugin(
            "ADD",
            &good,
            &env("feedfeedfeedfeed", "/nonexistent/ns", "eth0", ""),
        ),
        5,
        "netns that does not exist",
    );
    assert!(m.contains("/nonexistent/ns"), "{m}");

    // Daemon down (no socket) and a daemon that accepts but never answers: code 11, quickly.
    let down = conf(
        "1.0.0",
        Path::new("/nonexistent/netd.sock"),
        Some("blue"),
        json!({}),
    );
    for cmd in ["ADD", "DEL"] {
        let r = plugin(cmd, &down, &e);
        err(&r, 11, &format!("{cmd} with the daemon down"));
        assert!(r.took < Duration::from_secs(5), "{cmd} took {:?}", r.took);
    }
    let tmp = TempDir::new();
    let stall_path = tmp.path().join("stall.sock");
    let stall = std::os::unix::net::UnixListener::bind(&stall_path).unwrap();
    let silent = conf("1.0.0", &stall_path, Some("blue"), json!({"timeout": 2}));
    for cmd in ["ADD", "DEL"] {
        let r = plugin(cmd, &silent, &e);
        let m = err(&r, 11, &format!("{cmd} with a silent daemon"));
        assert!(m.contains("within 2 s"), "{m}");
        assert!(r.took < Duration::from_secs(6), "{cmd} took {:?}", r.took);
    }
    drop(stall);

    // Nothing was attached anywhere.
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
    assert_eq!(host_veths(&w), before);
    assert_eq!(c.links(), vec!["lo".to_string()]);
}

#[test]
fn status_and_gc() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    let sock = d.sock();
    let data = TempDir::new();
    let data_s = data.path().to_str().unwrap().to_string();
    let c10 = conf("1.0.0", &sock, Some("blue"), json!({"dataDir": data_s}));
    let a = w.container("a");
    let b = w.container("b");
    ok(
        &plugin(
            "ADD",
            &c10,
            &env("aaaa00000000aaaa", a.path_str(), "eth0", "K8S_POD_NAME=a"),
        ),
        "ADD a",
    );
    ok(
        &plugin(
            "ADD",
            &c10,
            &env("bbbb00000000bbbb", b.path_str(), "eth0", "K8S_POD_NAME=b"),
        ),
        "ADD b",
    );

    ok(
        &plugin(
            "STATUS",
            &conf("1.1.0", &sock, Some("blue"), json!({})),
            &[],
        ),
        "STATUS",
    );
    err(
        &plugin(
            "STATUS",
            &conf("1.1.0", &sock, Some("nosuch"), json!({})),
            &[],
        ),
        50,
        "STATUS of an unknown network",
    );
    err(
        &plugin(
            "STATUS",
            &conf("1.1.0", Path::new("/nonexistent/s"), None, json!({})),
            &[],
        ),
        50,
        "STATUS with the daemon down",
    );
    err(&plugin("STATUS", &c10, &[]), 1, "STATUS before 1.1.0");

    // GC keeps the valid attachment (a) and removes the other (b).
    let gc = conf(
        "1.1.0",
        &sock,
        Some("blue"),
        json!({"dataDir": data_s, "cni.dev/valid-attachments": [{"containerID": "aaaa00000000aaaa", "ifname": "eth0"}]}),
    );
    ok(&plugin("GC", &gc, &[]), "GC");
    assert!(d.ls_has("a"));
    assert!(!d.ls_has("b"), "{}", d.ls());
    // The veth is deleted in the background.
    netd_tests::poll_until("b's veth to go after GC", Duration::from_secs(10), || {
        let l = b.links();
        if l == vec!["lo".to_string()] {
            Ok(())
        } else {
            Err(l)
        }
    });
    // A second GC has nothing left to do.
    ok(&plugin("GC", &gc, &[]), "second GC");
    assert!(d.ls_has("a"));
}

#[test]
fn cni_install_writes_plugin_and_conflist() {
    let tmp = TempDir::new();
    let bin_dir = tmp.path().join("bin");
    let conf_dir = tmp.path().join("net.d");
    let netd = netd_bin();
    let run = |extra: &[&str]| {
        let mut c = Command::new(&netd);
        c.args(["-H", "unix:///run/netdt/x.sock", "cni", "install", "--dir"])
            .arg(&bin_dir)
            .arg("--conf-dir")
            .arg(&conf_dir)
            .args(["--network", "blue"])
            .args(extra);
        c.output().unwrap()
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(conf_dir.join("blue.conflist")).unwrap())
            .unwrap();
    assert_eq!(
        list,
        json!({"cniVersion": "0.4.0", "name": "blue", "plugins": [{"type": "netd-cni",
            "network": "blue", "socket": "unix:///run/netdt/x.sock",
            "capabilities": {"portMappings": true, "ips": true, "mac": true}}]})
    );
    let installed = bin_dir.join("netd-cni");
    let v = cmd_ok(&[
        "sh",
        "-c",
        &format!(
            "echo '{{\"cniVersion\":\"1.0.0\"}}' | CNI_COMMAND=VERSION {}",
            installed.display()
        ),
    ]);
    assert!(v.contains("1.1.0"), "{v}");
    // Not replaced without --force.
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(run(&["--force"]).status.success());
}

#[test]
fn podman_runs_a_container_on_a_netd_network() {
    assert!(
        podman_installed(),
        "podman is not installed: run cargo xtask setup"
    );
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    let cni = CniDirs::new();
    cni.install(&d, &["blue"], &[]);
    let p = Podman::new(&w, &cni.bin, &cni.conf, false);
    let nets = p.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        nets.lines().any(|l| l == "blue"),
        "podman network ls: {nets}"
    );
    let image = p.import_busybox();
    let parent = p.parent_arg();
    p.ok(&[
        "run",
        "-d",
        &parent,
        "--name",
        "web",
        "--network",
        "blue",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:8082:80",
        "-p",
        "9000-9001:7000-7001/udp",
        image,
        "sh",
        "-c",
        SERVE,
    ]);
    let v = d.inspect("web");
    assert_eq!(v["network"], "blue", "{v}");
    let ip = v["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.77.0."), "{v}");
    let mut ports: Vec<String> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p["host_ip"].as_str().unwrap(),
                p["host_port"],
                p["container_port"],
                p["proto"].as_str().unwrap()
            )
        })
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [
            "0.0.0.0:8080->80/tcp",
            "0.0.0.0:9000->7000/udp",
            "0.0.0.0:9001->7001/udp",
            "127.0.0.1:8082->80/tcp"
        ],
        "{v}"
    );
    let reply = netd_tests::try_poll_until(Duration::from_secs(10), || {
        tcp_exchange(&w.outside, &format!("{HOST_UPLINK_IP}:8080"))
    })
    .expect("outside -> published port");
    assert!(reply.starts_with("got hello"), "{reply}");
    // The container sees the outside client's own address.
    assert!(
        reply.contains(&format!("{ip}:80 ")) && reply.contains(&format!("{OUTSIDE_IP}:")),
        "{reply}"
    );
    // A host process reaches the loopback-only port (netd's socket hooks, no proxy).
    let cg = netd_tests::dataplane::daemon_cgroup(&d).expect("the daemon's cgroup");
    let local = netd_tests::try_poll_until(T, || {
        netd_tests::dataplane::socat_in_cgroup(&cg, &w.host, "tcp", "127.0.0.1:8082")
    })
    .expect("host -> 127.0.0.1:8082");
    assert!(local.starts_with("got ping"), "{local}");
    let port = p.ok(&["port", "web"]);
    assert!(
        port.contains("80/tcp -> 0.0.0.0:8080"),
        "podman port: {port}"
    );
    assert!(
        port.contains("80/tcp -> 127.0.0.1:8082"),
        "podman port: {port}"
    );
    let insp = p.ok(&[
        "inspect",
        "web",
        "--format",
        "{{.NetworkSettings.Networks.blue.IPAddress}}",
    ]);
    assert_eq!(insp.trim(), ip);

    // default_network = "blue": no --network; --ip and --mac-address reach netd.
    p.ok(&[
        "run",
        "-d",
        &parent,
        "--name",
        "db",
        "--ip",
        "10.77.0.42",
        "--mac-address",
        "02:00:00:00:00:42",
        image,
        "sleep",
        "1000",
    ]);
    let v = d.inspect("db");
    assert_eq!(
        (v["network"].as_str(), v["ip"].as_str(), v["mac"].as_str()),
        (Some("blue"), Some("10.77.0.42"), Some("02:00:00:00:00:42")),
        "{v}"
    );
    let mac = p.ok(&[
        "inspect",
        "db",
        "--format",
        "{{.NetworkSettings.Networks.blue.MacAddress}}",
    ]);
    assert_eq!(mac.trim(), "02:00:00:00:00:42");
    p.ok(&["rm", "-f", "-t", "0", "db"]);
    assert!(!d.ls_has("db"), "{}", d.ls());

    // Masquerade, on netd's default network (a second conflist): the outside sees the
    // host's address, and only a masqueraded flow can be answered (it has no route back).
    cni.install(&d, &["netd0"], &[]);
    let srv = tcp_server(&w.outside, 9999);
    p.ok(&[
        "run",
        "--rm",
        &parent,
        "--name",
        "out",
        "--network",
        "netd0",
        image,
        "sh",
        "-c",
        &format!("echo hi | nc -w 3 {OUTSIDE_IP} 9999"),
    ]);
    assert_eq!(srv.peer_ips().len(), 1, "{:?}", srv.peers());
    assert_eq!(srv.last_peer_ip(), HOST_UPLINK_IP);
    assert!(!d.ls_has("out"), "{}", d.ls());

    p.ok(&["rm", "-f", "-t", "0", "web"]);
    assert_eq!(
        d.ls().lines().count(),
        1,
        "netd ls after podman rm: {}",
        d.ls()
    );
    no_host_veths_left(&w);
}

/// Podman's default `enable_port_reservation = true`: conmon holds the published host port, so
/// netd's own reservation is refused (the clash, reported as a CNI error, nothing left behind)
/// until the conflist says `"reservePorts": false` (`netd cni install
/// --runtime-reserves-ports`); then the port works and conmon is what holds it.
#[test]
fn podman_with_its_own_port_reservation() {
    let w = World::new();
    // netd reserves published ports with bind hooks on its cgroup (the cgroup v2 root in
    // production); podman here runs outside the test daemon's private cgroup, so the hooks
    // cannot see its bind. The socket fallback reserves for every process of the namespace,
    // which is what podman's own reservation clashes with.
    let d = w.daemon_with_env(&["--bip", BIP], &[("NETD_PORT_RESERVE", "socket")]);
    blue(&d);
    let cni = CniDirs::new();
    cni.install(&d, &["blue"], &[]);
    let p = Podman::new(&w, &cni.bin, &cni.conf, true);
    let image = p.import_busybox();
    let parent = p.parent_arg();
    let run = [
        "run", "-d", &parent, "--name", "web", "-p", "8080:80", image, "sh", "-c", SERVE,
    ];
    let o = p.run(&run);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "podman run should clash: {stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
    let _ = p.run(&["rm", "-f", "-t", "0", "web"]);

    cni.install(&d, &["blue"], &["--force", "--runtime-reserves-ports"]);
    p.ok(&run);
    let v = d.inspect("web");
    let ip = v["ip"].as_str().unwrap().to_string();
    let reply = netd_tests::try_poll_until(Duration::from_secs(10), || {
        tcp_exchange(&w.outside, &format!("{HOST_UPLINK_IP}:8080"))
    })
    .expect("outside -> published port");
    assert!(
        reply.contains(&format!("{ip}:80 ")) && reply.contains(&format!("{OUTSIDE_IP}:")),
        "{reply}"
    );
    let holders = w.host.run_ok(&["ss", "-Htlnp", "sport = :8080"]);
    assert!(holders.contains("conmon"), "who holds 8080: {holders}");
    p.ok(&["rm", "-f", "-t", "0", "web"]);
    assert_eq!(d.ls().lines().count(), 1, "{}", d.ls());
}

/// Podman on netd networks created with netd's own CLI: masquerade from a created network,
/// `enable_icc=false` keeping two of its containers apart, and a container on two netd
/// networks (`--network a,b`, then `podman network connect` / `disconnect`), each attachment
/// a netd endpoint of its own (`NAME` for eth0, `NAME-eth1` for the next).
#[test]
fn podman_on_created_networks_masquerade_icc_and_two_networks() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    d.netd_ok(&[
        "network",
        "create",
        "red",
        "--subnet",
        "10.78.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
    ]);
    d.netd_ok(&["network", "create", "green", "--subnet", "10.76.0.0/24"]);
    let cni = CniDirs::new();
    cni.install(&d, &["blue", "red", "green"], &[]);
    let p = Podman::new(&w, &cni.bin, &cni.conf, false);
    let image = p.import_busybox();
    let parent = p.parent_arg();
    let serve = |name: &str, net: &str| {
        p.serve(image, name, &["--network", net]);
        d.inspect(name)["ip"].as_str().unwrap().to_string()
    };
    // What a one-shot container on `net` gets back from ADDR:80 (empty when nothing answered).
    let fetch = |net: &str, addr: &str| -> String {
        let o = p.run(&[
            "run",
            "--rm",
            &parent,
            "--network",
            net,
            image,
            "sh",
            "-c",
            &format!("(echo hi; sleep 1) | nc -w 3 {addr} 80"),
        ]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    // Masquerade from a created network: the outside (no route back) sees the host's address.
    let srv = tcp_server(&w.outside, 9998);
    p.ok(&[
        "run",
        "--rm",
        &parent,
        "--network",
        "red",
        image,
        "sh",
        "-c",
        &format!("echo hi | nc -w 3 {OUTSIDE_IP} 9998"),
    ]);
    assert_eq!(srv.peer_ips().len(), 1, "{:?}", srv.peers());
    assert_eq!(srv.last_peer_ip(), HOST_UPLINK_IP);

    // icc=false on red: a red container cannot reach another, which serves the host.
    let a = serve("a", "red");
    assert!(a.starts_with("10.78.0."), "{a}");
    let from_host = netd_tests::try_poll_until(T, || tcp_exchange(&w.host, &format!("{a}:80")))
        .expect("host -> a");
    assert!(from_host.starts_with("got hello"), "{from_host}");
    let got = fetch("red", &a);
    assert!(
        !got.contains("got hi"),
        "icc=false: a red container reached a: {got}"
    );
    // The same on green (icc on) works, from the client's own address.
    let g = serve("g", "green");
    let got = fetch("green", &g);
    assert!(got.contains("got hi"), "{got}");
    let peer = peer_of(&got, &g).unwrap_or_default();
    assert!(peer.starts_with("10.76.0.") && peer != g, "{got}");

    // A container on two netd networks: eth0 and eth1 (podman's order of the two varies), one
    // netd endpoint each; one default route, through the gateway of one of them.
    p.ok(&[
        "run",
        "-d",
        &parent,
        "--name",
        "multi",
        "--network",
        "green,blue",
        image,
        "sh",
        "-c",
        SERVE,
    ]);
    let found = Podman::endpoints_of(&d, "multi");
    assert_eq!(found.len(), 2, "two endpoints for multi: {found:?}");
    let (m0, m1) = (found[0].clone(), found[1].clone());
    assert_eq!(
        (m0["ifname"].as_str(), m1["ifname"].as_str()),
        (Some("eth0"), Some("eth1"))
    );
    let mut nets = [
        m0["network"].as_str().unwrap(),
        m1["network"].as_str().unwrap(),
    ];
    nets.sort();
    assert_eq!(nets, ["blue", "green"], "{m0} {m1}");
    let ip_on = |net: &str| {
        let m = if m0["network"] == net { &m0 } else { &m1 };
        m["ip"].as_str().unwrap().to_string()
    };
    let (blue_ip, green_ip) = (ip_on("blue"), ip_on("green"));
    let (blue_ip, green_ip) = (blue_ip.as_str(), green_ip.as_str());
    let routes = p.ok(&["exec", "multi", "ip", "-4", "route"]);
    assert_eq!(routes.matches("default").count(), 1, "{routes}");
    assert!(
        [&m0, &m1].iter().any(|m| routes.contains(&format!(
            "default via {} dev {}",
            m["gateway"].as_str().unwrap(),
            m["ifname"].as_str().unwrap()
        ))),
        "{routes}"
    );
    let addrs = p.ok(&["exec", "multi", "ip", "-4", "-o", "addr"]);
    assert!(
        addrs.contains(&format!("{green_ip}/24")) && addrs.contains(&format!("{blue_ip}/24")),
        "{addrs}"
    );
    // Reached on each network from that network's containers, each seen from its own address.
    for (net, ip, prefix) in [
        ("green", green_ip, "10.76.0."),
        ("blue", blue_ip, "10.77.0."),
    ] {
        let got = fetch(net, ip);
        assert!(got.contains("got hi"), "{net} -> multi {ip}: {got}");
        let peer = peer_of(&got, ip).unwrap_or_default();
        assert!(
            peer.starts_with(prefix) && peer != green_ip && peer != blue_ip,
            "{net} -> multi {ip}: {got}"
        );
    }

    // podman network connect / disconnect: a's second interface comes and goes alone.
    p.ok(&["network", "connect", "green", "a"]);
    let a1 = d.inspect("a-eth1");
    assert_eq!(a1["network"], "green", "{a1}");
    let a1_ip = a1["ip"].as_str().unwrap().to_string();
    let got = fetch("green", &a1_ip);
    assert!(got.contains("got hi"), "green -> a {a1_ip}: {got}");
    p.ok(&["network", "disconnect", "green", "a"]);
    assert!(!d.ls_has("a-eth1"), "{}", d.ls());
    assert!(d.ls_has("a"), "{}", d.ls());

    p.ok(&["rm", "-f", "-t", "0", "a", "g", "multi"]);
    assert_eq!(
        d.ls().lines().count(),
        1,
        "netd ls after podman rm: {}",
        d.ls()
    );
    no_host_veths_left(&w);
}

/// The CNI result on an `--ipv6` netd network lists the IPv6 lease too: podman's container has
/// the global address (the one netd derived from the MAC), a default route via fe80::1, and is
/// reached from the outside over routed IPv6. A container on two networks whose first
/// interface (the one holding the default route) is disconnected gets the default route
/// through the remaining one, and still reaches the outside.
#[test]
fn podman_ipv6_result_and_default_route_after_disconnect() {
    let w = World::new();
    netd_tests::ipv6::v6_uplink_routed(&w, "2001:db8:75::/64");
    let d = w.daemon(&["--bip", BIP]);
    blue(&d);
    d.netd_ok(&[
        "network",
        "create",
        "v6n",
        "--ipv6",
        "--subnet",
        "10.75.0.0/24",
        "--subnet",
        "2001:db8:75::/64",
    ]);
    let cni = CniDirs::new();
    cni.install(&d, &["blue", "v6n"], &[]);
    let p = Podman::new(&w, &cni.bin, &cni.conf, false);
    let image = p.import_busybox();
    let parent = p.parent_arg();
    p.serve(image, "s6", &["--network", "v6n"]);
    let v = d.inspect("s6");
    // 10.75.0.2 → 02:42:0a:4b:00:02 → the /64's address ending in the MAC.
    assert_eq!(v["global_ipv6"], "2001:db8:75::242:a4b:2", "{v}");
    let ip6 = v["global_ipv6"].as_str().unwrap().to_string();
    // podman keeps what the CNI result listed.
    let seen = p.ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}/{{.GlobalIPv6PrefixLen}} {{.IPv6Gateway}}{{end}}",
        "s6",
    ]);
    assert_eq!(seen.trim(), format!("{ip6}/64 fe80::1"));
    let addrs = p.ok(&["exec", "s6", "ip", "-6", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip6}/64")), "{addrs}");
    let routes = p.ok(&["exec", "s6", "ip", "-6", "route"]);
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("default via fe80::1 dev eth0")),
        "{routes}"
    );
    let got = netd_tests::try_poll_until(T, || tcp_exchange(&w.outside, &format!("[{ip6}]:80")))
        .expect("outside -> s6 over IPv6");
    assert!(got.starts_with("got hello"), "{got}");
    assert!(got.contains("2001:db8:ff::2"), "routed, not NATed: {got}");

    // Two networks; disconnect the one whose interface holds the IPv4 default route.
    p.ok(&[
        "run",
        "-d",
        &parent,
        "--name",
        "m",
        "--network",
        "v6n,blue",
        image,
        "sleep",
        "1000",
    ]);
    let eps = Podman::endpoints_of(&d, "m");
    assert_eq!(eps.len(), 2, "{eps:?}");
    let default_via = || {
        let r = p.ok(&["exec", "m", "ip", "-4", "route"]);
        r.lines()
            .find_map(|l| l.strip_prefix("default via "))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let gw_before = default_via();
    let holder = eps
        .iter()
        .find(|e| e["gateway"] == gw_before.as_str())
        .unwrap_or_else(|| panic!("default via {gw_before:?} is none of {eps:?}"));
    let other = eps.iter().find(|e| e["name"] != holder["name"]).unwrap();
    p.ok(&[
        "network",
        "disconnect",
        holder["network"].as_str().unwrap(),
        "m",
    ]);
    assert!(!d.ls_has(holder["name"].as_str().unwrap()), "{}", d.ls());
    assert_eq!(default_via(), other["gateway"].as_str().unwrap());
    // And the way out works through it (masqueraded to the host's uplink address).
    let srv = tcp_server(&w.outside, 9997);
    p.ok(&[
        "exec",
        "m",
        "sh",
        "-c",
        &format!("echo hi | nc -w 3 {OUTSIDE_IP} 9997"),
    ]);
    assert_eq!(srv.last_peer_ip(), HOST_UPLINK_IP);
    p.ok(&["rm", "-f", "-t", "0", "s6", "m"]);
    no_host_veths_left(&w);
}

/// Polls until the host namespace has no veth left: the daemon deletes a detached endpoint's
/// veth in the background.
fn no_host_veths_left(w: &World) {
    netd_tests::poll_until("the host's veths to go", Duration::from_secs(10), || {
        let v = host_veths(w);
        if v.is_empty() { Ok(()) } else { Err(v) }
    });
}
