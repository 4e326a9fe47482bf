//! The scaling sweep: N published ports on filler containers (N = 1, 100, 1 000, 10 000,
//! 65 000; S2 stays capped at --proxy-cap), then
//! at each N: the connection rate of a path (several short samples: median and spread), its
//! latency, the time it took to publish the N ports, the time to publish one more, and the
//! memory the publications cost. Systems: both S1 variants, S2 (up to a process cap: one
//! docker-proxy per port) and netd.
//!
//! Two variants:
//! - icc on (the default daemon): P1 (outside → published port of srv) with N published ports.
//! - icc off with links: the fillers also expose their ports and a container "linker" is linked
//!   to every filler, so Docker's ruleset holds 2 N link rules (it writes link rules only with
//!   icc off) ahead of the measured ones; measured on P4link (cli → srv through its link),
//!   whose new connections walk the filter DOCKER chain. S2 has no icc and is not in it.
//!
//! What "publish N" times, per system: S1 one `iptables-restore` of the whole ruleset
//! (faster than Docker's one `iptables` call per rule); S2 starting the N docker-proxy
//! processes one after the other, each until it reports that it listens; netd one
//! `netd publish fillK P:P/tcp ...` call per filler container (1 000 specs each, one port-table
//! entry per port). The containers are attached before, untimed, for every system. "One more":
//! S1 the three `iptables -A` calls Docker makes; S2 one docker-proxy start; netd one
//! `netd publish` call (process start included) and, separately, the same request sent
//! straight to the daemon's API socket.

use crate::config::Config;
use crate::paths::{PathId, Tool, check, measure};
use crate::record::{Status, SweepPoint, write_json};
use crate::report::Stats;
use crate::systems::{Route, System, rotated};
use crate::tools::Values;
use crate::topology::Topology;

/// The sweep's variants: (icc, path measured, label).
pub const VARIANTS: [(bool, PathId, &str); 2] = [
    (true, PathId::P1, "icc on"),
    (false, PathId::P4Link, "icc off, links"),
];

pub fn run(cfg: &Config) -> Vec<SweepPoint> {
    let mut points = vec![];
    let mut k = 0;
    for (icc, path, label) in VARIANTS {
        let ns = if icc {
            &cfg.sweep_ns
        } else {
            &cfg.sweep_icc_off_ns
        };
        for &n in ns {
            let systems: Vec<Box<dyn System>> = cfg
                .systems()
                .into_iter()
                .filter(|s| s.id() != "S0" && s.only_paths().is_none())
                .filter(|s| icc || s.route(path) != Route::NotApplicable)
                .collect();
            for mut sys in rotated(systems, k) {
                let p = if sys.id() == "S2" && n > cfg.proxy_cap {
                    blank(
                        sys.as_ref(),
                        n,
                        label,
                        path,
                        Status::Skipped,
                        format!(
                            "{n} docker-proxy processes is above the cap of {} for this run",
                            cfg.proxy_cap
                        ),
                    )
                } else {
                    point(sys.as_mut(), n, icc, path, label, cfg)
                };
                eprintln!(
                    "[sweep] {:9} {:14} N={:<6} {} publish={:?}s one_more={:?}ms api={:?}ms conn/s={:?} {}",
                    p.system,
                    p.variant,
                    p.n,
                    p.status.label(),
                    p.publish_s.map(|x| (x * 1000.0).round() / 1000.0),
                    p.one_more_ms.map(|x| (x * 100.0).round() / 100.0),
                    p.one_more_api_ms.map(|x| (x * 100.0).round() / 100.0),
                    p.conn_samples.iter().map(|x| x.round()).collect::<Vec<_>>(),
                    crate::report::short_note(&p.note)
                );
                let name = format!(
                    "sweep_{}_{}_{}.json",
                    p.system,
                    if icc { "icc" } else { "noicc" },
                    p.n
                );
                if let Err(e) = write_json(&cfg.out.join("sweep"), &name, &p) {
                    eprintln!("warning: {e:#}");
                }
                points.push(p);
            }
            k += 1;
        }
    }
    points
}

