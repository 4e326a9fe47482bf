//! Docker's own bridge driver as an oracle for netd's Docker plugin (issue 10).
//!
//! The same scenarios run in three worlds, one per driver, with the same `docker run`
//! commands: dockerd with Docker's bridge driver (`--iptables=true --ip-masq=true`,
//! `docker network create -d bridge`; its iptables rules and docker-proxy stay in the world's
//! host netns) with `--userland-proxy=true` (Docker's default) and with `=false`, and dockerd
//! with netd (`docker network create -d netd --ipam-driver netd`).
//! Each scenario moves real packets (curl and UDP from the outside namespace, busybox nc in the
//! containers, curl in the host netns) and records what arrived and from which source address.
//! The test prints a table (scenario / bridge driver, both proxy modes / netd) and asserts each driver's
//! outcome: the same where netd promises Docker's behaviour, the difference spelled out where
//! they differ by design.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netd_tests::docker::{
    BRIDGE_DRIVER_NET_FLAGS, DockerWorld, Dockerd, HTTPD, MountNs, SLEEPER, dockerd_installed,
    network_args, run_args, unmap,
};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP, UPLINK};
use netd_tests::{Daemon, World, try_poll_until, udp_send};

/// The icc-enabled network: `web` (published ports) and the client `cli`.
const ON_NET: &str = "orcon";
const ON_SUBNET: &str = "10.81.0.0/24";
const ON_GATEWAY: &str = "10.81.0.1";
/// The `enable_icc=false` network: `offweb` and the client `offcli`.
const OFF_NET: &str = "orcoff";
const OFF_SUBNET: &str = "10.81.1.0/24";
/// A second host address on the uplink, for `-p IP:HOSTPORT:80`.
const HOST_IP2: &str = "198.51.100.3";
/// web's published ports: `-p 8080:80`, `-p 5353:53/udp`, `-p HOST_IP2:8081:80`; offweb's
/// `-p 8082:80`.
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
const BOUND_PORT: u16 = 8081;
const OFF_PORT: u16 = 8082;
/// Servers in the outside namespace for the masquerade scenarios.
const OUT_TCP_PORT: u16 = 7000;
const OUT_UDP_PORT: u16 = 7001;

/// What a probe reports when nothing came back.
const NOT_SERVED: &str = "not served";

#[derive(Clone, Copy, Debug)]
enum Driver {
    /// Docker's bridge driver, `--userland-proxy=true` (Docker's default).
    Bridge,
    /// Docker's bridge driver, `--userland-proxy=false` (hairpin NAT rules instead).
    BridgeNoProxy,
    Netd,
}

/// [`BRIDGE_DRIVER_NET_FLAGS`] with `--userland-proxy=false`.
fn no_proxy_flags() -> Vec<&'static str> {
    BRIDGE_DRIVER_NET_FLAGS
        .iter()
        .map(|f| match *f {
            "--userland-proxy=true" => "--userland-proxy=false",
            f => f,
        })
        .collect()
}

/// One world per driver: dockerd (and for netd, the netd daemon) in the world's host netns
/// and a private mount namespace. Fields drop in order: dockerd, netd, the mount namespace
/// (kills what is left in it), the world.
struct Engine {
    driver: Driver,
    docker: Dockerd,
    d: Option<Daemon>,
    _mnt: MountNs,
    w: World,
    /// Docker's addresses of the containers, read after `docker run`.
    web_ip: String,
    cli_ip: String,
    offweb_ip: String,
}

