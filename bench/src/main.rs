//! `netd-bench`: runs the benchmark (see the netd_bench crate docs); `cargo xtask bench` builds
//! everything in release mode and runs this.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use netd_bench::config::Config;
use netd_bench::record::write_json;
use netd_bench::{matrix, plot, report, sweep};

#[derive(Parser)]
#[command(
    name = "netd-bench",
    about = "netd vs Docker's iptables rules vs docker-proxy vs the floor"
)]
struct Cli {
    /// A short smoke run (1 repetition, 1 s tools, sweep N = 1 and 100, icc-off sweep N = 100).
    #[arg(long)]
    quick: bool,
    /// Results directory (raw JSON per run, results.md, PNG plots).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Only these systems (comma-separated: S0,S1-legacy,S1-nft,S2,S3,S4, or an S3 variant).
    #[arg(long)]
    systems: Option<String>,
    /// Only these paths (comma-separated: P1,P2,P3,P4,P4link,P5,P6,P1v6,P5v6,P6v6).
    #[arg(long)]
    paths: Option<String>,
    /// Repetitions of the matrix (default 3, or 1 with --quick).
    #[arg(long)]
    reps: Option<u32>,
    /// Sweep sizes (comma-separated), e.g. 1,100,1000,10000.
    #[arg(long)]
    sweep: Option<String>,
    /// Sizes of the sweep's icc-off variant with link rules (comma-separated; empty: none).
    #[arg(long)]
    sweep_icc_off: Option<String>,
    /// Connection-rate samples per sweep point.
    #[arg(long)]
    sweep_samples: Option<u32>,
    /// Skip the matrix (sweep only).
    #[arg(long)]
    no_matrix: bool,
    /// Skip the sweep.
    #[arg(long)]
    no_sweep: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("netd-bench creates network namespaces and needs root");
    }
    let mut cfg = Config::new(cli.quick, cli.out.clone());
    if let Some(s) = &cli.systems {
        cfg.only_systems(s)?;
    }
    if let Some(p) = &cli.paths {
        cfg.only_paths(p)?;
    }
    if let Some(r) = cli.reps {
        cfg.reps = r;
    }
    let sizes = |s: &str| -> Result<Vec<u32>> {
        Ok(s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?)
    };
    if let Some(s) = &cli.sweep {
        cfg.sweep_ns = sizes(s)?;
    }
    if let Some(s) = &cli.sweep_icc_off {
        cfg.sweep_icc_off_ns = sizes(s)?;
    }
    if let Some(n) = cli.sweep_samples {
        cfg.sweep_samples = n;
    }
    if cli.no_sweep {
        cfg.sweep_ns.clear();
        cfg.sweep_icc_off_ns.clear();
    }
    std::fs::create_dir_all(&cfg.out)?;
    for sub in ["runs", "sweep"] {
        let d = cfg.out.join(sub);
        if d.exists() {
            std::fs::remove_dir_all(&d)?;
        }
    }
    write_json(&cfg.out, "config.json", &cfg)?;
    let t0 = Instant::now();
    let runs = if cli.no_matrix {
        vec![]
    } else {
        matrix::run(&cfg)
    };
    matrix::save_all(&cfg.out, &runs);
    let points = sweep::run(&cfg);
    write_json(&cfg.out, "sweep.json", &points)?;
    let goals = report::goals(&runs, &points);

    let mut md = String::new();
    let _ = writeln!(
        md,
        "netd-bench{}: {} repetition(s), systems in rotated order ({}), {:.0} s in all.\n",
        if cfg.quick { " --quick" } else { "" },
        cfg.reps,
        cfg.system_ids.join(", "),
        t0.elapsed().as_secs_f64()
    );
    md.push_str("### Paths: median (min–max) over repetitions, and ratios\n\n");
    md.push_str(&report::table(&runs));
    let variants = report::variants_table(&runs);
    if !variants.is_empty() {
        md.push_str("\n### netd variants (P1, P6, P1v6, P6v6)\n\n");
        md.push_str(&variants);
    }
    md.push_str("\n### Goals\n\n");
    md.push_str(&report::goals_table(&goals));
    md.push_str("\n### Scaling sweep\n\n");
    md.push_str(&report::sweep_table(&points));
    md.push_str(
        "\n### CPU per TCP 1-stream run (median; busy and softirq are machine-wide, all CPUs)\n\n",
    );
    md.push_str(&report::cpu_table(&runs));
    md.push_str("\n### netd BPF programs\n\n");
    md.push_str(&report::bpf_table(&runs));
    if !points.is_empty() {
        md.push_str("\n### Plots\n\n");
        for (name, r) in plot::sweep_plots(&cfg.out, &points) {
            match r {
                Ok(()) => {
                    let _ = writeln!(md, "- {name}");
                }
                Err(e) => {
                    let _ = writeln!(md, "- {name}: not drawn ({e:#})");
                }
            }
        }
    }
    let problems: Vec<String> = runs
        .iter()
        .filter(|r| r.status != netd_bench::record::Status::Ok && r.tool != "tcp2")
        .map(|r| {
            format!(
                "- {} {} {}: {} — {}",
                r.system,
                r.path,
                r.tool,
                r.status.label(),
                report::short_note(&r.note)
            )
        })
        .collect();
    if !problems.is_empty() {
        md.push_str("\n### Not scored\n\n");
        let mut seen = std::collections::BTreeSet::new();
        for p in problems {
            if seen.insert(p.clone()) {
                md.push_str(&p);
                md.push('\n');
            }
        }
    }
    std::fs::write(cfg.out.join("results.md"), &md)?;
    write_json(
        &cfg.out,
        "summary.json",
        &serde_json::json!({
            "config": cfg,
            "goals": goals.iter().map(|g| serde_json::json!({"goal": g.goal, "verdict": g.verdict, "detail": g.detail})).collect::<Vec<_>>(),
            "runs": runs,
            "sweep": points,
        }),
    )?;
    println!("{md}");
    println!("results: {}", cfg.out.display());
    Ok(())
}
