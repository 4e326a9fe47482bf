//! UDP: one upstream socket per client (address and port), connected to the container's IPv4
//! address; its replies go back to the client from the published socket, so they come from
//! the published port. A flow without a datagram either way for [`UDP_IDLE`] ends.
//!
//! [`UDP_IDLE`]: super::UDP_IDLE

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinSet;

use super::{AbortOnDrop, Shared, UDP_IDLE, add, dec, inc};

struct Flow {
    up: Arc<UdpSocket>,
    last: Arc<AtomicU64>,
    /// The reply loop (holds a reference to the published socket); None once closed.
    reply: Option<AbortOnDrop>,
    _permit: OwnedSemaphorePermit,
    sh: Arc<Shared>,
}

impl Flow {
    /// Ends the reply loop and waits until it has dropped its sockets.
    async fn close(mut self) {
        if let Some(r) = self.reply.take() {
            r.join().await;
        }
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        dec(&self.sh.c.udp_flows_active);
    }
}

/// Relays until `stop` fires (or its sender is dropped), then ends every flow and waits until
/// their reply loops are gone before it returns (and drops its `sock`).
pub(super) async fn serve(
    sock: Arc<UdpSocket>,
    target: SocketAddrV4,
    sh: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    // Idle flows being closed (their reply loops hold `sock` until they are gone).
    let mut closing = JoinSet::new();
    let mut tick = tokio::time::interval(UDP_IDLE / 4);
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            _ = &mut stop => {
                for (_, f) in flows.drain() {
                    f.close().await;
                }
                while closing.join_next().await.is_some() {}
                return;
            }
            r = sock.recv_from(&mut buf) => {
                let (n, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(%target, "NAT46 relay: recv: {e}");
                        continue;
                    }
                };
                let flow = match flows.get(&peer) {
                    Some(f) => f,
                    None => match new_flow(&sock, peer, target, &sh) {
                        Some(f) => flows.entry(peer).or_insert(f),
                        None => {
                            inc(&sh.c.udp_dropped);
                            continue;
                        }
                    },
                };
                flow.last.store(sh.now_ms(), Ordering::Relaxed);
                match send_now(&flow.up, &buf[..n]) {
                    Ok(sent) => add(&sh.c.bytes_to_container, sent as u64),
                    // A full buffer, or the ICMP error of an earlier datagram: dropped, as
                    // the network would.
                    Err(_) => inc(&sh.c.udp_dropped),
                }
            }
            _ = tick.tick() => {
                let now = sh.now_ms();
                let idle = UDP_IDLE.as_millis() as u64;
                let old: Vec<SocketAddr> = flows
                    .iter()
                    .filter(|(_, f)| now.saturating_sub(f.last.load(Ordering::Relaxed)) >= idle)
                    .map(|(a, _)| *a)
                    .collect();
                for a in old {
                    if let Some(f) = flows.remove(&a) {
                        closing.spawn(f.close());
                    }
                }
            }
            Some(_) = closing.join_next(), if !closing.is_empty() => {}
        }
    }
}

/// send(2) on a flow's connected socket, without tokio's readiness check: `try_send` refuses
/// (WouldBlock) until the reactor has reported the socket writable, which a socket made for
/// a new flow a moment ago has not been yet, so a flow's first datagram was dropped (iperf3's
/// UDP connect message, sent once: the test never started), and under a flood every datagram
/// after one EAGAIN until the reactor's next turn.
fn send_now(up: &UdpSocket, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: send(2) on the descriptor `up` owns, reading buf.len() bytes of `buf`.
    let n = unsafe {
        libc::send(
            up.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A flow for `peer`: its upstream socket (from the host, an ephemeral port) and the task
/// that sends the container's replies back. None when [`super::UDP_FLOWS_MAX`] are open or no
/// socket could be made.
fn new_flow(
    sock: &Arc<UdpSocket>,
    peer: SocketAddr,
    target: SocketAddrV4,
    sh: &Arc<Shared>,
) -> Option<Flow> {
    let permit = sh.udp.clone().try_acquire_owned().ok()?;
    let up = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect(target)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .and_then(UdpSocket::from_std);
    let up = match up {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(%target, "NAT46 relay: upstream socket: {e}");
            return None;
        }
    };
    let last = Arc::new(AtomicU64::new(sh.now_ms()));
    let reply = {
        let (up, sock, last, sh) = (up.clone(), sock.clone(), last.clone(), sh.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                match up.recv(&mut buf).await {
                    Ok(n) => {
                        last.store(sh.now_ms(), Ordering::Relaxed);
                        match sock.send_to(&buf[..n], peer).await {
                            Ok(sent) => add(&sh.c.bytes_from_container, sent as u64),
                            Err(_) => inc(&sh.c.udp_dropped),
                        }
                    }
                    // ECONNREFUSED (the container's port is closed): keep the flow, as a
                    // later datagram may find a listener.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            }
        })
    };
    inc(&sh.c.udp_flows_total);
    inc(&sh.c.udp_flows_active);
    Some(Flow {
        up,
        last,
        reply: Some(AbortOnDrop(reply)),
        _permit: permit,
        sh: sh.clone(),
    })
}
