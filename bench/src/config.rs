//! What a bench run does: repetitions, durations, systems, paths, sweep sizes, output folder.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::paths::{Durations, PathId};
use crate::systems::{self, System};

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub quick: bool,
    pub reps: u32,
    pub durations: Durations,
    pub sweep_ns: Vec<u32>,
    /// Sizes of the sweep's icc-off variant (N published and linked ports).
    pub sweep_icc_off_ns: Vec<u32>,
    /// Connection-rate samples per sweep point, and the length of each.
    pub sweep_samples: u32,
    pub sweep_conn_s: f64,
    /// The most docker-proxy processes the sweep starts (one per port).
    pub proxy_cap: u32,
    pub out: PathBuf,
    /// System ids to run (S0, S1-legacy, S1-nft, S2, S3, the S3 variants, S4).
    pub system_ids: Vec<String>,
    #[serde(skip)]
    pub paths: Vec<PathId>,
}

impl Config {
    /// The default run (about 15 minutes) or the `--quick` smoke run.
    pub fn new(quick: bool, out: PathBuf) -> Config {
        let all_ids = systems::all().iter().map(|s| s.id().to_string()).collect();
        if quick {
            Config {
                quick,
                reps: 1,
                durations: Durations {
                    iperf_s: 1,
                    sockperf_s: 1,
                    conn_s: 0.5,
                },
                sweep_ns: vec![1, 100],
                sweep_icc_off_ns: vec![100],
                sweep_samples: 3,
                sweep_conn_s: 0.3,
                proxy_cap: 100,
                out,
                system_ids: all_ids,
                paths: PathId::ALL.to_vec(),
            }
        } else {
            Config {
                quick,
                reps: 3,
                // sockperf: 1 s is about 0.6 s of ping-pong after its warm-up, tens of
                // thousands of round trips; the 2 s iperf3 runs and the sweep's samples take
                // the rest of the ~15 minutes.
                durations: Durations {
                    iperf_s: 2,
                    sockperf_s: 1,
                    conn_s: 1.0,
                },
                sweep_ns: vec![1, 100, 1_000, 10_000, 65_000],
                sweep_icc_off_ns: vec![1, 10_000],
                sweep_samples: 5,
                sweep_conn_s: 0.5,
                proxy_cap: 1_000,
                out,
                system_ids: all_ids,
                paths: PathId::ALL.to_vec(),
            }
        }
    }

    /// Keeps only the listed systems (comma-separated ids).
    pub fn only_systems(&mut self, list: &str) -> Result<()> {
        let known: Vec<String> = systems::all().iter().map(|s| s.id().to_string()).collect();
        let want: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
        for w in &want {
            if !known.contains(w) {
                bail!("unknown system {w:?}; known: {}", known.join(", "));
            }
        }
        self.system_ids = want;
        Ok(())
    }

    /// Keeps only the listed paths (comma-separated ids, [`PathId::known`]).
    pub fn only_paths(&mut self, list: &str) -> Result<()> {
        let mut v = vec![];
        for w in list.split(',').map(str::trim) {
            match PathId::ALL
                .iter()
                .find(|p| p.short().eq_ignore_ascii_case(w))
            {
                Some(p) => v.push(*p),
                None => bail!("unknown path {w:?}; known: {}", PathId::known()),
            }
        }
        self.paths = v;
        Ok(())
    }

    /// The selected systems, fresh.
    pub fn systems(&self) -> Vec<Box<dyn System>> {
        systems::all()
            .into_iter()
            .filter(|s| self.system_ids.iter().any(|id| id == s.id()))
            .collect()
    }
}
