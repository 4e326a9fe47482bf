//! PNG plots of the sweep (plotters, bitmap backend; text drawn with DejaVu Sans through
//! ab_glyph, read from the system's fonts at run time).

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use plotters::prelude::*;

use crate::record::{Status, SweepPoint};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        let Ok(bytes) = std::fs::read(FONT) else {
            return false;
        };
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("cannot load {FONT} (install fonts-dejavu-core)"))
    }
}

type Series = (String, Vec<(f64, f64)>);

/// A line plot with a logarithmic N axis (and optionally a logarithmic y axis).
pub fn plot(file: &Path, title: &str, y_label: &str, series: &[Series], log_y: bool) -> Result<()> {
    register_font()?;
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    if pts.is_empty() {
        return Err(anyhow!("no data for {title}"));
    }
    let x_max = pts.iter().map(|p| p.0).fold(1.0, f64::max) * 1.5;
    let y_max = pts.iter().map(|p| p.1).fold(0.0, f64::max) * 1.2;
    let y_min_pos = pts
        .iter()
        .map(|p| p.1)
        .filter(|y| *y > 0.0)
        .fold(f64::MAX, f64::min);
    let root = BitMapBackend::new(file, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let draw = |root: &DrawingArea<BitMapBackend, _>| -> Result<()> {
        let mut b = ChartBuilder::on(root);
        b.caption(title, ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80);
        let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc("N published ports (log)")
                    .y_desc(y_label)
                    .draw()
                    .map_err(|e| anyhow!("{e}"))?;
                for (i, (name, data)) in series.iter().enumerate() {
                    let c = colors[i % colors.len()];
                    let data: Vec<(f64, f64)> = data
                        .iter()
                        .copied()
                        .filter(|p| !log_y || p.1 > 0.0)
                        .collect();
                    chart
                        .draw_series(LineSeries::new(data.clone(), c.stroke_width(2)))
                        .map_err(|e| anyhow!("{e}"))?
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
                    chart
                        .draw_series(data.iter().map(|p| Circle::new(*p, 4, c.filled())))
                        .map_err(|e| anyhow!("{e}"))?;
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| anyhow!("{e}"))?;
            }};
        }
        if log_y {
            let lo = (y_min_pos / 2.0).max(1e-6);
            body!(
                b.build_cartesian_2d(
                    (0.8f64..x_max).log_scale(),
                    (lo..y_max.max(lo * 10.0)).log_scale()
                )
                .map_err(|e| anyhow!("{e}"))?
            );
        } else {
            body!(
                b.build_cartesian_2d((0.8f64..x_max).log_scale(), 0f64..y_max.max(1e-9))
                    .map_err(|e| anyhow!("{e}"))?
            );
        }
        Ok(())
    };
    draw(&root)?;
    root.present()
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("write {}", file.display()))
}

fn series_of(points: &[SweepPoint], f: impl Fn(&SweepPoint) -> Option<f64>) -> Vec<Series> {
    let mut systems: Vec<String> = points.iter().map(|p| p.system.clone()).collect();
    systems.sort();
    systems.dedup();
    systems
        .into_iter()
        .map(|s| {
            let mut v: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.system == s)
                .filter_map(|p| Some((f64::from(p.n), f(p)?)))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            (s, v)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Writes the sweep plots into `dir`; returns the files written (and why others were not).
pub fn sweep_plots(dir: &Path, points: &[SweepPoint]) -> Vec<(String, Result<()>)> {
    let ok = |p: &&SweepPoint| p.status == Status::Ok;
    // Every plot but the connection rate shows the icc-on variant; the connection rate shows
    // the icc-off one too, as "<system> icc off" (P4link).
    let passing: Vec<SweepPoint> = points
        .iter()
        .filter(ok)
        .filter(|p| p.variant == "icc on" || p.variant.is_empty())
        .cloned()
        .collect();
    let both: Vec<SweepPoint> = points
        .iter()
        .filter(ok)
        .cloned()
        .map(|mut p| {
            if p.variant.starts_with("icc off") {
                p.system = format!("{} icc off ({})", p.system, p.path);
            }
            p
        })
        .collect();
    let mut out = vec![];
    let mut one = |name: &str, title: &str, y: &str, s: Vec<Series>, log_y: bool| {
        let r = plot(&dir.join(name), title, y, &s, log_y);
        out.push((name.to_string(), r));
    };
    one(
        "sweep_connrate.png",
        "new connections/s vs N (median of the samples)",
        "connections/s",
        series_of(&both, |p| {
            crate::report::Stats::of(&p.conn_samples)
                .map(|s| s.median)
                .or_else(|| p.conn.get("conns_per_s").copied())
        }),
        false,
    );
    one(
        "sweep_latency_p99.png",
        "P1 TCP ping-pong p99 latency vs N",
        "µs",
        series_of(&passing, |p| p.lat.get("p99_us").copied()),
        false,
    );
    one(
        "sweep_publish.png",
        "time to publish N ports",
        "seconds (log)",
        series_of(points, |p| p.publish_s.filter(|x| *x > 0.0)),
        true,
    );
    one(
        "sweep_one_more.png",
        "time to publish one more port at N",
        "ms (log)",
        series_of(points, |p| p.one_more_ms.filter(|x| *x > 0.0)),
        true,
    );
    one(
        "sweep_memory.png",
        "memory for N publications (RSS + BPF maps)",
        "MB (log)",
        series_of(points, |p| {
            p.memory
                .as_ref()
                .map(|m| (m.rss_bytes + m.bpf_map_bytes) as f64 / 1e6)
                .filter(|x| *x > 0.0)
        }),
        true,
    );
    out
}