impl Engine {
    fn new(driver: Driver) -> Engine {
        let (docker, d, mnt, w) = match driver {
            Driver::Bridge | Driver::BridgeNoProxy => {
                let flags = match driver {
                    Driver::Bridge => BRIDGE_DRIVER_NET_FLAGS.to_vec(),
                    _ => no_proxy_flags(),
                };
                let w = World::new();
                let mnt = MountNs::new(&w.host);
                let docker = Dockerd::start_with(&mnt, &w.host, &flags);
                docker.import_image().unwrap_or_else(|e| panic!("{e}"));
                (docker, None, mnt, w)
            }
            Driver::Netd => {
                let DockerWorld { docker, d, mnt, w } = DockerWorld::new();
                (docker, Some(d), mnt, w)
            }
        };
        w.host
            .ip(&["addr", "add", &format!("{HOST_IP2}/24"), "dev", UPLINK]);
        let mut e = Engine {
            driver,
            docker,
            d,
            _mnt: mnt,
            w,
            web_ip: String::new(),
            cli_ip: String::new(),
            offweb_ip: String::new(),
        };
        e.network(ON_NET, ON_SUBNET, &[]);
        e.network(
            OFF_NET,
            OFF_SUBNET,
            &["-o", "com.docker.network.bridge.enable_icc=false"],
        );
        // web serves HTTP on 80 (the CGI answers the client's address) and UDP on 53 (the
        // host's socat, /usr mounted read-only, answers each datagram with its source).
        let bound = format!("{HOST_IP2}:{BOUND_PORT}:80");
        let (tcp, udp) = (format!("{TCP_PORT}:80"), format!("{UDP_PORT}:53/udp"));
        let web = [
            "--network",
            ON_NET,
            "-p",
            &tcp,
            "-p",
            &udp,
            "-p",
            &bound,
            "-v",
            "/usr:/usr:ro",
        ];
        let serve = "/bin/busybox httpd -p 80 -h /www && \
                     exec /usr/bin/socat UDP-RECVFROM:53,fork 'SYSTEM:echo $SOCAT_PEERADDR'";
        e.docker
            .docker_ok(&run_args("web", &web, &["/bin/sh", "-c", serve]));
        let cli = ["--network", ON_NET, "-v", "/usr:/usr:ro"];
        e.docker.docker_ok(&run_args("cli", &cli, &SLEEPER));
        let off = format!("{OFF_PORT}:80");
        e.docker.docker_ok(&run_args(
            "offweb",
            &["--network", OFF_NET, "-p", &off],
            &HTTPD,
        ));
        e.docker
            .docker_ok(&run_args("offcli", &["--network", OFF_NET], &SLEEPER));
        e.web_ip = e.docker_ip("web");
        e.cli_ip = e.docker_ip("cli");
        e.offweb_ip = e.docker_ip("offweb");
        e
    }

    /// `docker network create` with the driver's own flags and otherwise the same options.
    fn network(&self, name: &str, subnet: &str, extra: &[&str]) {
        let br = format!("com.docker.network.bridge.name={name}");
        let mut opts = vec!["--subnet", subnet, "-o", &br];
        opts.extend_from_slice(extra);
        let args = match self.driver {
            Driver::Netd => network_args(name, &opts),
            Driver::Bridge | Driver::BridgeNoProxy => {
                let mut a = vec!["network", "create", "-d", "bridge"];
                a.extend_from_slice(&opts);
                a.push(name);
                a
            }
        };
        self.docker.docker_ok(&args);
    }

