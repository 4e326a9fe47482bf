//! The socket-hook clients' operations (the `netd-sock-client` binary and netd's own
//! sock_hooks test run them in a process inside the test's cgroup and namespace): each
//! returns one line of text, `ok ...` or `err <errno>` (`err 0` for a non-OS error).
//!
//! ```text
//!   "tcp HOST:PORT"       connect, send "ping\n", read a line: ok reply=.. peer=<getpeername>
//!   "udp HOST:PORT"       unconnected sendto/recvfrom:         ok reply=.. from=<source> peer=
//!   "udpc HOST:PORT"      connected UDP:                       ok reply=.. from=.. peer=..
//!   "bind tcp|udp IP:PORT"                                     ok | err <errno>
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

/// Connect / read timeout of the TCP client.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// `err <errno>` of an I/O error.
pub fn errno(e: std::io::Error) -> String {
    format!("err {}", e.raw_os_error().unwrap_or(0))
}

fn resolve(addr: &str) -> Result<Vec<SocketAddr>, String> {
    addr.to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|e| format!("err resolve {addr}: {e}"))
}

/// `tcp ADDR`: the first address `addr` resolves to that accepts a connection gets a line.
pub fn tcp(addr: &str) -> String {
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

/// `udp ADDR` / `udpc ADDR` (`connected`): "ping" up to four times, 500 ms for each reply.
pub fn udp(addr: &str, connected: bool) -> String {
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

/// `bind tcp|udp ADDR`: binds (and for TCP listens on) a socket there, then closes it.
pub fn bind(proto: &str, addr: &str) -> String {
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

/// Runs one operation of the grammar above.
pub fn run(op: &str) -> String {
    let words: Vec<&str> = op.split_whitespace().collect();
    match words.as_slice() {
        ["tcp", addr] => tcp(addr),
        ["udp", addr] => udp(addr, false),
        ["udpc", addr] => udp(addr, true),
        ["bind", proto, addr] => bind(proto, addr),
        _ => format!("err unknown operation {op:?}"),
    }
}
