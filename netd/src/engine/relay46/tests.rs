//! The relay on loopback, in a private network namespace per test (root): a stopped relay's
//! port is free at once, a new UDP flow's first datagram is relayed, and a TCP half-close is
//! passed on.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{Relay, Shared, stop_all};
use crate::spec::Proto;

/// The published port (the namespace is private, so any port is free).
const PORT: u16 = 5201;
/// The "container's" port, on 127.0.0.1.
const TARGET_PORT: u16 = 7;

/// Runs `f` on a runtime (multi-thread, or current-thread) whose threads live in a new
/// network namespace with loopback up (threads inherit the namespace of the thread that
/// creates them).
fn in_private_netns<F>(multi: bool, f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): the relay tests need root");
        let st = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run `ip link set lo up`");
        assert!(st.success(), "ip link set lo up: {st}");
        let mut b = if multi {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        b.enable_all().build().expect("runtime").block_on(f);
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
}

fn listen() -> SocketAddr {
    SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), PORT)
}

fn target() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, TARGET_PORT)
}

fn published() -> SocketAddr {
    SocketAddr::new(Ipv6Addr::LOCALHOST.into(), PORT)
}

/// Stops `r`: on the multi-thread runtime the way the engine does (synchronously, on a
/// worker); on the current-thread one with `stop().await`, where nothing else can close the
/// socket behind the test's back (the runtime runs no other task meanwhile).
async fn stop(r: Relay) {
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::spawn(async move { stop_all(vec![r]) })
            .await
            .expect("stop_all");
    } else {
        r.stop().await;
    }
}

/// A UDP echo server on the target address.
async fn udp_echo() {
    let s = UdpSocket::bind(target()).await.expect("bind the UDP echo");
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], peer).await;
        }
    });
}

/// Sends one datagram from a fresh socket (a new flow) and waits for its echo: no retry, so a
/// relay that drops a flow's first datagram fails here.
async fn udp_once(msg: &[u8]) -> Result<Vec<u8>, String> {
    let c = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0))
        .await
        .map_err(|e| e.to_string())?;
    c.send_to(msg, published())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    match tokio::time::timeout(Duration::from_secs(2), c.recv(&mut buf)).await {
        Ok(Ok(n)) => Ok(buf[..n].to_vec()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no echo within 2 s".into()),
    }
}

#[test]
fn udp_first_datagram_of_a_flow_is_relayed() {
    in_private_netns(true, async {
        udp_echo().await;
        let sh = Arc::new(Shared::default());
        let r = Relay::start(&sh, Proto::Udp, listen(), target()).expect("start the UDP relay");
        for i in 0..3 {
            let msg = format!("flow {i}");
            assert_eq!(
                udp_once(msg.as_bytes()).await,
                Ok(msg.into_bytes()),
                "flow {i}'s only datagram"
            );
        }
        let st = sh.stats();
        assert_eq!((st.udp_flows_total, st.udp_dropped), (3, 0), "{st:?}");
        r.stop().await;
    });
}

#[test]
fn udp_relay_stopped_with_a_flow_binds_again_at_once() {
    for multi in [false, true] {
        in_private_netns(multi, udp_restart());
    }
}

async fn udp_restart() {
    udp_echo().await;
    let sh = Arc::new(Shared::default());
    let start = |round| {
        Relay::start(&sh, Proto::Udp, listen(), target())
            .unwrap_or_else(|e| panic!("round {round}: start on {}: {e}", listen()))
    };
    let mut r = start(0);
    for round in 1..=3 {
        // A live flow: its reply loop holds the published socket too.
        assert_eq!(udp_once(b"x").await, Ok(b"x".to_vec()), "round {round}");
        stop(r).await;
        // At once: before this task awaits anything that lets the runtime close it.
        r = start(round);
        assert_eq!(sh.stats().udp_flows_active, 0, "round {round}");
    }
    stop(r).await;
    assert_eq!(sh.stats().listeners, 0);
}

#[test]
fn tcp_relay_stopped_with_a_connection_binds_again_at_once() {
    for multi in [false, true] {
        in_private_netns(multi, tcp_restart());
    }
}

async fn tcp_restart() {
    let up = TcpListener::bind(target()).await.expect("bind the target");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = up.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    let _ = s.write_all(&buf[..n]).await;
                }
            });
        }
    });
    let sh = Arc::new(Shared::default());
    let start = |round| {
        Relay::start(&sh, Proto::Tcp, listen(), target())
            .unwrap_or_else(|e| panic!("round {round}: start on {}: {e}", listen()))
    };
    let mut r = start(0);
    for round in 1..=3 {
        let mut c = TcpStream::connect(published()).await.expect("connect");
        c.write_all(b"hi").await.expect("write");
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf)
            .await
            .expect("echo through the relay");
        stop(r).await;
        // At once: before this task awaits anything that lets the runtime close it.
        r = start(round);
        // The relayed connection was closed by the stop.
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
            .await
            .expect("the relayed connection still open 2 s after stop");
        assert!(matches!(n, Ok(0) | Err(_)), "round {round}: read {n:?}");
        assert_eq!(sh.stats().tcp_active, 0, "round {round}");
    }
    stop(r).await;
}

#[test]
fn tcp_half_close_is_passed_on_both_ways() {
    for multi in [false, true] {
        in_private_netns(multi, tcp_half_close());
    }
}

/// The client sends 3 MiB and shuts down writing; the server reads to EOF (it sees EOF only
/// if the relay passes the half-close on), answers with what it counted and closes; the client
/// still reads the whole answer, then EOF.
async fn tcp_half_close() {
    const SENT: usize = 3 << 20;
    let up = TcpListener::bind(target()).await.expect("bind the target");
    tokio::spawn(async move {
        let (mut s, _) = up.accept().await.expect("accept");
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("server reads to EOF");
        let ok = got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8);
        let answer = format!("got {} bytes, in order: {ok}", got.len());
        s.write_all(answer.repeat(10_000).as_bytes())
            .await
            .expect("server answers after the client's half-close");
    });
    let sh = Arc::new(Shared::default());
    let r = Relay::start(&sh, Proto::Tcp, listen(), target()).expect("start the relay");
    let mut c = TcpStream::connect(published()).await.expect("connect");
    let data: Vec<u8> = (0..SENT).map(|i| (i % 251) as u8).collect();
    c.write_all(&data).await.expect("write");
    c.shutdown().await.expect("shut down writing");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut answer))
        .await
        .expect("no answer 10 s after the half-close: the relay did not pass it on")
        .expect("read the answer");
    let want = format!("got {SENT} bytes, in order: true").repeat(10_000);
    assert_eq!(answer.len(), want.len(), "answer length");
    assert!(answer == want.as_bytes(), "answer differs");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while sh.stats().tcp_active != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = sh.stats();
    assert_eq!(st.tcp_active, 0, "the relayed connection did not end");
    assert_eq!(st.bytes_to_container, SENT as u64);
    assert_eq!(st.bytes_from_container, want.len() as u64);
    stop(r).await;
}
