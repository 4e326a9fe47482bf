//! CLI conveniences: `netd version`, shell completions and man pages generated from the clap
//! definitions, and `--json` on every listing command.

use std::path::Path;

use netd_tests::daemon::netd_bin;
use netd_tests::{BIP, TempDir, World, cmd, workspace_root};

fn netd(args: &[&str]) -> String {
    let mut a = vec![netd_bin().display().to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    netd_tests::cmd_ok(&a)
}

fn sha256_file(p: &Path) -> String {
    let out = cmd(&["sha256sum", p.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn version_names_the_commit_and_the_embedded_objects() {
    let v: serde_json::Value = serde_json::from_str(&netd(&["version", "--json"])).unwrap();
    let commit = v["git_commit"].as_str().unwrap();
    assert_eq!(commit.len(), 40, "{v}");
    let known = cmd(&[
        "git",
        "-C",
        workspace_root().to_str().unwrap(),
        "cat-file",
        "-e",
        &format!("{commit}^{{commit}}"),
    ]);
    assert!(
        known.status.success(),
        "{commit} is not a commit of this checkout"
    );
    // The hash is the one of an object the build left in OUT_DIR.
    let want = v["ebpf_object_sha256"].as_str().unwrap();
    let build = workspace_root().join("target/debug/build");
    let objects: Vec<_> = std::fs::read_dir(&build)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path().join("out/netd-ebpf");
            p.exists().then_some(p)
        })
        .collect();
    assert!(
        objects.iter().any(|p| sha256_file(p) == want),
        "no built object has sha256 {want}: {objects:?}"
    );
    let text = netd(&["version"]);
    assert!(text.contains(commit) && text.contains(want), "{text}");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let files = TempDir::new();
    let bash = netd(&["completion", "bash"]);
    let p = files.write("netd.bash", &bash);
    let check = cmd(&["bash", "-n", p.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for w in ["install-unit", "--config-file", "--metrics-addr", "attach"] {
        assert!(bash.contains(w), "bash completion lacks {w}");
    }
    let zsh = netd(&["completion", "zsh"]);
    assert!(
        zsh.starts_with("#compdef netd"),
        "{}",
        &zsh[..40.min(zsh.len())]
    );
    let fish = netd(&["completion", "fish"]);
    assert!(fish.contains("complete -c netd"), "fish");
    assert!(fish.contains("config-file"), "fish");
    let out = cmd(&[netd_bin().to_str().unwrap(), "completion", "tcsh"]);
    assert!(!out.status.success());
}

#[test]
fn man_pages_for_every_subcommand() {
    let files = TempDir::new();
    let dest = files.path().join("man");
    let listed = netd(&["man", "--dest", dest.to_str().unwrap()]);
    for page in [
        "netd.1",
        "netd-daemon.1",
        "netd-attach.1",
        "netd-network-create.1",
    ] {
        let p = dest.join(page);
        assert!(listed.contains(p.to_str().unwrap()), "{page} not listed");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let daemon = std::fs::read_to_string(dest.join("netd-daemon.1")).unwrap();
    assert!(
        daemon.contains("config\\-file"),
        "netd-daemon.1 lacks --config-file"
    );
}

#[test]
fn every_listing_command_takes_json() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80", "-p", "5353:53/udp"]);
    d.netd_ok(&["filter", "deny", "203.0.113.0/24"]);
    let parse = |args: &[&str]| -> serde_json::Value {
        let out = d.netd_ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    };
    let ls = parse(&["ls", "--json"]);
    assert_eq!(ls[0]["name"], "web", "{ls}");
    let nets = parse(&["network", "ls", "--json"]);
    assert!(
        nets.as_array()
            .unwrap()
            .iter()
            .any(|n| n["default"] == true && n["endpoints"][0] == "web"),
        "{nets}"
    );
    let f = parse(&["filter", "ls", "--json"]);
    assert_eq!(f["deny"][0], "203.0.113.0/24", "{f}");
    let ports = parse(&["port", "web", "--json"]);
    assert_eq!(ports.as_array().unwrap().len(), 2, "{ports}");
    let one = parse(&["port", "web", "53/udp", "--json"]);
    assert_eq!(one[0]["host_port"], 5353, "{one}");
    assert_eq!(one.as_array().unwrap().len(), 1);
    for args in [&["stats", "--json"][..], &["ct", "--json"][..]] {
        parse(args);
    }
}
