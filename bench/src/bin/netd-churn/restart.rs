//! `netd-churn --restart-endpoints N`: a daemon restarted over N endpoints and a large port
//! table. Reports how long after it was started the restarted daemon first answered
//! `GET /v1/status` (asked every 5 ms) and first answered it with `"state": "ready"` (the
//! endpoints reconciled), from its own log when its programs were ready (and whether they were
//! loaded or reused), when it served the API and when the maps were reconciled, the phases
//! (with NETD_TRACE_TIMING=1), and the slowest round trip of a TCP stream through a
//! published port while it happened.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use netd_tests::dataplane::EchoServer;
use netd_tests::traffic::enter_netns;
use netd_tests::world::HOST_UPLINK_IP;
use netd_tests::{Daemon, World};

use super::{Cli, http, phase_medians, publish_filler};

/// Seconds since midnight UTC of a log line's leading RFC 3339 timestamp.
fn log_secs(line: &str) -> Option<f64> {
    let t = line.get(11..)?.split('Z').next()?;
    let mut it = t.split(':');
    let h: f64 = it.next()?.parse().ok()?;
    let m: f64 = it.next()?.parse().ok()?;
    let s: f64 = it.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `GET path` on the daemon's socket: the body of a 2xx answer.
fn get(sock: &std::path::Path, path: &str) -> Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(sock)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: netd\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    match resp.split_whitespace().nth(1) {
        Some(st) if st.starts_with('2') => Ok(resp),
        _ => bail!("GET {path}: {resp}"),
    }
}

fn now_secs() -> f64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() % 86400) as f64 + f64::from(d.subsec_nanos()) / 1e9
}

/// The attach round trips' median over the first and the last 500 endpoints (up to a tenth
/// each), and from the first daemon's log (with NETD_TRACE_TIMING=1) the median of each attach
/// phase over those same attaches: what grows with the endpoints already there.
fn attach_growth(ms: &[f64], log: &str) -> serde_json::Value {
    let n = ms.len();
    let k = (n / 10).clamp(1, 500).min(n);
    if n == 0 {
        return serde_json::Value::Null;
    }
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2] * 100.0).round() / 100.0
    };
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" attach timing: "))
        .collect();
    let phases = |ls: &[&str]| super::phase_medians(&ls.join("\n"));
    let m = lines.len();
    serde_json::json!({
        "window": k,
        "first_ms": med(&ms[..k]),
        "last_ms": med(&ms[n - k..]),
        "first_phases": (m >= k).then(|| phases(&lines[..k])),
        "last_phases": (m >= k).then(|| phases(&lines[m - k..])),
    })
}

