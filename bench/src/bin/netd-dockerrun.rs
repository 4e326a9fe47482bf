//! `netd-dockerrun`: `docker run` → first packet, Docker's bridge driver against netd's network
//! plugin (issue 10).
//!
//! For each driver a private world: dockerd 20.10 in the world's host namespace and a private
//! mount namespace (Docker's bridge driver with its iptables rules and docker-proxy, Docker's
//! defaults; or `--bridge=none --iptables=false` with netd's daemon and plugin spec), one
//! network (`docker network create -d bridge` / `-d netd --ipam-driver netd`), the busybox image
//! imported. Then `--runs` times: `docker run -d -p 8080:80 netdt-bb:1 httpd` while a thread
//! in the outside namespace connects to the published port every `--probe-ms` and sends an
//! HTTP GET, until an HTTP answer comes back. Both times count from the moment `docker run`
//! started: when the command returned, and when the first answer came. `docker rm -f` between
//! runs (untimed). Prints one JSON object: per driver the median and min–max of each, and
//! netd's medians over the bridge driver's.
//!
//! The netd daemon is `$NETD_BIN` (default target/debug/netd; use a release build for
//! numbers): `cargo build --release -p netd -p netd-bench &&
//! NETD_BIN=target/release/netd target/release/netd-dockerrun`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use netd_tests::docker::{
    BRIDGE_DRIVER_NET_FLAGS, DockerWorld, Dockerd, HTTPD, MountNs, dockerd_installed, network_args,
    run_args,
};
use netd_tests::traffic::enter_netns;
use netd_tests::world::HOST_UPLINK_IP;
use netd_tests::{Daemon, World};

#[derive(Parser)]
#[command(name = "netd-dockerrun")]
struct Cli {
    /// `docker run`s per driver.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// The outside's probe interval, ms.
    #[arg(long, default_value_t = 5)]
    probe_ms: u64,
    /// Give up on a run after this many seconds without an answer.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
}

const PORT: u16 = 8080;
const NET: &str = "runnet";
const SUBNET: &str = "10.83.0.0/24";

/// Docker's bridge driver (dockerd's defaults: iptables, docker-proxy), or netd's plugin.
#[derive(Clone, Copy)]
enum Driver {
    Bridge,
    Netd,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Bridge => "docker-bridge",
            Driver::Netd => "netd",
        }
    }
}

/// One driver's world; fields drop in order: dockerd, netd, the mount namespace, the world.
struct Engine {
    docker: Dockerd,
    _d: Option<Daemon>,
    _mnt: MountNs,
    w: World,
}

impl Engine {
    fn start(driver: Driver) -> Result<Engine> {
        let e = match driver {
            Driver::Bridge => {
                let w = World::new();
                let mnt = MountNs::new(&w.host);
                let docker = Dockerd::start_with(&mnt, &w.host, &BRIDGE_DRIVER_NET_FLAGS);
                docker.import_image().map_err(anyhow::Error::msg)?;
                Engine {
                    docker,
                    _d: None,
                    _mnt: mnt,
                    w,
                }
            }
            Driver::Netd => {
                let DockerWorld { docker, d, mnt, w } =
                    DockerWorld::start(netd_tests::BIP).map_err(anyhow::Error::msg)?;
                Engine {
                    docker,
                    _d: Some(d),
                    _mnt: mnt,
                    w,
                }
            }
        };
        let br = format!("com.docker.network.bridge.name={NET}");
        let opts = ["--subnet", SUBNET, "-o", &br];
        let args = match driver {
            Driver::Netd => network_args(NET, &opts),
            Driver::Bridge => {
                let mut a = vec!["network", "create", "-d", "bridge"];
                a.extend_from_slice(&opts);
                a.push(NET);
                a
            }
        };
        e.docker.docker_ok(&args);
        Ok(e)
    }
}

/// What one probe got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Answered,
    /// The connection was refused (an RST: nothing listens, or no translation yet).
    Refused,
    /// No answer to the SYN within 200 ms (dropped on the way).
    Timeout,
    /// Connected, but no HTTP answer (docker-proxy with no server behind it yet).
    NoAnswer,
}

/// One GET to `addr`.
fn probe(addr: &SocketAddr) -> Probe {
    let mut s = match TcpStream::connect_timeout(addr, Duration::from_millis(200)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Refused,
        Err(_) => return Probe::Timeout,
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return Probe::NoAnswer;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 5 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return Probe::NoAnswer,
            Ok(n) => got += n,
        }
    }
    if buf.starts_with(b"HTTP/") {
        Probe::Answered
    } else {
        Probe::NoAnswer
    }
}

