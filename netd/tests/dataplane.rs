//! Dataplane tests (root): real packets through TCX-attached programs in private network
//! namespaces, link adoption across agent restarts, and BPF_PROG_TEST_RUN on crafted frames.
//!
//! Every namespace and pin directory is created with a unique name and removed on drop, so a
//! failing test cleans up after itself. Nothing is attached in the root network namespace.

use std::{fs, path::Path, process::Command, time::Duration};

use aya::programs::{SchedClassifier, TcAttachType, TestRun as _, TestRunOptions};
use netd::dataplane::{Dataplane, DataplaneConfig, Direction, InterfaceStats};
use netd_common::{PROG_FROM_CONTAINER, PROG_FROM_UPLINK, PROG_TO_CONTAINER, PROG_TO_UPLINK};
use nix::sched::{CloneFlags, setns};

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use datapath_util::{Netns, PinDir, VethPair, run_cmd as run};

/// The veth pair's subnet (the first three octets).
const NET: &str = "10.77.0";

const TC_ACT_OK: u32 = 0;

/// Host namespace `h` with veth `dp0` (10.77.0.1) whose peer `dp1` (10.77.0.2) is in `peer`.
struct Topology {
    h: Netns,
    peer: Netns,
}

impl Topology {
    fn new() -> Self {
        let VethPair { h, peer } = VethPair::new(NET);
        Self { h, peer }
    }

    /// Sends `n` UDP datagrams each way across the veth pair and waits for them to arrive.
    fn exchange(&self, n: usize) {
        let (host, peer) = VethPair::udp_sockets_of(&self.h, &self.peer, NET);
        for (from, to) in [(&host, &peer), (&peer, &host)] {
            to.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let dest = to.local_addr().unwrap();
            for i in 0..n {
                from.send_to(format!("netd {i}").as_bytes(), dest).unwrap();
                let mut buf = [0u8; 64];
                to.recv_from(&mut buf).expect("datagram across the veth");
            }
        }
    }

    fn tcx_programs(&self, ifname: &str, attach_type: TcAttachType) -> Vec<u32> {
        self.h.enter(|| {
            let (_, progs) = SchedClassifier::query_tcx(ifname, attach_type).expect("query_tcx");
            progs.iter().map(|p| p.id()).collect()
        })
    }

    /// `bpftool net show dev <ifname>` inside the host namespace: the tcx lines.
    fn bpftool_tcx(&self, ifname: &str) -> Vec<String> {
        self.h
            .exec(&["bpftool", "net", "show", "dev", ifname])
            .lines()
            .filter(|l| l.contains("tcx/"))
            .map(str::to_owned)
            .collect()
    }

    fn stats(&self, dp: &Dataplane, ifname: &str) -> InterfaceStats {
        self.h.enter(|| {
            dp.interface_stats()
                .expect("interface_stats")
                .into_iter()
                .find(|s| s.ifname.as_deref() == Some(ifname))
                .unwrap_or_default()
        })
    }
}

/// Exactly one TCX program per direction on `ifname`, and it is the expected one. The kernel's
/// BPF_PROG_QUERY (what `bpftool net show` runs) is the source of truth; bpftool 7.1 (Debian 12)
/// predates TCX and prints nothing for it, so its tcx lines are only checked when present, and
/// `bpftool prog show id` confirms the program names.
fn assert_one_per_direction(t: &Topology, ifname: &str, ingress: &str, egress: &str) {
    for (attach_type, want) in [
        (TcAttachType::Ingress, ingress),
        (TcAttachType::Egress, egress),
    ] {
        let ids = t.tcx_programs(ifname, attach_type);
        assert_eq!(ids.len(), 1, "{attach_type:?} on {ifname}: {ids:?}");
        let show =
            t.h.exec(&["bpftool", "prog", "show", "id", &ids[0].to_string()]);
        assert!(
            show.contains(want),
            "{attach_type:?} on {ifname} runs {want}: {show}"
        );
    }
    let lines = t.bpftool_tcx(ifname);
    if !lines.is_empty() {
        assert_eq!(lines.len(), 2, "bpftool net show: {lines:#?}");
        for (dir, want) in [("tcx/ingress", ingress), ("tcx/egress", egress)] {
            let n = lines
                .iter()
                .filter(|l| l.contains(dir) && l.contains(want))
                .count();
            assert_eq!(n, 1, "{lines:#?}");
        }
    }
}

