//! The CLI front end: [`args`] is the grammar (clap), [`commands`] turns each client subcommand
//! into API calls through [`client`], [`output`] formats the answers, and [`config`] turns
//! `netd daemon`'s flags into the engine's configuration.

use std::process::ExitCode;

use clap::Parser;

pub mod args;
pub mod client;
pub mod commands;
pub mod config;
pub mod monitor;
pub mod netopts;
pub mod output;

use args::{Cli, Command};

/// The `netd` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::ops::progress::set_quiet(cli.quiet);
    let socket = match Cli::socket_path(&cli.host) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match cli.command {
        Command::Daemon(_) => {
            // The command line with the config file laid over it (see ops::config_file).
            let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
            let settings = match crate::ops::config_file::load(&argv) {
                Ok(s) => s,
                Err(e) => return fail(&e.to_string()),
            };
            crate::ops::log::init(&settings.args.log_level);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match rt.block_on(crate::frontend::daemon::run(settings, argv, socket)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Doctor {
            interfaces,
            bpffs,
            cgroup,
            json,
        } => {
            use crate::ops::doctor;
            let f = doctor::run_checks(&doctor::DoctorArgs {
                interfaces,
                bpffs,
                cgroup,
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&f).unwrap_or_default());
            } else {
                print!("{}", doctor::format(&f));
            }
            if f.iter().any(|x| x.level == doctor::Level::Fail) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Completion { shell } => {
            print!("{}", crate::ops::clitools::completion(shell));
            ExitCode::SUCCESS
        }
        Command::Version { json } => {
            let v = crate::ops::clitools::version();
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("{v}");
            }
            ExitCode::SUCCESS
        }
        Command::Man { dest } => match crate::ops::clitools::man_pages(&dest) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!(
                "cannot write man pages into {}: {e}",
                dest.display()
            )),
        },
        Command::Cni {
            action:
                args::CniAction::Install {
                    dir,
                    conf_dir,
                    network,
                    name,
                    plugin,
                    force,
                    runtime_reserves_ports,
                },
        } => {
            let spec = crate::frontend::cni::install::InstallSpec {
                dir,
                conf_dir,
                network,
                name,
                socket: cli.host.clone(),
                plugin,
                force,
                runtime_reserves_ports,
            };
            match crate::frontend::cni::install::install(&spec) {
                Ok(paths) => {
                    for p in paths {
                        println!("{}", p.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::DockerPlugin {
            command: args::DockerPluginCommand::Install { dest },
        } => match crate::frontend::docker::install_spec(&dest, &cli.host) {
            Ok(p) => {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::InstallUnit { dest, bin, force } => {
            let bin = match bin.map(Ok).unwrap_or_else(std::env::current_exe) {
                Ok(b) => std::path::absolute(&b).unwrap_or(b),
                Err(e) => return fail(&format!("cannot find the netd binary: {e}")),
            };
            match crate::ops::unit::install(&dest, &bin, force) {
                Ok(p) => {
                    println!("{}", p.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Monitor(args) => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match rt.block_on(monitor::run(args, &socket)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        cmd => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match rt.block_on(commands::run(cmd, &socket)) {
                Ok(out) => {
                    if !out.is_empty() {
                        println!("{out}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("netd: {msg}");
    ExitCode::FAILURE
}
