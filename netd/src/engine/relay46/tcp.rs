//! TCP: accept on the IPv6 side, connect to the container's IPv4 address, splice both ways
//! (`pipe.rs`). A half-close is passed on (EOF on one side shuts down the other side's write and the other
//! direction goes on), and the connection ends when both directions have.

use std::net::SocketAddrV4;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::{CONNECT_TIMEOUT, Shared, add, dec, inc};

/// Accepts and relays until `stop` fires (or its sender is dropped), then closes every
/// connection and waits until they are gone before it returns (and drops its `l`).
pub(super) async fn serve(
    l: Arc<TcpListener>,
    target: SocketAddrV4,
    sh: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => {
                conns.shutdown().await;
                return;
            }
            r = l.accept() => match r {
                Ok((client, _)) => {
                    let Ok(permit) = sh.tcp.clone().try_acquire_owned() else {
                        inc(&sh.c.tcp_refused);
                        continue;
                    };
                    let sh = sh.clone();
                    conns.spawn(async move {
                        let _permit = permit;
                        splice(client, target, &sh).await;
                    });
                }
                Err(e) => {
                    // EMFILE, ENOBUFS: back off instead of spinning on the ready listener.
                    tracing::warn!(%target, "NAT46 relay: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Counts the connection as active while it lives.
struct Active<'a>(&'a Shared);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        dec(&self.0.c.tcp_active);
    }
}

async fn splice(mut client: TcpStream, target: SocketAddrV4, sh: &Shared) {
    inc(&sh.c.tcp_total);
    inc(&sh.c.tcp_active);
    let _active = Active(sh);
    let mut up = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            inc(&sh.c.tcp_failed);
            tracing::debug!(%target, "NAT46 relay: connect: {e}");
            return;
        }
        Err(_) => {
            inc(&sh.c.tcp_failed);
            tracing::debug!(%target, "NAT46 relay: connect timed out");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    match super::pipe::relay(&mut client, &mut up).await {
        Ok((to, from)) => {
            add(&sh.c.bytes_to_container, to);
            add(&sh.c.bytes_from_container, from);
        }
        Err(e) => tracing::debug!(%target, "NAT46 relay: {e}"),
    }
}
