//! `cargo xtask demo`: netd's main job on an embedded default topology.
//!
//! Builds a private "host" network namespace (where the daemon runs), an "outside" namespace on
//! the host's uplink, and two containers; publishes a port; and shows real traffic crossing the
//! eBPF dataplane, with the counters it kept. Nothing outside those namespaces is touched, and
//! everything is removed when the demo ends, also when a step fails.

use std::process::ExitCode;
use std::time::Duration;

use netd_tests::docker::{
    DockerWorld, HTTPD, IMAGE, http_get_until, network_args, run_args, unmap,
};
use netd_tests::podman::{CniDirs, Podman, SERVE, podman_installed, tcp_exchange};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP, UPLINK};
use netd_tests::{Daemon, World, tcp_request_until, tcp_server, udp_request, udp_server};

fn step(title: &str) {
    println!("\n\x1b[1m== {title}\x1b[0m");
}

fn show(cmd: &str, out: &str) {
    println!("$ {cmd}");
    for l in out.lines() {
        println!("  {l}");
    }
}

struct Score {
    failed: Vec<String>,
}

impl Score {
    fn check(&mut self, what: &str, ok: bool, detail: &str) {
        if ok {
            println!("  \x1b[32mok\x1b[0m   {what}");
        } else {
            println!("  \x1b[31mFAIL\x1b[0m {what}: {detail}");
            self.failed.push(what.to_string());
        }
    }
}

