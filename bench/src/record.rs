//! What one measurement leaves behind: a [`Run`] (one tool on one path under one system) and a
//! [`SweepPoint`] (one system at one N). Each is written as its own JSON file under the results
//! directory as soon as it is taken.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::cpu::{CpuUsage, ProgCost};
use crate::systems::Memory;
use crate::tools::Values;

/// How a measurement ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    /// The system does not handle this path (no score, not a failure).
    NotApplicable,
    /// The path gave a wrong answer or none: no score.
    FailedCorrectness,
    /// The system could not be set up, or the tool failed after the check passed.
    Error,
    /// Not run (e.g. above the docker-proxy process cap).
    Skipped,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotApplicable => "n/a",
            Status::FailedCorrectness => "failed check",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub system: String,
    pub path: String,
    pub tool: String,
    pub rep: u32,
    pub status: Status,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub values: Values,
    #[serde(default)]
    pub cpu: Option<CpuUsage>,
    #[serde(default)]
    pub bpf: Vec<ProgCost>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepPoint {
    pub system: String,
    pub n: u32,
    /// "icc on" (P1) or "icc off, links" (P4link).
    #[serde(default)]
    pub variant: String,
    /// The path measured.
    #[serde(default)]
    pub path: String,
    pub status: Status,
    #[serde(default)]
    pub note: String,
    /// Time to publish the N filler ports.
    pub publish_s: Option<f64>,
    /// Time to publish one more port at N (netd: the `netd publish` CLI call).
    pub one_more_ms: Option<f64>,
    /// netd: the same publish as one request on the API socket (no process start).
    #[serde(default)]
    pub one_more_api_ms: Option<f64>,
    /// The connection-rate sample with the median rate, and its latency (connect→close).
    #[serde(default)]
    pub conn: Values,
    /// `conns_per_s` of every sample.
    #[serde(default)]
    pub conn_samples: Vec<f64>,
    /// sockperf TCP latency on the path (icc-on variant only).
    #[serde(default)]
    pub lat: Values,
    pub memory: Option<Memory>,
}

/// Writes `value` as pretty JSON to `dir/name`.
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("write {}", p.display()))
}
