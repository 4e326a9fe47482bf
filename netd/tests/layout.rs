//! The source layout the architecture relies on (issue 9): the engine imports no front end, and
//! no .rs file in the workspace (every crate, tests included) grows past one sitting's read.
//! Plain file checks, no root needed.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// The workspace's `.rs` files under `dir`, leaving out build output (`target`) and hidden
/// directories (`.git`): the files git tracks, plus any not yet added.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src(sub: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(sub);
    rust_files(&dir, &mut v);
    assert!(!v.is_empty(), "no sources under {}", dir.display());
    v
}

#[test]
fn the_engine_imports_no_front_end() {
    for f in src("engine") {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for bad in ["frontend::", "clap::", "http::", "api::", "cli::"] {
                assert!(
                    !code.contains(bad),
                    "{}:{}: the engine uses {bad}: {line}",
                    f.display(),
                    i + 1
                );
            }
        }
    }
}

/// The crates the check must have seen, so that a walk gone wrong cannot pass by finding nothing.
const CRATES: [&str; 6] = [
    "netd",
    "netd-common",
    "netd-ebpf",
    "bench",
    "xtask",
    "tests",
];

fn lines(f: &Path) -> usize {
    std::fs::read_to_string(f)
        .unwrap_or_else(|e| panic!("reading {}: {e}", f.display()))
        .lines()
        .count()
}

#[test]
fn no_source_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let rel = |f: &Path| {
        f.strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/")
    };
    let mut files: Vec<(String, PathBuf)> = files.into_iter().map(|f| (rel(&f), f)).collect();
    files.sort();
    for c in CRATES {
        assert!(
            files.iter().any(|(r, _)| r.starts_with(&format!("{c}/"))),
            "no .rs files found under {c}/ in {}",
            root.display()
        );
    }
    let wrong: Vec<String> = files
        .iter()
        .filter_map(|(r, f)| {
            let n = lines(f);
            (n > MAX_LINES).then(|| format!("{r} has {n} lines (limit {MAX_LINES}): split it"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} file(s) break the {MAX_LINES}-line limit rule:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