#[test]
fn counts_real_packets_and_adopts_pinned_links() {
    let t = Topology::new();
    let pins = PinDir::new();
    const N: u64 = 10;

    // First agent: attach, move packets, read counters.
    let mut dp = t.h.enter(|| Dataplane::open(&pins.config()).expect("open"));
    t.h.enter(|| dp.attach_endpoint("dp0").expect("attach_endpoint"));
    assert_one_per_direction(&t, "dp0", PROG_FROM_CONTAINER, PROG_TO_CONTAINER);
    t.exchange(N as usize);
    let s = t.stats(&dp, "dp0");
    assert!(s.tx_packets >= N, "to_container counted {s:?}");
    assert!(s.rx_packets >= N, "from_container counted {s:?}");
    assert!(s.rx_bytes >= N * 42 && s.tx_bytes >= N * 42, "{s:?}");

    let dump = run(&[
        "bpftool",
        "map",
        "dump",
        "pinned",
        pins.0.join("maps/NETD_IF_STATS").to_str().unwrap(),
    ]);
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("rx_packets") && dump.contains("tx_bytes"),
        "BTF field names in the dump:\n{dump}"
    );

    let status = t.h.enter(|| dp.status().expect("status"));
    serde_json::to_string(&status).expect("status serializes");
    assert_eq!(status.programs.len(), 2, "{status:#?}");
    for p in &status.programs {
        assert_eq!(p.ifname, "dp0");
        let want = match p.direction {
            Direction::Ingress => PROG_FROM_CONTAINER,
            Direction::Egress => PROG_TO_CONTAINER,
        };
        assert_eq!(p.program, want);
        assert!(p.prog_id > 0 && p.link_id > 0 && p.ifindex > 0);
    }
    let map = &status.maps[0];
    assert_eq!(map.name, "NETD_IF_STATS");
    assert_eq!(map.map_type, "PerCpuHash");
    assert_eq!(map.max_entries, netd_common::IF_STATS_MAX);
    assert!(map.entries >= 1);
    assert_eq!(map.pin_path, pins.0.join("maps/NETD_IF_STATS"));

    // The agent goes away without detaching (as with kill -9): the pinned links keep counting.
    drop(dp);
    assert_one_per_direction(&t, "dp0", PROG_FROM_CONTAINER, PROG_TO_CONTAINER);
    t.exchange(N as usize);

    // A restarted agent reuses the pinned map (counters survive) and adopts the links.
    let mut dp =
        t.h.enter(|| Dataplane::open(&pins.config()).expect("re-open"));
    let s2 = t.stats(&dp, "dp0");
    assert!(
        s2.tx_packets >= s.tx_packets + N && s2.rx_packets >= s.rx_packets + N,
        "counting went on while no agent ran: before {s:?}, after {s2:?}"
    );
    t.h.enter(|| dp.attach_endpoint("dp0").expect("attach_endpoint again"));
    assert_one_per_direction(&t, "dp0", PROG_FROM_CONTAINER, PROG_TO_CONTAINER);
    // Adoption swapped in this agent's programs.
    let ingress = t.tcx_programs("dp0", TcAttachType::Ingress);
    let new_id = dp
        .program(PROG_FROM_CONTAINER)
        .unwrap()
        .info()
        .unwrap()
        .id();
    assert_eq!(ingress, vec![new_id]);
    // Attaching again in the same agent is a no-op.
    t.h.enter(|| {
        dp.attach_endpoint("dp0")
            .expect("attach_endpoint a third time")
    });
    assert_one_per_direction(&t, "dp0", PROG_FROM_CONTAINER, PROG_TO_CONTAINER);
    t.exchange(1);
    assert!(t.stats(&dp, "dp0").rx_packets > s2.rx_packets);

    // Re-attaching as an uplink replaces the endpoint programs.
    t.h.enter(|| dp.attach_uplink("dp0").expect("attach_uplink"));
    assert_one_per_direction(&t, "dp0", PROG_FROM_UPLINK, PROG_TO_UPLINK);

    // Detach removes everything, and is idempotent.
    t.h.enter(|| {
        dp.detach("dp0").expect("detach");
        dp.detach("dp0").expect("detach again");
        dp.detach("nosuchif").expect("detach an unknown interface");
    });
    assert!(t.bpftool_tcx("dp0").is_empty());
    assert!(t.tcx_programs("dp0", TcAttachType::Ingress).is_empty());
    assert!(t.tcx_programs("dp0", TcAttachType::Egress).is_empty());
    assert!(!pins.0.join("links/dp0").exists());
    let status = t.h.enter(|| dp.status().expect("status"));
    assert!(status.programs.is_empty(), "{status:#?}");
    drop(dp);
}

