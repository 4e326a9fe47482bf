//! Where a request's time goes: with `NETD_TRACE_TIMING=1` in the daemon's environment, attach
//! and detach log one line each with the time of every phase (netlink round trips, program
//! attachment, /etc files, map sync, persisting).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Whether phase timings are logged (read once).
pub(super) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("NETD_TRACE_TIMING").is_some_and(|v| v != "0"))
}

/// Phase timings of one request; free when disabled.
pub(super) struct Phases {
    on: bool,
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Phases {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        Self {
            on: enabled(),
            start: now,
            last: now,
            phases: Vec::new(),
        }
    }

    /// Ends the current phase, naming it.
    pub(super) fn mark(&mut self, phase: &'static str) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        self.phases.push((phase, now - self.last));
        self.last = now;
    }

    /// Logs the phases (when enabled) under `what` for container `name`.
    pub(super) fn log(&self, what: &str, name: &str) {
        if !self.on {
            return;
        }
        let mut line = String::new();
        for (p, d) in &self.phases {
            line.push_str(&format!(" {p}={:.2}ms", d.as_secs_f64() * 1e3));
        }
        tracing::info!(
            container = %name,
            "{what} timing: total={:.2}ms{line}",
            self.start.elapsed().as_secs_f64() * 1e3
        );
    }
}
