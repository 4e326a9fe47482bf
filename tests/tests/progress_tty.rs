//! Progress output on a terminal (issue 14): `netd publish` of a range, run under a
//! pseudo-terminal (`script`), shows the daemon's "k of N ports" count and leaves
//! "N of N ports in …s (R/s)" as its last line; off a terminal it prints nothing
//! (monitor.rs `bulk_publish_prints_no_progress_off_a_terminal`). A daemon whose stderr is
//! a terminal counts its start-up reconcile the same way.

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

/// A pseudo-terminal (master, slave) made with openpty(3): not this process's controlling
/// terminal, so the daemon on its slave gets no SIGHUP (which would be a reload).
fn openpty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty writes two new descriptors, owned by the Files below.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) }
}

/// The daemon's own start-up progress on a terminal: restarted with stderr on a
/// pseudo-terminal, it shows its reconcile of the saved endpoints and leaves "N of N
/// endpoints in …s" as that line's last frame, and keeps serving (no hang-up reaches it).
#[test]
fn a_restarted_daemon_on_a_terminal_counts_its_reconcile_to_n_of_n() {
    use std::io::Read as _;
    use std::os::fd::AsRawFd as _;
    use std::time::{Duration, Instant};

    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let cs: Vec<_> = (0..12)
        .map(|i| {
            let c = w.container(&format!("c{i}"));
            d.attach(&c.name, &c, &[]);
            c
        })
        .collect();
    let (mut master, slave) = openpty();
    // SAFETY: fcntl on a descriptor this test owns.
    unsafe {
        let fl = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    d.restart_with_stderr(slave);
    let want = "starting: reconciling the saved endpoints: 12 of 12 endpoints in ";
    let mut tty = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&tty).contains(want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?} on the terminal: {:?}",
            String::from_utf8_lossy(&tty)
        );
        let mut buf = [0u8; 4096];
        match master.read(&mut buf) {
            Ok(n) => tty.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("reading the terminal: {e}"),
        }
    }
    let tty = String::from_utf8_lossy(&tty).into_owned();
    assert!(tty.contains("starting: loading the datapath"), "{tty:?}");
    let line = tty
        .split(['\r', '\n'])
        .find(|l| l.starts_with(want))
        .unwrap();
    assert!(line.contains("s ("), "{line:?}");
    // Every count shown on the way is at most 12 of 12.
    for frame in tty.split('\r').filter(|l| l.contains(" of 12 endpoints")) {
        let k: u64 = frame
            .rsplit(": ")
            .next()
            .and_then(|r| r.split(' ').next())
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("frame {frame:?}"));
        assert!(k <= 12, "{frame:?}");
    }
    // Still serving (no SIGHUP reload or exit came from the terminal).
    let ls: serde_json::Value = serde_json::from_str(&d.netd_ok(&["ls", "--json"])).unwrap();
    assert_eq!(ls.as_array().map(Vec::len), Some(12), "{ls}");
    assert_eq!(d.status()["state"], "ready");
    drop(cs);
}
