//! Running netd as a host daemon: the config file and its reload, service-manager readiness,
//! the daemon's log.
//!
//! - [`clitools`]: completions, man pages, `netd version`.
//! - [`config_file`]: `/etc/netd/daemon.json`, keyed by `netd daemon`'s long flag names.
//! - [`reload`]: SIGHUP applies what can change live and names what needs a restart.
//! - [`doctor`]: `netd doctor`, what the host provides and what would interfere.
//! - [`filters`]: the source filters the settings own.
//! - [`notify`]: sd_notify readiness (`READY=1` once the API serves and the dataplane is
//!   reconciled).
//! - [`metrics`]: the Prometheus endpoint (`--metrics-addr`).
//! - [`monitor`]: `netd monitor`, the datapath's drop events (`GET /v1/monitor`).
//! - [`log`]: stderr logging with a reloadable level.
//! - [`socket`]: the API socket's owner, group and mode; root-only state and pin dirs.
//! - [`unit`]: the systemd unit that `netd install-unit` writes.
pub mod clitools;
pub mod config_file;
pub mod doctor;
pub mod filters;
pub mod log;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod progress;
pub mod reload;
pub mod socket;
pub mod unit;
