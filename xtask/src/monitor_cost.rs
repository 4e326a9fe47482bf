//! `cargo xtask bench --monitor-cost [--base-obj OBJ]`: what `netd monitor`'s events cost the
//! datapath. Runs the ignored test `monitor_cost` of netd/tests/monitor_datapath/, which
//! loads the programs in a private network namespace and times, per TC program and for a
//! packet it passes (or drops), BPF_PROG_TEST_RUN ns/packet with NETD_MONITOR off and on
//! (best of 5 rounds), a second "off" run as the noise figure, and, with `--base-obj`, the same
//! for another object on the same maps; it prints the ratios and every program's
//! `verified_insns`.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use crate::{cmd, setup};

pub fn run(base_obj: Option<&Path>) -> anyhow::Result<()> {
    setup::run()?;
    let mut c = Command::new("cargo");
    c.current_dir(cmd::root()).args([
        "test",
        "-p",
        "netd",
        "--test",
        "monitor_datapath",
        "--",
        "--ignored",
        "--exact",
        "monitor_cost",
        "--nocapture",
    ]);
    if let Some(obj) = base_obj {
        let obj = obj
            .canonicalize()
            .with_context(|| format!("--base-obj {}", obj.display()))?;
        c.env("NETD_MONITOR_BASE_OBJ", obj);
    }
    cmd::run(&mut c).context("the monitor cost measurement failed (netd/tests/monitor_datapath/)")
}
