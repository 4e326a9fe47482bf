//! `cargo xtask build-ebpf`: builds netd-ebpf for bpfel-unknown-none the way aya-build 0.2.0
//! does for the agent (nightly, `-Z build-std=core`, the same rustflags), into its own target
//! directory, and copies the object to target/ebpf/netd.bpf.o.

use std::{fs, path::PathBuf, process::Command};

use anyhow::Context as _;

use crate::{cmd, elf};

pub const TARGET: &str = "bpfel-unknown-none";
const PACKAGE: &str = "netd-ebpf";

/// `rustup run nightly cargo <subcommand> -p netd-ebpf --target bpfel-unknown-none
/// -Z build-std=core`, with aya-build 0.2.0's rustflags and target/ebpf-build as target dir.
pub fn nightly_cargo(subcommand: &str) -> Command {
    let root = cmd::root();
    let mut cmd = Command::new("rustup");
    cmd.current_dir(&root)
        .args(["run", "nightly", "cargo", subcommand, "-p", PACKAGE])
        .args(["--target", TARGET, "-Z", "build-std=core", "--target-dir"])
        .arg(root.join("target/ebpf-build"))
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags());
    // As aya-build does: a RUSTC set by an outer cargo would pick the wrong toolchain.
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER"] {
        cmd.env_remove(key);
    }
    cmd
}

/// aya-build 0.2.0's flags, joined by 0x1f as `CARGO_ENCODED_RUSTFLAGS` requires. aya-ebpf reads
/// `bpf_target_arch` to pick the kernel's register layout: the host's architecture.
fn rustflags() -> String {
    let arch = match std::env::consts::ARCH {
        arch if arch.starts_with("riscv64") => "riscv64",
        arch => arch,
    };
    [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ]
    .join("\x1f")
}

/// Builds the object, copies it to target/ebpf/netd.bpf.o, lists its programs and maps, and
/// returns its path.
pub fn build(release: bool) -> anyhow::Result<PathBuf> {
    let root = cmd::root();
    let mut cargo = nightly_cargo("build");
    cargo.arg("--bins");
    if release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo).context(
        "building the eBPF object failed; `cargo xtask setup` installs rust-src and bpf-linker",
    )?;

    let profile = if release { "release" } else { "debug" };
    let built = root
        .join("target/ebpf-build")
        .join(TARGET)
        .join(profile)
        .join(PACKAGE);
    let out_dir = root.join("target/ebpf");
    let object = out_dir.join("netd.bpf.o");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    fs::copy(&built, &object)
        .with_context(|| format!("copying {} to {}", built.display(), object.display()))?;
    println!("wrote {}", object.display());

    let bytes = fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    match elf::Contents::parse(&bytes) {
        Ok(contents) => {
            println!("programs ({}):", contents.programs.len());
            for p in &contents.programs {
                println!("  {:<24} section {}", p.name, p.section);
            }
            println!("maps ({}):", contents.maps.len());
            for m in &contents.maps {
                println!("  {}", m.name);
            }
        }
        Err(e) => println!("(could not list programs and maps: {e})"),
    }
    Ok(object)
}
