//! A full ring is reported as lost events; bulk publish output off a terminal.

use super::*;

/// Entry `index` of the per-CPU array `map`, summed over CPUs, read by bpftool from the
/// daemon's pin (the daemon may be stopped).
fn percpu(d: &Daemon, map: &str, index: usize) -> u64 {
    bpf::percpu_sum(&d.map_pin(map), index)
}

fn ring_lost(d: &Daemon) -> u64 {
    percpu(d, "NETD_MONITOR_LOST", 0)
}

#[test]
fn a_full_ring_is_reported_as_lost_events_and_forwarding_goes_on() {
    let st = setup(&[]);
    let (d, c1, ip2) = (&st.d, &st.c1, &st.ip2);
    let _srv = tcp_server(&st.c2, 80);
    netd_tests::tcp_request_until(c1, &format!("{ip2}:80"), T).unwrap();
    let m = Monitor::start(d, &["--json"]);
    let human = Monitor::start(d, &[]);
    assert_eq!(ring_lost(d), 0);
    // The daemon's reader stops reading: the daemon is stopped (SIGSTOP, by its pid).
    let pid = nix::unistd::Pid::from_raw(d.pid().expect("daemon pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    struct Cont(nix::unistd::Pid);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
        }
    }
    let cont = Cont(pid);
    // A flood of spoofed datagrams: 256 KiB of ring hold about 1500 drop events. (c1 knows
    // c2's MAC from the exchange above; bursts of 100 keep within the veth's backlog.)
    let n: u64 = 4000;
    let dst: std::net::SocketAddr = format!("{ip2}:5000").parse().unwrap();
    netd_tests::in_netns(c1, move || {
        let s = std::net::UdpSocket::bind((SPOOFED, 0))?;
        for i in 0..n {
            s.send_to(b"flood", dst)?;
            if i % 100 == 99 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    })
    .unwrap();
    let dropped = poll_until("the spoofed drops counted", T, || {
        let c = percpu(d, "NETD_DROPS", 2);
        if c >= n * 9 / 10 {
            Ok(c)
        } else {
            Err(format!("{c} of {n}"))
        }
    });
    let lost = ring_lost(d);
    assert!(lost > 0, "the full ring lost nothing");
    // The datapath forwards with the daemon stopped and the ring full.
    netd_tests::tcp_request_until(&st.w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap();
    drop(cont);
    // The reader catches up and says how many events the ring lost.
    let l = wait_kind(&m, "lost", "the lost line", |v| v["cause"] == "ring");
    let reported: u64 = kind(&m, "lost")
        .iter()
        .filter(|v| v["cause"] == "ring")
        .filter_map(|v| v["count"].as_u64())
        .sum();
    assert_eq!(reported, ring_lost(d), "{l:#}");
    assert!(reported >= lost);
    // Every drop reaches the client or is counted lost (the lost line comes first, the
    // ring's events after it).
    poll_until("the ring's events", T, || {
        let got = m.drops().len() as u64;
        if got > 1000 && got + reported >= dropped {
            Ok(())
        } else {
            Err(format!("{got} drops + {reported} lost of {dropped}"))
        }
    });
    poll_until("the human lost line", T, || {
        human
            .lines()
            .iter()
            .find(|l| l.starts_with("lost ") && l.ends_with(" events (ring)"))
            .cloned()
            .ok_or_else(|| format!("{:#?}", human.lines().last()))
    });
    let _ = c1;
}

/// Progress output is for terminals: a bulk publish with stderr redirected (as here) writes
/// only its result, and `--quiet` is accepted everywhere.
#[test]
fn bulk_publish_prints_no_progress_off_a_terminal() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c");
    d.attach("c", &c, &[]);
    let o = d.netd(&["publish", "c", "9000-9499:9000-9499"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "stderr: {:?}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 500, "{out}");
    assert!(!out.contains('\r'));
    let o = d.netd(&["--quiet", "publish", "c", "9500:9500"]);
    assert!(o.status.success() && o.stderr.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "9500/tcp -> 0.0.0.0:9500"
    );
}