fn main() -> ExitCode {
    let mut score = Score { failed: Vec::new() };
    step("1. A private world: host namespace, outside namespace, two containers");
    let world = World::new();
    let web = world.container("web");
    let app = world.container("app");
    println!(
        "  host netns {} (uplink {UPLINK} {HOST_UPLINK_IP}/24), outside netns {} ({OUTSIDE_IP}/24)",
        world.host.name(),
        world.outside.name()
    );
    println!(
        "  container namespaces: {} (web), {} (app)",
        web.name(),
        app.name()
    );

    step("2. Start the daemon in the host namespace");
    let d = Daemon::start(&world.host, &["--uplink", UPLINK, "--bip", "172.30.0.1/24"]);
    println!(
        "  netd daemon -H {} --uplink {UPLINK} --bip 172.30.0.1/24",
        d.host_arg()
    );

    step("3. Attach the containers: publish web's port 80 on 8080 (TCP and UDP), link app to web");
    d.netd_ok(&[
        "attach",
        "web",
        "--netns",
        web.path_str(),
        "-p",
        "8080:80",
        "-p",
        "8080:80/udp",
        "--expose",
        "80",
    ]);
    d.netd_ok(&[
        "attach",
        "app",
        "--netns",
        app.path_str(),
        "--link",
        "web:db",
    ]);
    show("netd ls", &d.ls());
    show("netd port web", &d.netd_ok(&["port", "web"]));
    show("cat <app etc>/hosts", &d.etc_file("app", "hosts"));

    let server = tcp_server(&web, 80);
    let udp = udp_server(&web, 80);

    step("4. Outside -> published port 198.51.100.1:8080 (DNAT in TC, no iptables, no proxy)");
    let r = tcp_request_until(
        &world.outside,
        &format!("{HOST_UPLINK_IP}:8080"),
        Duration::from_secs(5),
    );
    score.check(
        "outside reaches web through the published port",
        r.is_ok(),
        &format!("{r:?}"),
    );
    let seen = server.last_peer_ip();
    score.check(
        "web sees the client's real address (no proxy in the path)",
        seen == OUTSIDE_IP,
        &format!("web saw {seen}"),
    );

    step("5. Container -> container over the bridge, by link alias");
    let r = tcp_request_until(&app, "172.30.0.2:80", Duration::from_secs(5));
    score.check(
        "app reaches web at its own address",
        r.is_ok(),
        &format!("{r:?}"),
    );
    let r = udp_request(&app, "172.30.0.2:80");
    score.check("UDP app -> web", r.is_ok(), &format!("{r:?}"));

    step("6. Container -> outside, masqueraded to the uplink address");
    let outside_srv = tcp_server(&world.outside, 9000);
    let r = tcp_request_until(&app, &format!("{OUTSIDE_IP}:9000"), Duration::from_secs(5));
    score.check("app reaches the outside", r.is_ok(), &format!("{r:?}"));
    let seen = outside_srv.last_peer_ip();
    score.check(
        "the outside sees the host's uplink address",
        seen == HOST_UPLINK_IP,
        &format!("outside saw {seen}"),
    );

    step("7. The host itself reaches web at 127.0.0.1:8080: socket hooks, no docker-proxy");
    match host_local(
        &world,
        &d,
        &[
            "tcp 127.0.0.1:8080",
            "udp 127.0.0.1:8080",
            "tcp localhost:8080",
        ],
    ) {
        Ok(lines) => {
            for l in &lines {
                println!("  {l}");
            }
            let ok = lines.len() == 3 && lines.iter().all(|l| l.contains("=> ok"));
            score.check(
                "host process -> 127.0.0.1:8080 and localhost (TCP, UDP)",
                ok,
                &lines.join("; "),
            );
        }
        Err(e) => score.check("host process -> 127.0.0.1:8080", false, &e),
    }
    let proxies = std::process::Command::new("pgrep")
        .args(["-f", "docker-proxy"])
        .output();
    let none = proxies.map(|o| o.stdout.is_empty()).unwrap_or(false);
    score.check(
        "no proxy process anywhere (pgrep -f docker-proxy)",
        none,
        "found one",
    );

    step("8. What the dataplane counted");
    let st = d.status();
    if let Some(ifs) = st["interfaces"].as_array() {
        println!(
            "  {:<14} {:>10} {:>12} {:>10} {:>12}",
            "interface", "rx pkts", "rx bytes", "tx pkts", "tx bytes"
        );
        for i in ifs {
            let n = |k: &str| i[k].as_u64().unwrap_or(0);
            println!(
                "  {:<14} {:>10} {:>12} {:>10} {:>12}",
                i["ifname"].as_str().unwrap_or("?"),
                n("rx_packets"),
                n("rx_bytes"),
                n("tx_packets"),
                n("tx_bytes")
            );
        }
        let moved = ifs
            .iter()
            .any(|i| i["rx_packets"].as_u64().unwrap_or(0) > 0);
        score.check("per-interface counters moved", moved, "all zero");
    }
    let list = |k: &str| st[k].as_array().cloned().unwrap_or_default();
    println!("  attached programs:");
    for p in list("programs") {
        let f = |k: &str| p[k].as_str().unwrap_or("?").to_string();
        println!(
            "    TC  {:<13} {:<8} {}",
            f("ifname"),
            f("direction"),
            f("program")
        );
    }
    for p in list("xdp") {
        let f = |k: &str| p[k].as_str().unwrap_or("?").to_string();
        println!("    XDP {:<13} {:<8} {}", f("ifname"), "", f("program"));
    }
    for p in list("socket_hooks") {
        println!(
            "    cgroup {:<32} {}",
            d.cgroup()
                .map(|c| c.display().to_string())
                .unwrap_or_default(),
            p["program"].as_str().unwrap_or("?")
        );
    }
    for extra in [&["stats"][..], &["ct"][..]] {
        let out = d.netd(extra);
        if out.status.success() {
            show(
                &format!("netd {}", extra.join(" ")),
                &String::from_utf8_lossy(&out.stdout),
            );
        }
    }
    let pin = d.bpffs().join("maps/NETD_IF_STATS");
    let bt = std::process::Command::new("bpftool")
        .args(["map", "dump", "pinned"])
        .arg(&pin)
        .output();
    if let Ok(o) = bt {
        let text = String::from_utf8_lossy(&o.stdout);
        let head: Vec<&str> = text.lines().take(24).collect();
        show(
            &format!("bpftool map dump pinned {}   (first lines)", pin.display()),
            &head.join("\n"),
        );
    }

    step("9. Clean up");
    drop(server);
    drop(udp);
    drop(outside_srv);
    drop(d);
    drop(world);
    println!("  daemon stopped, namespaces and bpffs removed");

    docker_step(&mut score);
    podman_step(&mut score);
    if score.failed.is_empty() {
        println!("\n\x1b[32mdemo passed\x1b[0m");
        ExitCode::SUCCESS
    } else {
        println!(
            "\n\x1b[31mdemo: {} check(s) failed: {}\x1b[0m",
            score.failed.len(),
            score.failed.join("; ")
        );
        ExitCode::FAILURE
    }
}

/// Runs `netd-sock-client` (built beside this binary) as a host process inside the daemon's
/// cgroup, where the socket hooks act; returns its result lines.
fn host_local(world: &World, d: &Daemon, ops: &[&str]) -> Result<Vec<String>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let client = exe.with_file_name("netd-sock-client");
    let cgroup = d.cgroup().ok_or("the daemon has no --cgroup")?;
    let out = std::process::Command::new(&client)
        .arg("--netns")
        .arg(world.host.path())
        .arg("--cgroup")
        .arg(cgroup)
        .args(ops)
        .output()
        .map_err(|e| {
            format!(
                "cannot run {}: {e} (build it: cargo build -p netd-tests --bins)",
                client.display()
            )
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("RESULT"))
        .map(|l| l.trim_start_matches("RESULT ").to_string())
        .collect())
}

