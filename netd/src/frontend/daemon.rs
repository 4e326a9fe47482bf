//! `netd daemon`: start the engine, serve the HTTP front end, follow the host's resolv.conf.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;

use super::cli::config::{self, ConfigError};
use super::http::server;
use super::http::starting::Starting;
use crate::dnsfiles::HostFileWatcher;
use crate::engine::Engine;
use crate::ops::config_file::Layered;
use crate::ops::filters::ConfigFilters;
use crate::ops::{notify, reload::Reloader};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Settings(String),
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
    // Root's only: it holds the containers' leases and namespace paths.
    crate::ops::socket::root_only(dir).map_err(io("cannot set permissions on state dir", dir))?;
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

async fn bind(socket: &Path, gid: u32) -> Result<UnixListener, DaemonError> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(io("cannot create socket dir", dir))?;
    }
    if socket.exists() {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Err(DaemonError::SocketBusy(socket.to_path_buf()));
        }
        std::fs::remove_file(socket).map_err(io("cannot remove stale socket", socket))?;
    }
    let l = {
        let _mask = crate::ops::socket::Umask::private();
        UnixListener::bind(socket).map_err(io("cannot listen on", socket))?
    };
    crate::ops::socket::secure_socket(socket, gid)
        .map_err(io("cannot set owner and mode of", socket))?;
    Ok(l)
}

pub async fn run(
    settings: Layered,
    argv: Vec<std::ffi::OsString>,
    socket: PathBuf,
) -> Result<(), DaemonError> {
    // SIGHUP's default action ends the process: take it over before anything slow (loading
    // the programs takes seconds), so a reload asked for during startup waits for the engine
    // instead of killing the daemon.
    let mut hup = signal(SignalKind::hangup()).map_err(io("cannot handle SIGHUP for", &socket))?;
    let args = &settings.args;
    let cfg = config::from_args(args)?;
    let filters = ConfigFilters::from_args(args).map_err(DaemonError::Settings)?;
    let state_dir = cfg.state_dir.clone();
    let (gid, group) =
        crate::ops::socket::resolve_group(args.group.as_deref()).map_err(DaemonError::Settings)?;
    let bpffs = cfg.bpffs.clone();
    let _lock = lock_state_dir(&cfg.state_dir)?;
    let listener = bind(&socket, gid).await?;
    tracing::info!(socket = %socket.display(), group, "API socket is root:{group} 0660");
    let resolv = cfg.resolv_conf.clone();
    let progress = crate::ops::progress::Progress::start("starting: loading the datapath".into());
    let opened = Engine::open(cfg).await;
    drop(progress);
    let engine = match opened {
        Ok(e) => e,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e.into());
        }
    };
    let ebpf = engine.config().dataplane == crate::engine::DataplaneMode::Ebpf;
    if ebpf {
        if let Err(e) = crate::ops::socket::root_only(&bpffs) {
            let _ = std::fs::remove_file(&socket);
            return Err(io("cannot set permissions on pin dir", &bpffs)(e));
        }
    }
    // The reconcile of the saved endpoints holds the engine (seconds with thousands of them):
    // reads are answered from a snapshot of the saved state meanwhile, changes wait for it.
    Starting::capture(&engine).install();
    let engine = Arc::new(Mutex::new(engine));
    let mut reconciling = engine.clone().lock_owned().await;
    // `netd monitor`'s ring buffer reader (the eBPF dataplane only).
    let monitor = if ebpf {
        match crate::ops::monitor::Monitor::start(&bpffs, engine.clone()) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!("netd monitor is not available: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut serving = tokio::spawn(server::serve(listener, engine.clone(), monitor));
    tracing::info!(socket = %socket.display(), "netd daemon serving the API (reads only until the endpoints are reconciled)");
    let progress =
        crate::ops::progress::Progress::start("starting: reconciling the saved endpoints".into());
    let reconciled = reconciling.reconcile_start().await;
    drop(progress);
    if let Err(e) = reconciled {
        let _ = std::fs::remove_file(&socket);
        return Err(e.into());
    }
    if let Err(e) = crate::ops::filters::apply(&mut reconciling, &state_dir, &filters).await {
        let _ = std::fs::remove_file(&socket);
        return Err(DaemonError::Settings(e));
    }
    Starting::done();
    drop(reconciling);
    tracing::info!("the saved endpoints are reconciled with the dataplane");
    if let Some(f) = &settings.file {
        tracing::info!(keys = ?settings.file_keys, "settings read from {}", f.display());
    }
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
    // keep the uplinks and the maps current on every link or address event that is not
    // netd's own (`engine::host_events`), and every ten seconds as a safety net.
    {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tick.tick().await;
                if let Err(e) = engine.lock().await.refresh_uplinks().await {
                    tracing::warn!("refreshing uplinks and host addresses: {e}");
                }
            }
        });
    }
    match crate::engine::HostEvents::open() {
        Ok(events) => {
            let engine = engine.clone();
            tokio::spawn(async move {
                while let Ok(c) = events.next().await {
                    match engine.lock().await.host_changed(&c).await {
                        Ok(true) => crate::ops::metrics::HOST_REFRESHES
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        Ok(false) => crate::ops::metrics::HOST_EVENTS_OWN
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        Err(e) => {
                            tracing::warn!("following interfaces and addresses: {e}");
                            0
                        }
                    };
                }
                tracing::warn!("host events stopped; interfaces are followed every ten seconds");
            });
        }
        Err(e) => {
            tracing::warn!("no host events ({e}); interfaces are followed every ten seconds")
        }
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
                            Ok(n) => {
                                crate::ops::metrics::CT_EVICTED
                                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                                tracing::debug!("conntrack: removed {n} idle entries")
                            }
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
    let mut term =
        signal(SignalKind::terminate()).map_err(io("cannot handle SIGTERM for", &socket))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(io("cannot handle SIGINT for", &socket))?;
    {
        let engine = engine.clone();
        let mut reloader = Reloader::new(argv, &settings);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                reloader.reload(&engine).await;
            }
        });
    }
    if let Some(addr) = args.metrics_addr {
        let l = match crate::ops::metrics::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_file(&socket);
                return Err(DaemonError::Settings(e));
            }
        };
        tracing::info!(%addr, "serving Prometheus metrics on /metrics");
        tokio::spawn(crate::ops::metrics::serve(l, engine.clone()));
    }
    // The engine has reconciled the dataplane and the API is being served: ready.
    tracing::info!(socket = %socket.display(), "netd daemon ready");
    notify::tell(&format!(
        "READY=1\nSTATUS=serving {}\nMAINPID={}",
        socket.display(),
        std::process::id()
    ));
    tokio::select! {
        _ = &mut serving => {}
        _ = term.recv() => tracing::info!("SIGTERM: stopping; containers keep their networking"),
        _ = int.recv() => tracing::info!("SIGINT: stopping; containers keep their networking"),
    }
    notify::tell("STOPPING=1");
    // Wait for an in-flight change to finish, then leave while holding the engine: a request
    // queued behind it must not start and be cut off halfway by the runtime's shutdown.
    let engine = engine.lock().await;
    if let Err(e) = engine.flush_state() {
        tracing::warn!("{e}");
    }
    let _ = std::fs::remove_file(&socket);
    std::process::exit(0)
}
