//! The summary of a run: medians and min–max spreads, the Markdown table of ratios
//! (netd/S1, netd/S2, netd/S0), the goals checked against the same run's numbers, and the sweep
//! table. Plots are in [`crate::plot`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::paths::{PathId, Tool};
use crate::record::{Run, Status, SweepPoint};

mod goals;
pub use goals::{Goal, goals, goals_table, scaling_goal};

/// Median and spread of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// `self / other` as (median ratio, lowest, highest) over the two spreads.
    pub fn ratio(&self, other: &Stats) -> Option<(f64, f64, f64)> {
        if other.median <= 0.0 || other.min <= 0.0 {
            return None;
        }
        Some((
            self.median / other.median,
            self.min / other.max,
            self.max / other.min,
        ))
    }
}

/// One row of the table: a value a tool produces on a path.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub path: PathId,
    pub tool: Tool,
    pub key: &'static str,
    pub label: &'static str,
    pub higher_is_better: bool,
}

/// The rows, in table order.
pub fn metrics() -> Vec<Metric> {
    let mut v = vec![];
    for path in PathId::ALL {
        for tool in path.tools() {
            let rows: &[(&str, &str, bool)] = match tool {
                Tool::Tcp1 => &[("gbps", "TCP 1 stream, Gbit/s", true)],
                Tool::Tcp2 => &[("gbps", "TCP 2 streams, Gbit/s", true)],
                Tool::UdpPps => &[("pps", "UDP 64 B, packets/s", true)],
                Tool::TcpLat => &[
                    ("p50_us", "TCP ping-pong p50, µs", false),
                    ("p99_us", "TCP ping-pong p99, µs", false),
                ],
                Tool::UdpLat => &[
                    ("p50_us", "UDP ping-pong p50, µs", false),
                    ("p99_us", "UDP ping-pong p99, µs", false),
                ],
                Tool::Conn => &[("conns_per_s", "new connections/s", true)],
            };
            for (key, label, hib) in rows {
                v.push(Metric {
                    path,
                    tool: *tool,
                    key,
                    label,
                    higher_is_better: *hib,
                });
            }
        }
    }
    v
}

pub const SYSTEMS: [&str; 6] = ["S0", "S1-legacy", "S1-nft", "S2", "S3", "S4"];

/// A table cell: numbers when some run succeeded, else why not.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Value(Stats),
    Status(Status),
    Missing,
}

/// Collects the cell of `system` for `m`.
pub fn cell(runs: &[Run], system: &str, m: &Metric) -> Cell {
    let mine: Vec<&Run> = runs
        .iter()
        .filter(|r| r.system == system && r.path == m.path.short() && r.tool == m.tool.short())
        .collect();
    let vals: Vec<f64> = mine
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| r.values.get(m.key).copied())
        .collect();
    if let Some(s) = Stats::of(&vals) {
        return Cell::Value(s);
    }
    match mine.first() {
        Some(r) => Cell::Status(r.status),
        None => Cell::Missing,
    }
}

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_cell(c: &Cell) -> String {
    match c {
        Cell::Value(s) if s.n > 1 => {
            format!(
                "{} ({}–{})",
                fmt_num(s.median),
                fmt_num(s.min),
                fmt_num(s.max)
            )
        }
        Cell::Value(s) => fmt_num(s.median),
        Cell::Status(st) => st.label().to_string(),
        Cell::Missing => "–".into(),
    }
}

/// The better of the two S1 variants for `m` (by median).
fn best_s1(runs: &[Run], m: &Metric) -> Option<Stats> {
    let a = cell(runs, "S1-legacy", m);
    let b = cell(runs, "S1-nft", m);
    match (a, b) {
        (Cell::Value(a), Cell::Value(b)) => {
            let a_better = (a.median >= b.median) == m.higher_is_better;
            Some(if a_better { a } else { b })
        }
        (Cell::Value(a), _) => Some(a),
        (_, Cell::Value(b)) => Some(b),
        _ => None,
    }
}

