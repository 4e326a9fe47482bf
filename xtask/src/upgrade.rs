//! `cargo xtask upgrade-base`: builds the netd of the commit the upgrade test starts from
//! (the last one before versioned map layouts) once, and keeps only its binary at
//! target/upgrade/netd-<commit>; tests/tests/upgrade.rs runs it. A second run finds the
//! binary and does nothing, so CI pays the build once per cache.

use std::{fs, process::Command};

use anyhow::Context as _;

use crate::cmd;

/// The commit whose netd pins NETD_CT in layout version 1.
pub const BASE: &str = "4521f4f";

pub fn run() -> anyhow::Result<()> {
    let root = cmd::root();
    let dir = root.join("target/upgrade");
    let bin = dir.join(format!("netd-{BASE}"));
    if bin.exists() {
        println!("upgrade-base: {} is built", bin.display());
        return Ok(());
    }
    // A shallow clone lacks the base commit: say so in a marker the test reads, instead of
    // failing the whole run on a property of the clone.
    let have = Command::new("git")
        .current_dir(&root)
        .args(["cat-file", "-e", &format!("{BASE}^{{commit}}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let marker = dir.join(format!("netd-{BASE}.unavailable"));
    if !have {
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let why = format!("commit {BASE} is not in this clone (shallow clone?)");
        fs::write(&marker, &why).with_context(|| format!("write {}", marker.display()))?;
        println!("upgrade-base: WARNING: {why}; the upgrade test will be skipped");
        return Ok(());
    }
    let _ = fs::remove_file(&marker);
    let src = dir.join(format!("src-{BASE}"));
    let target = dir.join("target");
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(&src).with_context(|| format!("create {}", src.display()))?;
    // A plain export of the tree (no second worktree registered in .git).
    let archive = dir.join(format!("{BASE}.tar"));
    cmd::run(
        Command::new("git")
            .current_dir(&root)
            .args(["archive", "--format=tar", "-o"])
            .arg(&archive)
            .arg(BASE),
    )?;
    cmd::run(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&src),
    )?;
    cmd::run(
        Command::new("cargo")
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--locked", "-p", "netd", "--bin", "netd"]),
    )?;
    fs::copy(target.join("debug/netd"), &bin)
        .with_context(|| format!("copy the built netd to {}", bin.display()))?;
    // Only the binary is needed: the build tree is gigabytes.
    for p in [&src, &target] {
        let _ = fs::remove_dir_all(p);
    }
    let _ = fs::remove_file(&archive);
    println!("upgrade-base: built {}", bin.display());
    Ok(())
}
