//! `netd daemon`: start the engine, serve the HTTP front end, follow the host's resolv.conf.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;

use super::cli::args::DaemonArgs;
use super::cli::config::{self, ConfigError};
use super::http::server;
use crate::dnsfiles::HostFileWatcher;
use crate::engine::Engine;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("another netd daemon is already serving {0}")]
    SocketBusy(PathBuf),
    #[error("another netd daemon is using state dir {0}")]
    StateBusy(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_path_buf();
    move |source| DaemonError::Io { what, path, source }
}

/// Holds an exclusive flock on <state-dir>/lock for the daemon's lifetime.
struct StateLock(#[expect(dead_code, reason = "held for its flock")] std::fs::File);

fn lock_state_dir(dir: &Path) -> Result<StateLock, DaemonError> {
    std::fs::create_dir_all(dir).map_err(io("cannot create state dir", dir))?;
    let p = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io("cannot open", &p))?;
    // SAFETY: flock on a valid fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(DaemonError::StateBusy(dir.to_path_buf()));
    }
    Ok(StateLock(f))
}

async fn bind(socket: &Path) -> Result<UnixListener, DaemonError> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(io("cannot create socket dir", dir))?;
    }
    if socket.exists() {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Err(DaemonError::SocketBusy(socket.to_path_buf()));
        }
        std::fs::remove_file(socket).map_err(io("cannot remove stale socket", socket))?;
    }
    let l = UnixListener::bind(socket).map_err(io("cannot listen on", socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(io("cannot set permissions on", socket))?;
    Ok(l)
}

pub async fn run(args: DaemonArgs, socket: PathBuf) -> Result<(), DaemonError> {
    let cfg = config::from_args(&args)?;
    let _lock = lock_state_dir(&cfg.state_dir)?;
    let listener = bind(&socket).await?;
    let resolv = cfg.resolv_conf.clone();
    let engine = match Engine::start(cfg).await {
        Ok(e) => e,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e.into());
        }
    };
    let engine = Arc::new(Mutex::new(engine));
    let _watcher = match HostFileWatcher::spawn(resolv.clone()) {
        Ok((w, mut rx)) => {
            let engine = engine.clone();
            tokio::spawn(async move {
                while rx.recv().await.is_some() {
                    engine.lock().await.host_resolv_changed();
                }
            });
            Some(w)
        }
        Err(e) => {
            tracing::warn!("not following {}: {e}", resolv.display());
            None
        }
    };
    // Host addresses and interfaces can change under the daemon (DHCP, hot-plug, an operator):
    // keep the uplinks and the maps current, on every link event and every second.
    {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) = engine.lock().await.refresh_uplinks().await {
                    tracing::warn!("refreshing uplinks and host addresses: {e}");
                }
            }
        });
    }
    match crate::engine::LinkEvents::open() {
        Ok(events) => {
            let engine = engine.clone();
            tokio::spawn(async move {
                while events.changed().await.is_ok() {
                    if let Err(e) = engine.lock().await.refresh_uplinks().await {
                        tracing::warn!("following interfaces: {e}");
                    }
                }
                tracing::warn!("link events stopped; interfaces are followed every second");
            });
        }
        Err(e) => tracing::warn!("no link events ({e}); interfaces are followed every second"),
    }
    // Conntrack garbage collection, outside the engine lock, on a blocking thread.
    if let Some(mut gc) = engine.lock().await.ct_gc()? {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tick.tick().await;
                match tokio::task::spawn_blocking(move || (gc.run(), gc)).await {
                    Ok((r, back)) => {
                        gc = back;
                        match r {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!("conntrack: removed {n} idle entries"),
                            Err(e) => tracing::warn!("conntrack gc: {e}"),
                        }
                    }
                    Err(e) => {
                        tracing::warn!("conntrack gc stopped: {e}");
                        return;
                    }
                }
            }
        });
    }
    tracing::info!(socket = %socket.display(), "netd daemon ready");
    let mut term =
        signal(SignalKind::terminate()).map_err(io("cannot handle SIGTERM for", &socket))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(io("cannot handle SIGINT for", &socket))?;
    tokio::select! {
        _ = server::serve(listener, engine.clone()) => {}
        _ = term.recv() => tracing::info!("SIGTERM: stopping; containers keep their networking"),
        _ = int.recv() => tracing::info!("SIGINT: stopping; containers keep their networking"),
    }
    // Wait for an in-flight change to finish, then leave while holding the engine: a request
    // queued behind it must not start and be cut off halfway by the runtime's shutdown.
    let _engine = engine.lock().await;
    let _ = std::fs::remove_file(&socket);
    std::process::exit(0)
}
