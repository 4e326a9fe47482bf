//! The `netd` binary: the CLI front end ([`netd::frontend::cli`]).

fn main() -> std::process::ExitCode {
    netd::frontend::cli::main()
}
