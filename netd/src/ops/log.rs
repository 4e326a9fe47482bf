//! The daemon's log, with a level that a config reload can change.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter(level: &str) -> Result<EnvFilter, String> {
    // netlink-packet-route warns about every attribute newer than itself; that is noise here.
    let spec = if level.contains('=') {
        level.to_string()
    } else {
        format!("{level},netlink_packet_route=error")
    };
    EnvFilter::try_new(&spec).map_err(|e| format!("invalid --log-level {level:?}: {e}"))
}

/// Logs to stderr at `level` (falls back to info, saying so, when it is not a level).
pub fn init(level: &str) {
    let f = filter(level).unwrap_or_else(|e| {
        eprintln!("netd: {e}; using info");
        EnvFilter::new("info")
    });
    let (f, handle) = reload::Layer::new(f);
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    tracing_subscriber::registry().with(f).with(fmt).init();
    let _ = LEVEL.set(handle);
}

/// Changes the level of a running daemon's log.
pub fn set_level(level: &str) -> Result<(), String> {
    let f = filter(level)?;
    let h = LEVEL.get().ok_or("logging is not initialised")?;
    h.reload(f)
        .map_err(|e| format!("cannot change the log level: {e}"))
}

/// Checks that `level` is a level or filter, without changing anything.
pub fn test_level(level: &str) -> Result<(), String> {
    filter(level).map(|_| ())
}
