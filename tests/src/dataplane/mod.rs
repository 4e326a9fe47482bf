//! Helpers for the NAT/policy dataplane tests: the daemon's counters and connection table as
//! JSON, reachability probes with short bounded timeouts (for "this must be blocked" checks),
//! clients bound to a chosen source address, a streaming TCP echo server, and an ICMP sniffer
//! that reports which source addresses echo requests arrived from.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::daemon::Daemon;
use crate::netns::Netns;
use crate::traffic::in_netns;

/// How long a probe that is expected to be blocked waits before calling it blocked.
pub const BLOCKED_WAIT: Duration = Duration::from_millis(1000);

/// `netd stats --json` parsed.
pub fn stats(d: &Daemon) -> Value {
    let out = d.netd_ok(&["stats", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("stats: bad JSON {e}: {out}"))
}

/// Packets dropped for `reason` (e.g. "icc-denied"); 0 if the reason is not listed.
pub fn drops(d: &Daemon, reason: &str) -> u64 {
    drops_in(&stats(d), reason)
}

/// Packets dropped for `reason` in an already fetched `stats` document.
pub fn drops_in(stats: &Value, reason: &str) -> u64 {
    stats["drops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["reason"] == reason)
        .map(|r| r["packets"].as_u64().unwrap_or(0))
        .sum()
}

/// The `bindings` entry of `netd stats --json` for (container, proto, host_port).
pub fn binding_stats(d: &Daemon, container: &str, proto: &str, host_port: u16) -> Option<Value> {
    stats(d)["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| {
            b["container"] == container
                && b["proto"] == proto
                && json_port(&b["host_port"]) == host_port
        })
        .cloned()
}

/// The first port of a port or range written as a number or a string ("9000", "9000-9002").
pub fn json_port(v: &Value) -> u16 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or(0) as u16,
        Value::String(s) => s.split('-').next().unwrap_or("").parse().unwrap_or(0),
        _ => 0,
    }
}

/// `netd ct --json args...` parsed as a list of entries.
pub fn ct(d: &Daemon, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["ct", "--json"];
    argv.extend_from_slice(args);
    let out = d.netd_ok(&argv);
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ct {args:?}: bad JSON {e}: {out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("ct {args:?}: not a list: {out}"))
        .clone()
}

/// True if a `netd ct` entry has `kind` among its kinds.
pub fn ct_has_kind(e: &Value, kind: &str) -> bool {
    e["kind"]
        .as_array()
        .is_some_and(|k| k.iter().any(|x| x == kind))
}

fn sockaddr(addr: &str) -> Result<SocketAddr> {
    addr.parse()
        .with_context(|| format!("bad socket address {addr}"))
}

/// One TCP exchange (connect, send a line, read the echoed line) from inside `ns`, every step
/// bounded by `wait`. Ok(reply) if the whole exchange worked.
pub fn tcp_try(ns: &Netns, addr: &str, wait: Duration) -> Result<String> {
    let addr = sockaddr(addr)?;
    in_netns(ns, move || {
        let s =
            TcpStream::connect_timeout(&addr, wait).with_context(|| format!("connect {addr}"))?;
        exchange(s, wait)
    })
}

fn exchange(s: TcpStream, wait: Duration) -> Result<String> {
    s.set_read_timeout(Some(wait))?;
    s.set_write_timeout(Some(wait))?;
    (&s).write_all(b"ping\n")?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.contains(&b'\n') {
        let n = (&s).read(&mut buf).context("read reply")?;
        if n == 0 {
            bail!("closed without a reply");
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&got).trim_end().to_string())
}

/// True if a TCP exchange with `addr` from `ns` does NOT complete within [`BLOCKED_WAIT`].
pub fn tcp_blocked(ns: &Netns, addr: &str) -> bool {
    tcp_try(ns, addr, BLOCKED_WAIT).is_err()
}

