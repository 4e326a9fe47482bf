//! The goals checked against the same run's numbers, and their Markdown table.

use std::fmt::Write as _;

use super::{Cell, Metric, Stats, best_s1, cell, fmt_cell, fmt_num, metric, value};
use crate::paths::{PathId, Tool};
use crate::record::{Run, Status, SweepPoint};

/// One goal's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    pub goal: &'static str,
    pub verdict: &'static str,
    pub detail: String,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

/// The goals, against this run's numbers.
pub fn goals(runs: &[Run], sweep: &[SweepPoint]) -> Vec<Goal> {
    let mut g = vec![];
    let not = |goal, why: String| Goal {
        goal,
        verdict: "not measured",
        detail: why,
    };
    let med = |sys: &str, m: &Metric| value(cell(runs, sys, m)).map(|s| s.median);
    let why = |sys: &str, m: &Metric| match cell(runs, sys, m) {
        Cell::Status(st) => format!("{sys} on {}: {}", m.path.short(), st.label()),
        _ => format!("{sys} on {}: no data", m.path.short()),
    };

    // P1 throughput.
    let m = metric(PathId::P1, Tool::Tcp1, "gbps");
    let goal = "P1 throughput ≥ 0.97 × S0 and ≥ S1";
    match (med("S3", &m), med("S0", &m), best_s1(runs, &m)) {
        (Some(n), Some(f), Some(s1)) => g.push(Goal {
            goal,
            verdict: verdict(n >= 0.97 * f && n >= s1.median),
            detail: format!(
                "netd {n:.2} Gbit/s = {:.2} × S0, {:.2} × best S1",
                n / f,
                n / s1.median
            ),
        }),
        (None, _, _) => g.push(not(goal, why("S3", &m))),
        _ => g.push(not(goal, "S0 or S1 has no P1 number".into())),
    }

    // Connection rate vs N: icc on (P1), and icc off with link rules (P4link).
    for (variant, path, goal) in [
        (
            "icc on",
            "P1",
            "P1 conn rate ≥ 1.3 × S1 at N = 10 000, flat (±5 %) from N = 1",
        ),
        (
            "icc off, links",
            "P4link",
            "(added) icc off: P4link conn rate with N ports linked ≥ 1.3 × S1 at N = 10 000, flat (±5 %)",
        ),
    ] {
        g.push(scaling_goal(sweep, variant, path, goal));
    }

    // P2/P3 vs docker-proxy.
    for path in [PathId::P2, PathId::P3] {
        let goal = match path {
            PathId::P2 => "P2 throughput ≥ 1.3 × S2 and p50 latency ≤ 0.6 × S2",
            _ => "P3 throughput ≥ 1.3 × S2 and p50 latency ≤ 0.6 × S2",
        };
        let tput = metric(path, Tool::Tcp1, "gbps");
        let lat = metric(path, Tool::TcpLat, "p50_us");
        match (
            med("S3", &tput),
            med("S2", &tput),
            med("S3", &lat),
            med("S2", &lat),
        ) {
            (Some(nt), Some(pt), Some(nl), Some(pl)) => g.push(Goal {
                goal,
                verdict: verdict(nt >= 1.3 * pt && nl <= 0.6 * pl),
                detail: format!(
                    "throughput {:.2} × S2, p50 latency {:.2} × S2",
                    nt / pt,
                    nl / pl
                ),
            }),
            (None, ..) => g.push(not(goal, why("S3", &tput))),
            _ => g.push(not(goal, why("S2", &tput))),
        }
    }

    // Publishing and memory at N = 10 000.
    let netd10k = sweep.iter().find(|p| {
        p.system == "S3" && p.n == 10_000 && p.status == Status::Ok && p.variant == "icc on"
    });
    let goal = "publish 10 000 ports < 1 s, one more < 1 ms";
    match netd10k.and_then(|p| Some((p.publish_s?, p.one_more_ms?, p.one_more_api_ms))) {
        Some((all, one, api)) => g.push(Goal {
            goal,
            verdict: match api {
                _ if all >= 1.0 => "missed",
                _ if one < 1.0 => "met",
                Some(a) if a < 1.0 => "met through the API (CLI: missed)",
                _ => "missed",
            },
            detail: format!(
                "{all:.3} s for 10 000 (10 `netd publish` calls of 1 000 specs); one more: {one:.2} ms \
                 with `netd publish` (process start included){}",
                api.map(|a| format!(", {a:.2} ms as one API request"))
                    .unwrap_or_default()
            ),
        }),
        None => g.push(not(
            goal,
            "no passing netd sweep point at N = 10 000".into(),
        )),
    }
    let goal = "netd RSS < 50 MB at N = 10 000";
    let netd_mem = sweep
        .iter()
        .find(|p| p.system == "S3" && p.n == 10_000 && p.variant == "icc on")
        .and_then(|p| p.memory.clone());
    match netd_mem {
        Some(m) => g.push(Goal {
            goal,
            verdict: verdict(m.rss_bytes < 50_000_000),
            detail: format!(
                "RSS {:.1} MB, BPF maps {:.1} MB",
                m.rss_bytes as f64 / 1e6,
                m.bpf_map_bytes as f64 / 1e6
            ),
        }),
        None => g.push(not(goal, "no netd sweep point at N = 10 000".into())),
    }
    g
}