/// Optional: the real dockerd drives netd as its network and IPAM plugin (a world of its own,
/// netd and dockerd sharing its host netns and a private mount namespace). About 15 s;
/// skipped with a line saying so when docker.io is not installed.
fn docker_step(score: &mut Score) {
    step("10. Optional: dockerd drives netd (network and IPAM plugin `netd`)");
    if !netd_tests::docker::dockerd_installed() {
        println!("  skipped: dockerd is not installed (`cargo xtask setup` installs docker.io)");
        return;
    }
    let started = std::time::Instant::now();
    let x = match DockerWorld::start("172.30.0.1/24") {
        Ok(x) => x,
        Err(e) => {
            score.check("dockerd with the netd plugin and the image", false, &e);
            return;
        }
    };
    println!("  netd docker-plugin install; dockerd up; docker import rootfs.tar {IMAGE}");
    let (world, d, docker) = (&x.w, &x.d, &x.docker);
    let run = run_args(
        "web",
        &[
            "--network",
            "name=dknet,driver-opt=netd.name=web",
            "-p",
            "8080:80",
        ],
        &HTTPD,
    );
    let network = network_args(
        "dknet",
        &["--subnet", "10.79.0.0/24", "-o", "netd.name=dknet"],
    );
    let cmds: [&[&str]; 2] = [&network, &run];
    for args in cmds {
        let out = docker.docker(args);
        show(
            &format!("docker {}", args.join(" ")),
            String::from_utf8_lossy(&out.stdout).trim(),
        );
        score.check(
            &format!("docker {}", args[0]),
            out.status.success(),
            &String::from_utf8_lossy(&out.stderr),
        );
        if !out.status.success() {
            return;
        }
    }
    show("netd ls", &d.netd_ok(&["ls"]));
    let url = format!("http://{HOST_UPLINK_IP}:8080/cgi-bin/ip");
    let got = http_get_until(&world.outside, &url).unwrap_or_else(|e| e);
    show(
        &format!("(outside) curl http://{HOST_UPLINK_IP}:8080/cgi-bin/ip"),
        &got,
    );
    score.check(
        "outside -> docker run -p 8080:80 on netd, the container sees the client",
        unmap(&got) == OUTSIDE_IP,
        &got,
    );
    let rm = docker.docker(&["rm", "-f", "web"]);
    score.check(
        "docker rm -f leaves no netd endpoint",
        rm.status.success() && !d.ls_has("web"),
        &d.ls(),
    );
    drop(x);
    println!(
        "  dockerd, netd and namespaces removed ({:.1} s for this step)",
        started.elapsed().as_secs_f64()
    );
}

/// Optional: rootful podman 4.3 runs a container on a netd network through the `netd-cni`
/// plugin (a world of its own). About 10 s; skipped with a line when podman is missing.
fn podman_step(score: &mut Score) {
    step("11. Optional: podman runs a container through the netd CNI plugin");
    if !podman_installed() {
        println!("  skipped: podman is not installed (`cargo xtask setup` installs it)");
        return;
    }
    let started = std::time::Instant::now();
    let world = World::new();
    let d = Daemon::start(&world.host, &["--uplink", UPLINK, "--bip", "172.30.0.1/24"]);
    d.netd_ok(&["network", "create", "blue", "--subnet", "10.77.0.0/24"]);
    let cni = CniDirs::new();
    cni.install(&d, &["blue"], &[]);
    println!("  netd network create blue --subnet 10.77.0.0/24; netd cni install --network blue");
    let p = Podman::new(&world, &cni.bin, &cni.conf, false);
    let image = p.import_busybox();
    let run = p.run(&[
        "run",
        "-d",
        &p.parent_arg(),
        "--name",
        "web",
        "--network",
        "blue",
        "-p",
        "8080:80",
        image,
        "sh",
        "-c",
        SERVE,
    ]);
    show(
        "podman run -d --name web --network blue -p 8080:80 busybox",
        String::from_utf8_lossy(&run.stdout).trim(),
    );
    score.check(
        "podman run on netd's CNI plugin",
        run.status.success(),
        &String::from_utf8_lossy(&run.stderr),
    );
    if !run.status.success() {
        return;
    }
    show("netd ls", &d.netd_ok(&["ls"]));
    let reply = netd_tests::try_poll_until(Duration::from_secs(10), || {
        tcp_exchange(&world.outside, &format!("{HOST_UPLINK_IP}:8080"))
    })
    .unwrap_or_else(|e| e.to_string());
    show(
        &format!("(outside) echo hello | nc {HOST_UPLINK_IP} 8080"),
        &reply,
    );
    score.check(
        "outside -> podman -p 8080:80 on netd, the container sees the client",
        reply.starts_with("got hello") && reply.contains(&format!("{OUTSIDE_IP}:")),
        &reply,
    );
    let rm = p.run(&["rm", "-f", "-t", "0", "web"]);
    score.check(
        "podman rm leaves no netd endpoint",
        rm.status.success() && !d.ls_has("web"),
        &d.ls(),
    );
    drop(p);
    drop(d);
    drop(world);
    println!(
        "  podman, netd and namespaces removed ({:.1} s for this step)",
        started.elapsed().as_secs_f64()
    );
}