    fn docker_ip(&self, name: &str) -> String {
        self.docker.docker_ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ])
    }

    /// In CONTAINER (busybox nc), GET /cgi-bin/ip from HOST:PORT: the peer address the server
    /// saw, or [`NOT_SERVED`].
    fn exec_peer(&self, container: &str, host: &str, port: u16) -> String {
        let get = format!(
            "printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 3 {host} {port}"
        );
        let out = self
            .docker
            .docker(&["exec", container, "/bin/busybox", "sh", "-c", &get]);
        let got = String::from_utf8_lossy(&out.stdout);
        match got.lines().last() {
            Some(l) if got.contains("200 OK") => unmap(l),
            _ => NOT_SERVED.to_string(),
        }
    }

    /// GET http://IP:PORT/cgi-bin/ip with curl in the namespace `ns_path`, as a process of the
    /// cgroup `cgroup` if given, tried for up to 8 s (so a "not served" is one for 8 s): the
    /// peer address the server saw, or [`NOT_SERVED`].
    fn curl_peer(&self, ns_path: &str, cgroup: Option<&Path>, ip: &str, port: u16) -> String {
        let join = cgroup
            .map(|c| format!("echo $$ > {}/cgroup.procs && ", c.display()))
            .unwrap_or_default();
        let script = format!(
            "{join}exec nsenter --net={ns_path} curl -s --max-time 2 http://{ip}:{port}/cgi-bin/ip"
        );
        try_poll_until(Duration::from_secs(8), || {
            let out = Command::new("sh").args(["-c", &script]).output().unwrap();
            if out.status.success() {
                Ok(unmap(&String::from_utf8_lossy(&out.stdout)))
            } else {
                Err(NOT_SERVED.to_string())
            }
        })
        .unwrap_or_else(|e| e)
    }

    /// From the outside namespace.
    fn outside_peer(&self, ip: &str, port: u16) -> String {
        self.curl_peer(self.w.outside.path_str(), None, ip, port)
    }

    /// From the host netns, as a host process: for netd in the daemon's cgroup (the harness
    /// gives it a private one; in production `--cgroup` is the cgroup v2 root).
    fn host_peer(&self, ip: &str, port: u16) -> String {
        let cgroup = self.d.as_ref().and_then(|d| d.cgroup());
        self.curl_peer(self.w.host.path_str(), cgroup, ip, port)
    }

    /// `echo masq` over TCP or UDP from `cli` to a server in the outside
    /// namespace: the source address the server saw, or [`NOT_SERVED`] if nothing came back.
    fn masquerade(&self, udp: bool) -> String {
        // busybox nc has no UDP: the host's socat (cli has /usr mounted) sends the datagram.
        let (srv, nc) = if udp {
            let s = netd_tests::udp_server(&self.w.outside, OUT_UDP_PORT);
            let c = format!("echo masq | /usr/bin/socat -T 2 - UDP:{OUTSIDE_IP}:{OUT_UDP_PORT}");
            (s, c)
        } else {
            let s = netd_tests::tcp_server(&self.w.outside, OUT_TCP_PORT);
            let c = format!("echo masq | /bin/busybox nc -w 2 {OUTSIDE_IP} {OUT_TCP_PORT}");
            (s, c)
        };
        let out = self
            .docker
            .docker(&["exec", "cli", "/bin/busybox", "sh", "-c", &nc]);
        let echoed = String::from_utf8_lossy(&out.stdout).contains("masq");
        match srv.last_peer() {
            Some(ip) if echoed => ip.to_string(),
            _ => NOT_SERVED.to_string(),
        }
    }

    /// docker-proxy processes in the world's host netns.
    fn proxies(&self) -> String {
        let host = fs::read_link(self.w.host.path()).ok();
        let ino = fs::metadata(self.w.host.path())
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok();
        let n = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                let pid = e.file_name().to_string_lossy().to_string();
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let ns = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
                comm.trim() == "docker-proxy"
                    && (ns == host
                        || ns
                            .zip(ino)
                            .is_some_and(|(n, i)| n.to_string_lossy() == format!("net:[{i}]")))
            })
            .count();
        n.to_string()
    }
}

/// What a scenario should give, per driver.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// The outside client's own address.
    Outside,
    /// The host's uplink address (masquerade; a host process's own source).
    HostIp,
    /// The network's gateway (the address on the bridge).
    Gateway,
    /// The client container's own address.
    Client,
    /// Nothing came back.
    NotServed,
    /// A count or text other than "0" / [`NOT_SERVED`].
    Some,
    /// Exactly this text.
    Is(&'static str),
}

impl Want {
    fn holds(self, e: &Engine, got: &str) -> bool {
        match self {
            Want::Outside => got == OUTSIDE_IP,
            Want::HostIp => got == HOST_UPLINK_IP,
            Want::Gateway => got == ON_GATEWAY,
            Want::Client => got == e.cli_ip,
            Want::NotServed => got == NOT_SERVED,
            Want::Some => got != "0" && got != NOT_SERVED,
            Want::Is(s) => got == s,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Want::Outside => "outside client",
            Want::HostIp => "host address",
            Want::Gateway => "gateway",
            Want::Client => "client container",
            Want::NotServed => "",
            Want::Some => "",
            Want::Is(_) => "",
        }
    }
}

