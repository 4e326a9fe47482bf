//! The scaling sweep: N published ports on filler containers (N = 1, 100, 1 000, 10 000), then
//! at each N: P1 connection rate and latency, the time it took to publish the N ports, the time
//! to publish one more, and the memory the publications cost. Systems: both S1 variants, S2
//! (up to a process cap: one docker-proxy per port) and netd.

use crate::config::Config;
use crate::paths::{Durations, PathId, Tool, check, measure};
use crate::record::{Status, SweepPoint, write_json};
use crate::systems::{Route, System, rotated};
use crate::topology::Topology;

pub fn run(cfg: &Config) -> Vec<SweepPoint> {
    let mut points = vec![];
    for (i, &n) in cfg.sweep_ns.iter().enumerate() {
        let systems: Vec<Box<dyn System>> = cfg
            .systems()
            .into_iter()
            .filter(|s| s.id() != "S0")
            .collect();
        for mut sys in rotated(systems, i) {
            let p = if sys.id() == "S2" && n > cfg.proxy_cap {
                blank(
                    sys.as_ref(),
                    n,
                    Status::Skipped,
                    format!(
                        "{n} docker-proxy processes is above the cap of {} for this run",
                        cfg.proxy_cap
                    ),
                )
            } else {
                point(sys.as_mut(), n, cfg.durations)
            };
            eprintln!(
                "[sweep] {:9} N={:<6} {} publish={:?}s one_more={:?}ms conn/s={:?} {}",
                p.system,
                p.n,
                p.status.label(),
                p.publish_s.map(|x| (x * 1000.0).round() / 1000.0),
                p.one_more_ms.map(|x| (x * 100.0).round() / 100.0),
                p.conn.get("conns_per_s").map(|x| x.round()),
                crate::report::short_note(&p.note)
            );
            let name = format!("sweep_{}_{}.json", p.system, p.n);
            if let Err(e) = write_json(&cfg.out.join("sweep"), &name, &p) {
                eprintln!("warning: {e:#}");
            }
            points.push(p);
        }
    }
    points
}

fn blank(sys: &dyn System, n: u32, status: Status, note: String) -> SweepPoint {
    SweepPoint {
        system: sys.id().into(),
        n,
        status,
        note,
        publish_s: None,
        one_more_ms: None,
        conn: Default::default(),
        lat: Default::default(),
        memory: None,
    }
}

fn point(sys: &mut dyn System, n: u32, d: Durations) -> SweepPoint {
    let mut p = blank(sys, n, Status::Ok, String::new());
    let mut topo = match Topology::build(sys.topo_opts(true)) {
        Ok(t) => t,
        Err(e) => {
            p.status = Status::Error;
            p.note = format!("topology: {e:#}");
            return p;
        }
    };
    let res = (|| -> anyhow::Result<()> {
        sys.setup(&topo)?;
        let attach = topo.add_fillers(n)?;
        p.publish_s = Some(sys.publish_fillers(&topo, attach)?.as_secs_f64());
        let (took, _ip) = topo.attach_one_more()?;
        p.one_more_ms = Some(sys.publish_one_more(&topo, took)?.as_secs_f64() * 1e3);
        p.memory = sys.memory(&topo);
        if let Err(e) = check(&topo, sys, PathId::P1) {
            p.status = Status::FailedCorrectness;
            p.note = format!("{e:#}");
            return Ok(());
        }
        let route = sys.route(PathId::P1);
        debug_assert_ne!(route, Route::NotApplicable);
        p.conn = measure(&topo, PathId::P1, route, Tool::Conn, d)?;
        p.lat = measure(&topo, PathId::P1, route, Tool::TcpLat, d)?;
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