fn fmt_ratio(netd: &Cell, other: Option<Stats>) -> String {
    match (netd, other) {
        (Cell::Value(n), Some(o)) => match n.ratio(&o) {
            Some((r, lo, hi)) if n.n > 1 || o.n > 1 => format!("{r:.2} ({lo:.2}–{hi:.2})"),
            Some((r, _, _)) => format!("{r:.2}"),
            None => "–".into(),
        },
        _ => "–".into(),
    }
}

fn value(c: Cell) -> Option<Stats> {
    match c {
        Cell::Value(s) => Some(s),
        _ => None,
    }
}

/// The Markdown table of medians (min–max) and ratios; a row no system ran on is left out
/// (e.g. the other paths of a `--paths` subset). When S4 ran, its column follows S3's and
/// its ratios against docker-proxy (S2) and netd alone (S3) end the row.
pub fn table(runs: &[Run]) -> String {
    let s4 = runs.iter().any(|r| r.system == "S4");
    let mut s = String::new();
    s.push_str(
        "| path | metric | S0 floor | S1 iptables-legacy | S1 iptables-nft | S2 docker-proxy | S3 netd |",
    );
    s.push_str(if s4 { " S4 docker+netd |" } else { "" });
    s.push_str(" netd/S1 | netd/S2 | netd/S0 |");
    s.push_str(if s4 { " S4/S2 | S4/S3 |\n" } else { "\n" });
    s.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    s.push_str(if s4 { " --- | --- | --- |\n" } else { "\n" });
    for m in metrics() {
        let cells: Vec<Cell> = SYSTEMS.iter().map(|sys| cell(runs, sys, &m)).collect();
        if cells.iter().all(|c| *c == Cell::Missing) {
            continue;
        }
        let netd = &cells[4];
        let _ = write!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            m.path.label(),
            m.label,
            fmt_cell(&cells[0]),
            fmt_cell(&cells[1]),
            fmt_cell(&cells[2]),
            fmt_cell(&cells[3]),
            fmt_cell(netd),
        );
        if s4 {
            let _ = write!(s, " {} |", fmt_cell(&cells[5]));
        }
        let _ = write!(
            s,
            " {} | {} | {} |",
            fmt_ratio(netd, best_s1(runs, &m)),
            fmt_ratio(netd, value(cells[3].clone())),
            fmt_ratio(netd, value(cells[0].clone())),
        );
        if s4 {
            let _ = write!(
                s,
                " {} | {} |",
                fmt_ratio(&cells[5], value(cells[3].clone())),
                fmt_ratio(&cells[5], value(netd.clone())),
            );
        }
        s.push('\n');
    }
    s
}

/// CPU per TCP-1-stream run. `busy` and `softirq` are machine-wide (/proc/stat, all CPUs,
/// whatever else runs on the shared machine counts too); `clients` is the rusage of the client
/// processes; `system processes` the CPU time of the system's own processes and the servers.
pub fn cpu_table(runs: &[Run]) -> String {
    let mut s = String::from(
        "| path | system | machine busy CPU-s (all CPUs) | machine softirq CPU-s (all CPUs) | client processes CPU-s | system + server processes CPU-s |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for path in PathId::ALL {
        for sys in SYSTEMS {
            let cpus: Vec<_> = runs
                .iter()
                .filter(|r| {
                    r.system == sys
                        && r.path == path.short()
                        && r.tool == Tool::Tcp1.short()
                        && r.status == Status::Ok
                })
                .filter_map(|r| r.cpu.clone())
                .collect();
            if cpus.is_empty() {
                continue;
            }
            let med = |f: fn(&crate::cpu::CpuUsage) -> f64| {
                Stats::of(&cpus.iter().map(f).collect::<Vec<_>>())
                    .map(|x| fmt_num(x.median))
                    .unwrap_or_default()
            };
            let _ = writeln!(
                s,
                "| {} | {sys} | {} | {} | {} | {} |",
                path.short(),
                med(|c| c.busy_s),
                med(|c| c.softirq_s),
                med(|c| c.clients_s),
                med(|c| c.servers_s)
            );
        }
    }
    s
}