pub(super) fn restart_bench(cli: &Cli, w: &World, d: &mut Daemon) -> Result<()> {
    let nets: Vec<String> = (0..cli.networks).map(|k| format!("rn{k}")).collect();
    for (k, n) in nets.iter().enumerate() {
        let subnet = format!("10.{}.0.0/22", 100 + k);
        let out = d.netd(&["network", "create", n, "--subnet", &subnet]);
        if !out.status.success() {
            bail!(
                "network create {n}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let _filler = match cli.published {
        0 => None,
        n => Some(publish_filler(w, d, n)?),
    };
    let t = Instant::now();
    let mut containers = Vec::with_capacity(cli.restart_endpoints);
    // Each attach's API round trip, to see whether it grows with the endpoints already there.
    let mut attach_ms = Vec::with_capacity(cli.restart_endpoints);
    for i in 0..cli.restart_endpoints {
        let name = format!("r{i}");
        let c = w.container(&name);
        // Round robin over the default network and the created ones.
        let slot = i % (nets.len() + 1);
        let mut body = serde_json::json!({
            "name": name, "netns": c.path_str(), "net": "bridge",
        });
        if slot > 0 {
            // `net` names a network as `--network` does.
            body["net"] = nets[slot - 1].clone().into();
        }
        let ta = Instant::now();
        http(d, "POST", "/v1/endpoints", Some(&body.to_string()))
            .with_context(|| format!("attaching {name}"))?;
        attach_ms.push(ta.elapsed().as_secs_f64() * 1e3);
        containers.push(c);
        if (i + 1) % 500 == 0 {
            eprintln!(
                "{} endpoints attached ({:.0} s)",
                i + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
    let setup_s = t.elapsed().as_secs_f64();
    let attach_growth = attach_growth(&attach_ms, &d.log(1, "err"));
    let stream = w.container("stream");
    let body = serde_json::json!({
        "name": "stream", "netns": stream.path_str(), "net": "bridge",
        "publish": ["61081:8081"],
        // Above the filler's ports (1024-60999).
        "reserve_ports": false,
    });
    http(d, "POST", "/v1/endpoints", Some(&body.to_string())).context("attaching stream")?;
    // The tests' echo server: it retries a read the stop's SIGCHLD interrupts (an earlier
    // copy here did not, and broke the stream it measured).
    let server = EchoServer::start(&stream, 8081);
    let stop = Arc::new(AtomicBool::new(false));
    let outside = w.outside.path().to_path_buf();
    let client_stop = stop.clone();
    let client = std::thread::spawn(move || -> Result<(u64, Duration), String> {
        enter_netns(&outside).map_err(|e| e.to_string())?;
        let addr = format!("{HOST_UPLINK_IP}:61081").parse().expect("addr");
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let (mut n, mut worst) = (0u64, Duration::ZERO);
        while !client_stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            s.write_all(&n.to_be_bytes())
                .map_err(|e| format!("write {n}: {e}"))?;
            let mut b = [0u8; 8];
            s.read_exact(&mut b).map_err(|e| format!("read {n}: {e}"))?;
            if u64::from_be_bytes(b) != n {
                return Err(format!("sent {n}, got back {}", u64::from_be_bytes(b)));
            }
            worst = worst.max(t.elapsed());
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok((n, worst))
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    d.stop();
    let stop_s = t.elapsed().as_secs_f64();
    if cli.restart_as_new_object {
        let dir = d.bpffs().join("progs");
        for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((prog, _)) = name.split_once('@') {
                std::fs::rename(e.path(), dir.join(format!("{prog}@0123456789abcdef")))?;
            }
        }
    }
    let started = now_secs();
    // Asks for the status every 5 ms from now on: the first answer (the API is served) and the
    // first that says the endpoints are reconciled.
    let poller = {
        let sock = d.sock();
        std::thread::spawn(move || {
            let mut first = None;
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                if let Ok(body) = get(&sock, "/v1/status") {
                    let at = ((now_secs() - started) * 1e3).round();
                    first.get_or_insert(at);
                    if body.contains("\"state\": \"ready\"") {
                        return (first, Some(at));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (first, None)
        })
    };
    d.restart();
    let restart_s = t.elapsed().as_secs_f64() - stop_s;
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let stream_result = client
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))?;
    drop(server);
    let (first_answer, ready_answer) = poller.join().unwrap_or((None, None));
    let log = d.log(2, "err");
    let at = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .and_then(log_secs)
            .map(|s| ((s - started) * 1e3).round())
    };
    let (echoed, worst_ms, stream_error) = match &stream_result {
        Ok((n, w)) => (*n, Some((w.as_secs_f64() * 1e6).round() / 1e3), None),
        Err(e) => (0, None, Some(e.clone())),
    };
    let out = serde_json::json!({
        "endpoints": cli.restart_endpoints + 1,
        "networks": nets.len() + 1,
        "published_ports": cli.published,
        "restart_as_new_object": cli.restart_as_new_object,
        "setup_s": setup_s.round(),
        "attach": attach_growth,
        "stop_ms": (stop_s * 1e3).round(),
        // Measured by asking: the first status answer, and the first that said "ready".
        "api_first_answer_ms": first_answer,
        "api_ready_answer_ms": ready_answer,
        // From the daemon's log: the programs loaded or reused, the engine's start done.
        "programs": log.lines().find(|l| l.contains("the eBPF programs are ready"))
            .and_then(|l| l.split("programs=").nth(1))
            .and_then(|r| r.split_whitespace().next()),
        "programs_ready_ms": at("the eBPF programs are ready"),
        "api_served_ms": at("netd daemon serving the API"),
        "maps_reconciled_ms": at(" start timing: ").or_else(|| at("the saved endpoints are reconciled")),
        "restart_until_cli_status_ms": (restart_s * 1e3).round(),
        "stream_round_trips": echoed,
        "stream_slowest_ms": worst_ms,
        "stream_error": stream_error,
    });
    println!("{out}");
    if std::env::var_os("NETD_TRACE_TIMING").is_some() {
        println!("{}", phase_medians(&log));
        // The restarted daemon's own timing lines (what each phase did, e.g. ports written).
        for l in log.lines().filter(|l| l.contains(" timing: ")) {
            eprintln!("{l}");
        }
    }
    drop(containers);
    Ok(())
}
