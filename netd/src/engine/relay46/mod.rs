//! The NAT46 relay: the IPv6 side of a port published by a container without an IPv6 address,
//! served the way docker-proxy served it. The daemon listens on `[::]:PORT` (or the binding's
//! IPv6 host address) with IPV6_V6ONLY, and relays every TCP connection and UDP flow to the
//! container's IPv4 address and port from the host, so the container sees the bridge
//! gateway's IPv4 address (the host's address on the bridge) as its peer, as behind
//! docker-proxy. Replies go back from the published socket, so the client sees the address it
//! dialled.
//!
//! IPv4 and IPv6-to-IPv6 stay in eBPF; only this case costs a user-space copy. It serves
//! outside IPv6 clients and host-local `[::1]:PORT` / `[HOST6]:PORT` alike (unconnected UDP
//! `sendto` to `[::1]` included, which the socket hooks cannot redirect: the kernel refuses a
//! v4-mapped destination written by the sendmsg6 hook).
//!
//! Bounded: at most [`PORTS_MAX`] relayed ports (further default bindings, and default
//! ranges of more than [`DEFAULT_RANGE_MAX`] ports, publish on IPv4 only), [`TCP_MAX`] connections and [`UDP_FLOWS_MAX`] UDP flows at once (more are
//! refused and counted); a UDP flow ends after [`UDP_IDLE`] without a datagram either way.

mod pipe;
mod tcp;
#[cfg(test)]
mod tests;
mod udp;

use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

pub use super::view::RelayStats;
use crate::spec::Proto;

/// Relayed ports (TCP and UDP counted apart) a daemon serves at most.
pub const PORTS_MAX: u32 = 1024;
/// A binding without a host address is relayed on `[::]` only up to this many ports (a
/// larger range is published on 0.0.0.0 only: a descriptor per port adds up; an explicit
/// IPv6 host address is relayed at any size within [`PORTS_MAX`]).
pub const DEFAULT_RANGE_MAX: u16 = 64;
/// TCP connections relayed at once (two descriptors each).
pub const TCP_MAX: usize = 4096;
/// UDP flows (client address and port) relayed at once (one upstream socket each).
pub const UDP_FLOWS_MAX: usize = 4096;
/// A UDP flow without a datagram for this long ends (its upstream socket closes).
pub const UDP_IDLE: Duration = Duration::from_secs(60);
/// How long a relayed TCP connection waits for the container to accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counters {
    listeners: AtomicU64,
    tcp_active: AtomicU64,
    tcp_total: AtomicU64,
    tcp_refused: AtomicU64,
    tcp_failed: AtomicU64,
    udp_flows_active: AtomicU64,
    udp_flows_total: AtomicU64,
    udp_dropped: AtomicU64,
    bytes_to_container: AtomicU64,
    bytes_from_container: AtomicU64,
}

/// What every relay of a daemon shares: the limits and the counters.
pub struct Shared {
    c: Counters,
    tcp: Arc<Semaphore>,
    udp: Arc<Semaphore>,
    epoch: Instant,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            c: Counters::default(),
            tcp: Arc::new(Semaphore::new(TCP_MAX)),
            udp: Arc::new(Semaphore::new(UDP_FLOWS_MAX)),
            epoch: Instant::now(),
        }
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn dec(a: &AtomicU64) {
    a.fetch_sub(1, Ordering::Relaxed);
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

impl Shared {
    pub fn stats(&self) -> RelayStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.c;
        RelayStats {
            listeners: g(&c.listeners),
            tcp_active: g(&c.tcp_active),
            tcp_total: g(&c.tcp_total),
            tcp_refused: g(&c.tcp_refused),
            tcp_failed: g(&c.tcp_failed),
            udp_flows_active: g(&c.udp_flows_active),
            udp_flows_total: g(&c.udp_flows_total),
            udp_dropped: g(&c.udp_dropped),
            bytes_to_container: g(&c.bytes_to_container),
            bytes_from_container: g(&c.bytes_from_container),
        }
    }

    /// Milliseconds since the relays started (UDP flows' last activity).
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Aborts its task when dropped (a UDP flow's reply loop); [`AbortOnDrop::join`] also waits
/// until the task's future, and what it holds, is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    async fn join(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A relay's listening socket. The [`Relay`] holds one reference and its task another, so the
/// socket closes when both are gone: [`Relay::stop`] waits for the task, then drops its own.
enum Listener {
    Tcp(Arc<tokio::net::TcpListener>),
    Udp(Arc<tokio::net::UdpSocket>),
}

/// One relayed port. [`Relay::stop`] stops it and closes its connections and flows, and the
/// port is free when it returns; dropping a relay stops it too, but the socket closes only
/// when the runtime gets to the task.
pub struct Relay {
    task: Option<JoinHandle<()>>,
    /// Dropped (or sent) to tell the task to end: it closes its connections or flows first.
    stop: Option<oneshot::Sender<()>>,
    sock: Option<Listener>,
    listen: SocketAddr,
    shared: Arc<Shared>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            // Dropped without stop(): the sender's drop ends the task; abort in case it is
            // stuck in a connection's shutdown.
            t.abort();
        }
        dec(&self.shared.c.listeners);
    }
}

