//! The source layout the architecture relies on (issue 9): the engine imports no front end, and
//! no source file grows past one sitting's read. Plain file checks, no root needed.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
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

#[test]
fn no_source_file_is_over_600_lines() {
    for f in src("") {
        let n = std::fs::read_to_string(&f).unwrap().lines().count();
        assert!(
            n <= MAX_LINES,
            "{} has {n} lines (limit {MAX_LINES})",
            f.display()
        );
    }
}
