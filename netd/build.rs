//! Builds the eBPF object (netd-ebpf's `netd-ebpf` binary, for bpfel-unknown-none with the
//! nightly toolchain and bpf-linker) and leaves it in OUT_DIR, where `src/dataplane` embeds it.
//! Run `cargo xtask setup` once on a fresh machine to install the nightly's rust-src and
//! bpf-linker; without them this script stops with one line saying so, instead of failing deep
//! inside aya-build.

use std::path::PathBuf;
use std::process::Command;

fn main() -> anyhow::Result<()> {
    if let Err(missing) = ebpf_toolchain() {
        // One line the user can act on; aya-build would fail later with "rust-src ... does not
        // exist" or a linker error far from the cause.
        eprintln!("error: {missing}: run `cargo xtask setup` once, then build again");
        std::process::exit(1);
    }
    git_commit();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../netd-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netd-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

/// Checks what aya-build needs: the nightly toolchain with its rust-src, and bpf-linker.
fn ebpf_toolchain() -> Result<(), String> {
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .ok_or("the nightly toolchain (for the eBPF programs) is not installed")?;
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Err(format!(
            "the nightly toolchain has no rust-src ({} is missing)",
            sysroot.join("lib/rustlib/src/rust/library").display()
        ));
    }
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !linker.map(|o| o.status.success()).unwrap_or(false) {
        return Err("bpf-linker is not installed".into());
    }
    Ok(())
}

/// `NETD_GIT_COMMIT` for `netd version`: the checkout's HEAD, rebuilt when HEAD moves.
fn git_commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NETD_GIT_COMMIT={commit}");
    for f in ["HEAD", "index"] {
        if let Some(p) = git(&["rev-parse", "--git-path", f]) {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p);
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &r]) {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p);
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}
