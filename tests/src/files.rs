//! Temporary directories and parsers for the files netd writes (hosts, resolv.conf).

use std::path::{Path, PathBuf};

use crate::unique;

/// A directory under the system temp dir, unique to this run, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(unique("netd-test-files-"));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The entries of a hosts file: (address, names), comments and blank lines skipped.
pub fn hosts_entries(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = it.next()?.to_string();
            Some((addr, it.map(str::to_string).collect()))
        })
        .collect()
}

/// Addresses a hosts file gives `name`.
pub fn hosts_lookup(text: &str, name: &str) -> Vec<String> {
    hosts_entries(text)
        .into_iter()
        .filter(|(_, names)| names.iter().any(|n| n == name))
        .map(|(a, _)| a)
        .collect()
}

/// `nameserver` values of a resolv.conf, in order.
pub fn resolv_nameservers(text: &str) -> Vec<String> {
    resolv_values(text, "nameserver")
}

/// `search` domains of a resolv.conf (all search lines, in order).
pub fn resolv_search(text: &str) -> Vec<String> {
    resolv_values(text, "search")
}

/// `options` of a resolv.conf.
pub fn resolv_options(text: &str) -> Vec<String> {
    resolv_values(text, "options")
}

fn resolv_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key)).then(|| it.map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// The non-empty, trimmed lines of a file (what "same content" means for generated files).
pub fn meaningful_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}
