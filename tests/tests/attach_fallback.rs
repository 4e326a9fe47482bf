//! The netlink clsact fallback end to end (`netd daemon --tc-attach netlink`, what a kernel
//! before 6.6 gets): a published UDP stream crosses `kill -9` of the daemon and its restart
//! without losing a datagram, and the restarted daemon replaced the programs of the same
//! filters (same priority and handle) instead of adding filters.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use netd_tests::bpf::tc_filters as filters;
use netd_tests::traffic::enter_netns;
use netd_tests::world::{HOST_UPLINK_IP, UPLINK};
use netd_tests::{BIP, World, poll_until, try_poll_until};

const T: Duration = Duration::from_secs(5);

#[test]
fn netlink_filters_carry_a_udp_stream_across_kill9_and_restart() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP, "--tc-attach", "netlink"]);
    let st = d.status();
    assert_eq!(st["tc_attach"], "netlink", "{st:#}");
    let web = w.container("web");
    d.attach("web", &web, &["-p", "9000:9000/udp"]);
    let veth = d.inspect("web")["host_ifname"]
        .as_str()
        .expect("host_ifname")
        .to_string();

    let up_in = filters(&w.host, UPLINK, "ingress");
    assert_eq!(up_in.len(), 1, "{up_in:?}");
    assert_eq!(
        (
            up_in[0].pref.as_str(),
            up_in[0].handle.as_str(),
            up_in[0].name.as_str()
        ),
        ("1", "0x4e44", "from_uplink")
    );
    assert_eq!(filters(&w.host, UPLINK, "egress").len(), 1);
    assert_eq!(filters(&w.host, &veth, "ingress")[0].name, "from_container");
    let progs = st["programs"].as_array().cloned().unwrap_or_default();
    let st = d.status();
    let progs_now = st["programs"].as_array().expect("programs");
    assert!(progs.len() >= 2, "{progs:?}");
    assert_eq!(
        progs_now.len(),
        4,
        "uplink and veth, both hooks: {progs_now:#?}"
    );
    assert!(progs_now.iter().all(|p| p["attach"] == "netlink"));

    // The sink in the container counts every datagram.
    let got = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sink = {
        let (path, got, stop, seen) = (
            web.path().to_path_buf(),
            got.clone(),
            stop.clone(),
            seen.clone(),
        );
        std::thread::spawn(move || {
            enter_netns(&path).expect("enter web");
            let s = UdpSocket::bind("0.0.0.0:9000").expect("bind 9000");
            ready_tx.send(()).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((4, _)) = s.recv_from(&mut buf) {
                    seen.lock()
                        .unwrap()
                        .push(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
                    got.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    ready_rx.recv_timeout(T).expect("the sink is listening");
    // A steady stream from outside to the published port, until told to stop.
    let sent = Arc::new(AtomicUsize::new(0));
    let sending = Arc::new(AtomicBool::new(true));
    let source = {
        let (path, sent, sending) = (
            w.outside.path().to_path_buf(),
            sent.clone(),
            sending.clone(),
        );
        std::thread::spawn(move || {
            enter_netns(&path).expect("enter outside");
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let dest = format!("{HOST_UPLINK_IP}:9000");
            while sending.load(Ordering::Relaxed) {
                let n = sent.load(Ordering::Relaxed);
                s.send_to(&(n as u32).to_be_bytes(), &dest).expect("send");
                sent.store(n + 1, Ordering::Relaxed);
                let n = n + 1;
                if n.is_multiple_of(10) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    poll_until("the stream to reach the container", T, || {
        let n = got.load(Ordering::Relaxed);
        if n > 200 { Ok(n) } else { Err(n) }
    });

    d.kill9();
    let killed_seq = sent.load(Ordering::Relaxed);
    let dead_at = got.load(Ordering::Relaxed);
    poll_until("datagrams while the daemon is dead", T, || {
        let n = got.load(Ordering::Relaxed);
        if n > dead_at + 500 { Ok(n) } else { Err(n) }
    });
    assert_eq!(
        filters(&w.host, UPLINK, "ingress"),
        up_in,
        "the filters stay as they were with no daemon"
    );
    let restart_seq = sent.load(Ordering::Relaxed);
    // A netd of another object replaces each filter's program in place (the same object
    // would reuse the programs pinned under progs/ and leave the filters as they are): the
    // path under test here.
    std::fs::remove_dir_all(d.bpffs().join("progs")).expect("unpin the programs");
    d.restart();
    let ready_seq = sent.load(Ordering::Relaxed);
    let back_at = got.load(Ordering::Relaxed);
    poll_until("datagrams after the restart", T, || {
        let n = got.load(Ordering::Relaxed);
        if n > back_at + 500 { Ok(n) } else { Err(n) }
    });
    sending.store(false, Ordering::Relaxed);
    source.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    let got_all = try_poll_until(T, || {
        let n = got.load(Ordering::Relaxed);
        if n == sent { Ok(n) } else { Err(n) }
    });
    let got_all = got_all.unwrap_or_else(|n| {
        let mut have = seen.lock().unwrap().clone();
        have.sort_unstable();
        let missing: Vec<u32> = (0..sent as u32)
            .filter(|i| have.binary_search(i).is_err())
            .collect();
        panic!(
            "{n} of {sent} datagrams arrived; missing {missing:?}; kill -9 at #{killed_seq}, \
             restart from #{restart_seq}, ready at #{ready_seq} ({dead_at}/{back_at} received)\n{}",
            d.logs()
        )
    });
    stop.store(true, Ordering::Relaxed);
    sink.join().unwrap();
    assert_eq!(got_all, sent);

    // Same slots, new programs: replaced in place, not added.
    let after = filters(&w.host, UPLINK, "ingress");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        (&after[0].pref, &after[0].handle, &after[0].name),
        (&up_in[0].pref, &up_in[0].handle, &up_in[0].name)
    );
    assert_ne!(
        after[0].id, up_in[0].id,
        "the restarted daemon's program runs"
    );
    assert_eq!(filters(&w.host, &veth, "ingress").len(), 1);
    // The dataplane's own view agrees with tc.
    let st = d.status();
    let ingress = st["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ifname"] == UPLINK && p["direction"] == "ingress")
        .cloned()
        .expect("uplink ingress in status");
    assert_eq!(ingress["prog_id"].to_string(), after[0].id);
    assert_eq!(ingress["handle"], 0x4e44);
    assert_eq!(ingress["priority"], 1);

    // Detaching removes the container's filters; the veth is gone with them (deleted in the
    // background: poll for it).
    d.netd_ok(&["detach", "web"]);
    assert!(filters(&w.host, UPLINK, "ingress").len() == 1);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while w.host.links().contains(&veth) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !w.host.links().contains(&veth),
        "{veth} still there 10 s after detach"
    );
}
