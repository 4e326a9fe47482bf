//! `cargo xtask setup`: checks each prerequisite and installs only what is missing.
//!
//! 1. the nightly toolchain and its rust-src (for `-Z build-std=core` on bpfel-unknown-none);
//! 2. bpf-linker 0.13.0, built against the nightly's own libLLVM (Debian has no LLVM 23, which
//!    bpf-linker 0.13 defaults to);
//! 3. the Debian packages that the tests, demo and benchmarks use.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, symlink},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd;

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages used by the tests (iproute2, iptables, conntrack, ...), the demo (busybox,
/// socat, docker.io for docker-proxy, podman for the CNI plugin) and the benchmarks (iperf3, sockperf).
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "iperf3",
    "sockperf",
    "bpftool",
    "iptables",
    "nftables",
    "tcpdump",
    "conntrack",
    "ethtool",
    "socat",
    "iputils-ping",
    "docker.io",
    "busybox-static",
    // The real-podman CNI test (tests/tests/cni/): podman 4.3 with its CNI backend.
    "podman",
    "containernetworking-plugins",
    "runc",
    "conmon",
    "util-linux",
    "procps",
];

pub fn run() -> anyhow::Result<()> {
    require_root()?;
    nightly()?;
    rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    Ok(())
}

fn require_root() -> anyhow::Result<()> {
    // /proc/self is owned by the effective uid of the process reading it.
    let euid = fs::metadata("/proc/self")
        .context("reading /proc/self")?
        .uid();
    if euid != 0 {
        bail!(
            "`cargo xtask setup` installs toolchain parts and Debian packages and needs root \
             (running as uid {euid}); run it again as root, e.g. `sudo -E cargo xtask setup`"
        );
    }
    Ok(())
}

fn nightly() -> anyhow::Result<()> {
    let out = cmd::probe(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is not installed; install Rust with rustup first")?;
    // Lines look like `nightly-x86_64-unknown-linux-gnu`; dated ones (`nightly-2025-...`) are
    // other toolchains.
    let present = String::from_utf8_lossy(&out.stdout).lines().any(|line| {
        line.split_whitespace()
            .next()
            .and_then(|name| name.strip_prefix("nightly-"))
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
    });
    if present {
        println!("nightly toolchain: ok");
    } else {
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
        println!("nightly toolchain: installed");
    }
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let out = cmd::probe(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("rustup is not installed")?;
    let present = String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|line| line.trim() == "rust-src" || line.starts_with("rust-src-"));
    if present {
        println!("rust-src (nightly): ok");
    } else {
        cmd::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
        println!("rust-src (nightly): installed");
    }
    Ok(())
}

/// bpf-linker links against `$LLVM_PREFIX/lib/libLLVM.so` at build time and finds the library by
/// its soname (the nightly's file name, e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`) through its
/// RUNPATH `$LLVM_PREFIX/lib` at run time, so that directory holds both names.
fn bpf_linker() -> anyhow::Result<()> {
    let llvm = NightlyLlvm::find()?;
    let prefix = llvm_prefix()?;
    let lib_dir = prefix.join("lib");
    fs::create_dir_all(&lib_dir).with_context(|| format!("creating {}", lib_dir.display()))?;
    for name in ["libLLVM.so", llvm.file_name.as_str()] {
        link(&llvm.path, &lib_dir.join(name))?;
    }

    if let Some(version) = bpf_linker_version()
        && version.contains(BPF_LINKER_VERSION)
    {
        println!("bpf-linker {BPF_LINKER_VERSION}: ok");
        return Ok(());
    }

    // --force: cargo would skip a recorded-but-broken install (for example one built against
    // another nightly's LLVM).
    let feature = format!("llvm-{}", llvm.major);
    cmd::run(
        Command::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args([
                "--locked",
                "--force",
                "--no-default-features",
                "--features",
                &feature,
            ]),
    )?;
    match bpf_linker_version() {
        Some(v) if v.contains(BPF_LINKER_VERSION) => {
            println!("bpf-linker {BPF_LINKER_VERSION}: installed");
            Ok(())
        }
        other => bail!(
            "bpf-linker was built but `bpf-linker --version` does not print {BPF_LINKER_VERSION} \
             (got {other:?}); is cargo's bin directory (~/.cargo/bin) on PATH?"
        ),
    }
}

/// `bpf-linker --version`'s output, or `None` when it is missing or cannot run.
fn bpf_linker_version() -> Option<String> {
    let out = cmd::probe(Command::new("bpf-linker").arg("--version"))?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Where bpf-linker's build finds libLLVM (`LLVM_PREFIX`); its RUNPATH points here too.
fn llvm_prefix() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".local/netd-llvm"))
}

/// The nightly toolchain's own libLLVM shared library.
struct NightlyLlvm {
    path: PathBuf,
    /// e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`, which is also its soname.
    file_name: String,
    /// e.g. `22`, selecting bpf-linker's `llvm-22` feature.
    major: String,
}

impl NightlyLlvm {
    fn find() -> anyhow::Result<Self> {
        let out = cmd::probe(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
            .context("rustc is not installed")?;
        if !out.status.success() {
            bail!(
                "`rustc +nightly --print sysroot` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let lib = Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("lib");
        let entries = fs::read_dir(&lib).with_context(|| format!("listing {}", lib.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", lib.display()))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if let Some(version) = file_name.strip_prefix("libLLVM.so.") {
                let major = version
                    .split(['.', '-'])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if major.is_empty() || !major.chars().all(|c| c.is_ascii_digit()) {
                    bail!("cannot read the LLVM major version from {file_name}");
                }
                return Ok(Self {
                    path: entry.path(),
                    file_name,
                    major,
                });
            }
        }
        bail!(
            "no libLLVM.so.* in {}: the nightly toolchain is incomplete; reinstall it with \
             `rustup toolchain install nightly`",
            lib.display()
        )
    }
}

/// `ln -sf target link`, leaving a correct link alone.
fn link(target: &Path, link: &Path) -> anyhow::Result<()> {
    if fs::read_link(link).is_ok_and(|current| current == target) {
        return Ok(());
    }
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))?;
    println!("linked {} -> {}", link.display(), target.display());
    Ok(())
}

fn debian_packages() -> anyhow::Result<()> {
    let out = cmd::probe(
        Command::new("dpkg-query")
            .args(["-W", "-f", "${Package} ${Status}\\n"])
            .args(DEBIAN_PACKAGES),
    )
    .context("dpkg-query is not available: setup supports Debian-based machines only")?;
    // dpkg-query prints nothing for a package it has never heard of (and exits non-zero).
    let listing = String::from_utf8_lossy(&out.stdout);
    let installed = |pkg: &str| {
        listing.lines().any(|line| {
            line.split_once(' ')
                .is_some_and(|(name, status)| name == pkg && status.ends_with(" installed"))
        })
    };
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    for pkg in DEBIAN_PACKAGES.iter().filter(|p| !missing.contains(p)) {
        println!("{pkg}: ok");
    }
    if missing.is_empty() {
        return Ok(());
    }
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    for pkg in missing {
        println!("{pkg}: installed");
    }
    Ok(())
}
