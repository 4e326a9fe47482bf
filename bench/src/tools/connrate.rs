//! New connections per second with this package's `netd-connrate` (the same binary for every
//! system): the client opens a connection, sends a request, reads the reply until the server
//! closes, and starts over, from a few threads, for a bounded time and count.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::{Values, sock_addr};
use crate::proc::{Proc, in_ns_cg, run};

/// The container port the connrate server listens on.
pub const PORT: u16 = 80;
/// Client threads (the machine has 2 cores).
pub const THREADS: u32 = 4;
/// Upper bound on connections per client run.
pub const MAX_CONNS: u64 = 200_000;

/// `netd-connrate`, next to the running `netd-bench` (or `$NETD_CONNRATE_BIN`).
pub fn bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NETD_CONNRATE_BIN") {
        return Ok(p.into());
    }
    let me = std::env::current_exe().context("current_exe")?;
    let p = me.with_file_name("netd-connrate");
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build -p netd-bench`",
            p.display()
        );
    }
    Ok(p)
}

/// `netd-connrate server --bind <bind> --port <port>` inside `netns` and `cgroup` (it exits by
/// itself after an hour). `bind` is `0.0.0.0`, or `::` for IPv6 and IPv4 clients (dual stack).
pub fn server(netns: &Path, cgroup: Option<&Path>, bind: &str, port: u16) -> Result<Proc> {
    let bin = bin()?;
    let bin = bin.to_string_lossy();
    Proc::spawn(
        "netd-connrate server",
        in_ns_cg(
            netns,
            cgroup,
            &[
                &bin,
                "server",
                "--bind",
                bind,
                "--port",
                &port.to_string(),
                "--max-secs",
                "3600",
            ],
        ),
    )
}

/// Runs the client from `netns` against `ip:port` for `secs` seconds: `conns_per_s`,
/// `errors`, `p50_us`, `p99_us` (connect-to-close time of each connection).
pub fn client(
    netns: &Path,
    cgroup: Option<&Path>,
    ip: &str,
    port: u16,
    secs: f64,
) -> Result<Values> {
    let bin = bin()?;
    let bin = bin.to_string_lossy();
    let addr = sock_addr(ip, port);
    let argv = [
        &*bin,
        "client",
        "--addr",
        &addr,
        "--secs",
        &secs.to_string(),
        "--threads",
        &THREADS.to_string(),
        "--max-conns",
        &MAX_CONNS.to_string(),
    ];
    let f = run(
        "netd-connrate client",
        in_ns_cg(netns, cgroup, &argv),
        Duration::from_secs_f64(secs + 15.0),
    )?;
    if !f.status.success() {
        bail!(
            "netd-connrate client failed ({}): {}",
            f.status,
            f.stderr.trim()
        );
    }
    let v: Values = serde_json::from_str(f.stdout.trim())
        .with_context(|| format!("netd-connrate output: {}", f.stdout))?;
    if v.get("conns").copied().unwrap_or(0.0) <= 0.0 {
        bail!(
            "netd-connrate completed no connection ({} errors)",
            v.get("errors").copied().unwrap_or(0.0)
        );
    }
    Ok(v)
}

/// One echo exchange for the correctness checks, as a process of its own (so that it can join
/// the daemon's cgroup without moving the bench): `netd-connrate echo` from `netns` (and
/// `cgroup`) sends `token` to `ip:port` over TCP (a line) or UDP (a datagram) and fails unless
/// the same token comes back. TCP waits up to 2 s for the connection and the reply.
pub fn echo(
    netns: &Path,
    cgroup: Option<&Path>,
    ip: &str,
    port: u16,
    udp: bool,
    token: &str,
) -> Result<()> {
    echo_within(netns, cgroup, ip, port, udp, token, Duration::from_secs(2))
}

/// [`echo`] with a TCP time limit (a probe that is expected to be dropped need not wait 2 s:
/// on these veths an allowed connection is up within a millisecond).
pub fn echo_within(
    netns: &Path,
    cgroup: Option<&Path>,
    ip: &str,
    port: u16,
    udp: bool,
    token: &str,
    limit: Duration,
) -> Result<()> {
    let bin = bin()?;
    let bin = bin.to_string_lossy();
    let addr = sock_addr(ip, port);
    let ms = limit.as_millis().to_string();
    let mut argv = vec![
        &*bin,
        "echo",
        "--addr",
        &addr,
        "--token",
        token,
        "--timeout-ms",
        &ms,
    ];
    if udp {
        argv.push("--udp");
    }
    let f = run(
        "netd-connrate echo",
        in_ns_cg(netns, cgroup, &argv),
        Duration::from_secs(10),
    )?;
    if !f.status.success() {
        bail!("{}", f.stderr.trim());
    }
    Ok(())
}
