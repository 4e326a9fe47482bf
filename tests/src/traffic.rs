//! Real TCP/UDP traffic from inside a namespace: each server or client runs on its own thread
//! that first joins the namespace with setns(2) (only that thread changes namespace).
//!
//! Servers record every client's source address, so tests assert which IP arrived; they echo
//! one line (TCP) or each datagram (UDP). Everything has bounded timeouts.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};

use crate::netns::Netns;
use crate::try_poll_until;

/// Connect / read / write timeout of the clients.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Moves the calling thread into the network namespace at `path`.
pub fn enter_netns(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    setns(&f, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns {}", path.display()))?;
    Ok(())
}

/// Runs `f` on a new thread inside the namespace and returns its result.
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = ns.path().to_path_buf();
    std::thread::spawn(move || {
        enter_netns(&path)?;
        f()
    })
    .join()
    .map_err(|_| anyhow!("thread in netns panicked"))?
}

/// Runs `f` on a new thread inside the namespace (panicking there if it cannot enter);
/// join it with `.join()`.
pub fn spawn_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = ns.path().to_path_buf();
    std::thread::spawn(move || {
        enter_netns(&path).unwrap_or_else(|e| panic!("{e:#}"));
        f()
    })
}

/// A background server; stops (and joins its thread) on drop.
pub struct ServerHandle {
    pub port: u16,
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Source addresses of every client seen so far, in arrival order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }

    /// Source IPs of every client seen so far.
    pub fn peer_ips(&self) -> Vec<IpAddr> {
        self.peers().iter().map(|p| p.ip()).collect()
    }

    /// The last client's source IP (an IPv4 client of a dual-stack server as IPv4).
    pub fn last_peer(&self) -> Option<IpAddr> {
        self.peers().last().map(|p| p.ip().to_canonical())
    }

    /// [`ServerHandle::last_peer`] as a string ("" if none yet).
    pub fn last_peer_ip(&self) -> String {
        self.last_peer()
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_server(
    path: PathBuf,
    port: u16,
    body: impl FnOnce(Arc<AtomicBool>, Arc<Mutex<Vec<SocketAddr>>>, mpsc::Sender<Result<()>>)
    + Send
    + 'static,
) -> ServerHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let peers = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let (s, p) = (stop.clone(), peers.clone());
    let thread = std::thread::spawn(move || {
        if let Err(e) = enter_netns(&path) {
            let _ = tx.send(Err(e));
            return;
        }
        body(s, p, tx)
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("server on port {port} failed to start: {e:#}"),
        Err(e) => panic!("server on port {port} did not start: {e}"),
    }
    ServerHandle {
        port,
        stop,
        peers,
        thread: Some(thread),
    }
}

/// A TCP server on 0.0.0.0:`port` inside `ns`: records each client's address, reads one line
/// and writes it back.
pub fn tcp_server(ns: &Netns, port: u16) -> ServerHandle {
    tcp_server_on(ns, "0.0.0.0", port)
}

/// [`tcp_server`] on [::]:`port`: IPv6 clients, and IPv4 ones (v4-mapped; see
/// [`ServerHandle::last_peer`]).
pub fn tcp6_server(ns: &Netns, port: u16) -> ServerHandle {
    tcp_server_on(ns, "::", port)
}

fn tcp_server_on(ns: &Netns, host: &'static str, port: u16) -> ServerHandle {
    start_server(ns.path().to_path_buf(), port, move |stop, peers, ready| {
        let listener = match TcpListener::bind((host, port))
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
        {
            Ok(l) => {
                let _ = ready.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready.send(Err(anyhow!("bind tcp {host} port {port}: {e}")));
                return;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, peer)) => {
                    peers.lock().unwrap().push(peer);
                    let _ = echo_line(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

fn echo_line(s: TcpStream) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    (&s).write_all(line.as_bytes())
}

fn sockaddr(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("bad address {addr}"))?
        .next()
        .ok_or_else(|| anyhow!("no address for {addr}"))
}

/// Connects from inside `ns` to `addr` ("ip:port"), sends `msg` + newline, returns the line
/// the server wrote back (without the newline).
pub fn tcp_send(ns: &Netns, addr: &str, msg: &str) -> Result<String> {
    let addr = sockaddr(addr)?;
    let msg = msg.to_string();
    in_netns(ns, move || {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        (&s).write_all(format!("{msg}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(&s)
            .read_line(&mut line)
            .with_context(|| format!("read reply from {addr}"))?;
        if line.is_empty() {
            bail!("{addr} closed without a reply");
        }
        Ok(line.trim_end_matches('\n').to_string())
    })
}

/// [`tcp_send`] with the message "ping".
pub fn tcp_request(ns: &Netns, addr: &str) -> Result<String> {
    tcp_send(ns, addr, "ping")
}

/// Retries [`tcp_request`] until it succeeds or `timeout` passes (for paths that need a moment,
/// e.g. right after a daemon restart).
pub fn tcp_request_until(ns: &Netns, addr: &str, timeout: Duration) -> Result<String> {
    try_poll_until(timeout, || tcp_request(ns, addr))
}

/// A UDP server on 0.0.0.0:`port` inside `ns`: records each datagram's source and echoes it.
pub fn udp_server(ns: &Netns, port: u16) -> ServerHandle {
    udp_server_on(ns, "0.0.0.0", port)
}

/// [`udp_server`] on [::]:`port` (IPv6 and v4-mapped IPv4 clients).
pub fn udp6_server(ns: &Netns, port: u16) -> ServerHandle {
    udp_server_on(ns, "::", port)
}

fn udp_server_on(ns: &Netns, host: &'static str, port: u16) -> ServerHandle {
    start_server(ns.path().to_path_buf(), port, move |stop, peers, ready| {
        let sock = match UdpSocket::bind((host, port)).and_then(|s| {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .map(|_| s)
        }) {
            Ok(s) => {
                let _ = ready.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = ready.send(Err(anyhow!("bind udp {host} port {port}: {e}")));
                return;
            }
        };
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, src)) = sock.recv_from(&mut buf) {
                peers.lock().unwrap().push(src);
                let _ = sock.send_to(&buf[..n], src);
            }
        }
    })
}

/// Sends `msg` from inside `ns` to `addr` ("ip:port" or "[ipv6]:port") over UDP and returns
/// the echoed datagram; retries a few times (500 ms each) since a datagram may be lost while
/// neighbours resolve.
pub fn udp_send(ns: &Netns, addr: &str, msg: &str) -> Result<String> {
    let addr = sockaddr(addr)?;
    let msg = msg.to_string();
    in_netns(ns, move || {
        let any = if addr.is_ipv6() { "::" } else { "0.0.0.0" };
        let s = UdpSocket::bind((any, 0))?;
        s.connect(addr)?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 2048];
        let mut last = anyhow!("no reply");
        for _ in 0..4 {
            s.send(msg.as_bytes())
                .with_context(|| format!("send to {addr}"))?;
            match s.recv(&mut buf) {
                Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) => last = anyhow!("no reply from udp {addr}: {e}"),
            }
        }
        Err(last)
    })
}

/// [`udp_send`] with the message "ping".
pub fn udp_request(ns: &Netns, addr: &str) -> Result<String> {
    udp_send(ns, addr, "ping")
}

/// TCP and UDP from `ns` to `host` reach the servers `tcp` and `udp` listening there, and both
/// arrive from `want` (the source after any translation); panics naming what failed. TCP is
/// retried for up to 5 s (a path just set up may still be resolving neighbours), UDP as
/// [`udp_request`] does.
pub fn tcp_udp_arrive_from(
    ns: &Netns,
    host: &str,
    tcp: &ServerHandle,
    udp: &ServerHandle,
    want: &str,
) {
    tcp_arrives_from(ns, &format!("{host}:{}", tcp.port), tcp, want);
    udp_arrives_from(ns, &format!("{host}:{}", udp.port), udp, want);
}

/// A UDP request from `ns` to `addr` (tried as [`udp_request`] does) is answered by the server
/// `srv`, which saw it come from `want`.
pub fn udp_arrives_from(ns: &Netns, addr: &str, srv: &ServerHandle, want: &str) {
    let reply = udp_request(ns, addr);
    assert_eq!(
        reply.unwrap_or_else(|e| panic!("UDP to {addr}: {e:#}")),
        "ping"
    );
    assert_eq!(
        srv.last_peer_ip(),
        want,
        "the source UDP to {addr} arrived from"
    );
}

/// A TCP request from `ns` to `addr` is answered (retried for up to 5 s: a path just set up may
/// still be resolving neighbours) by the server `srv`, which saw it come from `want`.
pub fn tcp_arrives_from(ns: &Netns, addr: &str, srv: &ServerHandle, want: &str) {
    let reply = tcp_request_until(ns, addr, Duration::from_secs(5));
    assert_eq!(
        reply.unwrap_or_else(|e| panic!("TCP to {addr}: {e:#}")),
        "ping"
    );
    assert_eq!(
        srv.last_peer_ip(),
        want,
        "the source TCP to {addr} arrived from"
    );
}
