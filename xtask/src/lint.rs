//! `cargo xtask lint`: rustfmt, clippy on the host crates, and clippy on the eBPF crate in its
//! own pass (it only builds for bpfel-unknown-none). Runs every check and reports all failures.

use std::process::Command;

use anyhow::bail;

use crate::{cmd, ebpf};

pub fn run() -> anyhow::Result<()> {
    let mut fmt = Command::new("cargo");
    fmt.current_dir(cmd::root())
        .args(["fmt", "--all", "--check"]);

    let mut host = cmd::host_cargo("clippy");
    host.args(["--all-targets", "--", "-D", "warnings"]);

    let mut bpf = ebpf::nightly_cargo("clippy");
    bpf.args(["--", "-D", "warnings"]);

    let failed: Vec<String> = [fmt, host, bpf]
        .iter_mut()
        .filter_map(|c| cmd::run(c).err().map(|e| e.to_string()))
        .collect();
    if !failed.is_empty() {
        bail!("lint failed:\n  {}", failed.join("\n  "));
    }
    println!("lint: ok");
    Ok(())
}
