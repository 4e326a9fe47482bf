//! Filter lists, cgroup-bound clients and exchanges with IPv4 options.

use super::*;

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
