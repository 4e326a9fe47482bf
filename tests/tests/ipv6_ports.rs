//! IPv6 published ports end to end (issue 12): a daemon without `--ip` publishes `-p 8080:80`
//! on 0.0.0.0 and [::] for a container with IPv6, `-p [ADDR]:8082:82` on that address only,
//! and an explicit IPv4 host address never over IPv6. An outside IPv6 client reaches the
//! container over TCP and UDP, and the container sees the client's own address (the servers
//! record their peers). The outside has no route to the container subnet: only the published
//! ports (DNAT6) get it there.
//!
//! Every IPv6 address is in 2001:db8::/32, inside namespaces the test creates.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use netd_tests::dataplane::tcp_blocked;
use netd_tests::netns::Netns;
use netd_tests::traffic::{enter_netns, in_netns};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP, UPLINK};
use netd_tests::{BIP, World, poll_until, tcp_send};

const T: Duration = Duration::from_secs(8);
const HOST6: &str = "2001:db8:ff::1";
const OUTSIDE6: &str = "2001:db8:ff::2";

/// The host's uplink and the outside on 2001:db8:ff::/64, without DAD; no route to the
/// containers.
fn v6_uplink(w: &World) {
    for ns in [&w.host, &w.outside] {
        ns.run_ok(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ]);
    }
    let add = |ns: &Netns, cidr: &str, dev: &str| {
        ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    };
    add(&w.host, &format!("{HOST6}/64"), UPLINK);
    add(&w.outside, &format!("{OUTSIDE6}/64"), "eth0");
}

/// A TCP (echo one line) or UDP (echo) server on [::]:port in `ns` that records its peers.
struct Server {
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Netns, port: u16, udp: bool) -> Server {
        let path = ns.path().to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<Result<()>>();
        let (st, pe) = (stop.clone(), peers.clone());
        let thread = std::thread::spawn(move || {
            if let Err(e) = enter_netns(&path) {
                let _ = tx.send(Err(e));
                return;
            }
            if udp {
                let sock = match UdpSocket::bind(("::", port)) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(anyhow!("bind udp [::]:{port}: {e}")));
                        return;
                    }
                };
                let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
                let _ = tx.send(Ok(()));
                let mut buf = [0u8; 2048];
                while !st.load(Ordering::Relaxed) {
                    if let Ok((n, src)) = sock.recv_from(&mut buf) {
                        pe.lock().unwrap().push(src);
                        let _ = sock.send_to(&buf[..n], src);
                    }
                }
                return;
            }
            let l = match TcpListener::bind(("::", port)).and_then(|l| {
                l.set_nonblocking(true)?;
                Ok(l)
            }) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(anyhow!("bind tcp [::]:{port}: {e}")));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, peer)) => {
                        pe.lock().unwrap().push(peer);
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut line = String::new();
                        if BufReader::new(&c).read_line(&mut line).is_ok() {
                            let _ = (&c).write_all(line.as_bytes());
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("server thread answers")
            .expect("server starts");
        Server {
            stop,
            peers,
            thread: Some(thread),
        }
    }

    fn last_peer(&self) -> Option<IpAddr> {
        self.peers
            .lock()
            .unwrap()
            .last()
            .map(|p| p.ip().to_canonical())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One UDP datagram from inside `ns` to `addr`, and the echo (a few tries).
fn udp_send(ns: &Netns, addr: &str, msg: &str) -> Result<String> {
    let addr: SocketAddr = addr.parse().context("socket address")?;
    let msg = msg.to_string();
    in_netns(ns, move || {
        let sock = UdpSocket::bind(("::", 0))?;
        sock.connect(addr)?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 2048];
        for _ in 0..6 {
            sock.send(msg.as_bytes())?;
            if let Ok(n) = sock.recv(&mut buf) {
                return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        Err(anyhow!("no UDP reply from {addr}"))
    })
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn outside_ipv6_clients_reach_published_ports_with_their_own_address() {
    let w = World::new();
    v6_uplink(&w);
    // No --ip: `-p 8080:80` is 0.0.0.0 and [::].
    let d = w.daemon(&["--bip", BIP, "--ipv6", "--fixed-cidr-v6", "2001:db8:1::/64"]);
    let web = w.container("web");
    d.attach(
        "web",
        &web,
        &[
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
            "-p",
            "0.0.0.0:8081:81",
            "-p",
            &format!("[{HOST6}]:8082:82"),
        ],
    );
    let tcp80 = Server::start(&web, 80, false);
    let udp53 = Server::start(&web, 53, true);
    let tcp81 = Server::start(&web, 81, false);
    let tcp82 = Server::start(&web, 82, false);

    // TCP over IPv6: DNAT6 to the container's IPv6 address, the client's address kept.
    let got = poll_until("TCP to [HOST6]:8080", T, || {
        tcp_send(&w.outside, &format!("[{HOST6}]:8080"), "ping6")
    });
    assert_eq!(got.trim(), "ping6");
    assert_eq!(
        tcp80.last_peer(),
        ip(OUTSIDE6),
        "the container sees the client"
    );
    // The same binding over IPv4, as before.
    let got = poll_until("TCP to HOST:8080", T, || {
        tcp_send(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), "ping4")
    });
    assert_eq!(got.trim(), "ping4");
    assert_eq!(tcp80.last_peer(), ip(OUTSIDE_IP));

    // UDP over IPv6, the reply from the published address (the connected socket accepts
    // only that source).
    let got = poll_until("UDP to [HOST6]:5353", T, || {
        udp_send(&w.outside, &format!("[{HOST6}]:5353"), "q6")
    });
    assert_eq!(got, "q6");
    assert_eq!(udp53.last_peer(), ip(OUTSIDE6));

    // A binding on the IPv6 address itself.
    let got = poll_until("TCP to [HOST6]:8082", T, || {
        tcp_send(&w.outside, &format!("[{HOST6}]:8082"), "eight2")
    });
    assert_eq!(got.trim(), "eight2");
    assert_eq!(tcp82.last_peer(), ip(OUTSIDE6));

    // An explicit IPv4 host address is never reachable over IPv6, only over IPv4.
    assert!(tcp_blocked(&w.outside, &format!("[{HOST6}]:8081")));
    assert!(tcp81.last_peer().is_none(), "nothing reached port 81");
    let got = poll_until("TCP to HOST:8081", T, || {
        tcp_send(&w.outside, &format!("{HOST_UPLINK_IP}:8081"), "v4")
    });
    assert_eq!(got.trim(), "v4");
    // The IPv6-only binding is not on IPv4.
    assert!(tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:8082")));
}

#[test]
fn ipv6_host_addresses_need_a_container_with_ipv6() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("v4only");
    let err = d.netd_err(&[
        "attach",
        "v4only",
        "--netns",
        c.path_str(),
        "-p",
        "[2001:db8:ff::1]:8080:80",
    ]);
    assert!(
        err.contains("IPv6 host address 2001:db8:ff::1 needs a container with an IPv6 address"),
        "{err}"
    );
    assert!(c.link("eth0").is_none(), "the refused attach left nothing");
    // Without IPv6, `-p 8080:80` is what it always was: 0.0.0.0.
    let v = d.attach("v4only", &c, &["-p", "8080:80"]);
    assert_eq!(v["ports"][0]["host_ip"], "0.0.0.0", "{v}");
}