/// A run's probes that did not get an answer, by outcome.
#[derive(Default)]
struct Misses {
    refused: u64,
    timeout: u64,
    no_answer: u64,
}

/// (docker run returned, first answer), both from the start of `docker run`, and the probes
/// before the answer.
fn one_run(e: &Engine, cli: &Cli, k: usize) -> Result<(Duration, Duration, Misses)> {
    let name = format!("run{k}");
    let publish = format!("{PORT}:80");
    let args = run_args(&name, &["--network", NET, "-p", &publish], &HTTPD);
    let stop = Arc::new(AtomicBool::new(false));
    let outside = e.w.outside.path().to_path_buf();
    let addr: SocketAddr = format!("{HOST_UPLINK_IP}:{PORT}").parse()?;
    let (interval, limit) = (
        Duration::from_millis(cli.probe_ms),
        Duration::from_secs(cli.timeout_s),
    );
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let st = stop.clone();
    let probe = std::thread::spawn(move || -> (Option<Instant>, Misses) {
        let mut m = Misses::default();
        if enter_netns(&outside).is_err() {
            return (None, m);
        }
        // Nothing may answer before the container runs: the previous run's is gone.
        let early = probe(&addr) == Probe::Answered;
        let _ = ready_tx.send(early);
        while !st.load(Ordering::Relaxed) {
            match probe(&addr) {
                Probe::Answered => return (Some(Instant::now()), m),
                Probe::Refused => m.refused += 1,
                Probe::Timeout => m.timeout += 1,
                Probe::NoAnswer => m.no_answer += 1,
            }
            std::thread::sleep(interval);
        }
        (None, m)
    });
    if ready_rx.recv().context("probe thread")? {
        stop.store(true, Ordering::Relaxed);
        bail!("{addr} answered before docker run");
    }
    let t0 = Instant::now();
    let out = e.docker.docker(&args);
    let returned = t0.elapsed();
    if !out.status.success() {
        stop.store(true, Ordering::Relaxed);
        let _ = probe.join();
        bail!(
            "docker run: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            e.docker.log()
        );
    }
    let deadline = t0 + limit;
    while !probe.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    let (first, misses) = probe
        .join()
        .map_err(|_| anyhow::anyhow!("probe panicked"))?;
    let first = first.with_context(|| format!("no answer on {addr} {limit:?} after docker run"))?;
    e.docker.docker_ok(&["rm", "-f", &name]);
    Ok((returned, first.duration_since(t0), misses))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// (median, min, max) in ms.
fn stats(v: &mut [Duration]) -> (f64, f64, f64) {
    v.sort();
    let med = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    };
    (ms(med), ms(v[0]), ms(v[v.len() - 1]))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !dockerd_installed() {
        bail!("dockerd is missing: `cargo xtask setup` installs docker.io");
    }
    if cli.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let mut out = serde_json::Map::new();
    let mut medians = vec![];
    for driver in [Driver::Bridge, Driver::Netd] {
        let e = Engine::start(driver).with_context(|| format!("starting {}", driver.name()))?;
        let (mut ret, mut first) = (vec![], vec![]);
        let mut all = Misses::default();
        for k in 0..cli.runs {
            let (r, f, m) =
                one_run(&e, &cli, k).with_context(|| format!("{} run {k}", driver.name()))?;
            eprintln!(
                "{} run {k}: docker run returned {:.1} ms, first answer {:.1} ms \
                 (before it: {} refused, {} SYN unanswered for 200 ms, {} connected without answer)",
                driver.name(),
                ms(r),
                ms(f),
                m.refused,
                m.timeout,
                m.no_answer
            );
            all.refused += m.refused;
            all.timeout += m.timeout;
            all.no_answer += m.no_answer;
            ret.push(r);
            first.push(f);
        }
        let (r, f) = (stats(&mut ret), stats(&mut first));
        medians.push((r.0, f.0));
        out.insert(
            driver.name().into(),
            serde_json::json!({
                "runs": cli.runs,
                "docker_run_returned_ms": {"median": r.0, "min": r.1, "max": r.2},
                "first_answer_ms": {"median": f.0, "min": f.1, "max": f.2},
                "probes_before_answer": {
                    "refused": all.refused, "syn_unanswered": all.timeout,
                    "connected_no_answer": all.no_answer,
                },
            }),
        );
    }
    let ((br, bf), (nr, nf)) = (medians[0], medians[1]);
    out.insert(
        "netd_over_bridge".into(),
        serde_json::json!({
            "docker_run_returned": (nr / br * 100.0).round() / 100.0,
            "first_answer": (nf / bf * 100.0).round() / 100.0,
        }),
    );
    out.insert("probe_ms".into(), cli.probe_ms.into());
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
