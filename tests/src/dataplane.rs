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

/// A TCP server on 0.0.0.0:`port` in `ns` that echoes every byte of every connection until the
/// client closes, one thread per connection; records each client's address.
pub struct EchoServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(ns: &Netns, port: u16) -> EchoServer {
        let listener = in_netns(ns, move || {
            let l = TcpListener::bind(("0.0.0.0", port))
                .with_context(|| format!("bind tcp 0.0.0.0:{port}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .unwrap_or_else(|e| panic!("echo server on port {port}: {e:#}"));
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (st, pe) = (stop.clone(), peers.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = vec![];
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, peer)) => {
                        pe.lock().unwrap().push(peer);
                        let st = st.clone();
                        conns.push(std::thread::spawn(move || echo_all(s, &st)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        EchoServer {
            port,
            stop,
            peers,
            thread: Some(thread),
        }
    }

    /// Source addresses of every client seen so far.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

fn echo_all(s: TcpStream, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16384];
    while !stop.load(Ordering::Relaxed) {
        match (&s).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if (&s).write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A raw ICMP socket in a namespace: every ICMP packet that arrives there is copied to it, so a
/// test sees the source address of each echo request after the host's translations.
pub struct IcmpSniffer {
    fd: OwnedFd,
}

impl IcmpSniffer {
    pub fn new(ns: &Netns) -> IcmpSniffer {
        let fd = in_netns(ns, || {
            // SAFETY: plain socket(2); the descriptor is owned right away.
            let fd = unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    libc::IPPROTO_ICMP,
                )
            };
            if fd < 0 {
                bail!("raw socket: {}", std::io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh descriptor nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .expect("ICMP sniffer");
        IcmpSniffer { fd }
    }

    /// Source addresses of the echo requests received since the last call.
    pub fn echo_request_sources(&self) -> Vec<Ipv4Addr> {
        let mut res = vec![];
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                return res;
            }
            let p = &buf[..n as usize];
            if p.len() < 20 {
                continue;
            }
            let ihl = ((p[0] & 0x0f) as usize) * 4;
            if p.len() > ihl && p[ihl] == 8 {
                res.push(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
            }
        }
    }
}

/// `ping -c1 -W1` from `ns` to `dst`, optionally from source address `src` (`-I`).
pub fn ping_from(ns: &Netns, src: Option<&str>, dst: &str) -> bool {
    let mut argv = vec!["ping", "-c1", "-W1", "-n", "-q"];
    if let Some(s) = src {
        argv.extend_from_slice(&["-I", s]);
    }
    argv.push(dst);
    ns.run(&argv).status.success()
}

/// Lines of `output` that mention any of `words` (case-insensitive).
pub fn lines_with(output: &str, words: &[&str]) -> Vec<String> {
    output
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            words.iter().any(|w| l.contains(&w.to_ascii_lowercase()))
        })
        .map(str::to_string)
        .collect()
}

/// `netd filter ls` parsed: (allow list, deny list), in the order printed.
pub fn filter_lists(d: &Daemon) -> (Vec<String>, Vec<String>) {
    let out = d.netd_ok(&["filter", "ls"]);
    let (mut allow, mut deny) = (None, None);
    for l in out.lines() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let items: Vec<String> = v
            .split_whitespace()
            .filter(|x| *x != "(empty)")
            .map(str::to_string)
            .collect();
        match k.trim() {
            "allow" => allow = Some(items),
            "deny" => deny = Some(items),
            _ => {}
        }
    }
    match (allow, deny) {
        (Some(a), Some(d)) => (a, d),
        _ => panic!("netd filter ls: no allow/deny lines: {out}"),
    }
}

/// Sends "ping\n" with socat (`TCP:` or `UDP:` per `proto`) to `addr` from a process in the
/// network namespace `ns` and in the cgroup `cgroup` (the daemon's `--cgroup`, where its socket
/// hooks apply), the way a host process would; returns what came back.
pub fn socat_in_cgroup(
    cgroup: &std::path::Path,
    ns: &Netns,
    proto: &str,
    addr: &str,
) -> Result<String> {
    use std::process::{Command, Stdio};
    let script = format!(
        "echo $$ > {}/cgroup.procs && printf 'ping\\n' | exec nsenter --net={} socat -T2 - {}:{addr}",
        cgroup.display(),
        ns.path_str(),
        proto.to_ascii_uppercase(),
    );
    let mut c = Command::new("sh");
    c.args(["-c", &script]).stdin(Stdio::null());
    let out = crate::output_with_timeout(c, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    if !out.status.success() || text.is_empty() {
        bail!(
            "socat {proto} {addr}: {} {text:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// The running daemon's `--cgroup` directory, read from its command line.
pub fn daemon_cgroup(d: &Daemon) -> Option<std::path::PathBuf> {
    let pid = d.pid()?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let at = args.iter().position(|a| a == "--cgroup")?;
    args.get(at + 1).map(std::path::PathBuf::from)
}

/// One UDP exchange from a socket bound to `bind` ("ip:port", port 0 for any) in `ns`: sends
/// `payload` to `addr` up to twice and returns the first datagram that comes back, or the
/// socket error (e.g. `ConnectionRefused` when an ICMP port unreachable came back).
pub fn udp_exchange(
    ns: &Netns,
    bind: &str,
    addr: &str,
    payload: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let addr: SocketAddr = addr.parse().expect("socket address");
    let bind: SocketAddr = bind.parse().expect("bind address");
    in_netns(ns, move || {
        let r = (|| {
            let s = UdpSocket::bind(bind)?;
            s.connect(addr)?;
            s.set_read_timeout(Some(BLOCKED_WAIT / 2))?;
            let mut buf = vec![0u8; 65536];
            let mut last = std::io::Error::from(std::io::ErrorKind::TimedOut);
            for _ in 0..2 {
                s.send(&payload)?;
                match s.recv(&mut buf) {
                    Ok(n) => return Ok(buf[..n].to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(e),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })();
        Ok(r)
    })
    .expect("udp exchange thread")
}

/// How a TCP connect from `ns` to `addr` ends within `wait`: Ok(()) if it connected, else the
/// error kind (`ConnectionRefused` for a RST, `TimedOut` when nothing came back).
pub fn tcp_connect_result(
    ns: &Netns,
    addr: &str,
    wait: Duration,
) -> Result<(), std::io::ErrorKind> {
    let addr: SocketAddr = addr.parse().expect("socket address");
    in_netns(ns, move || {
        Ok(TcpStream::connect_timeout(&addr, wait)
            .map(drop)
            .map_err(|e| e.kind()))
    })
    .expect("tcp connect thread")
}

/// A UDP server on 0.0.0.0:`port` in `ns` that echoes datagrams of any size (up to 64 KiB) and
/// records (source, size) of each.
pub struct UdpEcho {
    pub port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(SocketAddr, usize)>>>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    pub fn start(ns: &Netns, port: u16) -> UdpEcho {
        let sock = in_netns(ns, move || {
            let s =
                UdpSocket::bind(("0.0.0.0", port)).with_context(|| format!("bind udp {port}"))?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok(s)
        })
        .unwrap_or_else(|e| panic!("udp echo on port {port}: {e:#}"));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, se) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, src)) = sock.recv_from(&mut buf) {
                    se.lock().unwrap().push((src, n));
                    let _ = sock.send_to(&buf[..n], src);
                }
            }
        });
        UdpEcho {
            port,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// (source, size) of every datagram received so far.
    pub fn seen(&self) -> Vec<(SocketAddr, usize)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One exchange ("ping" echoed) with `addr` from `ns` over `proto` ("tcp" or "udp"), the
/// packets carrying IPv4 options (four NOPs: a 24-byte header), to check that the programs
/// find the L4 header from the IHL.
pub fn exchange_with_ip_options(ns: &Netns, proto: &str, addr: &str) -> Result<String> {
    let dst = match sockaddr(addr)? {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => bail!("IPv4 only"),
    };
    let tcp = proto == "tcp";
    in_netns(ns, move || {
        let ty = if tcp {
            libc::SOCK_STREAM
        } else {
            libc::SOCK_DGRAM
        };
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let opts = [1u8, 1, 1, 1];
        // SAFETY: opts is valid for its length.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_OPTIONS,
                opts.as_ptr().cast(),
                opts.len() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!("IP_OPTIONS: {}", std::io::Error::last_os_error());
        }
        let wait = Duration::from_secs(2);
        let set_timeouts = |fd: &OwnedFd| {
            let tv = libc::timeval {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_usec: 0,
            };
            for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
                // SAFETY: tv is a valid timeval.
                unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        opt,
                        (&raw const tv).cast(),
                        size_of::<libc::timeval>() as libc::socklen_t,
                    )
                };
            }
        };
        set_timeouts(&fd);
        let da = sockaddr_in(dst);
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: da is a valid sockaddr_in of length len.
        if unsafe { libc::connect(fd.as_raw_fd(), (&raw const da).cast(), len) } != 0 {
            bail!("connect {dst}: {}", std::io::Error::last_os_error());
        }
        if tcp {
            exchange(TcpStream::from(fd), wait)
        } else {
            let s = UdpSocket::from(fd);
            s.send(b"ping")?;
            let mut buf = [0u8; 64];
            let n = s.recv(&mut buf).context("udp reply")?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        }
    })
}