impl Relay {
    /// Binds `listen` (an IPv6 address, IPV6_V6ONLY) and relays what arrives there to
    /// `target`. Must run inside the tokio runtime. The bind error is returned as is
    /// (EADDRINUSE: a host socket holds the port).
    pub fn start(
        shared: &Arc<Shared>,
        proto: Proto,
        listen: SocketAddr,
        target: SocketAddrV4,
    ) -> std::io::Result<Relay> {
        let fd = listener(proto, listen)?;
        let sh = shared.clone();
        let (stop, stopped) = oneshot::channel();
        let (task, sock) = match proto {
            Proto::Tcp => {
                let l = Arc::new(tokio::net::TcpListener::from_std(
                    std::net::TcpListener::from(fd),
                )?);
                let t = tokio::spawn(tcp::serve(l.clone(), target, sh, stopped));
                (t, Listener::Tcp(l))
            }
            Proto::Udp => {
                let s = Arc::new(tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(
                    fd,
                ))?);
                let t = tokio::spawn(udp::serve(s.clone(), target, sh, stopped));
                (t, Listener::Udp(s))
            }
        };
        inc(&shared.c.listeners);
        Ok(Relay {
            task: Some(task),
            stop: Some(stop),
            sock: Some(sock),
            listen,
            shared: shared.clone(),
        })
    }

    /// Stops the relay: its task closes every connection and flow and ends, then the
    /// listening socket is closed, so the port is free when this returns (an unpublish
    /// followed at once by a publish of the same port, as Docker's
    /// ProgramExternalConnectivity does, finds it free).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            if let Err(e) = t.await {
                tracing::warn!(listen = %self.listen, "NAT46 relay task: {e}");
            }
        }
        // The task's reference is gone with it; this one is the last.
        let last = match self.sock.take() {
            Some(Listener::Tcp(l)) => Arc::into_inner(l).map(drop).is_some(),
            Some(Listener::Udp(s)) => Arc::into_inner(s).map(drop).is_some(),
            None => true,
        };
        if !last {
            tracing::warn!(listen = %self.listen, "NAT46 relay: socket still shared after stop");
        }
    }
}

/// Stops `relays` and waits until their ports are free, from synchronous engine code. On the
/// daemon's multi-thread runtime this blocks in place (other tasks go on on the other
/// workers); outside a runtime or on a current-thread one the relays are only dropped, and
/// their sockets close when the runtime next runs their tasks.
pub fn stop_all(relays: Vec<Relay>) {
    if relays.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| {
                h.block_on(async {
                    for r in relays {
                        r.stop().await;
                    }
                })
            });
        }
        _ => drop(relays),
    }
}

fn setsockopt_int(fd: &OwnedFd, level: i32, name: i32, v: i32) -> std::io::Result<()> {
    // SAFETY: setsockopt with a valid int option value and its length.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const v).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The relay's socket on `addr`: IPV6_V6ONLY (the IPv4 side is the eBPF dataplane's),
/// SO_REUSEADDR for TCP (a restarted daemon binds past TIME_WAIT; two listeners still cannot
/// share a port), bound while it carries [`netd_common::RELAY_SOCK_PRIORITY`] (the bind hooks
/// let it take `[::]` for a published IPv4 port), then priority 0 again, listening for TCP.
fn listener(proto: Proto, addr: SocketAddr) -> std::io::Result<OwnedFd> {
    let ty = match proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET6,
            ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    setsockopt_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    if proto == Proto::Tcp {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    setsockopt_int(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_PRIORITY,
        netd_common::RELAY_SOCK_PRIORITY as i32,
    )?;
    let (storage, len) = super::reserve::sockaddr(&addr);
    // SAFETY: storage holds a valid sockaddr of length len.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_PRIORITY, 0)?;
    // SAFETY: listen(2) on our own bound socket.
    if proto == Proto::Tcp && unsafe { libc::listen(fd.as_raw_fd(), 1024) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}
