//! The CLI front end: [`args`] is the grammar (clap), [`commands`] turns each client subcommand
//! into API calls through [`client`], [`output`] formats the answers, and [`config`] turns
//! `netd daemon`'s flags into the engine's configuration.

use std::process::ExitCode;

use clap::Parser;

pub mod args;
pub mod client;
pub mod commands;
pub mod config;
pub mod output;

use args::{Cli, Command};

/// The `netd` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = match Cli::socket_path(&cli.host) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match cli.command {
        Command::Daemon(args) => {
            init_logging(&args.log_level);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match rt.block_on(crate::frontend::daemon::run(*args, socket)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e.to_string()),
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

fn init_logging(level: &str) {
    // netlink-packet-route warns about every attribute newer than itself; that is noise here.
    let spec = if level.contains('=') {
        level.to_string()
    } else {
        format!("{level},netlink_packet_route=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|_| {
        eprintln!("netd: invalid --log-level {level:?}; using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
