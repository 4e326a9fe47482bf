//! The main measurement: every system on every path, repeated, with the order of systems
//! rotated on each repetition. A system is measured on a path only after it passes the path's
//! correctness check; every outcome (ok, n/a, failed check, error) is recorded.

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::Config;
use crate::cpu::{BpfStatsGuard, CpuMeter, prog_costs, prog_counters};
use crate::memory::bpf_held;
use crate::paths::{PathId, check, measure};
use crate::record::{Run, Status, write_json};
use crate::systems::{Route, System, rotated};
use crate::topology::{Topology, catch};

/// Runs the matrix; writes each run to `<out>/runs/` as it is taken.
pub fn run(cfg: &Config) -> Vec<Run> {
    let mut runs = vec![];
    for rep in 0..cfg.reps {
        let systems = rotated(cfg.systems(), rep as usize);
        for mut sys in systems {
            // One topology per wiring: icc on, icc off (P4link), dual stack (the IPv6 paths).
            for (icc, ipv6) in [(true, false), (false, false), (true, true)] {
                let paths: Vec<PathId> = cfg
                    .paths
                    .iter()
                    .copied()
                    .filter(|p| p.icc() == icc && p.ipv6() == ipv6)
                    .filter(|p| sys.only_paths().is_none_or(|only| only.contains(p)))
                    .collect();
                if paths.is_empty() {
                    continue;
                }
                for r in measure_system(sys.as_mut(), icc, ipv6, &paths, rep, cfg) {
                    let name = format!("rep{}_{}_{}_{}.json", r.rep, r.system, r.path, r.tool);
                    if let Err(e) = write_json(&cfg.out.join("runs"), &name, &r) {
                        eprintln!("warning: {e:#}");
                    }
                    runs.push(r);
                }
            }
        }
    }
    runs
}

fn blank(sys: &dyn System, path: PathId, tool: &str, rep: u32, status: Status, note: &str) -> Run {
    Run {
        system: sys.id().into(),
        path: path.short().into(),
        tool: tool.into(),
        rep,
        status,
        note: note.into(),
        values: Default::default(),
        cpu: None,
        bpf: vec![],
    }
}