#[test]
fn prune_removes_links_of_gone_and_unwanted_interfaces() {
    let t = Topology::new();
    t.h.ip(&[
        "link", "add", "gone0", "type", "veth", "peer", "name", "gone1",
    ]);
    t.h.ip(&[
        "link", "add", "extra0", "type", "veth", "peer", "name", "extra1",
    ]);
    let pins = PinDir::new();

    let mut dp = t.h.enter(|| Dataplane::open(&pins.config()).expect("open"));
    t.h.enter(|| {
        dp.attach_uplink("dp0").unwrap();
        dp.attach_endpoint("gone0").unwrap();
        dp.attach_endpoint("extra0").unwrap();
    });
    t.exchange(2);
    drop(dp);

    // While no agent runs, an endpoint disappears.
    t.h.ip(&["link", "del", "gone0"]);

    let mut dp =
        t.h.enter(|| Dataplane::open(&pins.config()).expect("re-open"));
    let before = t.h.enter(|| dp.status().unwrap());
    assert_eq!(before.programs.len(), 6, "{before:#?}");
    assert!(
        before
            .programs
            .iter()
            .filter(|p| p.ifname == "gone0")
            .all(|p| p.ifindex == 0),
        "links of a deleted interface are defunct: {before:#?}"
    );

    t.h.enter(|| dp.prune(&["dp0".to_owned()]).expect("prune"));
    let after = t.h.enter(|| dp.status().unwrap());
    assert_eq!(after.programs.len(), 2, "{after:#?}");
    assert!(after.programs.iter().all(|p| p.ifname == "dp0"));
    assert!(!pins.0.join("links/gone0").exists());
    assert!(!pins.0.join("links/extra0").exists());
    assert!(t.bpftool_tcx("extra0").is_empty());
    assert_one_per_direction(&t, "dp0", PROG_FROM_UPLINK, PROG_TO_UPLINK);
    let stats = t.h.enter(|| dp.interface_stats().unwrap());
    assert!(
        stats.iter().all(|s| s.ifname.as_deref() == Some("dp0")),
        "only kept interfaces keep counters: {stats:#?}"
    );
}

/// An Ethernet/IPv4/UDP frame with a valid IPv4 header checksum.
fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]); // id, DF, ttl, UDP, csum 0
    ip.extend_from_slice(&[172, 17, 0, 2, 8, 8, 8, 8]);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum
    f.extend_from_slice(payload);
    f
}

#[test]
fn prog_test_run_from_container_passes_and_counts() {
    // BPF_PROG_TEST_RUN attaches nothing; it runs in a private namespace anyway so the
    // counter key (the namespace's loopback, ifindex 1) is ours alone.
    let ns = Netns::new("netd-dpath-t");
    let pins = PinDir::new();
    ns.enter(|| {
        let dp = Dataplane::open(&pins.config()).expect("open");
        let frame = udp_frame(b"hello");
        let mut out = vec![0u8; frame.len() + 64];
        let prog = dp.program(PROG_FROM_CONTAINER).unwrap();
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                data_out: Some(&mut out),
                repeat: 3,
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(res.return_value, TC_ACT_OK);
        assert_eq!(
            &out[..res.data_size_out as usize],
            &frame[..],
            "frame unchanged"
        );

        let stats = dp.interface_stats().unwrap();
        let lo = stats
            .iter()
            .find(|s| s.ifindex == 1)
            .expect("loopback counted");
        assert_eq!(lo.rx_packets, 3, "{lo:?}");
        assert_eq!(lo.rx_bytes, 3 * frame.len() as u64, "{lo:?}");
        assert_eq!(lo.tx_packets, 0);
    });
    assert_pin_layout(&pins.0);
}