pub fn goals_table(goals: &[Goal]) -> String {
    let mut s = String::from("| goal | verdict | numbers |\n| --- | --- | --- |\n");
    for x in goals {
        let detail: String = x
            .detail
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(400)
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            x.goal,
            x.verdict,
            detail.replace('|', "\\|")
        );
    }
    s
}

/// The connection rate samples of `system` at `n` in `variant` (passing points only).
fn conn_at(sweep: &[SweepPoint], variant: &str, system: &str, n: u32) -> Option<Stats> {
    sweep
        .iter()
        .find(|p| p.system == system && p.n == n && p.status == Status::Ok && p.variant == variant)
        .and_then(|p| {
            Stats::of(&p.conn_samples)
                .or_else(|| p.conn.get("conns_per_s").and_then(|x| Stats::of(&[*x])))
        })
}

/// "≥ 1.3 × best S1 at N = 10 000 and flat (±5 %) from N = 1", on sample medians, with the
/// samples' spread so the reader can tell a drift from noise.
pub fn scaling_goal(sweep: &[SweepPoint], variant: &str, path: &str, goal: &'static str) -> Goal {
    let s1 = ["S1-legacy", "S1-nft"]
        .into_iter()
        .filter_map(|s| conn_at(sweep, variant, s, 10_000))
        .max_by(|a, b| a.median.total_cmp(&b.median));
    match (
        conn_at(sweep, variant, "S3", 1),
        conn_at(sweep, variant, "S3", 10_000),
        s1,
    ) {
        (Some(a), Some(b), Some(s1)) => {
            let drift = (b.median - a.median) / a.median;
            let spread = |x: &Stats| (x.max - x.min) / x.median;
            let overlap = a.min <= b.max && b.min <= a.max;
            Goal {
                goal,
                verdict: verdict(b.median >= 1.3 * s1.median && drift.abs() <= 0.05),
                detail: format!(
                    "{path}: netd {} /s at 10 000 = {:.2} × best S1 ({} /s); {:+.1} % vs N = 1 ({} /s); \
                     samples (n = {}) spread {:.0} % at N = 1 and {:.0} % at 10 000, ranges {}",
                    fmt_cell(&Cell::Value(b)),
                    b.median / s1.median,
                    fmt_num(s1.median),
                    100.0 * drift,
                    fmt_cell(&Cell::Value(a)),
                    b.n,
                    100.0 * spread(&a),
                    100.0 * spread(&b),
                    if overlap { "overlap" } else { "do not overlap" }
                ),
            }
        }
        _ => Goal {
            goal,
            verdict: "not measured",
            detail: format!("no passing netd (or S1) sweep point ({variant}) at N = 1 and 10 000"),
        },
    }
}

#[cfg(test)]
mod sweep_goal_tests {
    use super::*;
    use crate::report::sweep_table;

    fn pt(system: &str, n: u32, samples: &[f64]) -> SweepPoint {
        SweepPoint {
            system: system.into(),
            n,
            variant: "icc on".into(),
            path: "P1".into(),
            status: Status::Ok,
            note: String::new(),
            publish_s: None,
            one_more_ms: None,
            one_more_api_ms: None,
            conn: Default::default(),
            conn_samples: samples.to_vec(),
            lat: Default::default(),
            memory: None,
        }
    }

    #[test]
    fn flatness_uses_sample_medians_and_reports_spread() {
        let sweep = vec![
            pt("S3", 1, &[100.0, 90.0, 110.0]),
            pt("S3", 10_000, &[103.0, 80.0, 120.0]),
            pt("S1-nft", 10_000, &[50.0, 60.0, 70.0]),
            pt("S1-legacy", 10_000, &[70.0, 75.0, 80.0]),
        ];
        let g = scaling_goal(&sweep, "icc on", "P1", "x");
        assert_eq!(g.verdict, "met", "{g:?}");
        assert!(g.detail.contains("+3.0 %"), "{}", g.detail);
        assert!(g.detail.contains("1.37 × best S1"), "{}", g.detail);
        assert!(g.detail.contains("overlap"), "{}", g.detail);
        let sweep = vec![
            pt("S3", 1, &[100.0]),
            pt("S3", 10_000, &[90.0]),
            pt("S1-nft", 10_000, &[10.0]),
        ];
        assert_eq!(scaling_goal(&sweep, "icc on", "P1", "x").verdict, "missed");
        assert_eq!(
            scaling_goal(&sweep, "icc off, links", "P4link", "x").verdict,
            "not measured"
        );
    }

    #[test]
    fn sweep_tables_per_variant_show_sample_spread() {
        let mut off = pt("S3", 1, &[5.0, 6.0, 7.0]);
        off.variant = "icc off, links".into();
        off.path = "P4link".into();
        let t = sweep_table(&[pt("S3", 1, &[1.0, 2.0, 3.0]), off]);
        assert!(t.contains("icc on, measured on P1"), "{t}");
        assert!(t.contains("icc off, links, measured on P4link"), "{t}");
        assert!(t.contains("| 2.00 (1.00–3.00) |"), "{t}");
        let mut p = pt("S3", 10_000, &[1.0]);
        p.publish_s = Some(0.3712);
        p.one_more_api_ms = Some(0.8);
        let t2 = sweep_table(&[p]);
        assert!(t2.contains("| 371 ms | – | 0.80 ms |"), "{t2}");
        assert!(t.find("icc on").unwrap() < t.find("icc off").unwrap());
    }
}
