//! Echo servers for the reachability probes: TCP EchoServer and UdpEcho.

use super::*;

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
            // A socket with SO_RCVTIMEO returns EINTR for a signal even under SA_RESTART
            // (signal(7)): the process's SIGCHLD when a daemon it started exits, say.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
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