/// Packets the FORWARD chain's policy dropped so far in `host`, as `cmd` (`iptables` or
/// `ip6tables`) counts them.
pub fn forward_policy_drops(host: &Netns, cmd: &str) -> u64 {
    let out = host.run_ok(&[cmd, "-L", "FORWARD", "-v", "-x", "-n"]);
    // "Chain FORWARD (policy DROP 12 packets, 720 bytes)"
    let first = out.lines().next().unwrap_or_default();
    first
        .split_whitespace()
        .skip_while(|w| *w != "DROP")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {cmd} FORWARD policy counter in {out:?}"))
}

/// One UDP exchange from `ns` (two sends, [`BLOCKED_WAIT`]/2 each); Ok(reply) if echoed.
pub fn udp_try(ns: &Netns, addr: &str) -> Result<String> {
    udp_try_from(ns, "0.0.0.0", addr)
}

/// [`udp_try`] from a socket bound to `src` (an address of `ns`, or 0.0.0.0).
pub fn udp_try_from(ns: &Netns, src: &str, addr: &str) -> Result<String> {
    let addr = sockaddr(addr)?;
    let src: Ipv4Addr = src.parse().context("bad source address")?;
    in_netns(ns, move || {
        let s = UdpSocket::bind((src, 0)).with_context(|| format!("bind udp {src}"))?;
        s.connect(addr)?;
        s.set_read_timeout(Some(BLOCKED_WAIT / 2))?;
        let mut buf = [0u8; 2048];
        for _ in 0..2 {
            s.send(b"ping")?;
            if let Ok(n) = s.recv(&mut buf) {
                return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        Err(anyhow!("no udp reply from {addr}"))
    })
}

/// Sends one UDP datagram from `src` (an address of `ns`) to `addr`, expecting nothing back.
pub fn udp_fire_from(ns: &Netns, src: &str, addr: &str, msg: &str) -> Result<()> {
    let addr = sockaddr(addr)?;
    let src: Ipv4Addr = src.parse().context("bad source address")?;
    let msg = msg.as_bytes().to_vec();
    in_netns(ns, move || {
        let s = UdpSocket::bind((src, 0)).with_context(|| format!("bind udp {src}"))?;
        s.send_to(&msg, addr)?;
        Ok(())
    })
}

/// A TCP exchange from a socket bound to `src` (an address of `ns`), bounded by `wait`.
pub fn tcp_try_from(ns: &Netns, src: &str, addr: &str, wait: Duration) -> Result<String> {
    let dst = match sockaddr(addr)? {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => bail!("IPv4 only"),
    };
    let src: Ipv4Addr = src.parse().context("bad source address")?;
    in_netns(ns, move || {
        let s = connect_from(SocketAddrV4::new(src, 0), dst, wait)?;
        exchange(s, wait)
    })
}

/// [`tcp_try_from`] with a fixed source port too: `src` is "ip:port".
pub fn tcp_try_from_port(ns: &Netns, src: &str, addr: &str, wait: Duration) -> Result<String> {
    let (SocketAddr::V4(dst), SocketAddr::V4(src)) = (sockaddr(addr)?, sockaddr(src)?) else {
        bail!("IPv4 only");
    };
    in_netns(ns, move || {
        let s = connect_from(src, dst, wait)?;
        exchange(s, wait)
    })
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn connect_from(src: SocketAddrV4, dst: SocketAddrV4, wait: Duration) -> Result<TcpStream> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    // SO_SNDTIMEO bounds a blocking connect(2).
    s.set_write_timeout(Some(wait))?;
    let one: libc::c_int = 1;
    // SAFETY: one is a valid c_int (SO_REUSEADDR, so a fixed source port can be reused soon).
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let sa = sockaddr_in(src);
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa is a valid sockaddr_in of length len.
    if unsafe { libc::bind(s.as_raw_fd(), (&raw const sa).cast(), len) } != 0 {
        bail!("bind {src}: {}", std::io::Error::last_os_error());
    }
    let da = sockaddr_in(dst);
    // SAFETY: da is a valid sockaddr_in of length len.
    if unsafe { libc::connect(s.as_raw_fd(), (&raw const da).cast(), len) } != 0 {
        bail!(
            "connect {dst} from {src}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(s)
}

mod icmp;
mod probes;
mod raw;
mod servers;

pub use icmp::*;
pub use probes::*;
pub use raw::*;
pub use servers::*;
