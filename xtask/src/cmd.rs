//! Running commands: every command is printed before it runs, and a failure names the command.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask's parent directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// `cargo <subcommand> --workspace --exclude netd-ebpf`, run from the workspace root with the
/// host toolchain. netd-ebpf is `no_std` for bpfel-unknown-none and cannot build for the host;
/// the agent's build.rs builds it, and `build-ebpf`/`lint` handle it in their own passes.
pub fn host_cargo(subcommand: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .arg(subcommand)
        .args(["--workspace", "--exclude", "netd-ebpf"]);
    cmd
}

/// Runs `cmd` with inherited stdio; fails when it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    println!("+ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its output, whatever its exit status; `None` when the program
/// cannot be started (usually: not installed).
pub fn probe(cmd: &mut Command) -> Option<Output> {
    cmd.output().ok()
}

/// A shell-like rendering of `cmd`, with the environment variables it sets in front.
pub fn display(cmd: &Command) -> String {
    let envs = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(v?))));
    let program = std::iter::once(quote(cmd.get_program()));
    let args = cmd.get_args().map(quote);
    envs.chain(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("{s:?}")
    }
}