/// A scenario: how to probe it and what each driver should give. `note` says why the two
/// differ where they do.
struct Scenario {
    name: &'static str,
    probe: fn(&Engine) -> String,
    /// Docker's bridge driver with `--userland-proxy=true`, with `--userland-proxy=false`,
    /// and netd.
    proxy: Want,
    no_proxy: Want,
    netd: Want,
    note: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "outside -> host:8080/tcp",
        probe: |e| e.outside_peer(HOST_UPLINK_IP, TCP_PORT),
        proxy: Want::Outside,
        no_proxy: Want::Outside,
        netd: Want::Outside,
        note: "",
    },
    Scenario {
        name: "outside -> host:5353/udp",
        probe: |e| {
            try_poll_until(Duration::from_secs(8), || {
                udp_send(&e.w.outside, &format!("{HOST_UPLINK_IP}:{UDP_PORT}"), "q")
            })
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| NOT_SERVED.to_string())
        },
        proxy: Want::Outside,
        no_proxy: Want::Outside,
        netd: Want::Outside,
        note: "",
    },
    Scenario {
        name: "outside -> IP2:8081 (-p IP2:8081:80)",
        probe: |e| e.outside_peer(HOST_IP2, BOUND_PORT),
        proxy: Want::Outside,
        no_proxy: Want::Outside,
        netd: Want::Outside,
        note: "",
    },
    Scenario {
        name: "outside -> host:8081 (bound to IP2)",
        probe: |e| e.outside_peer(HOST_UPLINK_IP, BOUND_PORT),
        proxy: Want::NotServed,
        no_proxy: Want::NotServed,
        netd: Want::NotServed,
        note: "",
    },
    Scenario {
        name: "cli -> outside tcp (masquerade)",
        probe: |e| e.masquerade(false),
        proxy: Want::HostIp,
        no_proxy: Want::HostIp,
        netd: Want::HostIp,
        note: "",
    },
    Scenario {
        name: "cli -> outside udp (masquerade)",
        probe: |e| e.masquerade(true),
        proxy: Want::HostIp,
        no_proxy: Want::HostIp,
        netd: Want::HostIp,
        note: "",
    },
    Scenario {
        name: "icc on: cli -> web:80",
        probe: |e| e.exec_peer("cli", &e.web_ip, 80),
        proxy: Want::Client,
        no_proxy: Want::Client,
        netd: Want::Client,
        note: "",
    },
    Scenario {
        name: "icc off: offcli -> offweb:80",
        probe: |e| e.exec_peer("offcli", &e.offweb_ip, 80),
        proxy: Want::NotServed,
        no_proxy: Want::NotServed,
        netd: Want::NotServed,
        note: "",
    },
    Scenario {
        name: "icc off: outside -> host:8082",
        probe: |e| e.outside_peer(HOST_UPLINK_IP, OFF_PORT),
        proxy: Want::Outside,
        no_proxy: Want::Outside,
        netd: Want::Outside,
        note: "",
    },
    Scenario {
        name: "host -> 127.0.0.1:8080",
        probe: |e| e.host_peer("127.0.0.1", TCP_PORT),
        proxy: Want::Gateway,
        no_proxy: Want::Gateway,
        netd: Want::Gateway,
        note: "",
    },
    Scenario {
        name: "host -> host:8080",
        probe: |e| e.host_peer(HOST_UPLINK_IP, TCP_PORT),
        proxy: Want::HostIp,
        no_proxy: Want::Gateway,
        netd: Want::Gateway,
        note: "Docker DNATs it in OUTPUT without masquerade; netd masquerades to the gateway, \
               as Docker's rules do with --userland-proxy=false",
    },
    Scenario {
        name: "web -> host:8080 (hairpin, itself)",
        probe: |e| e.exec_peer("web", HOST_UPLINK_IP, TCP_PORT),
        proxy: Want::Gateway,
        no_proxy: Want::Gateway,
        netd: Want::Gateway,
        note: "",
    },
    Scenario {
        name: "cli -> host:8080 (hairpin)",
        probe: |e| e.exec_peer("cli", HOST_UPLINK_IP, TCP_PORT),
        proxy: Want::Gateway,
        no_proxy: Want::Client,
        netd: Want::Client,
        note: "docker-proxy connects from the gateway; netd keeps the client's address",
    },
    Scenario {
        name: "docker-proxy processes in host netns",
        probe: Engine::proxies,
        proxy: Want::Some,
        no_proxy: Want::Is("0"),
        netd: Want::Is("0"),
        note: "netd serves published ports in eBPF, no userland proxy",
    },
];

