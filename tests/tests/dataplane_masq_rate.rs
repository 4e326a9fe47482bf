//! Masquerade at a high connection rate, with real traffic: one container opens thousands of
//! short TCP connections to one outside server:port (the bench's P5 connection-rate load). The
//! server closes first, so the finished flows sit in TIME_WAIT in netd's table; new SYNs must
//! still get a translation at once (no SYN dropped for want of a port, none waiting for a
//! retransmission).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netd_tests::dataplane::{drops_in, stats};
use netd_tests::world::OUTSIDE_IP;
use netd_tests::{BIP, World, in_netns};

/// Connections the container opens (more than the 4 536 ports of the default `--masq-ports`).
const CONNS: u32 = 6_500;
/// Client threads in the container.
const THREADS: u32 = 2;
/// How long one connect may take. A SYN that is dropped is sent again after 1 s; that is
/// counted (TCPSynRetrans), not timed: a loaded 2-core machine can stall a client thread for
/// as long without any packet lost.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// An outside server on 0.0.0.0:`port`: for each connection reads one line, answers `OK\n` and
/// closes first (as netd-connrate's server does). Stops when `stop` is set.
fn closing_server(w: &World, port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let l = in_netns(&w.outside, move || {
        let l = TcpListener::bind(("0.0.0.0", port))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .expect("outside server");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 8];
                    if matches!(s.read(&mut buf), Ok(n) if n > 0) {
                        let _ = s.write_all(b"OK\n");
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    })
}

/// One connect / request / read-to-EOF / close; the time connect took.
fn one_conn(dst: SocketAddr) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&dst, CONNECT_WAIT)?;
    let took = t0.elapsed();
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    anyhow::ensure!(out == b"OK\n", "reply {out:?}");
    Ok(took)
}

#[test]
fn thousands_of_short_connections_to_one_server_all_get_a_port() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("cli");
    d.attach("cli", &c, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let server = closing_server(&w, 7300, stop.clone());
    let dst: SocketAddr = format!("{OUTSIDE_IP}:7300").parse().unwrap();
    // The first connection proves the path (the daemon may still be settling); from inside
    // the container, like every client here.
    netd_tests::try_poll_until(Duration::from_secs(5), || {
        in_netns(&c, move || one_conn(dst).map(|_| ()))
    })
    .expect("masqueraded connection to the outside");

    let syns0 = netd_tests::netstat::syn_retransmits(&c);
    let started = Instant::now();
    let per_thread = CONNS / THREADS;
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let ns = c.path().to_path_buf();
            std::thread::spawn(move || -> (u32, Vec<String>, Duration) {
                netd_tests::traffic::enter_netns(&ns).expect("enter the container");
                let (mut ok, mut errs, mut slowest) = (0, vec![], Duration::ZERO);
                for i in 0..per_thread {
                    match one_conn(dst) {
                        Ok(t) => {
                            ok += 1;
                            slowest = slowest.max(t);
                        }
                        Err(e) if errs.len() < 5 => errs.push(format!("conn {i}: {e:#}")),
                        Err(_) => {}
                    }
                }
                (ok, errs, slowest)
            })
        })
        .collect();
    let (mut ok, mut errs, mut slowest) = (0, vec![], Duration::ZERO);
    for h in workers {
        let (o, e, s) = h.join().expect("client thread");
        ok += o;
        errs.extend(e);
        slowest = slowest.max(s);
    }
    let took = started.elapsed();
    let resent = netd_tests::netstat::syn_retransmits(&c) - syns0;
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let st = stats(&d);
    let total = per_thread * THREADS;
    eprintln!(
        "{ok}/{total} connections in {took:?} ({:.0}/s), slowest connect {slowest:?}, \
         {resent} SYNs resent; no-free-snat-port {}, conntrack-full {}, evicted {}",
        f64::from(ok) / took.as_secs_f64(),
        drops_in(&st, "no-free-snat-port"),
        drops_in(&st, "conntrack-full"),
        drops_in(&st, "conntrack-evicted-unreplied"),
    );
    assert_eq!(ok, total, "every connection succeeded: {errs:?}\n{st}");
    assert_eq!(drops_in(&st, "no-free-snat-port"), 0, "{st}");
    assert_eq!(drops_in(&st, "conntrack-full"), 0, "{st}");
    assert_eq!(drops_in(&st, "conntrack-tuple-clash"), 0, "{st}");
    assert_eq!(resent, 0, "SYNs waited for a retransmission: {st}");
}
