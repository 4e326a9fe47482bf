//! `cargo xtask`: the project's developer commands. Each subcommand prints every command it
//! runs, so what it does can be repeated by hand.

mod bench;
mod cmd;
mod demo;
mod ebpf;
mod elf;
mod lint;
mod man;
mod monitor_cost;
mod setup;
mod test;
mod upgrade;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netd developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: the nightly's rust-src, bpf-linker, and the Debian packages
    /// that the tests, demo and benchmarks use. Needs root; does nothing when all is present.
    Setup,
    /// Build the eBPF object into target/ebpf/netd.bpf.o and list its programs and maps.
    BuildEbpf {
        /// Build with the release profile (what the agent embeds).
        #[arg(long)]
        release: bool,
    },
    /// Man pages (netd.1, netd-SUBCOMMAND.1) from the CLI's definitions into --dest (default
    /// target/man).
    Man {
        #[arg(long)]
        dest: Option<std::path::PathBuf>,
    },
    /// rustfmt check, clippy on the host crates, and clippy on the eBPF crate in its own pass.
    Lint,
    /// Build the netd of commit 4521f4f (NETD_CT layout version 1) once into
    /// target/upgrade/netd-4521f4f for the upgrade test; does nothing when it is there.
    UpgradeBase,
    /// setup, build, lint, upgrade-base, then `cargo test` over the workspace.
    Test {
        /// Passed on to `cargo test`; give test-harness flags after a second `--`, as in
        /// `cargo xtask test -- -- --test-threads=1`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// setup, release build, then the benchmark (`netd-bench` from bench/): netd vs the no-NAT
    /// floor, Docker's iptables rules and docker-proxy; results in --out (default target/bench).
    Bench {
        /// A short smoke run (about two minutes).
        #[arg(long)]
        quick: bool,
        /// Results directory.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Instead: the cost of `netd monitor`'s events, per TC program (BPF_PROG_TEST_RUN
        /// ns/packet with the switch off and on, and verified_insns), in a private netns.
        #[arg(long)]
        monitor_cost: bool,
        /// With --monitor-cost: also measure this eBPF object (say, a build without the
        /// monitor's code: `cargo xtask build-ebpf --release` on another commit) on the same maps.
        #[arg(long, value_name = "OBJ", requires = "monitor_cost")]
        base_obj: Option<std::path::PathBuf>,
        /// Passed on to `netd-bench` (e.g. `-- --systems S1-nft,S3 --paths P1`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Boot Debian 12's 6.1 kernel (no TCX, no bpffs mounted) under qemu/KVM with the debug
    /// netd in a busybox initramfs: netd must load, attach through netlink and serve a
    /// published port there. Downloads qemu and the kernel package (installs no kernel); qemu runs with TCG.
    VmSmoke,
    /// setup, build, then run the demo (`netd-demo` from the netd-tests package).
    Demo {
        /// Passed on to `netd-demo`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::BuildEbpf { release } => ebpf::build(release).map(drop),
        Task::Lint => lint::run(),
        Task::Man { dest } => man::run(dest),
        Task::Test { args } => test::run(&args),
        Task::UpgradeBase => upgrade::run(),
        Task::Demo { args } => demo::run(&args),
        Task::VmSmoke => vm::run(),
        Task::Bench {
            monitor_cost: true,
            base_obj,
            ..
        } => monitor_cost::run(base_obj.as_deref()),
        Task::Bench {
            quick, out, args, ..
        } => bench::run(quick, out, &args),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Task};

    #[test]
    fn bench_takes_quick_out_and_extra_args() {
        let cli = Cli::try_parse_from([
            "xtask",
            "bench",
            "--quick",
            "--out",
            "/tmp/r",
            "--",
            "--systems",
            "S3",
        ])
        .unwrap();
        let Task::Bench {
            quick, out, args, ..
        } = cli.task
        else {
            panic!("not the bench task")
        };
        assert!(quick);
        assert_eq!(out.unwrap(), std::path::Path::new("/tmp/r"));
        assert_eq!(args, ["--systems", "S3"]);
    }

    #[test]
    fn test_args_pass_through_to_cargo_test() {
        let cli = Cli::try_parse_from([
            "xtask",
            "test",
            "--",
            "-p",
            "netd",
            "--",
            "--test-threads=1",
        ])
        .unwrap();
        let Task::Test { args } = cli.task else {
            panic!("not the test task")
        };
        assert_eq!(args, ["-p", "netd", "--", "--test-threads=1"]);
    }
}