/// One scenario's outcome in one world.
struct Cell {
    got: String,
    want: Want,
    ok: bool,
}

impl Cell {
    fn show(&self) -> String {
        match (self.ok, self.want.label()) {
            (true, "") => self.got.clone(),
            (true, label) => format!("{} ({label})", self.got),
            (false, _) => format!("{} [WANTED {:?}]", self.got, self.want),
        }
    }
}

/// Every scenario in a new world of `driver`.
fn measure(driver: Driver) -> Vec<Cell> {
    let e = Engine::new(driver);
    SCENARIOS
        .iter()
        .map(|s| {
            let got = (s.probe)(&e);
            let want = match driver {
                Driver::Bridge => s.proxy,
                Driver::BridgeNoProxy => s.no_proxy,
                Driver::Netd => s.netd,
            };
            let ok = want.holds(&e, &got);
            Cell { got, want, ok }
        })
        .collect()
}

#[test]
fn docker_bridge_driver_and_netd_give_the_same_user_visible_networking() {
    if !dockerd_installed() || !Path::new("/usr/sbin/docker-proxy").exists() {
        eprintln!(
            "SKIPPED docker_oracle: docker.io (/usr/sbin/dockerd, /usr/sbin/docker-proxy) is \
             not installed; `cargo xtask setup` installs it"
        );
        return;
    }
    let started = Instant::now();
    let mut cols = Vec::new();
    for driver in [Driver::Bridge, Driver::BridgeNoProxy, Driver::Netd] {
        cols.push(measure(driver));
        eprintln!("{driver:?} world done after {:?}", started.elapsed());
    }
    let [proxy, no_proxy, netd] = &cols[..] else {
        unreachable!()
    };

    let w = 30;
    let mut table = format!(
        "{:<37} | {:<w$} | {:<w$} | {:<w$} | verdict\n",
        "scenario", "bridge, userland proxy", "bridge, no proxy", "netd"
    );
    let mut failed = Vec::new();
    for (i, s) in SCENARIOS.iter().enumerate() {
        let (p, q, n) = (&proxy[i], &no_proxy[i], &netd[i]);
        let same = p.got == n.got;
        let verdict = match (same, s.note) {
            (true, "") if q.got == n.got => "same".to_string(),
            (true, "") => "netd = proxy".to_string(),
            (true, _) => "same, but should differ".to_string(),
            (false, note) if q.got == n.got => format!("netd = no proxy; by design: {note}"),
            (false, note) => format!("differs by design: {note}"),
        };
        // Each driver gives what it should, and netd differs from Docker's default (userland
        // proxy) exactly where a note says why.
        if !(p.ok && q.ok && n.ok && same == s.note.is_empty()) {
            failed.push(s.name);
        }
        table.push_str(&format!(
            "{:<37} | {:<w$} | {:<w$} | {:<w$} | {verdict}\n",
            s.name,
            p.show(),
            q.show(),
            n.show()
        ));
    }
    eprintln!("{table}");
    assert!(failed.is_empty(), "not as wanted: {failed:?}\n{table}");
}