fn blank(
    sys: &dyn System,
    n: u32,
    variant: &str,
    path: PathId,
    status: Status,
    note: String,
) -> SweepPoint {
    SweepPoint {
        system: sys.id().into(),
        n,
        variant: variant.into(),
        path: path.short().into(),
        status,
        note,
        publish_s: None,
        one_more_ms: None,
        one_more_api_ms: None,
        conn: Default::default(),
        conn_samples: vec![],
        lat: Default::default(),
        memory: None,
    }
}

/// The sample with the median connection rate (the lower middle one for an even count).
pub fn median_sample(samples: &[Values]) -> Option<&Values> {
    let rate = |v: &Values| v.get("conns_per_s").copied().unwrap_or(0.0);
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    idx.sort_by(|a, b| rate(&samples[*a]).total_cmp(&rate(&samples[*b])));
    idx.get(samples.len().saturating_sub(1) / 2)
        .map(|i| &samples[*i])
}

fn point(
    sys: &mut dyn System,
    n: u32,
    icc: bool,
    path: PathId,
    label: &str,
    cfg: &Config,
) -> SweepPoint {
    let mut p = blank(sys, n, label, path, Status::Ok, String::new());
    let mut topo = match Topology::build(sys.topo_opts(icc, false)) {
        Ok(t) => t,
        Err(e) => {
            p.status = Status::Error;
            p.note = format!("topology: {e:#}");
            return p;
        }
    };
    let res = (|| -> anyhow::Result<()> {
        sys.setup(&topo)?;
        topo.add_fillers(n, !icc)?;
        if !icc {
            topo.attach_linker()?;
        }
        p.publish_s = Some(sys.publish_fillers(&topo)?.as_secs_f64());
        topo.attach_one_more()?;
        p.one_more_ms = Some(sys.publish_one_more(&topo)?.as_secs_f64() * 1e3);
        p.one_more_api_ms = sys
            .publish_one_more_api(&topo)?
            .map(|d| d.as_secs_f64() * 1e3);
        p.memory = sys.memory(&topo);
        if let Err(e) = check(&topo, sys, path) {
            p.status = Status::FailedCorrectness;
            p.note = format!("{e:#}");
            return Ok(());
        }
        let route = sys.route(path);
        let mut d = cfg.durations;
        d.conn_s = cfg.sweep_conn_s;
        let mut samples = vec![];
        for _ in 0..cfg.sweep_samples.max(1) {
            samples.push(measure(&topo, path, route, Tool::Conn, d)?);
        }
        p.conn_samples = samples
            .iter()
            .filter_map(|v| v.get("conns_per_s").copied())
            .collect();
        p.conn = median_sample(&samples).cloned().unwrap_or_default();
        if icc {
            // One second of ping-pong (after sockperf's 400 ms warm-up) per point.
            let mut d = cfg.durations;
            d.sockperf_s = 1;
            p.lat = measure(&topo, path, route, Tool::TcpLat, d)?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        p.status = Status::Error;
        p.note = format!("{e:#}");
    }
    sys.teardown(&topo);
    drop(topo);
    p
}

/// Median and spread of a point's connection-rate samples.
pub fn conn_stats(p: &SweepPoint) -> Option<Stats> {
    Stats::of(&p.conn_samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(rate: f64) -> Values {
        Values::from([("conns_per_s".to_string(), rate)])
    }

    #[test]
    fn median_sample_is_the_middle_rate() {
        let s = [v(3.0), v(1.0), v(2.0)];
        assert_eq!(median_sample(&s).unwrap()["conns_per_s"], 2.0);
        let s = [v(4.0), v(1.0), v(3.0), v(2.0)];
        assert_eq!(median_sample(&s).unwrap()["conns_per_s"], 2.0);
        assert!(median_sample(&[]).is_none());
    }
}
