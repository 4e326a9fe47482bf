//! The `netd-cni` CNI plugin ([`netd::frontend::cni`]).

fn main() -> std::process::ExitCode {
    netd::frontend::cni::main()
}
