//! SIGHUP: read the config file again and apply what can change while the daemon runs (the log
//! level, the containers' default DNS, the settings' source filters); say which other changes
//! need a restart. A file that does not load changes nothing.

use std::ffi::OsString;
use std::path::PathBuf;

use super::config_file::{self, Layered};
use super::filters::ConfigFilters;
use super::notify;
use crate::frontend::cli::args::DaemonArgs;
use crate::frontend::http::server::Shared;

/// Settings a reload applies.
pub const LIVE: &[&str] = &[
    "log-level",
    "dns",
    "dns-search",
    "filter-allow",
    "filter-deny",
];

pub struct Reloader {
    argv: Vec<OsString>,
    /// What the daemon runs with now.
    running: DaemonArgs,
    state_dir: PathBuf,
}

impl Reloader {
    pub fn new(argv: Vec<OsString>, running: &Layered) -> Self {
        Self {
            argv,
            state_dir: running.args.state_dir.clone(),
            running: running.args.clone(),
        }
    }

    /// Reloads, telling the service manager (RELOADING=1, then READY=1) and logging the outcome.
    pub async fn reload(&mut self, engine: &Shared) {
        notify::tell(&format!("RELOADING=1\n{}", notify::monotonic_usec()));
        match self.try_reload(engine).await {
            Ok(msg) => tracing::info!("SIGHUP: {msg}"),
            Err(e) => tracing::error!("SIGHUP: configuration not reloaded: {e}"),
        }
        notify::tell("READY=1");
    }

    async fn try_reload(&mut self, engine: &Shared) -> Result<String, String> {
        let layered = config_file::load(&self.argv).map_err(|e| e.to_string())?;
        let new = layered.args;
        // Check the whole set first, so that a bad value applies nothing.
        crate::frontend::cli::config::from_args(&new).map_err(|e| e.to_string())?;
        let dns = crate::spec::parse_dns(&new.dns).map_err(|e| e.to_string())?;
        let filters = ConfigFilters::from_args(&new)?;
        crate::ops::log::test_level(&new.log_level)?;
        let changed = config_file::changed(&self.running, &new);
        let file = layered
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the settings".into());
        for k in changed.iter().filter(|k| !LIVE.contains(&k.as_str())) {
            tracing::warn!("{k} changed in {file}: restart netd to apply it");
        }
        let live: Vec<&String> = changed
            .iter()
            .filter(|k| LIVE.contains(&k.as_str()))
            .collect();
        if live.iter().any(|k| *k == "log-level") {
            crate::ops::log::set_level(&new.log_level)?;
            tracing::debug!("log level is now {}", new.log_level);
            self.running.log_level = new.log_level.clone();
        }
        if live.iter().any(|k| *k == "dns" || *k == "dns-search") {
            engine
                .lock()
                .await
                .set_daemon_dns(dns, new.dns_search.clone());
            self.running.dns = new.dns.clone();
            self.running.dns_search = new.dns_search.clone();
        }
        if live.iter().any(|k| k.starts_with("filter-")) {
            super::filters::apply(&mut *engine.lock().await, &self.state_dir, &filters).await?;
            self.running.filter_allow = new.filter_allow.clone();
            self.running.filter_deny = new.filter_deny.clone();
        }
        if live.is_empty() {
            Ok(format!("reloaded {file}: nothing to change live"))
        } else {
            let names: Vec<&str> = live.iter().map(|s| s.as_str()).collect();
            Ok(format!("reloaded {file}: applied {}", names.join(", ")))
        }
    }
}