/// The netd variants (systems measured on a subset of paths, e.g. the fast path toggled)
/// against the default daemon (S3) and the floor, one row per metric of their paths. Empty
/// when there is no variant.
pub fn variants_table(runs: &[Run]) -> String {
    let mut variants: Vec<String> = runs
        .iter()
        .map(|r| r.system.clone())
        .filter(|s| s.starts_with("S3-"))
        .collect();
    variants.sort();
    variants.dedup();
    if variants.is_empty() {
        return String::new();
    }
    let mut s = String::from("| path | metric | S0 floor | S3 netd (default) |");
    for v in &variants {
        let _ = write!(s, " {v} | {v}/S3 |");
    }
    s.push_str("\n| --- | --- | --- | --- |");
    for _ in &variants {
        s.push_str(" --- | --- |");
    }
    s.push('\n');
    for m in metrics() {
        let mine: Vec<Cell> = variants.iter().map(|v| cell(runs, v, &m)).collect();
        if mine.iter().all(|c| *c == Cell::Missing) {
            continue;
        }
        let s3 = cell(runs, "S3", &m);
        let _ = write!(
            s,
            "| {} | {} | {} | {} |",
            m.path.label(),
            m.label,
            fmt_cell(&cell(runs, "S0", &m)),
            fmt_cell(&s3)
        );
        for c in &mine {
            let _ = write!(
                s,
                " {} | {} |",
                fmt_cell(c),
                fmt_ratio(c, value(s3.clone()))
            );
        }
        s.push('\n');
    }
    s
}

/// Mean ns per run of each netd BPF program, per system on netd's dataplane (S3, S4) and
/// path (median over runs).
pub fn bpf_table(runs: &[Run]) -> String {
    let mut per: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    for r in runs
        .iter()
        .filter(|r| (r.system == "S3" || r.system == "S4") && r.status == Status::Ok)
    {
        for p in &r.bpf {
            per.entry((r.system.clone(), r.path.clone(), p.name.clone()))
                .or_default()
                .push(p.ns_per_run);
        }
    }
    if per.is_empty() {
        return "No netd BPF program ran during a passing measurement.\n".into();
    }
    let mut s = String::from(
        "| system | path | program | ns/packet (median) |\n| --- | --- | --- | --- |\n",
    );
    for ((system, path, prog), v) in per {
        if let Some(st) = Stats::of(&v) {
            let _ = writeln!(s, "| {system} | {path} | {prog} | {:.0} |", st.median);
        }
    }
    s
}

