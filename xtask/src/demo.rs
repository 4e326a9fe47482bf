//! `cargo xtask demo`: setup, build, then the demo binary from the netd-tests package, which
//! runs netd and a few "containers" in private network namespaces.

use std::process::Command;

use anyhow::Context as _;

use crate::{cmd, setup, test};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    test::build()?;
    cmd::run(
        Command::new("cargo")
            .current_dir(cmd::root())
            .args(["run", "-p", "netd-tests", "--bin", "netd-demo", "--"])
            .args(args),
    )
    .context(
        "the demo failed (it is the `netd-demo` binary of the netd-tests package, tests/src/bin/)",
    )
}
