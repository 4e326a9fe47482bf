//! A host-local client for the socket-hook tests: joins a cgroup and a network namespace before
//! opening any socket (so the daemon's cgroup hooks see every socket it opens), runs each
//! operation and prints one `RESULT <op> => <result>` line per operation.
//!
//! ```text
//! netd-sock-client --netns PATH [--cgroup DIR] OP...
//!   "tcp HOST:PORT"       connect, send "ping\n", read a line: ok reply=.. peer=<getpeername>
//!   "udp HOST:PORT"       unconnected sendto/recvfrom:         ok reply=.. from=<source>
//!   "udpc HOST:PORT"      connected UDP:                       ok reply=.. from=.. peer=..
//!   "bind tcp|udp IP:PORT"                                     ok | err <errno>
//! ```
//!
//! Failures read `err <errno>` (`err 0` for a non-OS error). HOST may be a name (localhost).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn errno(e: std::io::Error) -> String {
    format!("err {}", e.raw_os_error().unwrap_or(0))
}

fn resolve(addr: &str) -> Result<Vec<SocketAddr>, String> {
    addr.to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|e| format!("err resolve {addr}: {e}"))
}

fn tcp(addr: &str) -> String {
    let mut last = String::from("err no address");
    for a in match resolve(addr) {
        Ok(v) => v,
        Err(e) => return e,
    } {
        let s = match TcpStream::connect_timeout(&a, IO_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                last = errno(e);
                continue;
            }
        };
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let peer = s.peer_addr().map(|p| p.to_string()).unwrap_or_default();
        if let Err(e) = (&s).write_all(b"ping\n") {
            return errno(e);
        }
        let mut line = String::new();
        return match BufReader::new(&s).read_line(&mut line) {
            Ok(0) => "err eof".into(),
            Ok(_) => format!("ok reply={} peer={peer}", line.trim_end()),
            Err(e) => errno(e),
        };
    }
    last
}

fn udp(addr: &str, connected: bool) -> String {
    let a = match resolve(addr) {
        Ok(v) if !v.is_empty() => v[0],
        Ok(_) => return "err no address".into(),
        Err(e) => return e,
    };
    let any = if a.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = match UdpSocket::bind(any) {
        Ok(s) => s,
        Err(e) => return errno(e),
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if connected {
        if let Err(e) = s.connect(a) {
            return errno(e);
        }
    }
    let mut buf = [0u8; 2048];
    let mut last = String::from("err timeout");
    for _ in 0..4 {
        let sent = if connected {
            s.send(b"ping")
        } else {
            s.send_to(b"ping", a)
        };
        if let Err(e) = sent {
            return errno(e);
        }
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                let peer = s.peer_addr().map(|p| p.to_string()).unwrap_or_default();
                let reply = String::from_utf8_lossy(&buf[..n]);
                return format!("ok reply={reply} from={from} peer={peer}");
            }
            Err(e) => last = errno(e),
        }
    }
    last
}

fn bind(proto: &str, addr: &str) -> String {
    let Ok(a) = addr.parse::<SocketAddr>() else {
        return format!("err bad address {addr}");
    };
    let r = match proto {
        "tcp" => TcpListener::bind(a).map(drop),
        _ => UdpSocket::bind(a).map(drop),
    };
    match r {
        Ok(()) => "ok".into(),
        Err(e) => errno(e),
    }
}

fn run(op: &str) -> String {
    let words: Vec<&str> = op.split_whitespace().collect();
    match words.as_slice() {
        ["tcp", addr] => tcp(addr),
        ["udp", addr] => udp(addr, false),
        ["udpc", addr] => udp(addr, true),
        ["bind", proto, addr] => bind(proto, addr),
        _ => format!("err unknown operation {op:?}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut ops = Vec::new();
    let (mut netns, mut cgroup) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--netns" => netns = args.next(),
            "--cgroup" => cgroup = args.next(),
            _ => ops.push(a),
        }
    }
    // The cgroup first: "0" moves the writing process itself. Then the namespace; both before
    // any socket exists.
    if let Some(cg) = cgroup {
        let mut procs = OpenOptions::new()
            .write(true)
            .open(format!("{cg}/cgroup.procs"))
            .unwrap_or_else(|e| panic!("open {cg}/cgroup.procs: {e}"));
        procs
            .write_all(b"0")
            .unwrap_or_else(|e| panic!("join cgroup {cg}: {e}"));
    }
    let netns = netns.expect("--netns PATH");
    let ns = File::open(&netns).unwrap_or_else(|e| panic!("open {netns}: {e}"));
    setns(&ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {netns}: {e}"));
    for op in ops {
        println!("RESULT {op} => {}", run(&op));
    }
}