fn log(rep: u32, r: &Run) {
    let what = if r.status == Status::Ok {
        r.values
            .iter()
            .filter(|(k, _)| {
                ["gbps", "pps", "p50_us", "p99_us", "conns_per_s"].contains(&k.as_str())
            })
            .map(|(k, v)| format!("{k}={v:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        format!(
            "{}: {}",
            r.status.label(),
            crate::report::short_note(&r.note)
        )
    };
    eprintln!(
        "[rep {}] {:9} {:6} {:7} {what}",
        rep + 1,
        r.system,
        r.path,
        r.tool
    );
}

/// BPF programs to account to netd: those its daemon holds and those attached (TCX) in the
/// host namespace.
fn netd_prog_ids(t: &Topology) -> Vec<u32> {
    let mut ids = BTreeSet::new();
    if let Some(pid) = t.daemon.pid() {
        ids.extend(bpf_held(pid).progs);
    }
    if let Ok(m) = catch("tcx query", || netd_tests::bpf::tcx_programs(&t.world.host)) {
        ids.extend(m.into_values().flatten());
    }
    ids.into_iter().collect()
}

fn measure_system(
    sys: &mut dyn System,
    icc: bool,
    ipv6: bool,
    paths: &[PathId],
    rep: u32,
    cfg: &Config,
) -> Vec<Run> {
    let mut out = vec![];
    let fail_all = |status, note: String, out: &mut Vec<Run>, sys: &dyn System| {
        for p in paths {
            for tool in p.tools() {
                let r = blank(sys, *p, tool.short(), rep, status, &note);
                log(rep, &r);
                out.push(r);
            }
        }
    };
    if let Some(why) = sys.unavailable() {
        fail_all(Status::NotApplicable, why, &mut out, sys);
        return out;
    }
    let mut topo = match Topology::build(sys.topo_opts(icc, ipv6)) {
        Ok(t) => t,
        Err(e) => {
            fail_all(Status::Error, format!("topology: {e:#}"), &mut out, sys);
            return out;
        }
    };
    if let Err(e) = sys.setup(&topo) {
        fail_all(Status::Error, format!("setup: {e:#}"), &mut out, sys);
        sys.teardown(&topo);
        return out;
    }
    let is_netd = sys.netd_dataplane();
    let _stats = if is_netd {
        BpfStatsGuard::enable()
            .map_err(|e| eprintln!("warning: no BPF run-time stats: {e:#}"))
            .ok()
    } else {
        None
    };
    for &path in paths {
        let route = sys.route(path);
        if route == Route::NotApplicable {
            for tool in path.tools() {
                let note = format!("{} does not handle {}", sys.id(), path.label());
                let r = blank(sys, path, tool.short(), rep, Status::NotApplicable, &note);
                log(rep, &r);
                out.push(r);
            }
            continue;
        }
        if let Err(e) = check(&topo, sys, path) {
            for tool in path.tools() {
                let r = blank(
                    sys,
                    path,
                    tool.short(),
                    rep,
                    Status::FailedCorrectness,
                    &format!("{e:#}"),
                );
                log(rep, &r);
                out.push(r);
            }
            continue;
        }
        for &tool in path.tools() {
            let mut pids = sys.pids(&topo);
            pids.extend(topo.server_pids());
            let prog_ids = if is_netd {
                netd_prog_ids(&topo)
            } else {
                vec![]
            };
            let before = prog_counters(&prog_ids);
            let meter = CpuMeter::start(pids);
            let res = measure(&topo, path, route, tool, cfg.durations);
            let cpu = meter.finish();
            let after = prog_counters(&prog_ids);
            let mut r = blank(sys, path, tool.short(), rep, Status::Ok, "");
            match res {
                Ok(v) => {
                    r.values = v;
                    r.cpu = Some(cpu);
                    r.bpf = prog_costs(&before, &after);
                }
                Err(e) => {
                    r.status = Status::Error;
                    r.note = format!("{e:#}");
                }
            }
            if let Err(e) = topo.servers_alive() {
                r.note.push_str(&format!(" (server died: {e:#})"));
            }
            log(rep, &r);
            out.push(r);
        }
    }
    sys.teardown(&topo);
    drop(topo);
    out
}

/// Writes `runs` (all of them) to `<dir>/runs.json`.
pub fn save_all(dir: &Path, runs: &[Run]) {
    if let Err(e) = write_json(dir, "runs.json", &runs) {
        eprintln!("warning: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systems::Memory;
    use crate::topology::TopoOpts;
    use std::time::Duration;

    /// A system whose prerequisite is missing; building its topology would need root.
    struct Missing;

    impl System for Missing {
        fn id(&self) -> &'static str {
            "S4"
        }
        fn unavailable(&self) -> Option<String> {
            Some("S4 needs dockerd".into())
        }
        fn topo_opts(&self, icc: bool, _ipv6: bool) -> TopoOpts {
            TopoOpts::v4("ebpf", icc, false)
        }
        fn setup(&mut self, _t: &Topology) -> anyhow::Result<()> {
            panic!("an unavailable system is never set up")
        }
        fn route(&self, _path: PathId) -> Route {
            Route::Published
        }
        fn nat_and_filters(&self) -> bool {
            true
        }
        fn pids(&self, _t: &Topology) -> Vec<u32> {
            vec![]
        }
        fn publish_fillers(&mut self, _t: &Topology) -> anyhow::Result<Duration> {
            anyhow::bail!("not in the sweep")
        }
        fn publish_one_more(&mut self, _t: &Topology) -> anyhow::Result<Duration> {
            anyhow::bail!("not in the sweep")
        }
        fn memory(&self, _t: &Topology) -> Option<Memory> {
            None
        }
    }

    #[test]
    fn an_unavailable_system_is_na_on_every_tool_of_its_paths() {
        let cfg = Config::new(true, std::env::temp_dir());
        let runs = measure_system(
            &mut Missing,
            true,
            false,
            &[PathId::P1, PathId::P6],
            0,
            &cfg,
        );
        // P1: tcp1, tcp2, tcp_lat, conn; P6: udp64, udp_lat.
        assert_eq!(runs.len(), 6);
        assert!(
            runs.iter()
                .all(|r| r.status == Status::NotApplicable && r.note == "S4 needs dockerd")
        );
    }
}
