//! `cargo xtask bench [--quick] [--out DIR]`: setup, a release build of netd and the bench,
//! then `netd-bench` (package netd-bench, bench/), which measures netd against the no-NAT
//! floor, Docker's iptables rules and docker-proxy in private network namespaces and writes raw
//! JSON, a Markdown table (results.md) and PNG plots into DIR.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

use crate::{cmd, setup};

pub fn run(quick: bool, out: Option<PathBuf>, args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    cmd::run(Command::new("cargo").current_dir(cmd::root()).args([
        "build",
        "--release",
        "-p",
        "netd",
        "-p",
        "netd-bench",
    ]))?;
    let release = cmd::root().join("target/release");
    let out = out.unwrap_or_else(|| cmd::root().join("target/bench"));
    let mut bench = Command::new(release.join("netd-bench"));
    bench
        .current_dir(cmd::root())
        .env("NETD_BIN", release.join("netd"))
        .arg("--out")
        .arg(&out);
    if quick {
        bench.arg("--quick");
    }
    bench.args(args);
    cmd::run(&mut bench).context("the benchmark failed (netd-bench, package netd-bench in bench/)")
}