/// The sweep as tables, one per variant (icc on / icc off with links).
pub fn sweep_table(points: &[SweepPoint]) -> String {
    let mut variants: Vec<(&str, &str)> = points
        .iter()
        .map(|p| (p.variant.as_str(), p.path.as_str()))
        .collect();
    variants.dedup();
    variants.sort();
    variants.dedup();
    let mut s = String::new();
    for (variant, path) in variants.into_iter().rev() {
        let _ = writeln!(s, "{variant}, measured on {path}:\n");
        s.push_str(
            "| system | N | status | publish N | one more | one more (API) | conn/s median (min–max) | conn p50 / p99 µs | sockperf p50 / p99 µs | processes | RSS | BPF maps |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        let mut pts: Vec<&SweepPoint> = points.iter().filter(|p| p.variant == variant).collect();
        pts.sort_by(|a, b| (a.system.as_str(), a.n).cmp(&(b.system.as_str(), b.n)));
        let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
        for p in pts {
            let opt = |x: Option<f64>, unit: &str| {
                x.map(|v| format!("{}{unit}", fmt_num(v)))
                    .unwrap_or("–".into())
            };
            let (procs, rss, maps) = match &p.memory {
                Some(m) => (
                    m.processes.to_string(),
                    mb(m.rss_bytes),
                    mb(m.bpf_map_bytes),
                ),
                None => ("–".into(), "–".into(), "–".into()),
            };
            let pair = |v: &crate::tools::Values| match (v.get("p50_us"), v.get("p99_us")) {
                (Some(a), Some(b)) => format!("{} / {}", fmt_num(*a), fmt_num(*b)),
                _ => "–".into(),
            };
            let status = if p.note.is_empty() || p.status == Status::Ok {
                p.status.label().to_string()
            } else {
                format!("{}: {}", p.status.label(), short_note(&p.note))
            };
            let conn = match Stats::of(&p.conn_samples) {
                Some(st) => fmt_cell(&Cell::Value(st)),
                None => opt(p.conn.get("conns_per_s").copied(), ""),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.system,
                p.n,
                status,
                match p.publish_s {
                    Some(x) if x < 1.0 => format!("{} ms", fmt_num(x * 1e3)),
                    x => opt(x, " s"),
                },
                opt(p.one_more_ms, " ms"),
                opt(p.one_more_api_ms, " ms"),
                conn,
                pair(&p.conn),
                pair(&p.lat),
                procs,
                rss,
                maps
            );
        }
        s.push('\n');
    }
    s
}

/// The first line of a note, cut to 80 characters, with `|` escaped for Markdown.
pub fn short_note(note: &str) -> String {
    let first = note.lines().next().unwrap_or("");
    let cut: String = first.chars().take(80).collect();
    cut.replace('|', "\\|")
}

fn metric(path: PathId, tool: Tool, key: &str) -> Metric {
    metrics()
        .into_iter()
        .find(|m| m.path == path && m.tool == tool && m.key == key)
        .expect("known metric")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::Values;

    fn run(system: &str, path: PathId, tool: Tool, key: &str, v: f64) -> Run {
        Run {
            system: system.into(),
            path: path.short().into(),
            tool: tool.short().into(),
            rep: 0,
            status: Status::Ok,
            note: String::new(),
            values: Values::from([(key.to_string(), v)]),
            cpu: None,
            bpf: vec![],
        }
    }

    #[test]
    fn median_and_spread() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[f64::NAN, 5.0]).unwrap().n, 1);
    }

    #[test]
    fn ratio_spread_takes_the_extremes() {
        let a = Stats::of(&[9.0, 10.0, 11.0]).unwrap();
        let b = Stats::of(&[4.0, 5.0, 6.0]).unwrap();
        let (r, lo, hi) = a.ratio(&b).unwrap();
        assert_eq!(r, 2.0);
        assert_eq!(lo, 1.5);
        assert_eq!(hi, 11.0 / 4.0);
        assert_eq!(a.ratio(&Stats::of(&[0.0]).unwrap()), None);
    }

    #[test]
    fn table_shows_status_when_no_run_passed() {
        let mut runs = vec![
            run("S0", PathId::P1, Tool::Tcp1, "gbps", 20.0),
            run("S1-legacy", PathId::P1, Tool::Tcp1, "gbps", 10.0),
            run("S1-nft", PathId::P1, Tool::Tcp1, "gbps", 12.0),
            run("S3", PathId::P1, Tool::Tcp1, "gbps", 18.0),
        ];
        let mut failed = run("S2", PathId::P1, Tool::Tcp1, "gbps", 0.0);
        failed.status = Status::FailedCorrectness;
        runs.push(failed);
        let t = table(&runs);
        let row = t.lines().find(|l| l.contains("TCP 1 stream")).unwrap();
        assert!(row.contains("| failed check |"), "{row}");
        // netd/S1 uses the better S1 variant (nft, 12): 18/12 = 1.5; netd/S0 = 0.9.
        assert!(row.contains("| 1.50 | – | 0.90 |"), "{row}");
    }

    #[test]
    fn ipv6_rows_have_ratios_and_paths_not_run_are_left_out() {
        let runs = vec![
            run("S0", PathId::P1v6, Tool::Tcp1, "gbps", 20.0),
            run("S1-nft", PathId::P1v6, Tool::Tcp1, "gbps", 10.0),
            run("S3", PathId::P1v6, Tool::Tcp1, "gbps", 18.0),
            run("S3", PathId::P6v6, Tool::UdpPps, "pps", 100.0),
        ];
        let t = table(&runs);
        let row = t.lines().find(|l| l.starts_with("| P1v6")).unwrap();
        assert!(row.contains("TCP 1 stream"), "{row}");
        assert!(row.contains("| 1.80 | – | 0.90 |"), "{row}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("| P6v6") && l.contains("packets/s"))
        );
        // Header, separator and the two rows that have data (no P1–P6, no P1v6 conn/s).
        assert_eq!(t.lines().count(), 4, "{t}");
    }

    #[test]
    fn s4_gets_its_column_and_ratios_only_when_it_ran() {
        let mut runs = vec![
            run("S2", PathId::P1, Tool::Tcp1, "gbps", 5.0),
            run("S3", PathId::P1, Tool::Tcp1, "gbps", 20.0),
        ];
        let t = table(&runs);
        assert!(!t.contains("S4"), "{t}");
        assert_eq!(t.lines().nth(1).unwrap().matches("---").count(), 10);
        runs.push(run("S4", PathId::P1, Tool::Tcp1, "gbps", 15.0));
        let mut na = run("S4", PathId::P6, Tool::UdpPps, "pps", 0.0);
        na.status = Status::NotApplicable;
        runs.push(na);
        let t = table(&runs);
        let head: Vec<&str> = t.lines().next().unwrap().split(" | ").collect();
        assert_eq!(head[7], "S4 docker+netd", "{t}");
        assert!(
            t.lines().next().unwrap().ends_with("| S4/S2 | S4/S3 |"),
            "{t}"
        );
        assert_eq!(t.lines().nth(1).unwrap().matches("---").count(), 13);
        let row = t.lines().find(|l| l.contains("TCP 1 stream")).unwrap();
        // S3 20 | S4 15 | netd/S1 – | netd/S2 4.00 | netd/S0 – | S4/S2 3.00 | S4/S3 0.75.
        assert!(
            row.ends_with("| 20.0 | 15.0 | – | 4.00 | – | 3.00 | 0.75 |"),
            "{row}"
        );
        let row = t.lines().find(|l| l.contains("packets/s")).unwrap();
        assert!(row.contains("| n/a |"), "{row}");
        assert!(row.ends_with("| – | – |"), "{row}");
    }

    #[test]
    fn best_s1_respects_direction() {
        let runs = vec![
            run("S1-legacy", PathId::P1, Tool::TcpLat, "p50_us", 30.0),
            run("S1-nft", PathId::P1, Tool::TcpLat, "p50_us", 20.0),
        ];
        let m = metric(PathId::P1, Tool::TcpLat, "p50_us");
        assert_eq!(best_s1(&runs, &m).unwrap().median, 20.0);
    }

    #[test]
    fn goals_report_missing_data_honestly() {
        let g = goals(&[], &[]);
        assert_eq!(g.len(), 7);
        assert!(g.iter().all(|x| x.verdict == "not measured"));
        let runs = vec![
            run("S0", PathId::P1, Tool::Tcp1, "gbps", 20.0),
            run("S1-nft", PathId::P1, Tool::Tcp1, "gbps", 15.0),
            run("S3", PathId::P1, Tool::Tcp1, "gbps", 19.6),
        ];
        let g = goals(&runs, &[]);
        assert_eq!(g[0].verdict, "met", "{:?}", g[0]);
    }
}
