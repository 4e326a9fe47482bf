//! UDP: one upstream socket per client (address and port), connected to the container's IPv4
//! address; its replies go back to the client from the published socket, so they come from
//! the published port. A flow without a datagram either way for [`UDP_IDLE`] ends.
//!
//! [`UDP_IDLE`]: super::UDP_IDLE

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::OwnedSemaphorePermit;

use super::{AbortOnDrop, Shared, UDP_IDLE, add, dec, inc};

struct Flow {
    up: Arc<UdpSocket>,
    last: Arc<AtomicU64>,
    _reply: AbortOnDrop,
    _permit: OwnedSemaphorePermit,
    sh: Arc<Shared>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        dec(&self.sh.c.udp_flows_active);
    }
}

pub(super) async fn serve(sock: UdpSocket, target: SocketAddrV4, sh: Arc<Shared>) {
    let sock = Arc::new(sock);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut tick = tokio::time::interval(UDP_IDLE / 4);
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
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
                match flow.up.try_send(&buf[..n]) {
                    Ok(sent) => add(&sh.c.bytes_to_container, sent as u64),
                    // A full buffer, or the ICMP error of an earlier datagram: dropped, as
                    // the network would.
                    Err(_) => inc(&sh.c.udp_dropped),
                }
            }
            _ = tick.tick() => {
                let now = sh.now_ms();
                let idle = UDP_IDLE.as_millis() as u64;
                flows.retain(|_, f| now.saturating_sub(f.last.load(Ordering::Relaxed)) < idle);
            }
        }
    }
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
        _reply: AbortOnDrop(reply),
        _permit: permit,
        sh: sh.clone(),
    })
}
