//! `cargo xtask man [--dest DIR]`: man pages generated from netd's clap definitions
//! (clap_mangen, through the hidden `netd man --dest DIR`), default target/man.

use std::path::PathBuf;
use std::process::Command;

use crate::cmd;

pub fn run(dest: Option<PathBuf>) -> anyhow::Result<()> {
    let root = cmd::root();
    let dest = dest.unwrap_or_else(|| root.join("target/man"));
    cmd::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "-p", "netd", "--bin", "netd"]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    cmd::run(
        Command::new(target.join("debug/netd"))
            .arg("man")
            .arg("--dest")
            .arg(&dest),
    )
}
