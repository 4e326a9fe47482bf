//! `cargo xtask test`: setup, build, lint, then the whole test suite (host unit tests and the
//! end-to-end tests, which need root and create their own network namespaces).

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{cmd, lint, setup, upgrade};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    build()?;
    lint::run()?;
    // The older netd tests/tests/upgrade.rs upgrades from (built once, then cached).
    upgrade::run()?;

    let mut test = cmd::host_cargo("test");
    test.args(args);
    let summary = run_and_summarize(&mut test)?;
    println!("\ntest summary:");
    for line in &summary.lines {
        println!("  {line}");
    }
    println!(
        "summary: {} passed, {} failed, {} skipped",
        summary.passed, summary.failed, summary.ignored
    );
    if !summary.success {
        bail!("tests failed");
    }
    Ok(())
}

/// `cargo build --workspace` (host crates; the agent's build.rs builds the eBPF object).
pub fn build() -> anyhow::Result<()> {
    cmd::run(&mut cmd::host_cargo("build"))
}

#[derive(Default)]
struct Summary {
    /// libtest's `test result: ...` lines, one per test binary.
    lines: Vec<String>,
    passed: u64,
    failed: u64,
    ignored: u64,
    success: bool,
}

/// Runs `cmd`, passing its stdout through while collecting libtest's result lines.
fn run_and_summarize(cmd: &mut Command) -> anyhow::Result<Summary> {
    println!("+ {}", cmd::display(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", cmd::display(cmd)))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut summary = Summary::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(result) = line.strip_prefix("test result: ") {
            summary.passed += count(result, "passed");
            summary.failed += count(result, "failed");
            summary.ignored += count(result, "ignored");
            summary.lines.push(line.clone());
        }
    }
    summary.success = child.wait().context("waiting for cargo test")?.success();
    Ok(summary)
}

/// The number before `word` in `ok. 3 passed; 0 failed; 1 ignored; ...`.
fn count(result: &str, word: &str) -> u64 {
    result
        .split(';')
        .filter_map(|part| part.trim().rsplit_once(' '))
        .find(|(_, w)| *w == word)
        .and_then(|(n, _)| n.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_libtest_result_line() {
        let line =
            "ok. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(count(line, "passed"), 3);
        assert_eq!(count(line, "failed"), 1);
        assert_eq!(count(line, "ignored"), 2);
        assert_eq!(count("FAILED. 10 passed; 0 failed", "passed"), 10);
    }
}
