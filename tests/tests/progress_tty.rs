//! Progress output on a terminal (issue 14): `netd publish` of a range, run under a
//! pseudo-terminal (`script`), shows the daemon's "k of N ports" count and leaves
//! "N of N ports in …s (R/s)" as its last line; off a terminal it prints nothing
//! (monitor.rs `bulk_publish_prints_no_progress_off_a_terminal`).

use std::process::Command;

use netd_tests::daemon::netd_bin;
use netd_tests::{BIP, World};

/// Runs `netd ARGS` with stdin, stdout and stderr on a pseudo-terminal; (success, what the
/// terminal received).
fn on_a_terminal(host_arg: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = vec![
        netd_bin().display().to_string(),
        "-H".into(),
        host_arg.into(),
    ];
    cmd.extend(args.iter().map(|a| a.to_string()));
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd.join(" "), "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1) (util-linux)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn bulk_publish_on_a_terminal_counts_to_n_of_n() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c");
    d.attach("c", &c, &[]);
    let (ok, tty) = on_a_terminal(&d.host_arg(), &["publish", "c", "9000-9499:9000-9499"]);
    assert!(ok, "{tty}");
    // The summary line: the daemon's count of this publish, all 500 done, with a rate.
    let summary = tty
        .split(['\r', '\n'])
        .find(|l| l.starts_with("publishing 9000-9499:9000-9499 on c: "))
        .unwrap_or_else(|| panic!("no summary line in {:?}", &tty[..tty.len().min(300)]));
    assert!(
        summary.starts_with("publishing 9000-9499:9000-9499 on c: 500 of 500 ports in "),
        "{summary:?}"
    );
    assert!(
        summary.contains("s (") && summary.ends_with("/s)\x1b[K"),
        "{summary:?}"
    );
    // Every frame before it counts up to at most 500 of 500.
    for frame in tty.split('\r').filter(|l| l.contains(" of 500 ports")) {
        let k: u64 = frame
            .split(": ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("frame {frame:?}"));
        assert!(k <= 500, "{frame:?}");
    }
    // The result follows on stdout, one line per port.
    assert!(tty.contains("9000/tcp -> 0.0.0.0:9000\r\n"), "{tty:?}");
    assert!(tty.contains("9499/tcp -> 0.0.0.0:9499"), "{tty:?}");

    // A failed publish leaves no summary: its line is erased.
    let (ok, tty) = on_a_terminal(&d.host_arg(), &["publish", "c", "9000-9009:9000-9009"]);
    assert!(!ok, "{tty}");
    assert!(!tty.contains(" of 10 ports in "), "{tty:?}");
    // --quiet: nothing but the result, even on a terminal.
    let (ok, tty) = on_a_terminal(&d.host_arg(), &["--quiet", "publish", "c", "9600:9600"]);
    assert!(ok, "{tty}");
    assert_eq!(tty.trim_end(), "9600/tcp -> 0.0.0.0:9600", "{tty:?}");
}