fn assert_pin_layout(pin_dir: &Path) {
    for map in netd_common::ALL_MAPS {
        assert!(
            netd::dataplane::pinned_map(pin_dir, map).exists(),
            "{map} pinned"
        );
    }
    assert!(pin_dir.join("links").is_dir());
}

/// Set for the child agent of [`killed_agent_leaves_links_attached`]: "<netns path>:<pin dir>".
const CHILD_ENV: &str = "NETD_DPTEST_CHILD_AGENT";

/// The agent half of [`killed_agent_leaves_links_attached`], run in a child process (this test
/// binary re-executed): attaches to dp0, says READY and waits to be killed.
#[test]
#[ignore = "helper: run by killed_agent_leaves_links_attached in a child process"]
fn child_agent() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (netns, pin_dir) = spec.split_once(':').expect("netns:pin_dir");
    let ns = fs::File::open(netns).expect("open netns");
    setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
    let mut dp = Dataplane::open(&DataplaneConfig {
        pin_dir: pin_dir.into(),
        ct_max: netd_common::CT_MAX_DEFAULT,
    })
    .expect("open");
    dp.attach_endpoint("dp0").expect("attach_endpoint");
    println!("READY");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn killed_agent_leaves_links_attached() {
    use std::io::{BufRead as _, BufReader};

    let t = Topology::new();
    let pins = PinDir::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_agent", "--exact", "--ignored", "--nocapture"])
        .env(
            CHILD_ENV,
            format!("{}:{}", t.h.path().display(), pins.0.display()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the child agent");
    // Kill the child however this test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.trim() == "READY");
    assert!(ready, "the child agent attached");
    child.0.kill().expect("SIGKILL the child agent");
    child.0.wait().unwrap();

    assert_one_per_direction(&t, "dp0", PROG_FROM_CONTAINER, PROG_TO_CONTAINER);
    t.exchange(5);
    let mut dp =
        t.h.enter(|| Dataplane::open(&pins.config()).expect("open after kill -9"));
    let s = t.stats(&dp, "dp0");
    assert!(
        s.rx_packets >= 5 && s.tx_packets >= 5,
        "counted after kill -9: {s:?}"
    );
    t.h.enter(|| dp.attach_endpoint("dp0").expect("adopt"));
    assert_one_per_direction(&t, "dp0", PROG_FROM_CONTAINER, PROG_TO_CONTAINER);
    t.h.enter(|| dp.detach("dp0").expect("detach"));
    assert!(t.tcx_programs("dp0", TcAttachType::Ingress).is_empty());
}

/// The layout table the agent checks pins against is the one the eBPF object declares.
#[test]
fn map_layout_table_matches_the_object() {
    let pins = PinDir::new();
    let dp = Dataplane::open(&pins.config()).expect("open");
    for l in netd_common::MAP_LAYOUTS {
        let pin = netd::dataplane::pinned_map(&pins.0, l.name);
        let info = aya::maps::MapInfo::from_pin(&pin).expect("pin");
        let found = (
            info.map_type().map(|t| t as u32).unwrap_or(u32::MAX),
            info.key_size(),
            info.value_size(),
        );
        assert_eq!(found, (l.map_type, l.key_size, l.value_size), "{}", l.name);
    }
    drop(dp);
}

/// A pin left by a netd with another layout (here NETD_CT as the LRU map it once was) is
/// refused with an error that names it, instead of being reused with the wrong layout.
#[test]
fn incompatible_pins_are_refused() {
    let pins = PinDir::new();
    drop(Dataplane::open(&pins.config()).expect("open"));
    let ct = netd::dataplane::pinned_map(&pins.0, netd_common::MAP_CT);
    fs::remove_file(&ct).expect("unpin NETD_CT");
    datapath_util::pin_bpftool_map(&ct, "lru_hash", 40, 120, 16, "NETD_CT");
    let err = datapath_util::open_refused(&pins, "an LRU NETD_CT pin");
    assert!(
        err.contains("NETD_CT") && err.contains("incompatible"),
        "{err}"
    );
}
