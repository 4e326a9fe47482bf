//! `netd-churn`: attaches and detaches containers continuously and reports containers/s and
//! the latency of each operation.
//!
//! A private world (host namespace with a daemon, `--containers` container namespaces) is made
//! first, untimed; then `--rounds` rounds each attach every container and detach it again
//! (`--pattern pairs`: attach then detach one container at a time; `--pattern waves`: attach
//! all, then detach all), through the CLI (a `netd` process per operation, as a user or a
//! runtime's hook calls it) or, with `--api`, straight through the HTTP API on the daemon's
//! socket. `--published N` first attaches one container publishing N ports (untimed), so the
//! churn runs against a large port table. Prints one JSON object.
//!
//! The daemon is `$NETD_BIN` (default target/debug/netd; use a release build for numbers):
//! `cargo build --release -p netd && NETD_BIN=target/release/netd target/release/netd-churn`.
//! Set `NETD_TRACE_TIMING=1` to have the daemon log each attach's and detach's phases.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use netd_tests::{Daemon, World};

#[path = "netd-churn/restart.rs"]
mod restart;
use restart::restart_bench;

#[derive(Parser)]
#[command(name = "netd-churn")]
struct Cli {
    /// Container namespaces made beforehand.
    #[arg(long, default_value_t = 20)]
    containers: usize,
    /// Rounds over all containers.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Call the HTTP API directly instead of the CLI.
    #[arg(long)]
    api: bool,
    #[arg(long, value_enum, default_value_t = Pattern::Pairs)]
    pattern: Pattern,
    /// Ports published (as ranges of 1000) by one container attached before the churn.
    #[arg(long, default_value_t = 0)]
    published: u32,
    /// With --published: after the churn, publish this many more single ports on the filler
    /// (half through the CLI, half through the API) and report their latency.
    #[arg(long, default_value_t = 0)]
    publish_probes: u32,
    /// Extra daemon arguments (repeatable), e.g. --daemon-arg=--tc-attach --daemon-arg=netlink.
    #[arg(long, allow_hyphen_values = true)]
    daemon_arg: Vec<String>,
    /// Restart mode instead of churn: attach this many endpoints (untimed, spread over the
    /// default network and --networks created ones), publish --published ports, keep a TCP
    /// stream running through a published port, restart the daemon and report how long it took
    /// to answer the API and to reconcile, and the stream's slowest round trip.
    #[arg(long, default_value_t = 0)]
    restart_endpoints: usize,
    /// With --restart-endpoints: networks created besides the default one (a Linux bridge
    /// holds at most 1,023 ports).
    #[arg(long, default_value_t = 5)]
    networks: usize,
    /// With --restart-endpoints: restart as a different netd would (its pinned programs
    /// renamed to another object's digest while it is stopped), so that the programs are
    /// loaded and swapped in rather than reused.
    #[arg(long)]
    restart_as_new_object: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Pattern {
    Pairs,
    Waves,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("netd-churn creates network namespaces and needs root");
    }
    let w = World::new();
    let mut args: Vec<&str> = vec!["--bip", "10.250.0.1/16"];
    args.extend(cli.daemon_arg.iter().map(String::as_str));
    let mut d = w.daemon(&args);
    if cli.restart_endpoints > 0 {
        return restart_bench(&cli, &w, &mut d);
    }
    let _filler = match cli.published {
        0 => None,
        n => Some(publish_filler(&w, &d, n)?),
    };
    let containers: Vec<_> = (0..cli.containers)
        .map(|i| w.container(&format!("ch{i}")))
        .collect();
    let op = |attach: bool, i: usize| -> Result<Duration> {
        let name = format!("ch{i}");
        let t = Instant::now();
        if cli.api {
            if attach {
                let body = serde_json::json!({
                    "name": name, "netns": containers[i].path_str(), "net": "bridge"
                });
                http(&d, "POST", "/v1/endpoints", Some(&body.to_string()))?;
            } else {
                http(&d, "DELETE", &format!("/v1/endpoints/{name}"), None)?;
            }
        } else {
            let out = if attach {
                d.netd(&["attach", &name, "--netns", containers[i].path_str()])
            } else {
                d.netd(&["detach", &name])
            };
            if !out.status.success() {
                bail!(
                    "netd {} {name}: {}",
                    if attach { "attach" } else { "detach" },
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(t.elapsed())
    };
    let (mut att, mut det) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for _ in 0..cli.rounds {
        match cli.pattern {
            Pattern::Pairs => {
                for i in 0..cli.containers {
                    att.push(op(true, i)?);
                    det.push(op(false, i)?);
                }
            }
            Pattern::Waves => {
                for i in 0..cli.containers {
                    att.push(op(true, i)?);
                }
                for i in 0..cli.containers {
                    det.push(op(false, i)?);
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cycles = att.len();
    let (mut pub_cli, mut pub_api) = (Vec::new(), Vec::new());
    if _filler.is_some() {
        for k in 0..cli.publish_probes {
            let spec = format!("{}:{}/tcp", 40000 + k, 40000 + k);
            let t = Instant::now();
            if k % 2 == 0 {
                let out = d.netd(&["publish", "filler", &spec]);
                if !out.status.success() {
                    bail!(
                        "netd publish {spec}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                pub_cli.push(t.elapsed());
            } else {
                let body = serde_json::json!({ "publish": [spec] });
                http(
                    &d,
                    "POST",
                    "/v1/endpoints/filler/ports",
                    Some(&body.to_string()),
                )?;
                pub_api.push(t.elapsed());
            }
        }
    }
    let ms = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        (v[i].as_secs_f64() * 1e6).round() / 1e3
    };
    let out = serde_json::json!({
        "via": if cli.api { "api" } else { "cli" },
        "containers": cli.containers,
        "published_ports": cli.published,
        "attach_detach_cycles": cycles,
        "secs": (secs * 1e3).round() / 1e3,
        "containers_per_s": (cycles as f64 / secs * 10.0).round() / 10.0,
        "attach_p50_ms": ms(&mut att, 0.5),
        "attach_p99_ms": ms(&mut att, 0.99),
        "detach_p50_ms": ms(&mut det, 0.5),
        "detach_p99_ms": ms(&mut det, 0.99),
        "publish_one_cli_p50_ms": if pub_cli.is_empty() { serde_json::Value::Null } else { ms(&mut pub_cli, 0.5).into() },
        "publish_one_api_p50_ms": if pub_api.is_empty() { serde_json::Value::Null } else { ms(&mut pub_api, 0.5).into() },
    });
    println!("{out}");
    if std::env::var_os("NETD_TRACE_TIMING").is_some() {
        println!("{}", phase_medians(&d.logs()));
    }
    Ok(())
}

/// From the daemon's `... timing: total=1.23ms plan=0.10ms ...` lines: the median of each
/// phase, per request kind, as JSON.
fn phase_medians(logs: &str) -> serde_json::Value {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for line in logs.lines() {
        let Some(i) = line.find(" timing: ") else {
            continue;
        };
        let what = line[..i].rsplit(' ').next().unwrap_or("?").to_string();
        for kv in line[i + 9..].split_whitespace() {
            if let Some((k, v)) = kv.split_once('=') {
                if let Ok(ms) = v.trim_end_matches("ms").parse::<f64>() {
                    by.entry(what.clone())
                        .or_default()
                        .entry(k.to_string())
                        .or_default()
                        .push(ms);
                }
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2] * 100.0).round() / 100.0
    };
    serde_json::json!({
        "phase_median_ms": by
            .into_iter()
            .map(|(w, m)| (w, m.into_iter().map(|(k, mut v)| (k, med(&mut v))).collect::<BTreeMap<_, _>>()))
            .collect::<BTreeMap<_, _>>()
    })
}

/// One container publishing `n` ports in ranges of up to 1000, half TCP and half UDP from
/// port 1024 (host and container ports alike). Returns its namespace, to keep it alive.
fn publish_filler(w: &World, d: &Daemon, n: u32) -> Result<netd_tests::Container> {
    let c = w.container("filler");
    let mut publish = Vec::new();
    for (proto, count) in [("tcp", n - n / 2), ("udp", n / 2)] {
        let mut left = count;
        let mut port = 1024u32;
        while left > 0 {
            let k = left.min(1000);
            let end = port + k - 1;
            if end > 60999 {
                bail!("--published {n}: more than fit in 1024-60999 per protocol");
            }
            publish.push(format!("{port}-{end}:{port}-{end}/{proto}"));
            port += k;
            left -= k;
        }
    }
    // Through the API with reserve_ports false: reservation sockets (one per port) are another
    // helper's part and hit the descriptor limit at 65,000 ports; this measures the rest.
    let body = serde_json::json!({
        "name": "filler", "netns": c.path_str(), "net": "bridge",
        "publish": publish, "reserve_ports": false,
    });
    http(d, "POST", "/v1/endpoints", Some(&body.to_string())).context("attaching the filler")?;
    Ok(c)
}

/// One HTTP/1.1 request on the daemon's socket; errors unless the status is 2xx.
fn http(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> Result<String> {
    let mut s = UnixStream::connect(d.sock()).context("connecting to the daemon")?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: netd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        bail!("{method} {path}: {resp}");
    }
    Ok(resp)
}
