//! CLI conveniences generated from the clap definitions: shell completions, man pages, and
//! `netd version` (the git commit the binary was built from and the hashes of the embedded
//! eBPF objects).

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::frontend::cli::args::Cli;

/// `netd completion SHELL`: the completion script.
pub fn completion(shell: clap_complete::Shell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "netd", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `netd.1` and one page per subcommand (`netd-attach.1`, `netd-network-create.1`, ...)
/// into `dest`; returns the files written.
pub fn man_pages(dest: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dest)?;
    clap_mangen::generate_to(Cli::command(), dest)?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dest)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "1")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("netd"))
        })
        .collect();
    written.sort();
    Ok(written)
}

/// What `netd version` prints.
#[derive(Debug, Serialize)]
pub struct VersionInfo {
    pub version: &'static str,
    /// `git rev-parse HEAD` when the binary was built (`unknown` outside a checkout).
    pub git_commit: &'static str,
    /// SHA-256 of the embedded TC/XDP object.
    pub ebpf_object_sha256: String,
    /// SHA-256 of the embedded socket-hook object.
    pub sock_object_sha256: String,
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn version() -> VersionInfo {
    VersionInfo {
        version: env!("CARGO_PKG_VERSION"),
        git_commit: env!("NETD_GIT_COMMIT"),
        ebpf_object_sha256: sha256(crate::dataplane::EBPF_OBJECT),
        sock_object_sha256: sha256(crate::dataplane::sock::SOCK_OBJECT),
    }
}

impl std::fmt::Display for VersionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "netd {}", self.version)?;
        writeln!(f, "git commit:         {}", self.git_commit)?;
        writeln!(f, "eBPF object sha256: {}", self.ebpf_object_sha256)?;
        write!(f, "sock object sha256: {}", self.sock_object_sha256)
    }
}
